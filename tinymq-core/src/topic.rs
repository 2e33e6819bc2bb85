//! Topic names, topic filters and the subscription trie (MQTT 3.1.1 §4.7).
//!
//! SKELETON: the signatures below are the contract; bodies are being written.

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

/// A validated topic name: what is published to. Borrows its text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicName<'a>(&'a str);

impl<'a> TopicName<'a> {
    /// Validates `name`.
    pub fn new(name: &'a str, limits: &TopicLimits) -> Result<Self, TopicError> {
        let _ = (name, limits);
        todo!()
    }
    /// The text.
    pub fn as_str(&self) -> &'a str {
        self.0
    }
    /// Whether the first level begins with `$` (the broker's own topics).
    pub fn is_system(&self) -> bool {
        self.0.starts_with('$')
    }
}

/// A validated topic filter: what is subscribed to. Owns its text.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Filter(Box<str>);

impl Filter {
    /// Validates `filter`.
    pub fn new(filter: &str, limits: &TopicLimits) -> Result<Self, TopicError> {
        let _ = (filter, limits);
        todo!()
    }
    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// Whether `topic` matches this filter (the direct, per-filter check).
    pub fn matches(&self, topic: TopicName<'_>) -> bool {
        let _ = topic;
        todo!()
    }
}

/// Subscriptions from filters to values `V` (subscriber ids), matched
/// against topic names without allocating per level.
#[derive(Debug)]
pub struct SubscriptionTrie<V> {
    _values: SmallVec<[V; 1]>,
}

impl<V: Copy + Eq> Default for SubscriptionTrie<V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<V: Copy + Eq> SubscriptionTrie<V> {
    /// An empty trie.
    pub fn new() -> Self {
        SubscriptionTrie { _values: SmallVec::new() }
    }
    /// Adds `value` under `filter`; false if it was already there.
    pub fn insert(&mut self, filter: &Filter, value: V) -> bool {
        let _ = (filter, value);
        todo!()
    }
    /// Removes `value` from `filter`; false if it was not there.
    pub fn remove(&mut self, filter: &Filter, value: V) -> bool {
        let _ = (filter, value);
        todo!()
    }
    /// Calls `visit` once for each (filter, value) pair whose filter matches
    /// `topic`; a value under two matching filters is visited twice.
    pub fn for_each_match(&self, topic: TopicName<'_>, visit: impl FnMut(V)) {
        let _ = (topic, visit);
        todo!()
    }
    /// Number of (filter, value) pairs.
    pub fn len(&self) -> usize {
        todo!()
    }
    /// Whether there are no subscriptions.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
