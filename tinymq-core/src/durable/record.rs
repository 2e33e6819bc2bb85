//! The stored forms of sessions and their queued messages (see
//! [`crate::store`] for how they are filed).
//!
//! A session record is `version(1) expiry(u32 s) offline_since(u64 unix s,
//! 0 while connected) count(u32) {qos(u8) filter}* will(u8: 0 or 1)
//! [retain(u8) qos(u8) topic payload]`, fields length-prefixed (u32). A
//! queued message is the value record of [`crate::store::encode_message`],
//! filed under [`queued_key`].

use std::sync::Arc;

use crate::codec::Qos;
use crate::record::{Record, RecordError};
use crate::store::{put_field, value_key};
use crate::topic::{Filter, TopicLimits};

const SESSION_V1: u8 = 1;

/// A will as a session keeps it until it is published or discarded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WillMessage {
    /// Its topic name.
    pub topic: Arc<str>,
    /// Its payload.
    pub payload: Arc<[u8]>,
    /// Published with RETAIN.
    pub retain: bool,
    /// Published at this QoS.
    pub qos: Qos,
}

/// What is stored of a persistent session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRecord {
    /// How long it outlives its connection, in seconds.
    pub expiry_secs: u32,
    /// Unix seconds when its connection ended; 0 while it has one.
    pub offline_since: u64,
    /// Its subscriptions, in the order made.
    pub subscriptions: Vec<(Filter, Qos)>,
    /// The will of its current connection.
    pub will: Option<WillMessage>,
}

fn qos(byte: u8) -> Result<Qos, RecordError> {
    Qos::from_u8(byte).ok_or(RecordError::Malformed("qos"))
}

impl SessionRecord {
    /// The record's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32);
        out.push(SESSION_V1);
        out.extend_from_slice(&self.expiry_secs.to_be_bytes());
        out.extend_from_slice(&self.offline_since.to_be_bytes());
        let count = u32::try_from(self.subscriptions.len()).expect("under 2^32 subscriptions");
        out.extend_from_slice(&count.to_be_bytes());
        for (filter, qos) in &self.subscriptions {
            out.push(*qos as u8);
            put_field(&mut out, filter.as_str().as_bytes());
        }
        match &self.will {
            None => out.push(0),
            Some(will) => {
                out.extend_from_slice(&[1, u8::from(will.retain), will.qos as u8]);
                put_field(&mut out, will.topic.as_bytes());
                put_field(&mut out, &will.payload);
            }
        }
        out
    }

    /// Decodes [`SessionRecord::encode`]'s bytes. Never panics, and
    /// allocates only for what the record holds, whatever it claims.
    pub fn decode(record: &[u8]) -> Result<Self, RecordError> {
        let mut reader = Record::new(record);
        let version = reader.byte()?;
        if version != SESSION_V1 {
            return Err(RecordError::UnknownVersion(version));
        }
        let expiry_secs = reader.u32()?;
        let offline_since = reader.u64()?;
        let count = reader.u32()?;
        let mut subscriptions = Vec::new();
        for _ in 0..count {
            let qos = qos(reader.byte()?)?;
            let filter = Filter::new(reader.text("filter")?, &TopicLimits::UNBOUNDED)
                .map_err(|_| RecordError::Malformed("filter"))?;
            subscriptions.push((filter, qos));
        }
        let will = match reader.byte()? {
            0 => None,
            1 => {
                let retain = match reader.byte()? {
                    0 => false,
                    1 => true,
                    _ => return Err(RecordError::Malformed("will retain")),
                };
                let qos = qos(reader.byte()?)?;
                let topic = reader.text("will topic")?.into();
                let payload = reader.field()?.into();
                Some(WillMessage { topic, payload, retain, qos })
            }
            _ => return Err(RecordError::Malformed("will")),
        };
        reader.finish()?;
        Ok(SessionRecord { expiry_secs, offline_since, subscriptions, will })
    }
}

/// The key a session is filed under: `namespace 0x00 client_id`.
pub fn session_key(namespace: &str, client_id: &str) -> Vec<u8> {
    value_key(namespace, client_id)
}

/// The key of a session's queued message: its [`session_key`], 0x00, then
/// the sequence number big-endian, so a session's messages sort in order
/// and share a prefix.
pub fn queued_key(namespace: &str, client_id: &str, seq: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(namespace.len() + client_id.len() + 10);
    queued_key_into(namespace, client_id, seq, &mut key);
    key
}

/// [`queued_key`] into `key` (cleared first), so that a writer storing
/// many records reuses one buffer.
pub fn queued_key_into(namespace: &str, client_id: &str, seq: u64, key: &mut Vec<u8>) {
    key.clear();
    key.extend_from_slice(namespace.as_bytes());
    key.push(0);
    key.extend_from_slice(client_id.as_bytes());
    key.push(0);
    key.extend_from_slice(&seq.to_be_bytes());
}

/// Splits a key made by [`queued_key`]: namespace, client id, sequence.
pub fn split_queued_key(key: &[u8]) -> Result<(&str, &str, u64), RecordError> {
    let split = key.len().checked_sub(9).ok_or(RecordError::BadKey)?;
    if key[split] != 0 {
        return Err(RecordError::BadKey);
    }
    let seq = u64::from_be_bytes(key[split + 1..].try_into().map_err(|_| RecordError::BadKey)?);
    let (namespace, client_id) = crate::store::split_value_key(&key[..split])?;
    Ok((namespace, client_id, seq))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::tests::hex;

    fn filter(text: &str) -> Filter {
        Filter::new(text, &TopicLimits::default()).unwrap()
    }

    #[test]
    fn a_session_record_has_a_fixed_form() {
        let record = SessionRecord {
            expiry_secs: 3600,
            offline_since: 0x6565_6565,
            subscriptions: vec![(filter("a/#"), Qos::AtLeastOnce)],
            will: Some(WillMessage { topic: "w".into(), payload: b"x"[..].into(), retain: true, qos: Qos::AtMostOnce }),
        };
        let bytes = hex("01 00000e10 0000000065656565 00000001 01 00000003 612f23 01 01 00 00000001 77 00000001 78");
        assert_eq!(record.encode(), bytes);
        assert_eq!(SessionRecord::decode(&bytes), Ok(record));
        let bare = SessionRecord { expiry_secs: 0, offline_since: 0, subscriptions: vec![], will: None };
        assert_eq!(SessionRecord::decode(&bare.encode()), Ok(bare));
    }

    #[test]
    fn damaged_session_records_are_errors() {
        let good = hex("01 00000e10 0000000000000000 00000001 01 00000003 612f23 00");
        assert!(SessionRecord::decode(&good).is_ok());
        for cut in 0..good.len() {
            assert_eq!(SessionRecord::decode(&good[..cut]), Err(RecordError::Truncated), "cut {cut}");
        }
        let mut bad = good.clone();
        bad[0] = 2;
        assert_eq!(SessionRecord::decode(&bad), Err(RecordError::UnknownVersion(2)));
        let mut bad = good.clone();
        bad[17] = 2;
        assert_eq!(SessionRecord::decode(&bad), Err(RecordError::Malformed("qos")));
        let bad = hex("01 00000e10 0000000000000000 00000001 01 00000003 612f2f 00");
        assert!(SessionRecord::decode(&bad).is_ok(), "empty levels are a valid filter");
        let bad = hex("01 00000e10 0000000000000000 00000001 01 00000003 232f61 00");
        assert_eq!(SessionRecord::decode(&bad), Err(RecordError::Malformed("filter")));
        let claims_many = hex("01 00000000 0000000000000000 ffffffff");
        assert_eq!(SessionRecord::decode(&claims_many), Err(RecordError::Truncated));
        let mut trailing = good.clone();
        trailing.push(0);
        assert_eq!(SessionRecord::decode(&trailing), Err(RecordError::Trailing(1)));
    }

    #[test]
    fn queued_keys_sort_by_sequence_and_split_back() {
        let key = queued_key("alice", "dev", 258);
        assert_eq!(key, hex("616c696365 00 646576 00 0000000000000102"));
        assert_eq!(split_queued_key(&key), Ok(("alice", "dev", 258)));
        assert!(queued_key("", "c", 9) < queued_key("", "c", 10));
        assert!(queued_key("", "c", 1).starts_with(&session_key("", "c")));
        assert_eq!(split_queued_key(b"short"), Err(RecordError::BadKey));
        assert_eq!(split_queued_key(&hex("00 63 01 0000000000000001")), Err(RecordError::BadKey));
    }
}
