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
//! Moustique HTTP clients are kept the same way, one record per client
//! (its first-seen time and its filters, see [`encode_http_client`]) under
//! `namespace 0x00 client`. Their last-seen times are not kept: a record
//! changes only when a client is registered, subscribes to a new filter or
//! is dropped, never on PICKUP. Each message queued for a client's PICKUP
//! is a record of its own ([`crate::http::queue_record`]), put when it is
//! queued; a PICKUP deletes what it handed out with one ranged delete
//! ([`StoreOp::DeleteHttpQueued`]), as does a full queue dropping its
//! oldest and a client being dropped (its whole queue).
//!
//! Users are filed by name in a table of their own ([`StoreOp::PutUser`],
//! record format in [`crate::auth`]).
//!
//! Persistent sessions ([`crate::durable`]) are kept in two tables: one
//! record per session (its subscriptions, expiry and will, see
//! [`SessionRecord`]) under `namespace 0x00 client_id`, and one per queued
//! QoS 1 message under that key, 0x00 and its sequence number
//! ([`queued_key`]). A message is put when it is queued and deleted when its
//! client acknowledges it; queued in the writer before it was committed, the
//! two cancel out (see [`StoreOp::record`]), so a subscriber that keeps up
//! costs the disk nothing.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use crate::auth::UserRecord;
pub use crate::durable::record::{
    SessionRecord, WillMessage, queued_key, queued_key_into, session_key, split_queued_key,
};
pub use crate::http::queue_record::{
    StoredHttpQueued, decode_http_queued, encode_http_queued, http_queue_prefix, http_queued_key, split_http_queued_key,
};
use crate::message::Message;
use crate::record::Record;
pub use crate::record::RecordError;
use crate::topic::{Filter, TopicLimits};

/// The first byte of every stored record written by this version.
const RECORD_V1: u8 = 1;
/// The version byte of a message queued for a session that was published
/// retained: [`RECORD_V1`]'s fields (one without it is [`RECORD_V1`]).
const QUEUED_RETAINED_V1: u8 = 2;

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

/// The key an HTTP client is filed under: `namespace 0x00 client`, as
/// [`value_key`] (in a table of its own).
pub fn http_client_key(namespace: &str, client: &str) -> Vec<u8> {
    value_key(namespace, client)
}

/// Splits a key made by [`http_client_key`]: namespace and client name.
pub fn split_http_client_key(key: &[u8]) -> Result<(&str, &str), RecordError> {
    let split = key.iter().position(|&b| b == 0).ok_or(RecordError::BadKey)?;
    let namespace = std::str::from_utf8(&key[..split]).map_err(|_| RecordError::Malformed("namespace"))?;
    let client = std::str::from_utf8(&key[split + 1..]).map_err(|_| RecordError::Malformed("client name"))?;
    Ok((namespace, client))
}

pub(crate) fn put_field(out: &mut Vec<u8>, bytes: &[u8]) {
    // Fields are bounded by the frame limits (payload 4 GiB at most).
    out.extend_from_slice(&u32::try_from(bytes.len()).expect("field under 4 GiB").to_be_bytes());
    out.extend_from_slice(bytes);
}

/// Encodes a stored message: version, updated_time, then topic, payload,
/// from and ip (text, empty for none), each length-prefixed.
pub fn encode_message(message: &Message) -> Vec<u8> {
    let mut out = Vec::new();
    encode_message_into(message, &mut out);
    out
}

/// [`encode_message`] into `out` (cleared first), so that a writer storing
/// many records reuses one buffer.
pub fn encode_message_into(message: &Message, out: &mut Vec<u8>) {
    out.clear();
    put_message(RECORD_V1, message, 0, out);
}

/// `version`, then `message`'s fields as [`encode_message`] lays them,
/// appended to `out` with room for `more` bytes after them.
pub(crate) fn put_message(version: u8, message: &Message, more: usize, out: &mut Vec<u8>) {
    let ip = message.ip.map(|ip| ip.to_string()).unwrap_or_default();
    out.reserve(1 + 8 + 16 + message.topic.len() + message.payload.len() + message.from.len() + ip.len() + more);
    out.push(version);
    out.extend_from_slice(&message.updated_time.to_be_bytes());
    put_field(out, message.topic.as_bytes());
    put_field(out, &message.payload);
    put_field(out, message.from.as_bytes());
    put_field(out, ip.as_bytes());
}

/// Decodes a record made by [`encode_message`]. Never panics on bad input:
/// a store file can be damaged.
pub fn decode_message(record: &[u8]) -> Result<Message, RecordError> {
    let mut reader = Record::new(record);
    let message = read_message(&mut reader, RECORD_V1)?;
    reader.finish()?;
    Ok(message)
}

/// Encodes a message queued for a session into `out` (cleared first): as
/// [`encode_message_into`], its version saying whether it was published
/// retained.
pub fn encode_queued_into(message: &Message, retained: bool, out: &mut Vec<u8>) {
    out.clear();
    put_message(if retained { QUEUED_RETAINED_V1 } else { RECORD_V1 }, message, 0, out);
}

/// Decodes a record made by [`encode_queued_into`]: the message, and
/// whether it was published retained. Never panics on bad input.
pub fn decode_queued(record: &[u8]) -> Result<(Message, bool), RecordError> {
    let retained = record.first() == Some(&QUEUED_RETAINED_V1);
    let mut reader = Record::new(record);
    let message = read_message(&mut reader, if retained { QUEUED_RETAINED_V1 } else { RECORD_V1 })?;
    reader.finish()?;
    Ok((message, retained))
}

/// Reads what [`put_message`] wrote, checking its version is `version`.
pub(crate) fn read_message(reader: &mut Record<'_>, version: u8) -> Result<Message, RecordError> {
    let found = reader.byte()?;
    if found != version {
        return Err(RecordError::UnknownVersion(found));
    }
    let updated_time = reader.u64()?;
    let topic = reader.text("topic")?;
    let payload = reader.field()?;
    let from = reader.text("from")?;
    let ip = match reader.text("ip")? {
        "" => None,
        text => Some(text.parse::<IpAddr>().map_err(|_| RecordError::Malformed("ip"))?),
    };
    Ok(Message { topic: topic.into(), payload: payload.into(), from: from.into(), updated_time, ip })
}

/// Encodes an HTTP client's record: version, first-seen Unix seconds, the
/// number of filters, then each filter length-prefixed, in subscription
/// order.
pub fn encode_http_client(first_seen: u64, filters: &[String]) -> Vec<u8> {
    let len: usize = filters.iter().map(|f| 4 + f.len()).sum();
    let mut out = Vec::with_capacity(1 + 8 + 4 + len);
    out.push(RECORD_V1);
    out.extend_from_slice(&first_seen.to_be_bytes());
    out.extend_from_slice(&u32::try_from(filters.len()).expect("under 2^32 filters").to_be_bytes());
    for filter in filters {
        put_field(&mut out, filter.as_bytes());
    }
    out
}

/// Decodes a record made by [`encode_http_client`]: first-seen time and
/// filters. Never panics on bad input, and allocates only for filters the
/// record really holds, whatever count it claims.
pub fn decode_http_client(record: &[u8]) -> Result<(u64, Vec<Filter>), RecordError> {
    let mut reader = Record::new(record);
    let version = reader.byte()?;
    if version != RECORD_V1 {
        return Err(RecordError::UnknownVersion(version));
    }
    let first_seen = reader.u64()?;
    let count = reader.u32()?;
    let mut filters = Vec::new();
    for _ in 0..count {
        // The limits in force may have changed since it was subscribed: a
        // stored filter is only checked for what any filter must be.
        let filter = Filter::new(reader.text("filter")?, &TopicLimits::UNBOUNDED)
            .map_err(|_| RecordError::Malformed("filter"))?;
        filters.push(filter);
    }
    reader.finish()?;
    Ok((first_seen, filters))
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
    /// Set a Moustique HTTP client's record: written when the client is
    /// registered and each time it subscribes to a new filter.
    PutHttpClient {
        /// The user's name; empty for the public namespace.
        namespace: String,
        /// The client's name.
        client: String,
        /// Unix seconds of its first request.
        first_seen: u64,
        /// All its filters, in subscription order.
        filters: Vec<String>,
    },
    /// Remove a Moustique HTTP client (expired, or otherwise dropped).
    DeleteHttpClient {
        /// The user's name; empty for the public namespace.
        namespace: String,
        /// The client's name.
        client: String,
    },
    /// Add a user, or replace the one of the same name.
    PutUser(UserRecord),
    /// Remove a user and every value stored in its namespace, so a later
    /// user of the same name starts empty.
    DeleteUser {
        /// The user's name.
        name: String,
    },
    /// Set a persistent session's record.
    PutSession {
        /// The user's name; empty for the public namespace.
        namespace: String,
        /// The session's client id.
        client_id: String,
        /// Its subscriptions, expiry and will.
        record: SessionRecord,
    },
    /// Remove a session and every message queued for it.
    DeleteSession {
        /// The user's name; empty for the public namespace.
        namespace: String,
        /// The session's client id.
        client_id: String,
    },
    /// Keep a QoS 1 message queued for a session.
    PutQueued {
        /// The user's name; empty for the public namespace.
        namespace: String,
        /// The session's client id.
        client_id: String,
        /// Its sequence number in the session.
        seq: u64,
        /// The message.
        message: Message,
        /// It was published retained (a bridge carries that to the far
        /// side; MQTT 5's Retain As Published shows it).
        retained: bool,
    },
    /// A queued message was acknowledged: forget it.
    DeleteQueued {
        /// The user's name; empty for the public namespace.
        namespace: String,
        /// The session's client id.
        client_id: String,
        /// Its sequence number in the session.
        seq: u64,
    },
    /// Keep a message queued for a Moustique client's PICKUP. Its parts
    /// are shared with the queue (one publish queues many copies).
    PutHttpQueued {
        /// The user's name; empty for the public namespace.
        namespace: Arc<str>,
        /// The client's name.
        client: Arc<str>,
        /// Its sequence number in the client's queue.
        seq: u64,
        /// The message.
        message: Message,
        /// The clients its publish queued it for.
        subscribers: Arc<[Arc<str>]>,
    },
    /// Forget the messages queued for a Moustique client with sequence
    /// numbers in `from..below`: what a PICKUP handed out, what a full
    /// queue dropped, or (`0..u64::MAX`) the queue of a dropped client.
    DeleteHttpQueued {
        /// The user's name; empty for the public namespace.
        namespace: Arc<str>,
        /// The client's name.
        client: Arc<str>,
        /// The first sequence number removed.
        from: u64,
        /// The first sequence number kept.
        below: u64,
    },
}

impl StoreOp {
    /// The write of a stored value that changed: the message as the
    /// topic's value in `namespace` (a user's name, empty for the public
    /// namespace), or its delete when the payload is empty.
    pub fn of_value(namespace: &str, message: &Message) -> StoreOp {
        if message.payload.is_empty() {
            StoreOp::DeleteValue { namespace: namespace.to_owned(), topic: message.topic.to_string() }
        } else {
            StoreOp::PutValue { namespace: namespace.to_owned(), message: message.clone() }
        }
    }
}

/// The table a record lives in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum StoreTable {
    /// Stored values, by [`value_key`].
    Values,
    /// Moustique HTTP clients, by [`http_client_key`].
    HttpClients,
    /// Users, by name.
    Users,
    /// Persistent sessions, by [`session_key`].
    Sessions,
    /// Messages queued for sessions, by [`queued_key`].
    Queued,
    /// Messages queued for Moustique clients, by [`http_queued_key`].
    HttpQueued,
}

impl StoreOp {
    /// The one record this operation sets or removes: its table and key.
    /// Queued operations on the same record replace each other (the later
    /// wins, so a put then a delete is a delete), which is what bounds the
    /// store's queue by the number of records rather than the write rate.
    /// `None` would mean an operation that touches more than one record;
    /// it is never replaced, and nothing queued before it is replaced by
    /// anything queued after it.
    pub fn record(&self) -> Option<(StoreTable, Vec<u8>)> {
        match self {
            StoreOp::PutValue { namespace, message } => {
                Some((StoreTable::Values, value_key(namespace, &message.topic)))
            }
            StoreOp::DeleteValue { namespace, topic } => Some((StoreTable::Values, value_key(namespace, topic))),
            StoreOp::PutHttpClient { namespace, client, .. } | StoreOp::DeleteHttpClient { namespace, client } => {
                Some((StoreTable::HttpClients, http_client_key(namespace, client)))
            }
            StoreOp::PutUser(user) => Some((StoreTable::Users, user.name.as_bytes().to_vec())),
            // A user's values and clients go with it: many records.
            StoreOp::DeleteUser { .. } => None,
            StoreOp::PutSession { namespace, client_id, .. } => {
                Some((StoreTable::Sessions, session_key(namespace, client_id)))
            }
            // The session's queued messages go with it.
            StoreOp::DeleteSession { .. } => None,
            StoreOp::PutQueued { namespace, client_id, seq, .. }
            | StoreOp::DeleteQueued { namespace, client_id, seq } => {
                Some((StoreTable::Queued, queued_key(namespace, client_id, *seq)))
            }
            StoreOp::PutHttpQueued { namespace, client, seq, .. } => {
                Some((StoreTable::HttpQueued, http_queued_key(namespace, client, *seq)))
            }
            // Many records, all in one client's queue: a writer may undo
            // the queued puts it covers rather than treat it as a barrier.
            StoreOp::DeleteHttpQueued { .. } => None,
        }
    }
}

/// A stored value as loaded at start-up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredValue {
    /// The user's name; empty for the public namespace.
    pub namespace: String,
    /// The value.
    pub message: Message,
}

/// A Moustique HTTP client as loaded at start-up: what it takes to register
/// it again with its subscriptions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredHttpClient {
    /// The user's name; empty for the public namespace.
    pub namespace: String,
    /// The client's name.
    pub client: String,
    /// Unix seconds of its first request.
    pub first_seen: u64,
    /// Its filters, in subscription order.
    pub filters: Vec<Filter>,
}

impl StoredHttpClient {
    /// Decodes a key made by [`http_client_key`] and its record.
    pub fn decode(key: &[u8], record: &[u8]) -> Result<Self, RecordError> {
        let (namespace, client) = split_http_client_key(key)?;
        let (first_seen, filters) = decode_http_client(record)?;
        Ok(StoredHttpClient { namespace: namespace.to_owned(), client: client.to_owned(), first_seen, filters })
    }
}

/// A persistent session as loaded at start-up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredSession {
    /// The user's name; empty for the public namespace.
    pub namespace: String,
    /// The session's client id.
    pub client_id: String,
    /// Its record.
    pub record: SessionRecord,
}

/// A queued QoS 1 message as loaded at start-up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredQueued {
    /// The user's name; empty for the public namespace.
    pub namespace: String,
    /// The session's client id.
    pub client_id: String,
    /// Its sequence number in the session.
    pub seq: u64,
    /// The message.
    pub message: Message,
    /// It was published retained.
    pub retained: bool,
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

    /// Every Moustique HTTP client with its filters, in key order.
    fn load_http_clients(&self) -> Result<Vec<StoredHttpClient>, Self::Error>;
    /// Every user, in name order.
    fn load_users(&self) -> Result<Vec<UserRecord>, Self::Error>;

    /// Every persistent session, in key order. The default is for a store
    /// that does not keep sessions: none.
    fn load_sessions(&self) -> Result<Vec<StoredSession>, Self::Error> {
        Ok(Vec::new())
    }

    /// Every queued message, in key order (by session, then sequence). The
    /// default is for a store that does not keep sessions: none.
    fn load_queued(&self) -> Result<Vec<StoredQueued>, Self::Error> {
        Ok(Vec::new())
    }

    /// Every message queued for a Moustique client, in key order (by
    /// client, then sequence). The default is for a store that does not
    /// keep them: none.
    fn load_http_queued(&self) -> Result<Vec<StoredHttpQueued>, Self::Error> {
        Ok(Vec::new())
    }
}

/// A [`Store`] that keeps everything in memory: for `--in-memory`, tests,
/// and as the model the redb store is checked against.
#[derive(Clone, Debug, Default)]
pub struct MemoryStore {
    values: BTreeMap<Vec<u8>, Vec<u8>>,
    http_clients: BTreeMap<Vec<u8>, Vec<u8>>,
    users: BTreeMap<String, Vec<u8>>,
    sessions: BTreeMap<Vec<u8>, Vec<u8>>,
    queued: BTreeMap<Vec<u8>, Vec<u8>>,
    http_queued: BTreeMap<Vec<u8>, Vec<u8>>,
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
                StoreOp::PutHttpClient { namespace, client, first_seen, filters } => {
                    self.http_clients
                        .insert(http_client_key(namespace, client), encode_http_client(*first_seen, filters));
                }
                StoreOp::DeleteHttpClient { namespace, client } => {
                    self.http_clients.remove(&http_client_key(namespace, client));
                }
                StoreOp::PutUser(user) => {
                    self.users.insert(user.name.clone(), user.encode());
                }
                StoreOp::DeleteUser { name } => {
                    self.users.remove(name);
                    let prefix = value_key(name, "");
                    self.values.retain(|key, _| !key.starts_with(&prefix));
                    self.http_clients.retain(|key, _| !key.starts_with(&prefix));
                    self.sessions.retain(|key, _| !key.starts_with(&prefix));
                    self.queued.retain(|key, _| !key.starts_with(&prefix));
                    self.http_queued.retain(|key, _| !key.starts_with(&prefix));
                }
                StoreOp::PutSession { namespace, client_id, record } => {
                    self.sessions.insert(session_key(namespace, client_id), record.encode());
                }
                StoreOp::DeleteSession { namespace, client_id } => {
                    self.sessions.remove(&session_key(namespace, client_id));
                    let mut prefix = session_key(namespace, client_id);
                    prefix.push(0);
                    // Exactly this session's: the sequence is the last 8 bytes.
                    self.queued.retain(|key, _| !(key.starts_with(&prefix) && key.len() == prefix.len() + 8));
                }
                StoreOp::PutQueued { namespace, client_id, seq, message, retained } => {
                    let mut record = Vec::new();
                    encode_queued_into(message, *retained, &mut record);
                    self.queued.insert(queued_key(namespace, client_id, *seq), record);
                }
                StoreOp::DeleteQueued { namespace, client_id, seq } => {
                    self.queued.remove(&queued_key(namespace, client_id, *seq));
                }
                StoreOp::PutHttpQueued { namespace, client, seq, message, subscribers } => {
                    let record = encode_http_queued(message, subscribers);
                    self.http_queued.insert(http_queued_key(namespace, client, *seq), record);
                }
                StoreOp::DeleteHttpQueued { namespace, client, from, below } => {
                    let range = http_queued_key(namespace, client, *from)..http_queued_key(namespace, client, *below);
                    let doomed: Vec<Vec<u8>> = self.http_queued.range(range).map(|(key, _)| key.clone()).collect();
                    for key in doomed {
                        self.http_queued.remove(&key);
                    }
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

    fn load_http_clients(&self) -> Result<Vec<StoredHttpClient>, RecordError> {
        self.http_clients.iter().map(|(key, record)| StoredHttpClient::decode(key, record)).collect()
    }

    fn load_users(&self) -> Result<Vec<UserRecord>, RecordError> {
        self.users.iter().map(|(name, record)| UserRecord::decode(name, record)).collect()
    }

    fn load_sessions(&self) -> Result<Vec<StoredSession>, RecordError> {
        self.sessions
            .iter()
            .map(|(key, record)| {
                let (namespace, client_id) = split_value_key(key)?;
                let record = SessionRecord::decode(record)?;
                Ok(StoredSession { namespace: namespace.to_owned(), client_id: client_id.to_owned(), record })
            })
            .collect()
    }

    fn load_queued(&self) -> Result<Vec<StoredQueued>, RecordError> {
        self.queued
            .iter()
            .map(|(key, record)| {
                let (namespace, client_id, seq) = split_queued_key(key)?;
                let (message, retained) = decode_queued(record)?;
                let (namespace, client_id) = (namespace.to_owned(), client_id.to_owned());
                Ok(StoredQueued { namespace, client_id, seq, message, retained })
            })
            .collect()
    }

    fn load_http_queued(&self) -> Result<Vec<StoredHttpQueued>, RecordError> {
        self.http_queued.iter().map(|(key, record)| StoredHttpQueued::decode(key, record)).collect()
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
    fn a_client_and_a_value_with_one_name_are_different_records() {
        let value = StoreOp::DeleteValue { namespace: String::new(), topic: "x".into() };
        let client = StoreOp::DeleteHttpClient { namespace: String::new(), client: "x".into() };
        assert_eq!(value_key("", "x"), http_client_key("", "x"), "the same key bytes, in two tables");
        assert_ne!(value.record(), client.record(), "so queued writes to them must not replace each other");
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
    fn a_queued_record_keeps_whether_it_was_published_retained() {
        let m = message("a/b", b"23.5", Some("127.0.0.1"));
        let mut record = Vec::new();
        for retained in [false, true] {
            encode_queued_into(&m, retained, &mut record);
            assert_eq!(decode_queued(&record), Ok((m.clone(), retained)));
        }
        // Records queued before the flag was kept read as not retained.
        assert_eq!(decode_queued(&encode_message(&m)), Ok((m.clone(), false)));
        encode_queued_into(&m, true, &mut record);
        for cut in 0..record.len() {
            assert!(decode_queued(&record[..cut]).is_err(), "cut at {cut}");
        }
        record[0] = 9;
        assert_eq!(decode_queued(&record), Err(RecordError::UnknownVersion(9)));
        // A value's record is never a retained queued one.
        encode_queued_into(&m, true, &mut record);
        assert_eq!(decode_message(&record), Err(RecordError::UnknownVersion(QUEUED_RETAINED_V1)));
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
    fn operations_on_the_same_record_share_its_identity() {
        let put =
            |ns: &str, topic: &str| StoreOp::PutValue { namespace: ns.into(), message: message(topic, b"1", None) };
        let delete = |ns: &str, topic: &str| StoreOp::DeleteValue { namespace: ns.into(), topic: topic.into() };
        assert_eq!(put("", "a/b").record(), delete("", "a/b").record());
        assert_eq!(put("", "a/b").record(), Some((StoreTable::Values, value_key("", "a/b"))));
        assert_ne!(put("", "a/b").record(), put("alice", "a/b").record());
        assert_ne!(put("", "a/b").record(), delete("", "a/c").record());
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
    fn filters(texts: &[&str]) -> Vec<String> {
        texts.iter().map(|t| t.to_string()).collect()
    }

    #[test]
    fn http_client_records_round_trip() {
        for (first_seen, texts) in [
            (1_763_802_000, filters(&["/sensors/+/temperature", "#", "a//b", "ü/+"])),
            (0, filters(&[])),
            (u64::MAX, filters(&["x"])),
        ] {
            let (seen, decoded) = decode_http_client(&encode_http_client(first_seen, &texts)).unwrap();
            let decoded: Vec<&str> = decoded.iter().map(Filter::as_str).collect();
            assert_eq!((seen, decoded), (first_seen, texts.iter().map(String::as_str).collect::<Vec<_>>()));
        }
    }

    #[test]
    fn damaged_http_client_records_are_errors_not_panics() {
        let record = encode_http_client(7, &filters(&["a/+", "b/#"]));
        for cut in 0..record.len() {
            assert!(decode_http_client(&record[..cut]).is_err(), "cut at {cut}");
        }
        let mut trailing = record.clone();
        trailing.extend_from_slice(b"xy");
        assert_eq!(decode_http_client(&trailing), Err(RecordError::Trailing(2)));
        let mut version = record.clone();
        version[0] = 2;
        assert_eq!(decode_http_client(&version), Err(RecordError::UnknownVersion(2)));
        // A count claiming 2^32 - 1 filters only fails; it allocates nothing
        // up front.
        let mut huge = record[..9].to_vec();
        huge.extend_from_slice(&[0xff; 4]);
        assert_eq!(decode_http_client(&huge), Err(RecordError::Truncated));
        // A filter no subscription could have made, or not UTF-8.
        for bad in [&b"a/#/b"[..], b"", b"x\0y", &[0xff, 0xfe]] {
            let mut record = vec![1, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 1];
            record.extend_from_slice(&u32::try_from(bad.len()).unwrap().to_be_bytes());
            record.extend_from_slice(bad);
            assert_eq!(decode_http_client(&record), Err(RecordError::Malformed("filter")), "{bad:?}");
        }
        // A valid record with bytes changed at random: an error, or a record
        // that encodes back to exactly those bytes (the format has one
        // spelling per record), never a panic.
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut decoded = 0;
        for _ in 0..5000 {
            let mut bytes = record.clone();
            for _ in 0..=next() % 2 {
                let at = (next() % bytes.len() as u64) as usize;
                bytes[at] = next() as u8;
            }
            if let Ok((first_seen, filters)) = decode_http_client(&bytes) {
                decoded += 1;
                let texts: Vec<String> = filters.iter().map(|f| f.as_str().to_owned()).collect();
                assert_eq!(encode_http_client(first_seen, &texts), bytes);
            }
        }
        assert!(decoded > 0, "some changes (the time, a letter) still decode");
    }

    #[test]
    fn the_memory_store_keeps_http_clients_per_namespace() {
        let mut store = MemoryStore::new();
        let put = |ns: &str, client: &str, seen: u64, texts: &[&str]| StoreOp::PutHttpClient {
            namespace: ns.into(),
            client: client.into(),
            first_seen: seen,
            filters: filters(texts),
        };
        store
            .apply(&[
                put("", "c", 1, &["a"]),
                put("alice", "c", 2, &["b"]),
                put("", "c", 1, &["a", "a/#"]),
                put("", "gone", 3, &["x"]),
                put("", "nul\0name", 4, &["y"]),
                StoreOp::DeleteHttpClient { namespace: "".into(), client: "gone".into() },
                StoreOp::DeleteHttpClient { namespace: "".into(), client: "never there".into() },
            ])
            .unwrap();
        let loaded: Vec<(String, String, u64, Vec<String>)> = store
            .load_http_clients()
            .unwrap()
            .into_iter()
            .map(|c| (c.namespace, c.client, c.first_seen, c.filters.iter().map(|f| f.as_str().to_owned()).collect()))
            .collect();
        assert_eq!(
            loaded,
            [
                ("".into(), "c".into(), 1, filters(&["a", "a/#"])),
                ("".into(), "nul\0name".into(), 4, filters(&["y"])),
                ("alice".into(), "c".into(), 2, filters(&["b"])),
            ]
        );
        assert!(store.load_values().unwrap().is_empty(), "clients are not values");
        assert_eq!(split_http_client_key(&http_client_key("bob", "a\0b")), Ok(("bob", "a\0b")));
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
