//! Topic names, topic filters and the subscription trie (MQTT 3.1.1 §4.7).
//!
//! A [`TopicName`] is what is published to: no wildcards. A [`Filter`] is
//! what is subscribed to: `+` fills exactly one level, `#` fills any number
//! of levels (including none) and must be last. Neither type can hold an
//! invalid value. A filter whose first level is a wildcard does not match
//! topics that begin with `$`, which are the broker's own.
//!
//! [`SubscriptionTrie`] maps filters to subscriber values and matches a
//! topic to them level by level, without allocating per level.

use std::collections::HashMap;

use smallvec::SmallVec;

/// Bounds on topic names and filters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TopicLimits {
    /// Longest name or filter in bytes (default 4096, at most 65535).
    pub max_len: usize,
    /// Most levels (default 128).
    pub max_levels: usize,
}

impl Default for TopicLimits {
    fn default() -> Self {
        TopicLimits { max_len: 4096, max_levels: 128 }
    }
}

impl TopicLimits {
    /// Limits that admit any length and depth the wire format can carry.
    pub const UNBOUNDED: TopicLimits = TopicLimits { max_len: u16::MAX as usize, max_levels: usize::MAX };
}

/// Why a string is not a valid topic name or filter.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TopicError {
    /// Zero bytes long.
    #[error("topic is empty")]
    Empty,
    /// Contains U+0000.
    #[error("topic contains a NUL character")]
    Nul,
    /// Over the length limit.
    #[error("topic of {len} bytes is over the limit of {max}")]
    TooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Over the level limit.
    #[error("topic has more than {max} levels")]
    TooManyLevels {
        /// The limit.
        max: usize,
    },
    /// A topic name (not a filter) contains `+` or `#`.
    #[error("a topic name cannot contain the wildcards + or #")]
    WildcardInName,
    /// A filter uses `+` or `#` other than as a whole level, or `#` not last.
    #[error("wildcards must fill a whole level, and # must be the last level")]
    BadWildcard,
}

/// The checks names and filters share: length, NUL, level count.
fn check_common(text: &str, limits: &TopicLimits) -> Result<(), TopicError> {
    if text.is_empty() {
        return Err(TopicError::Empty);
    }
    if text.len() > limits.max_len {
        return Err(TopicError::TooLong { len: text.len(), max: limits.max_len });
    }
    if text.as_bytes().contains(&0) {
        return Err(TopicError::Nul);
    }
    // Levels are separators + 1; counting bytes is enough, '/' is ASCII.
    if text.bytes().filter(|&b| b == b'/').count() >= limits.max_levels {
        return Err(TopicError::TooManyLevels { max: limits.max_levels });
    }
    Ok(())
}

/// A validated topic name: what is published to. Borrows its text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicName<'a>(&'a str);

impl<'a> TopicName<'a> {
    /// Validates `name`.
    pub fn new(name: &'a str, limits: &TopicLimits) -> Result<Self, TopicError> {
        check_common(name, limits)?;
        if name.bytes().any(|b| b == b'+' || b == b'#') {
            return Err(TopicError::WildcardInName);
        }
        Ok(TopicName(name))
    }

    /// The text.
    pub fn as_str(&self) -> &'a str {
        self.0
    }

    /// Whether the first level begins with `$` (the broker's own topics).
    pub fn is_system(&self) -> bool {
        self.0.starts_with('$')
    }

    /// The levels, split on `/`.
    pub fn levels(&self) -> std::str::Split<'a, char> {
        self.0.split('/')
    }
}

impl std::fmt::Display for TopicName<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

/// A validated topic filter: what is subscribed to. Owns its text.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Filter(Box<str>);

impl Filter {
    /// Validates `filter`.
    pub fn new(filter: &str, limits: &TopicLimits) -> Result<Self, TopicError> {
        check_common(filter, limits)?;
        let mut levels = filter.split('/').peekable();
        while let Some(level) = levels.next() {
            let wildcard = level.contains(['+', '#']);
            let whole = level == "+" || (level == "#" && levels.peek().is_none());
            if wildcard && !whole {
                return Err(TopicError::BadWildcard);
            }
        }
        Ok(Filter(filter.into()))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The levels, split on `/`.
    pub fn levels(&self) -> std::str::Split<'_, char> {
        self.0.split('/')
    }

    /// Whether the filter holds `+` or `#`.
    pub fn has_wildcards(&self) -> bool {
        self.0.contains(['+', '#'])
    }

    /// Whether `topic` matches this filter: the direct check, one filter at
    /// a time (the trie does the same for many filters at once).
    pub fn matches(&self, topic: TopicName<'_>) -> bool {
        if topic.is_system() && self.0.starts_with(['+', '#']) {
            return false;
        }
        let mut names = topic.levels();
        for level in self.levels() {
            match (level, names.next()) {
                ("#", _) => return true,
                ("+", Some(_)) => {}
                (level, Some(name)) if level == name => {}
                _ => return false,
            }
        }
        names.next().is_none()
    }
}

impl std::fmt::Display for Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

type NodeId = u32;
const ROOT: NodeId = 0;

#[derive(Debug)]
struct Node<V> {
    /// Literal next levels.
    children: HashMap<Box<str>, NodeId>,
    /// The `+` next level.
    plus: Option<NodeId>,
    /// Subscribers whose filter ends at this node.
    exact: SmallVec<[V; 2]>,
    /// Subscribers whose filter is this node's path followed by `/#` (or
    /// `#` alone, at the root).
    hash: SmallVec<[V; 2]>,
}

impl<V> Node<V> {
    fn new() -> Self {
        Node { children: HashMap::new(), plus: None, exact: SmallVec::new(), hash: SmallVec::new() }
    }

    fn is_empty(&self) -> bool {
        self.children.is_empty() && self.plus.is_none() && self.exact.is_empty() && self.hash.is_empty()
    }
}

/// Subscriptions from filters to values `V` (subscriber ids), matched
/// against topic names without allocating per level. Nodes live in a
/// vector and refer to each other by index; emptied nodes are pruned and
/// their slots reused, so subscribe/unsubscribe churn does not grow it.
#[derive(Debug)]
pub struct SubscriptionTrie<V> {
    nodes: Vec<Option<Node<V>>>,
    free: Vec<NodeId>,
    len: usize,
}

impl<V: Copy + Eq> Default for SubscriptionTrie<V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<V: Copy + Eq> SubscriptionTrie<V> {
    /// An empty trie.
    pub fn new() -> Self {
        SubscriptionTrie { nodes: vec![Some(Node::new())], free: Vec::new(), len: 0 }
    }

    fn node(&self, id: NodeId) -> &Node<V> {
        self.nodes[id as usize].as_ref().expect("live node")
    }

    fn node_mut(&mut self, id: NodeId) -> &mut Node<V> {
        self.nodes[id as usize].as_mut().expect("live node")
    }

    fn alloc(&mut self) -> NodeId {
        let node = Some(Node::new());
        match self.free.pop() {
            Some(id) => {
                self.nodes[id as usize] = node;
                id
            }
            None => {
                self.nodes.push(node);
                NodeId::try_from(self.nodes.len() - 1).expect("fewer than 2^32 trie nodes")
            }
        }
    }

    /// Adds `value` under `filter`; false if it was already there.
    pub fn insert(&mut self, filter: &Filter, value: V) -> bool {
        let mut node = ROOT;
        let mut ends_in_hash = false;
        for level in filter.levels() {
            node = match level {
                "#" => {
                    ends_in_hash = true;
                    break;
                }
                "+" => match self.node(node).plus {
                    Some(child) => child,
                    None => {
                        let child = self.alloc();
                        self.node_mut(node).plus = Some(child);
                        child
                    }
                },
                literal => match self.node(node).children.get(literal) {
                    Some(&child) => child,
                    None => {
                        let child = self.alloc();
                        self.node_mut(node).children.insert(literal.into(), child);
                        child
                    }
                },
            };
        }
        let slot = if ends_in_hash { &mut self.node_mut(node).hash } else { &mut self.node_mut(node).exact };
        if slot.contains(&value) {
            return false;
        }
        slot.push(value);
        self.len += 1;
        true
    }

    /// Removes `value` from `filter`; false if it was not there.
    pub fn remove(&mut self, filter: &Filter, value: V) -> bool {
        // The (parent, level) steps walked, so emptied nodes can be unlinked
        // without each node storing its parent and a second copy of its level.
        let mut path: SmallVec<[(NodeId, &str); 8]> = SmallVec::new();
        let mut node = ROOT;
        let mut ends_in_hash = false;
        for level in filter.levels() {
            let next = match level {
                "#" => {
                    ends_in_hash = true;
                    break;
                }
                "+" => self.node(node).plus,
                literal => self.node(node).children.get(literal).copied(),
            };
            let Some(child) = next else { return false };
            path.push((node, level));
            node = child;
        }
        let slot = if ends_in_hash { &mut self.node_mut(node).hash } else { &mut self.node_mut(node).exact };
        let Some(position) = slot.iter().position(|v| *v == value) else { return false };
        slot.swap_remove(position);
        self.len -= 1;
        // Free emptied nodes bottom-up; the root has no step and always stays.
        while self.node(node).is_empty()
            && let Some((parent, level)) = path.pop()
        {
            self.nodes[node as usize] = None;
            self.free.push(node);
            let parent_node = self.node_mut(parent);
            if level == "+" {
                parent_node.plus = None;
            } else {
                parent_node.children.remove(level);
            }
            node = parent;
        }
        true
    }

    /// Calls `visit` once for each (filter, value) pair whose filter matches
    /// `topic`; a value under two matching filters is visited twice.
    pub fn for_each_match(&self, topic: TopicName<'_>, mut visit: impl FnMut(V)) {
        let text = topic.as_str();
        // Depth-first over (node, byte offset of the topic's next level); an
        // offset past the end means every level is consumed. Each push moves
        // one level deeper, so the stack holds at most levels + 1 entries.
        let mut stack: SmallVec<[(NodeId, usize); 16]> = SmallVec::new();
        stack.push((ROOT, 0));
        while let Some((id, start)) = stack.pop() {
            let node = self.node(id);
            // A filter starting with `+` or `#` skips `$` topics.
            let wildcards = id != ROOT || !topic.is_system();
            // `a/#` matches `a` itself and everything below it.
            if wildcards {
                node.hash.iter().for_each(|&v| visit(v));
            }
            if start > text.len() {
                node.exact.iter().for_each(|&v| visit(v));
                continue;
            }
            let end = text[start..].find('/').map_or(text.len(), |i| start + i);
            if let Some(&child) = node.children.get(&text[start..end]) {
                stack.push((child, end + 1));
            }
            if let Some(plus) = node.plus
                && wildcards
            {
                stack.push((plus, end + 1));
            }
        }
    }

    /// Number of (filter, value) pairs.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no subscriptions.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Live nodes, the root included (for tests of pruning).
    #[cfg(test)]
    fn node_count(&self) -> usize {
        self.nodes.len() - self.free.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(text: &str) -> TopicName<'_> {
        TopicName::new(text, &TopicLimits::default()).unwrap()
    }

    fn filter(text: &str) -> Filter {
        Filter::new(text, &TopicLimits::default()).unwrap()
    }

    #[test]
    fn topic_names_are_validated() {
        let limits = TopicLimits { max_len: 16, max_levels: 4 };
        for ok in ["a", "/", "a//b", "/a/b", "$SYS/x", "a b/ü", "a/b/c/d"] {
            assert!(TopicName::new(ok, &limits).is_ok(), "{ok}");
        }
        let cases = [
            ("", TopicError::Empty),
            ("a\0b", TopicError::Nul),
            ("a/+", TopicError::WildcardInName),
            ("a#", TopicError::WildcardInName),
            ("0123456789abcdefg", TopicError::TooLong { len: 17, max: 16 }),
            ("a/b/c/d/e", TopicError::TooManyLevels { max: 4 }),
        ];
        for (text, error) in cases {
            assert_eq!(TopicName::new(text, &limits), Err(error), "{text:?}");
        }
    }

    #[test]
    fn filters_are_validated() {
        for ok in ["a/+/c", "+", "#", "/+/#", "a/#", "+/+", "$SYS/#", "a//b", "/"] {
            assert!(Filter::new(ok, &TopicLimits::default()).is_ok(), "{ok}");
        }
        for bad in ["a+", "a/#/b", "a/b#", "#/a", "++", "a/+b", "##"] {
            assert_eq!(Filter::new(bad, &TopicLimits::default()), Err(TopicError::BadWildcard), "{bad}");
        }
        assert_eq!(Filter::new("", &TopicLimits::default()), Err(TopicError::Empty));
        assert_eq!(Filter::new("a/\0", &TopicLimits::default()), Err(TopicError::Nul));
        let limits = TopicLimits { max_len: 8, max_levels: 3 };
        assert_eq!(Filter::new("a/+/#", &limits), Ok(filter("a/+/#")));
        assert_eq!(Filter::new("+/+/+/#", &limits), Err(TopicError::TooManyLevels { max: 3 }));
        assert_eq!(Filter::new("abcd/efg/#", &limits), Err(TopicError::TooLong { len: 10, max: 8 }));
    }

    #[test]
    fn matching_follows_mqtt() {
        let cases = [
            ("a/b", "a/b", true),
            ("a/b", "a/c", false),
            ("a/+", "a/b", true),
            ("a/+", "a/", true),
            ("a/+", "a", false),
            ("a/+", "a/b/c", false),
            ("+/+", "/x", true),
            ("+", "/x", false),
            ("a/#", "a", true),
            ("a/#", "a/", true),
            ("a/#", "a/b/c", true),
            ("a/#", "ab", false),
            ("#", "anything/at/all", true),
            ("#", "$SYS/x", false),
            ("+/x", "$SYS/x", false),
            ("$SYS/#", "$SYS/x", true),
            ("$SYS/+", "$SYS/x", true),
            ("/+/#", "/a", true),
            ("a//b", "a//b", true),
            ("a/+/b", "a//b", true),
            ("#", "/", true),
            ("/#", "/", true),
            ("+/#", "$SYS", false),
            ("$SYS", "$SYS", true),
            ("$SYS/#", "$SYS", true),
            ("a/$SYS/+", "a/$SYS/x", true),
            ("+/$SYS", "a/$SYS", true),
        ];
        for (f, t, expected) in cases {
            assert_eq!(filter(f).matches(name(t)), expected, "{f} vs {t}");
            let mut trie = SubscriptionTrie::new();
            trie.insert(&filter(f), 1u32);
            let mut hits = 0;
            trie.for_each_match(name(t), |_| hits += 1);
            assert_eq!(hits == 1, expected, "trie: {f} vs {t}");
        }
    }

    /// A tiny deterministic PRNG: the tests need no `rand`.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// One to four levels from a small alphabet, so filters and topics
    /// collide often; the text may be neither a valid filter nor a name.
    fn random_text(rng: &mut XorShift) -> String {
        const LEVELS: &[&str] = &["a", "b", "", "$SYS", "+", "#"];
        let levels = 1 + rng.below(4);
        (0..levels).map(|_| LEVELS[rng.below(LEVELS.len())]).collect::<Vec<_>>().join("/")
    }

    /// The nodes a trie holding `model` needs: the root plus one per distinct
    /// filter prefix, not counting a trailing `#` (kept in its parent).
    fn expected_node_count(model: &[(Filter, u32)]) -> usize {
        let mut prefixes = std::collections::HashSet::new();
        for (f, _) in model {
            let levels: Vec<&str> = f.levels().filter(|&level| level != "#").collect();
            prefixes.extend((1..=levels.len()).map(|n| levels[..n].to_vec()));
        }
        1 + prefixes.len()
    }

    #[test]
    fn trie_agrees_with_the_naive_matcher_on_random_sequences() {
        let limits = TopicLimits::default();
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        // How often each interesting case came up, so the test cannot pass
        // by exercising nothing.
        let (mut removed_midway, mut nonempty_publishes, mut system_publishes) = (0, 0, 0);
        for round in 0..2000 {
            let mut trie = SubscriptionTrie::new();
            let mut model: Vec<(Filter, u32)> = Vec::new();
            for _ in 0..60 {
                match rng.below(6) {
                    // Subscribe, or unsubscribe something likely absent.
                    action @ 0..=2 => {
                        let Ok(f) = Filter::new(&random_text(&mut rng), &limits) else { continue };
                        let v = rng.below(4) as u32;
                        let present = model.contains(&(f.clone(), v));
                        if action < 2 {
                            assert_eq!(trie.insert(&f, v), !present, "round {round}: insert {f} {v}");
                            if !present {
                                model.push((f, v));
                            }
                        } else {
                            assert_eq!(trie.remove(&f, v), present, "round {round}: remove {f} {v}");
                            model.retain(|entry| *entry != (f.clone(), v));
                        }
                    }
                    // Unsubscribe something present.
                    3 if !model.is_empty() => {
                        let (f, v) = model.swap_remove(rng.below(model.len()));
                        assert!(trie.remove(&f, v), "round {round}: remove present {f} {v}");
                        removed_midway += 1;
                    }
                    _ => {
                        let text = random_text(&mut rng);
                        let Ok(topic) = TopicName::new(&text, &limits) else { continue };
                        let mut got = Vec::new();
                        trie.for_each_match(topic, |v| got.push(v));
                        got.sort_unstable();
                        let mut expected: Vec<u32> =
                            model.iter().filter(|(f, _)| f.matches(topic)).map(|(_, v)| *v).collect();
                        expected.sort_unstable();
                        assert_eq!(got, expected, "round {round}: publish {text}");
                        nonempty_publishes += usize::from(!got.is_empty());
                        system_publishes += usize::from(topic.is_system());
                    }
                }
                assert_eq!(trie.len(), model.len(), "round {round}");
                assert_eq!(trie.node_count(), expected_node_count(&model), "round {round}: pruning");
            }
            for (f, v) in model.drain(..) {
                assert!(trie.remove(&f, v));
            }
            assert!(trie.is_empty());
            assert_eq!(trie.node_count(), 1, "round {round}: every node but the root was pruned");
        }
        // About half of what this seed gives (16,890, 3,814 and 4,358).
        assert!(removed_midway > 8_000, "{removed_midway}");
        assert!(nonempty_publishes > 2_000, "{nonempty_publishes}");
        assert!(system_publishes > 2_000, "{system_publishes}");
    }

    #[test]
    fn churn_reuses_nodes() {
        let mut trie = SubscriptionTrie::new();
        for i in 0..1000u32 {
            let f = filter(&format!("devices/{}/+/state", i % 10));
            trie.insert(&f, i);
            trie.remove(&f, i);
        }
        assert_eq!(trie.node_count(), 1);
        assert!(trie.nodes.len() <= 5, "slots were reused, not appended: {}", trie.nodes.len());
    }

    #[test]
    fn deep_topics_match() {
        // More levels than the match stack keeps inline.
        let deep = vec!["x"; 100].join("/");
        let mut trie = SubscriptionTrie::new();
        for (i, f) in ["#", "x/#", "+/+/#", deep.as_str()].into_iter().enumerate() {
            assert!(trie.insert(&filter(f), i));
            assert!(!trie.insert(&filter(f), i), "no duplicate under {f}");
        }
        let mut got = Vec::new();
        trie.for_each_match(name(&deep), |v| got.push(v));
        got.sort_unstable();
        assert_eq!(got, [0, 1, 2, 3]);
        assert_eq!(trie.len(), 4);
    }
}
