//! tinymq topics ↔ NATS subjects.
//!
//! A topic's levels become a subject's tokens: `/` ↔ `.`, and in filters
//! `+` ↔ `*` and `#` ↔ `>`. An optional prefix (`tinymq.site1.`) puts a
//! bridge's subjects under one subtree of the NATS subject space.
//!
//! # Escaping
//!
//! NATS forbids in a token what tinymq allows in a level, so levels are
//! escaped, reversibly, with `~` and two upper-case hex digits:
//!
//! | in a level | in the token |
//! |---|---|
//! | `.` `*` `>` (separator and wildcards) | `~2E` `~2A` `~3E` |
//! | space, tab, other ASCII control bytes, DEL | `~20` `~09` … `~7F` |
//! | `~` itself | `~7E` |
//! | `$` as the first byte of the first level | `~24` (so that `$SYS/x` never lands in NATS's own `$SYS.` space) |
//! | an empty level (`a//b`, a leading or trailing `/`) | the token `~` alone |
//! | anything else, non-ASCII included | itself |
//!
//! So `/home/living room/temp` maps to `~.home.living~20room.temp`. The
//! reverse accepts exactly what the forward produces: a subject with a `~`
//! not followed by two upper-case hex digits, an escape of a byte that
//! needs none, a byte that needs one left bare, or outside the prefix, is
//! refused. Every topic maps to one subject and back, and every subject
//! accepted maps to one topic and back.
//!
//! # Filters
//!
//! A tinymq `#` matches the parent level too (`a/#` matches `a`), a NATS
//! `>` does not, so `a/#` becomes two subjects, `a` and `a.>`. One
//! difference remains: a filter starting with a wildcard does not match
//! tinymq's `$` topics, while `*` and `>` do match their escaped tokens
//! (`~24SYS`). The receiving side checks what arrives against its own
//! filters with [`Filter::matches`] anyway.

use smallvec::SmallVec;

use crate::topic::{Filter, TopicError, TopicLimits, TopicName};

/// The escape byte.
const ESCAPE: u8 = b'~';
/// The token standing for an empty level.
const EMPTY_LEVEL: &str = "~";

/// Why a subject or prefix cannot be mapped.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MappingError {
    /// The prefix is not literal NATS tokens (`a.b`, with or without a
    /// trailing `.`).
    #[error("invalid subject prefix {0:?}")]
    InvalidPrefix(String),
    /// The subject does not start with the bridge's prefix, or is only it.
    #[error("subject {0:?} is outside the bridge's prefix")]
    OutsidePrefix(String),
    /// The subject is not one [`SubjectMapping::topic_to_subject`] produces.
    #[error("subject {subject:?} is not a mapped topic: {why}")]
    NotMapped {
        /// The subject.
        subject: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// The subject maps to text that is not a valid topic name here.
    #[error("subject {subject:?} maps to an invalid topic: {source}")]
    InvalidTopic {
        /// The subject.
        subject: String,
        /// Why the topic is invalid.
        source: TopicError,
    },
}

/// The mapping of one bridge: its prefix. See the module docs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SubjectMapping {
    /// Empty, or the prefix tokens with a trailing `.`.
    prefix: String,
}

impl SubjectMapping {
    /// A mapping under `prefix`: empty for none, else literal tokens, with
    /// or without the trailing `.` (`tinymq.site1` and `tinymq.site1.`
    /// are the same).
    pub fn new(prefix: &str) -> Result<Self, MappingError> {
        let bare = prefix.strip_suffix('.').unwrap_or(prefix);
        if bare.is_empty() {
            return if prefix.is_empty() {
                Ok(SubjectMapping::default())
            } else {
                Err(MappingError::InvalidPrefix(prefix.into()))
            };
        }
        if super::check_subject(bare, false).is_err() {
            return Err(MappingError::InvalidPrefix(prefix.into()));
        }
        Ok(SubjectMapping { prefix: format!("{bare}.") })
    }

    /// The prefix with its trailing `.`, or empty.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The subject a message to `topic` is published on.
    pub fn topic_to_subject(&self, topic: TopicName<'_>) -> String {
        let mut out = String::with_capacity(self.prefix.len() + topic.as_str().len());
        out.push_str(&self.prefix);
        for (i, level) in topic.levels().enumerate() {
            if i > 0 {
                out.push('.');
            }
            escape_level(level, i == 0, &mut out);
        }
        out
    }

    /// The subjects to subscribe to for `filter`: one, or two when it ends
    /// in `#` after other levels (the parent, and everything below).
    pub fn filter_to_subjects(&self, filter: &Filter) -> SmallVec<[String; 2]> {
        let mut out = self.prefix.clone();
        let mut levels = filter.levels().enumerate().peekable();
        let mut parent = None;
        while let Some((i, level)) = levels.next() {
            if i > 0 {
                out.push('.');
            }
            match level {
                "+" => out.push('*'),
                "#" => {
                    if i > 0 {
                        parent = Some(out[..out.len() - 1].to_owned());
                    }
                    out.push('>');
                }
                _ => escape_level(level, i == 0, &mut out),
            }
            debug_assert!(level != "#" || levels.peek().is_none(), "Filter keeps # last");
        }
        parent.into_iter().chain(std::iter::once(out)).collect()
    }

    /// The topic a message received on `subject` is published to, valid
    /// under `limits`.
    pub fn subject_to_topic(&self, subject: &str, limits: &TopicLimits) -> Result<String, MappingError> {
        let rest = subject
            .strip_prefix(self.prefix.as_str())
            .filter(|rest| !rest.is_empty())
            .ok_or_else(|| MappingError::OutsidePrefix(subject.into()))?;
        let not_mapped = |why| MappingError::NotMapped { subject: subject.into(), why };
        let mut topic = String::with_capacity(rest.len());
        for (i, token) in rest.split('.').enumerate() {
            if i > 0 {
                topic.push('/');
            }
            if token == EMPTY_LEVEL {
                continue;
            }
            unescape_token(token, i == 0, &mut topic).map_err(not_mapped)?;
        }
        TopicName::new(&topic, limits)
            .map_err(|source| MappingError::InvalidTopic { subject: subject.into(), source })?;
        Ok(topic)
    }
}

/// Whether `byte`, at the start of the topic if `first`, is escaped.
fn needs_escape(byte: u8, first: bool) -> bool {
    matches!(byte, b'.' | b'*' | b'>' | ESCAPE | 0..=b' ' | 0x7f) || (first && byte == b'$')
}

fn escape_level(level: &str, first_level: bool, out: &mut String) {
    if level.is_empty() {
        out.push_str(EMPTY_LEVEL);
        return;
    }
    // Runs of bytes that need no escape are copied whole; escaped bytes are
    // ASCII, so every cut is on a char boundary.
    let mut start = 0;
    for (i, byte) in level.bytes().enumerate() {
        if needs_escape(byte, first_level && i == 0) {
            out.push_str(&level[start..i]);
            out.push(ESCAPE as char);
            out.push(hex_digit(byte >> 4));
            out.push(hex_digit(byte & 0xf));
            start = i + 1;
        }
    }
    out.push_str(&level[start..]);
}

fn hex_digit(nibble: u8) -> char {
    char::from(b"0123456789ABCDEF"[usize::from(nibble)])
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

/// Appends the level `token` stands for, refusing anything
/// [`escape_level`] would not have written.
fn unescape_token(token: &str, first_token: bool, out: &mut String) -> Result<(), &'static str> {
    let bytes = token.as_bytes();
    if token == "*" || token == ">" {
        return Err("a wildcard token");
    }
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        let byte = bytes[i];
        let first = first_token && i == 0;
        if byte == ESCAPE {
            let value = match bytes.get(i + 1..i + 3) {
                Some(&[high, low]) => hex_value(high).zip(hex_value(low)).map(|(h, l)| h << 4 | l),
                _ => None,
            };
            let value = value.ok_or("~ not followed by two upper-case hex digits")?;
            if !needs_escape(value, first) {
                return Err("an escape of a byte that needs none");
            }
            out.push_str(&token[start..i]);
            out.push(char::from(value));
            i += 3;
            start = i;
        } else if needs_escape(byte, first) {
            return Err("a byte that must be escaped");
        } else {
            i += 1;
        }
    }
    out.push_str(&token[start..]);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(text: &str) -> TopicName<'_> {
        TopicName::new(text, &TopicLimits::UNBOUNDED).unwrap()
    }

    fn filter(text: &str) -> Filter {
        Filter::new(text, &TopicLimits::UNBOUNDED).unwrap()
    }

    #[test]
    fn documented_examples() {
        let plain = SubjectMapping::default();
        let cases = [
            ("sensors/kitchen/temp", "sensors.kitchen.temp"),
            ("/home/living room/temp", "~.home.living~20room.temp"),
            ("a//b/", "a.~.b.~"),
            ("v1.2/x*y/>/~tilde", "v1~2E2.x~2Ay.~3E.~7Etilde"),
            ("$SYS/x/$y", "~24SYS.x.$y"),
            ("ünï/cødé", "ünï.cødé"),
            ("/", "~.~"),
        ];
        for (t, s) in cases {
            assert_eq!(plain.topic_to_subject(topic(t)), s, "{t:?}");
            assert_eq!(plain.subject_to_topic(s, &TopicLimits::UNBOUNDED).as_deref(), Ok(t), "{s:?}");
        }
        let site = SubjectMapping::new("tinymq.site1").unwrap();
        assert_eq!(site, SubjectMapping::new("tinymq.site1.").unwrap());
        assert_eq!(site.topic_to_subject(topic("$SYS/a")), "tinymq.site1.~24SYS.a");
        assert_eq!(site.subject_to_topic("tinymq.site1.a.b", &TopicLimits::UNBOUNDED).as_deref(), Ok("a/b"));
    }

    #[test]
    fn filters() {
        let site = SubjectMapping::new("p").unwrap();
        let cases: &[(&str, &[&str])] = &[
            ("a/+/c", &["p.a.*.c"]),
            ("a/#", &["p.a", "p.a.>"]),
            ("#", &["p.>"]),
            ("+", &["p.*"]),
            ("+/#", &["p.*", "p.*.>"]),
            ("a b/./#", &["p.a~20b.~2E", "p.a~20b.~2E.>"]),
            ("//#", &["p.~.~", "p.~.~.>"]),
        ];
        for (f, subjects) in cases {
            assert_eq!(site.filter_to_subjects(&filter(f)).as_slice(), *subjects, "{f:?}");
        }
        assert_eq!(SubjectMapping::default().filter_to_subjects(&filter("#")).as_slice(), [">"]);
    }

    #[test]
    fn subjects_that_are_not_mapped_topics_are_refused() {
        let site = SubjectMapping::new("p.q").unwrap();
        let limits = TopicLimits::UNBOUNDED;
        for outside in ["p.q", "p.q.", "p.r.a", "x", "p.qa"] {
            assert!(
                matches!(site.subject_to_topic(outside, &limits), Err(MappingError::OutsidePrefix(_))),
                "{outside}"
            );
        }
        for bad in ["p.q.a~", "p.q.a~2", "p.q.a~2e", "p.q.~41", "p.q.$x", "p.q.a.*", "p.q.>", "p.q.~~", "p.q.a\u{7f}"] {
            assert!(matches!(site.subject_to_topic(bad, &limits), Err(MappingError::NotMapped { .. })), "{bad}");
        }
        for bad in ["p.q.a+", "p.q.#", "p.q.~00"] {
            assert!(matches!(site.subject_to_topic(bad, &limits), Err(MappingError::InvalidTopic { .. })), "{bad}");
        }
        let tight = TopicLimits { max_len: 3, max_levels: 8 };
        assert!(matches!(site.subject_to_topic("p.q.abcd", &tight), Err(MappingError::InvalidTopic { .. })));
        for bad in [".", "a..b", "a.*", "a b", ".a"] {
            assert!(matches!(SubjectMapping::new(bad), Err(MappingError::InvalidPrefix(_))), "{bad:?}");
        }
    }

    /// A small deterministic generator: the tests need variety, not
    /// cryptographic randomness, and no new dependency.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            // xorshift64*
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// Level text drawn mostly from awkward characters.
    fn level(rng: &mut Rng, pieces: &[&str]) -> String {
        (0..rng.below(4)).map(|_| pieces[rng.below(pieces.len())]).collect()
    }

    const PIECES: &[&str] =
        &["a", "b", "temp", " ", ".", "*", ">", "~", "~2E", "$", "\t", "\u{7f}", "\u{1}", "é", "日本", "-", "_", "+x"];

    fn random_topic(rng: &mut Rng) -> String {
        let levels = 1 + rng.below(5);
        let text = (0..levels).map(|_| level(rng, PIECES).replace(['+', '#'], "")).collect::<Vec<_>>().join("/");
        if text.is_empty() { "x".into() } else { text }
    }

    /// NATS's matching of a subject to a subscription subject: the oracle.
    fn nats_matches(pattern: &str, subject: &str) -> bool {
        let mut tokens = subject.split('.');
        for p in pattern.split('.') {
            match (p, tokens.next()) {
                (">", Some(_)) => return true,
                ("*", Some(_)) => {}
                (p, Some(t)) if p == t => {}
                _ => return false,
            }
        }
        tokens.next().is_none()
    }

    /// [`Filter::matches`] without its rule for `$` topics.
    fn levels_match(filter: &Filter, topic: &str) -> bool {
        let mut names = topic.split('/');
        for level in filter.levels() {
            match (level, names.next()) {
                ("#", _) => return true,
                ("+", Some(_)) => {}
                (level, Some(name)) if level == name => {}
                _ => return false,
            }
        }
        names.next().is_none()
    }

    #[test]
    fn generated_topics_round_trip_and_are_valid_subjects() {
        let mut rng = Rng(0x5eed);
        for prefix in ["", "tinymq.site1"] {
            let mapping = SubjectMapping::new(prefix).unwrap();
            for _ in 0..5000 {
                let text = random_topic(&mut rng);
                let subject = mapping.topic_to_subject(topic(&text));
                assert_eq!(super::super::check_subject(&subject, false), Ok(()), "{text:?} -> {subject:?}");
                assert!(!subject.starts_with('$'), "{subject:?}");
                let back = mapping.subject_to_topic(&subject, &TopicLimits::UNBOUNDED);
                assert_eq!(back.as_deref(), Ok(text.as_str()), "{subject:?}");
            }
        }
    }

    #[test]
    fn mapped_filters_match_exactly_the_mapped_topics() {
        let mut rng = Rng(0xf11e);
        let mapping = SubjectMapping::new("p").unwrap();
        // A small alphabet so that filters and topics often meet.
        let small: &[&str] = &["a", "b", ".", "*", "$", " "];
        let topics: Vec<String> = (0..300)
            .map(|_| {
                let levels = 1 + rng.below(4);
                (0..levels).map(|_| level(&mut rng, small)).collect::<Vec<_>>().join("/")
            })
            .filter(|t| !t.is_empty())
            .collect();
        let mut checked = 0;
        for _ in 0..300 {
            let levels = 1 + rng.below(4);
            let mut parts: Vec<String> = (0..levels)
                .map(|_| match rng.below(4) {
                    0 => "+".to_owned(),
                    _ => level(&mut rng, small),
                })
                .collect();
            if rng.below(3) == 0 {
                parts.push("#".into());
            }
            let Ok(f) = Filter::new(&parts.join("/"), &TopicLimits::UNBOUNDED) else { continue };
            let subjects = mapping.filter_to_subjects(&f);
            for s in &subjects {
                assert_eq!(super::super::check_subject(s, true), Ok(()), "{f} -> {s:?}");
            }
            for t in &topics {
                let name = topic(t);
                let subject = mapping.topic_to_subject(name);
                let nats = subjects.iter().any(|s| nats_matches(s, &subject));
                // The one documented difference: wildcards and `$` topics.
                let tinymq = if name.is_system() && f.as_str().starts_with(['+', '#']) {
                    levels_match(&f, t)
                } else {
                    f.matches(name)
                };
                assert_eq!(nats, tinymq, "filter {f} {subjects:?}, topic {t:?} -> {subject:?}");
                checked += 1;
            }
        }
        assert!(checked > 50_000, "{checked}");
    }
}
