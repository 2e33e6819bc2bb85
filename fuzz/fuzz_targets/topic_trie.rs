//! The subscription trie against a naive model: arbitrary subscribe,
//! unsubscribe and publish sequences over a small alphabet of levels (so
//! filters and topics collide often). The model is a set of (filter,
//! value) pairs and a matcher written here, independent of
//! `Filter::matches`; the trie must report the same insert and remove
//! results, the same length, and for every publish the same multiset of
//! values.

#![no_main]

use std::collections::BTreeSet;

use libfuzzer_sys::fuzz_target;
use tinymq_core::topic::{Filter, SubscriptionTrie, TopicLimits, TopicName};

/// Levels filters are built from; topics use the ones without wildcards.
const LEVELS: [&str; 8] = ["a", "b", "", "$SYS", "c", "aa", "+", "#"];
const TOPIC_LEVELS: usize = 6;

/// Whether `filter` matches `topic`, level by level, straight from the
/// rules: `+` is one level, `#` (last) is the rest including none, and a
/// filter whose first level is a wildcard does not see `$` topics.
fn model_matches(filter: &[&str], topic: &[&str]) -> bool {
    if topic[0].starts_with('$') && matches!(filter[0], "+" | "#") {
        return false;
    }
    fn walk(filter: &[&str], topic: &[&str]) -> bool {
        match (filter.first(), topic.first()) {
            (Some(&"#"), _) => true,
            (Some(&"+"), Some(_)) => walk(&filter[1..], &topic[1..]),
            (Some(f), Some(t)) => f == t && walk(&filter[1..], &topic[1..]),
            (None, None) => true,
            _ => false,
        }
    }
    walk(filter, topic)
}

/// Whether the levels make a valid filter: not empty, `#` only last
/// (wildcards are alone in their level by construction).
fn model_valid(filter: &[&str]) -> bool {
    filter != [""] && filter.iter().position(|l| *l == "#").is_none_or(|i| i == filter.len() - 1)
}

struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    fn levels(&mut self, alphabet: usize) -> Option<Vec<&'static str>> {
        let n = self.byte()? % 5 + 1;
        (0..n).map(|_| self.byte().map(|b| LEVELS[b as usize % alphabet])).collect()
    }
}

fuzz_target!(|data: &[u8]| {
    let limits = TopicLimits::default();
    let mut trie = SubscriptionTrie::<u8>::new();
    let mut model: BTreeSet<(Vec<&str>, u8)> = BTreeSet::new();
    let mut input = Input(data);
    while let Some(op) = input.byte() {
        match op % 3 {
            0 | 1 => {
                let Some(levels) = input.levels(LEVELS.len()) else { break };
                let Some(value) = input.byte().map(|b| b % 4) else { break };
                let text = levels.join("/");
                let filter = Filter::new(&text, &limits);
                assert_eq!(filter.is_ok(), model_valid(&levels), "validity of filter {text:?}");
                let Ok(filter) = filter else { continue };
                if op % 3 == 0 {
                    assert_eq!(trie.insert(&filter, value), model.insert((levels, value)), "insert {text:?}");
                } else {
                    assert_eq!(trie.remove(&filter, value), model.remove(&(levels, value)), "remove {text:?}");
                }
                assert_eq!(trie.len(), model.len());
            }
            _ => {
                let Some(levels) = input.levels(TOPIC_LEVELS) else { break };
                let text = levels.join("/");
                if text.is_empty() {
                    assert!(TopicName::new(&text, &limits).is_err());
                    continue;
                }
                let topic = TopicName::new(&text, &limits).expect("no wildcards in the topic alphabet");
                let mut got = Vec::new();
                trie.for_each_match(topic, |v| got.push(v));
                got.sort_unstable();
                let mut want: Vec<u8> =
                    model.iter().filter(|(f, _)| model_matches(f, &levels)).map(|(_, v)| *v).collect();
                want.sort_unstable();
                assert_eq!(got, want, "matches for topic {text:?}");
            }
        }
    }
});
