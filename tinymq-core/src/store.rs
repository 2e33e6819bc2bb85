//! What the broker keeps across restarts, as pure data: the record format
//! of a stored value, the keys it is filed under, and the [`Store`] trait
//! that the redb store in tinymq-net and the [`MemoryStore`] here implement.
//!
//! Keys are namespaced by the user's name (empty for the public namespace),
//! never by a [`crate::NamespaceId`], whose numbers are not stable across
//! restarts: `namespace 0x00 topic`. Values are a small length-prefixed
//! record (see [`encode_message`]), versioned by its first byte so a later
//! format can still read this one.
//!
//! Users are filed by name in a table of their own ([`StoreOp::PutUser`],
//! record format in [`crate::auth`]).

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::auth::UserRecord;
use crate::message::Message;

/// The first byte of every stored record written by this version.
const RECORD_V1: u8 = 1;

/// Why a stored record could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// The record ends before its fields do.
    #[error("stored record is truncated")]
    Truncated,
    /// A version this build does not know.
    #[error("stored record has unknown version {0}")]
    UnknownVersion(u8),
    /// A text field is not UTF-8, or the address does not parse.
    #[error("stored record has a malformed {0}")]
    Malformed(&'static str),
    /// Bytes left over after the last field.
    #[error("stored record has {0} trailing bytes")]
    Trailing(usize),
    /// A key without the namespace separator.
    #[error("stored key has no namespace separator")]
    BadKey,
}

/// The key a value is filed under: `namespace 0x00 topic`. Namespace
/// names (user names) never contain 0x00, so the split is unambiguous.
pub fn value_key(namespace: &str, topic: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(namespace.len() + 1 + topic.len());
    key.extend_from_slice(namespace.as_bytes());
    key.push(0);
    key.extend_from_slice(topic.as_bytes());
    key
}

/// Splits a key made by [`value_key`].
pub fn split_value_key(key: &[u8]) -> Result<(&str, &str), RecordError> {
    let split = key.iter().position(|&b| b == 0).ok_or(RecordError::BadKey)?;
    let namespace = std::str::from_utf8(&key[..split]).map_err(|_| RecordError::Malformed("namespace"))?;
    let topic = std::str::from_utf8(&key[split + 1..]).map_err(|_| RecordError::Malformed("topic"))?;
    Ok((namespace, topic))
}

fn put_field(out: &mut Vec<u8>, bytes: &[u8]) {
    // Fields are bounded by the frame limits (payload 4 GiB at most).
    out.extend_from_slice(&u32::try_from(bytes.len()).expect("field under 4 GiB").to_be_bytes());
    out.extend_from_slice(bytes);
}

/// Encodes a stored message: version, updated_time, then topic, payload,
/// from and ip (text, empty for none), each length-prefixed.
pub fn encode_message(message: &Message) -> Vec<u8> {
    let ip = message.ip.map(|ip| ip.to_string()).unwrap_or_default();
    let mut out =
        Vec::with_capacity(1 + 8 + 16 + message.topic.len() + message.payload.len() + message.from.len() + ip.len());
    out.push(RECORD_V1);
    out.extend_from_slice(&message.updated_time.to_be_bytes());
    put_field(&mut out, message.topic.as_bytes());
    put_field(&mut out, &message.payload);
    put_field(&mut out, message.from.as_bytes());
    put_field(&mut out, ip.as_bytes());
    out
}

/// A cursor over a stored record.
struct Record<'a>(&'a [u8]);

impl<'a> Record<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], RecordError> {
        if self.0.len() < n {
            return Err(RecordError::Truncated);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn field(&mut self) -> Result<&'a [u8], RecordError> {
        let len = u32::from_be_bytes(self.take(4)?.try_into().expect("4 bytes"));
        self.take(len as usize)
    }

    fn text(&mut self, what: &'static str) -> Result<&'a str, RecordError> {
        std::str::from_utf8(self.field()?).map_err(|_| RecordError::Malformed(what))
    }
}

/// Decodes a record made by [`encode_message`]. Never panics on bad input:
/// a store file can be damaged.
pub fn decode_message(record: &[u8]) -> Result<Message, RecordError> {
    let mut reader = Record(record);
    let version = reader.take(1)?[0];
    if version != RECORD_V1 {
        return Err(RecordError::UnknownVersion(version));
    }
    let updated_time = u64::from_be_bytes(reader.take(8)?.try_into().expect("8 bytes"));
    let topic = reader.text("topic")?;
    let payload = reader.field()?;
    let from = reader.text("from")?;
    let ip = match reader.text("ip")? {
        "" => None,
        text => Some(text.parse::<IpAddr>().map_err(|_| RecordError::Malformed("ip"))?),
    };
    if !reader.0.is_empty() {
        return Err(RecordError::Trailing(reader.0.len()));
    }
    Ok(Message { topic: topic.into(), payload: payload.into(), from: from.into(), updated_time, ip })
}

/// One change to what is stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreOp {
    /// Set a namespace's value for the message's topic.
    PutValue {
        /// The user's name; empty for the public namespace.
        namespace: String,
        /// The value.
        message: Message,
    },
    /// Remove a namespace's value for a topic.
    DeleteValue {
        /// The user's name; empty for the public namespace.
        namespace: String,
        /// The topic.
        topic: String,
    },
    /// Add a user, or replace the one of the same name.
    PutUser(UserRecord),
    /// Remove a user and every value stored in its namespace, so a later
    /// user of the same name starts empty.
    DeleteUser {
        /// The user's name.
        name: String,
    },
}

/// A stored value as loaded at start-up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredValue {
    /// The user's name; empty for the public namespace.
    pub namespace: String,
    /// The value.
    pub message: Message,
}

/// Durable state. [`Store::apply`] takes a batch of operations and makes
/// them durable together (one transaction: all or none).
pub trait Store {
    /// The error type of the implementation.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Applies `ops` in order, atomically.
    fn apply(&mut self, ops: &[StoreOp]) -> Result<(), Self::Error>;

    /// Every stored value, in key order.
    fn load_values(&self) -> Result<Vec<StoredValue>, Self::Error>;

    /// Every user, in name order.
    fn load_users(&self) -> Result<Vec<UserRecord>, Self::Error>;
}

/// A [`Store`] that keeps everything in memory: for `--in-memory`, tests,
/// and as the model the redb store is checked against.
#[derive(Clone, Debug, Default)]
pub struct MemoryStore {
    values: BTreeMap<Vec<u8>, Vec<u8>>,
    users: BTreeMap<String, Vec<u8>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Store for MemoryStore {
    type Error = RecordError;

    fn apply(&mut self, ops: &[StoreOp]) -> Result<(), RecordError> {
        for op in ops {
            match op {
                StoreOp::PutValue { namespace, message } => {
                    self.values.insert(value_key(namespace, &message.topic), encode_message(message));
                }
                StoreOp::DeleteValue { namespace, topic } => {
                    self.values.remove(&value_key(namespace, topic));
                }
                StoreOp::PutUser(user) => {
                    self.users.insert(user.name.clone(), user.encode());
                }
                StoreOp::DeleteUser { name } => {
                    self.users.remove(name);
                    let prefix = value_key(name, "");
                    self.values.retain(|key, _| !key.starts_with(&prefix));
                }
            }
        }
        Ok(())
    }

    fn load_values(&self) -> Result<Vec<StoredValue>, RecordError> {
        self.values
            .iter()
            .map(|(key, record)| {
                let (namespace, _) = split_value_key(key)?;
                Ok(StoredValue { namespace: namespace.to_owned(), message: decode_message(record)? })
            })
            .collect()
    }

    fn load_users(&self) -> Result<Vec<UserRecord>, RecordError> {
        self.users.iter().map(|(name, record)| UserRecord::decode(name, record)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(topic: &str, payload: &[u8], ip: Option<&str>) -> Message {
        Message {
            topic: topic.into(),
            payload: payload.into(),
            from: "sensor-1".into(),
            updated_time: 1_763_802_000,
            ip: ip.map(|ip| ip.parse().unwrap()),
        }
    }

    #[test]
    fn records_round_trip() {
        for m in [
            message("a/b", b"23.5", Some("127.0.0.1")),
            message("/x//y", b"", None),
            message("ü", &[0, 255, 10], Some("::1")),
        ] {
            assert_eq!(decode_message(&encode_message(&m)), Ok(m));
        }
    }

    #[test]
    fn damaged_records_are_errors_not_panics() {
        let record = encode_message(&message("a/b", b"payload", Some("10.0.0.1")));
        for cut in 0..record.len() {
            assert!(decode_message(&record[..cut]).is_err(), "cut at {cut}");
        }
        let mut trailing = record.clone();
        trailing.push(0);
        assert_eq!(decode_message(&trailing), Err(RecordError::Trailing(1)));
        let mut version = record.clone();
        version[0] = 9;
        assert_eq!(decode_message(&version), Err(RecordError::UnknownVersion(9)));
        // A length prefix claiming 4 GiB only fails; it allocates nothing.
        let mut huge = record[..9].to_vec();
        huge.extend_from_slice(&[0xff, 0xff, 0xff, 0xff]);
        assert_eq!(decode_message(&huge), Err(RecordError::Truncated));
    }

    #[test]
    fn keys_separate_namespaces() {
        assert_eq!(split_value_key(&value_key("", "a/b")), Ok(("", "a/b")));
        assert_eq!(split_value_key(&value_key("alice", "a")), Ok(("alice", "a")));
        assert_ne!(value_key("a", "b/c"), value_key("a/b", "c"));
        assert_eq!(split_value_key(b"no separator"), Err(RecordError::BadKey));
    }

    #[test]
    fn the_memory_store_applies_batches_in_order() {
        let mut store = MemoryStore::new();
        let put = |ns: &str, m: Message| StoreOp::PutValue { namespace: ns.into(), message: m };
        store
            .apply(&[
                put("", message("a", b"1", None)),
                put("alice", message("a", b"2", None)),
                put("", message("a", b"3", None)),
                put("", message("b", b"4", None)),
                StoreOp::DeleteValue { namespace: "".into(), topic: "b".into() },
            ])
            .unwrap();
        let loaded: Vec<(String, Vec<u8>)> =
            store.load_values().unwrap().into_iter().map(|v| (v.namespace, v.message.payload.to_vec())).collect();
        assert_eq!(loaded, [("".into(), b"3".to_vec()), ("alice".into(), b"2".to_vec())]);
    }

    #[test]
    fn removing_a_user_removes_its_values_and_no_one_elses() {
        let user = |name: &str| UserRecord {
            name: name.into(),
            admin: false,
            iterations: 1,
            salt: vec![0; crate::auth::MIN_SALT_LEN],
            hash: [0; crate::auth::HASH_LEN],
        };
        let put = |ns: &str, m: Message| StoreOp::PutValue { namespace: ns.into(), message: m };
        let mut store = MemoryStore::new();
        store
            .apply(&[
                StoreOp::PutUser(user("al")),
                StoreOp::PutUser(user("alice")),
                put("al", message("a", b"1", None)),
                put("alice", message("a", b"2", None)),
                put("", message("a", b"3", None)),
                StoreOp::DeleteUser { name: "al".into() },
            ])
            .unwrap();
        assert_eq!(store.load_users().unwrap(), [user("alice")]);
        let namespaces: Vec<String> = store.load_values().unwrap().into_iter().map(|v| v.namespace).collect();
        assert_eq!(namespaces, ["", "alice"], "al's value is gone; alice's, whose name starts the same, stays");
    }
}
