//! The search behind GETVALSBYREGEX, with its cost bounded.
//!
//! `regex::Regex` runs a lazy DFA and, when its cache keeps filling up,
//! falls back to a PikeVM whose cost is the size of the automaton times
//! the bytes searched. An expression of a few bytes such as
//! `(?:a{1,30}){1,30}b` has a thousand-state automaton, and over a
//! thousand stored topics of 4,000 bytes that took 41 s of one event loop
//! (release build), every other client on the loop waiting. Here the lazy
//! DFA alone searches, with one cache for the whole request, and gives up
//! after a few cache clears: the work is bounded by those clears, each a
//! cache's worth of states, plus one step per byte searched. A search
//! that gives up is refused like an oversized expression.

use regex_automata::hybrid::dfa::{Cache, DFA};
use regex_automata::nfa::thompson;
use regex_automata::{Input, MatchErrorKind};

/// Cache clears allowed over one request's search before it gives up.
const CACHE_CLEARS: usize = 4;

/// A compiled expression and its cache, for the topics of one request.
pub(crate) struct TopicSearch {
    dfa: DFA,
    cache: Cache,
}

impl std::fmt::Debug for TopicSearch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TopicSearch")
    }
}

impl TopicSearch {
    /// Compiles `pattern` (already validated by `regex`), its automaton and
    /// its cache each at most `size_limit` bytes.
    pub(crate) fn new(pattern: &str, size_limit: usize) -> Result<Self, String> {
        let dfa = DFA::builder()
            .configure(
                DFA::config()
                    .cache_capacity(size_limit)
                    .minimum_cache_clear_count(Some(CACHE_CLEARS))
                    .unicode_word_boundary(true),
            )
            .thompson(thompson::Config::new().nfa_size_limit(Some(size_limit)))
            .build(pattern)
            .map_err(|error| format!("regular expression too big: {error}"))?;
        let cache = dfa.create_cache();
        Ok(TopicSearch { dfa, cache })
    }

    /// Whether the expression matches somewhere in `topic`; `Err` with the
    /// reason when the search is too costly or cannot be done.
    pub(crate) fn is_match(&mut self, topic: &str) -> Result<bool, String> {
        match self.dfa.try_search_fwd(&mut self.cache, &Input::new(topic).earliest(true)) {
            Ok(found) => Ok(found.is_some()),
            Err(error) => Err(match error.kind() {
                MatchErrorKind::GaveUp { .. } => "regular expression too costly to search the stored topics".to_owned(),
                MatchErrorKind::Quit { .. } => {
                    "a Unicode word boundary cannot search a non-ASCII topic; use (?-u:\\b)".to_owned()
                }
                _ => format!("regular expression search failed: {error}"),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_unanchored_like_regex() {
        let mut search = TopicSearch::new("temp", 1 << 20).unwrap();
        assert_eq!(search.is_match("/a/temperature"), Ok(true));
        assert_eq!(search.is_match("/b/humidity"), Ok(false));
        let mut anchored = TopicSearch::new("^/a/", 1 << 20).unwrap();
        assert_eq!((anchored.is_match("/a/x"), anchored.is_match("/b/a/x")), (Ok(true), Ok(false)));
        let mut word = TopicSearch::new(r"\btemp\b", 1 << 20).unwrap();
        assert_eq!((word.is_match("a temp b"), word.is_match("attempt")), (Ok(true), Ok(false)));
        assert!(word.is_match("é temp").is_err(), "a Unicode boundary on non-ASCII is refused, not guessed");
    }

    #[test]
    fn an_automaton_that_outgrows_its_cache_gives_up_instead_of_crawling() {
        // Over a thousand topics of 4,000 bytes, regex::Regex took 41 s
        // with this (its PikeVM fallback); the search gives up at once.
        let mut search = TopicSearch::new("(?:a{1,30}){1,30}b", 1 << 20).unwrap();
        let topic = format!("{}/1", "a".repeat(3994));
        let outcome = (0..1000).map(|_| search.is_match(&topic)).find(|outcome| outcome != &Ok(false));
        assert_eq!(outcome, Some(Err("regular expression too costly to search the stored topics".to_owned())));
    }
}
