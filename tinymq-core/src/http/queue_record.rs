//! The stored form of a message queued for a Moustique client's PICKUP
//! (see [`crate::store`] for how it is filed).
//!
//! A queued message is filed under [`http_queued_key`]: `namespace 0x00
//! len(u32) client seq(u64)`, all big-endian. The client's name is
//! length-prefixed (it may hold 0x00), so the keys of one client's queue
//! are exactly those between `seq 0` and `seq u64::MAX` after its prefix:
//! a PICKUP removes what it handed out with one ranged delete. The record
//! is `version(1) updated_time(u64) topic payload from ip count(u32)
//! {subscriber}*`, fields length-prefixed (u32): the message, and the
//! names of the clients its publish queued it for (PICKUP shows them).

use std::sync::Arc;

use crate::message::Message;
use crate::record::{Record, RecordError};
use crate::store::{put_field, put_message, read_message};

const QUEUED_V1: u8 = 1;

/// A message queued for a Moustique client, as loaded at start-up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredHttpQueued {
    /// The user's name; empty for the public namespace.
    pub namespace: String,
    /// The client's name.
    pub client: String,
    /// Its sequence number in the client's queue.
    pub seq: u64,
    /// The message.
    pub message: Message,
    /// The clients its publish queued it for.
    pub subscribers: Vec<Arc<str>>,
}

impl StoredHttpQueued {
    /// Decodes a key made by [`http_queued_key`] and its record.
    pub fn decode(key: &[u8], record: &[u8]) -> Result<Self, RecordError> {
        let (namespace, client, seq) = split_http_queued_key(key)?;
        let (message, subscribers) = decode_http_queued(record)?;
        Ok(StoredHttpQueued { namespace: namespace.to_owned(), client: client.to_owned(), seq, message, subscribers })
    }
}

/// The part of [`http_queued_key`] shared by one client's whole queue.
pub fn http_queue_prefix(namespace: &str, client: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(namespace.len() + 5 + client.len() + 8);
    key.extend_from_slice(namespace.as_bytes());
    key.push(0);
    // Client names are bounded by the request size, far under 4 GiB.
    key.extend_from_slice(&u32::try_from(client.len()).expect("a client name under 4 GiB").to_be_bytes());
    key.extend_from_slice(client.as_bytes());
    key
}

/// The key a message queued for a Moustique client is filed under.
pub fn http_queued_key(namespace: &str, client: &str, seq: u64) -> Vec<u8> {
    let mut key = http_queue_prefix(namespace, client);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

/// Splits a key made by [`http_queued_key`]: namespace, client, sequence.
pub fn split_http_queued_key(key: &[u8]) -> Result<(&str, &str, u64), RecordError> {
    let split = key.iter().position(|&b| b == 0).ok_or(RecordError::BadKey)?;
    let namespace = std::str::from_utf8(&key[..split]).map_err(|_| RecordError::Malformed("namespace"))?;
    let mut reader = Record::new(&key[split + 1..]);
    let client = reader.text("client name").map_err(|_| RecordError::BadKey)?;
    let seq = reader.u64().map_err(|_| RecordError::BadKey)?;
    reader.finish().map_err(|_| RecordError::BadKey)?;
    Ok((namespace, client, seq))
}

/// Encodes a queued message and the clients it was queued for.
pub fn encode_http_queued(message: &Message, subscribers: &[Arc<str>]) -> Vec<u8> {
    let names: usize = subscribers.iter().map(|s| 4 + s.len()).sum();
    let mut out = Vec::new();
    put_message(QUEUED_V1, message, 4 + names, &mut out);
    out.extend_from_slice(&u32::try_from(subscribers.len()).expect("under 2^32 clients").to_be_bytes());
    for name in subscribers {
        put_field(&mut out, name.as_bytes());
    }
    out
}

/// Decodes [`encode_http_queued`]'s bytes. Never panics on bad input, and
/// allocates only for names the record really holds, whatever count it
/// claims.
pub fn decode_http_queued(record: &[u8]) -> Result<(Message, Vec<Arc<str>>), RecordError> {
    let mut reader = Record::new(record);
    let message = read_message(&mut reader, QUEUED_V1)?;
    let count = reader.u32()?;
    let mut subscribers = Vec::new();
    for _ in 0..count {
        subscribers.push(Arc::from(reader.text("subscriber")?));
    }
    reader.finish()?;
    Ok((message, subscribers))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{MemoryStore, Store, StoreOp};

    fn message() -> Message {
        Message {
            topic: "/s/a/t".into(),
            payload: b"22.5"[..].into(),
            from: "shell".into(),
            updated_time: 1_763_802_000,
            ip: Some("127.0.0.1".parse().unwrap()),
        }
    }

    #[test]
    fn records_and_keys_round_trip() {
        let names: Vec<Arc<str>> = vec!["me".into(), "you\0too".into()];
        assert_eq!(decode_http_queued(&encode_http_queued(&message(), &names)), Ok((message(), names)));
        let plain = Message { ip: None, payload: b""[..].into(), ..message() };
        assert_eq!(decode_http_queued(&encode_http_queued(&plain, &[])), Ok((plain, vec![])));
        for (namespace, client, seq) in [("", "c", 0), ("alice", "a\0b", u64::MAX), ("", "", 7)] {
            let key = http_queued_key(namespace, client, seq);
            assert_eq!(split_http_queued_key(&key), Ok((namespace, client, seq)));
            assert!(key.starts_with(&http_queue_prefix(namespace, client)));
        }
    }

    #[test]
    fn one_clients_keys_hold_no_other_clients() {
        // A name going on from "c" with 0x00 bytes sorts between c's seq 0
        // and seq MAX when names are not length-prefixed.
        let (c, longer) = ("c", "c\0\0\0\0\0\0\0\0\u{1}");
        let range = http_queued_key("", c, 0)..=http_queued_key("", c, u64::MAX);
        for seq in [0, 1, u64::MAX] {
            assert!(!range.contains(&http_queued_key("", longer, seq)));
            assert!(!range.contains(&http_queued_key("", "b", seq)) && !range.contains(&http_queued_key("", "d", seq)));
            assert!(range.contains(&http_queued_key("", c, seq)));
        }
        // And a user's prefix (`name 0x00`) holds all of its clients' queues.
        assert!(http_queued_key("al", "x", 3).starts_with(b"al\0"));
        assert!(!http_queued_key("alice", "x", 3).starts_with(b"al\0"));
    }

    #[test]
    fn damaged_records_and_keys_are_errors_not_panics() {
        let record = encode_http_queued(&message(), &["me".into()]);
        for cut in 0..record.len() {
            assert!(decode_http_queued(&record[..cut]).is_err(), "cut at {cut}");
        }
        let mut trailing = record.clone();
        trailing.push(0);
        assert_eq!(decode_http_queued(&trailing), Err(RecordError::Trailing(1)));
        let mut version = record.clone();
        version[0] = 2;
        assert_eq!(decode_http_queued(&version), Err(RecordError::UnknownVersion(2)));
        // A count claiming 2^32 - 1 names only fails; nothing is allocated
        // for it up front.
        let mut huge = encode_http_queued(&message(), &[]);
        let at = huge.len() - 4;
        huge[at..].copy_from_slice(&[0xff; 4]);
        assert_eq!(decode_http_queued(&huge), Err(RecordError::Truncated));
        let key = http_queued_key("", "c", 1);
        for cut in 0..key.len() {
            assert!(split_http_queued_key(&key[..cut]).is_err(), "cut at {cut}");
        }
        assert_eq!(split_http_queued_key(&[key.as_slice(), b"x"].concat()), Err(RecordError::BadKey));
    }

    #[test]
    fn the_memory_store_deletes_a_clients_queued_messages_by_range() {
        let put = |ns: &str, client: &str, seq: u64| StoreOp::PutHttpQueued {
            namespace: ns.into(),
            client: client.into(),
            seq,
            message: Message { payload: seq.to_string().as_bytes().into(), ..message() },
            subscribers: vec![Arc::from(client)].into(),
        };
        let delete = |ns: &str, client: &str, from: u64, below: u64| StoreOp::DeleteHttpQueued {
            namespace: ns.into(),
            client: client.into(),
            from,
            below,
        };
        // A client whose name goes on from "c" with 0x00: not c's queue.
        let longer = "c\0\0\0\0\0\0\0\0\u{1}";
        let mut store = MemoryStore::new();
        let mut ops: Vec<StoreOp> = (0..5).map(|seq| put("", "c", seq)).collect();
        ops.extend([put("", longer, 0), put("alice", "c", 0), put("al", "c", 0), delete("", "c", 1, 3)]);
        store.apply(&ops).unwrap();
        let left = |store: &MemoryStore| -> Vec<(String, String, u64)> {
            store.load_http_queued().unwrap().into_iter().map(|q| (q.namespace, q.client, q.seq)).collect()
        };
        let key = |ns: &str, c: &str, seq| (ns.to_owned(), c.to_owned(), seq);
        assert_eq!(
            left(&store),
            [
                key("", "c", 0),
                key("", "c", 3),
                key("", "c", 4),
                key("", longer, 0),
                key("al", "c", 0),
                key("alice", "c", 0)
            ]
        );
        store.apply(&[delete("", "c", 0, u64::MAX), StoreOp::DeleteUser { name: "al".into() }]).unwrap();
        assert_eq!(left(&store), [key("", longer, 0), key("alice", "c", 0)]);
        assert_eq!(store.load_http_queued().unwrap()[1].subscribers, [Arc::<str>::from("c")]);
    }
}
