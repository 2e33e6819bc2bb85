//! The table of messages queued for Moustique clients' PICKUP: one record
//! per message ([`tinymq_core::store::encode_http_queued`]) under
//! [`http_queued_key`], put when it is queued and removed by the ranged
//! delete of the PICKUP that handed it out (or of the full queue that
//! dropped it, or of its client being dropped).

use std::sync::Arc;

use redb::{Table, TableDefinition};
use tinymq_core::Message;
use tinymq_core::store::{StoreOp, encode_http_queued, http_queue_prefix, http_queued_key};

/// Messages queued for Moustique clients, by `namespace 0x00 len(u32)
/// client seq(u64)` ([`http_queued_key`]). A database written before
/// they were kept has no such table: it opens unchanged, with no queued
/// message, and the first write creates it.
pub(super) const HTTP_QUEUED: TableDefinition<&[u8], &[u8]> = TableDefinition::new("http_queued");

/// Writes the queues' records within one transaction. One publish queues
/// the same message for many clients, in a row: its record is encoded
/// once for them all, and the key is built in one buffer.
#[derive(Default)]
pub(super) struct QueueWriter {
    key: Vec<u8>,
    /// The message and subscribers `record` encodes.
    last: Option<(Message, Arc<[Arc<str>]>)>,
    record: Vec<u8>,
}

impl QueueWriter {
    /// Carries out a [`StoreOp::PutHttpQueued`] or
    /// [`StoreOp::DeleteHttpQueued`] (anything else is not this table's).
    pub(super) fn write(&mut self, table: &mut Table<&[u8], &[u8]>, op: &StoreOp) -> Result<(), redb::StorageError> {
        match op {
            StoreOp::PutHttpQueued { namespace, client, seq, message, subscribers } => {
                let same = self.last.as_ref().is_some_and(|(last, names)| {
                    Arc::ptr_eq(&last.payload, &message.payload)
                        && Arc::ptr_eq(&last.topic, &message.topic)
                        && Arc::ptr_eq(&last.from, &message.from)
                        && (last.updated_time, last.ip) == (message.updated_time, message.ip)
                        && Arc::ptr_eq(names, subscribers)
                });
                if !same {
                    self.record = encode_http_queued(message, subscribers);
                    self.last = Some((message.clone(), subscribers.clone()));
                }
                self.key.clear();
                self.key.extend_from_slice(&http_queue_prefix(namespace, client));
                self.key.extend_from_slice(&seq.to_be_bytes());
                table.insert(self.key.as_slice(), self.record.as_slice())?;
            }
            StoreOp::DeleteHttpQueued { namespace, client, from, below } => {
                // The client's name is length-prefixed in the key: every key
                // in this range is one of its messages.
                let (from, below) =
                    (http_queued_key(namespace, client, *from), http_queued_key(namespace, client, *below));
                table.retain_in(from.as_slice()..below.as_slice(), |_, _| false)?;
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use redb::{Database, ReadableDatabase};
    use tinymq_core::store::{MemoryStore, Store, StoreOp};

    use super::HTTP_QUEUED;
    use crate::store::tests::{put, temp_dir};
    use crate::store::{DATABASE_FILE, RedbStore};

    fn queued(namespace: &str, client: &str, seq: u64) -> StoreOp {
        let StoreOp::PutValue { message, .. } = put("", "a/b", &format!("{client}-{seq}")) else { unreachable!() };
        let subscribers: Arc<[Arc<str>]> = vec![Arc::from(client), Arc::from("other")].into();
        StoreOp::PutHttpQueued { namespace: namespace.into(), client: client.into(), seq, message, subscribers }
    }

    fn picked(namespace: &str, client: &str, from: u64, below: u64) -> StoreOp {
        StoreOp::DeleteHttpQueued { namespace: namespace.into(), client: client.into(), from, below }
    }

    #[test]
    fn queued_messages_survive_reopening_and_match_the_memory_model() {
        let dir = temp_dir("http-queued");
        // A name going on from "c" with 0x00: its queue is not c's.
        let longer = "c\0\0\0\0\0\0\0\0\u{1}";
        let ops = [
            queued("", "c", 0),
            queued("", "c", 1),
            queued("", longer, 0),
            queued("", "c", 2),
            queued("alice", "c", 0),
            queued("al", "c", 0),
            queued("", "c", 3),
            picked("", "c", 0, 2),
            picked("", "d", 0, u64::MAX),
            StoreOp::DeleteUser { name: "al".into() },
        ];
        let mut model = MemoryStore::new();
        model.apply(&ops).unwrap();
        {
            let mut store = RedbStore::open(&dir).unwrap();
            assert!(store.load_http_queued().unwrap().is_empty(), "a new file holds no queued message");
            store.apply(&ops[..4]).unwrap();
            store.apply(&ops[4..]).unwrap();
        }
        let store = RedbStore::open(&dir).unwrap();
        let loaded = store.load_http_queued().unwrap();
        assert_eq!(loaded, model.load_http_queued().unwrap());
        let keys: Vec<(&str, &str, u64)> =
            loaded.iter().map(|q| (q.namespace.as_str(), q.client.as_str(), q.seq)).collect();
        assert_eq!(keys, [("", "c", 2), ("", "c", 3), ("", longer, 0), ("alice", "c", 0)]);
        assert_eq!(&*loaded[0].message.payload, b"c-2");
        assert_eq!(loaded[0].subscribers, [Arc::<str>::from("c"), Arc::from("other")]);
        assert!(store.load_values().unwrap().is_empty(), "queued messages are not values");
        drop(store);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn one_publish_queued_for_many_clients_is_stored_for_each() {
        let dir = temp_dir("http-queued-shared");
        let StoreOp::PutHttpQueued { message, subscribers, .. } = queued("", "a", 0) else { unreachable!() };
        let put = |client: &str, seq, message: &tinymq_core::Message| StoreOp::PutHttpQueued {
            namespace: "".into(),
            client: client.into(),
            seq,
            message: message.clone(),
            subscribers: subscribers.clone(),
        };
        let other = tinymq_core::Message { payload: b"other"[..].into(), ..message.clone() };
        let ops = [put("a", 0, &message), put("b", 7, &message), put("c", 1, &other), put("d", 2, &message)];
        let mut store = RedbStore::open(&dir).unwrap();
        store.apply(&ops).unwrap();
        let mut model = MemoryStore::new();
        model.apply(&ops).unwrap();
        let loaded = store.load_http_queued().unwrap();
        assert_eq!(loaded, model.load_http_queued().unwrap());
        let shown: Vec<(&str, u64, &[u8])> =
            loaded.iter().map(|q| (q.client.as_str(), q.seq, &*q.message.payload)).collect();
        assert_eq!(shown, [("a", 0, &b"a-0"[..]), ("b", 7, b"a-0"), ("c", 1, b"other"), ("d", 2, b"a-0")]);
        drop(store);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_database_from_before_queues_were_kept_opens_unchanged() {
        let dir = temp_dir("no-http-queued");
        std::fs::create_dir_all(&dir).unwrap();
        {
            // As the previous version left it: values, no queue table.
            let db = Database::create(dir.join(DATABASE_FILE)).unwrap();
            let txn = db.begin_write().unwrap();
            let values: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("values");
            let StoreOp::PutValue { message, .. } = put("", "a", "1") else { unreachable!() };
            let record = tinymq_core::store::encode_message(&message);
            txn.open_table(values).unwrap().insert(&b"\0a"[..], record.as_slice()).unwrap();
            txn.commit().unwrap();
            let read = db.begin_read().unwrap();
            assert!(read.open_table(HTTP_QUEUED).is_err(), "no such table yet");
        }
        let mut store = RedbStore::open(&dir).unwrap();
        assert!(store.load_http_queued().unwrap().is_empty());
        assert_eq!(store.load_values().unwrap().len(), 1);
        store.apply(&[queued("", "c", 0)]).unwrap();
        assert_eq!(store.load_http_queued().unwrap().len(), 1, "the first write makes the table");
        drop(store);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_damaged_queued_message_is_an_error_naming_the_file() {
        let dir = temp_dir("damaged-http-queued");
        {
            let mut store = RedbStore::open(&dir).unwrap();
            store.apply(&[queued("", "fine", 0)]).unwrap();
            let txn = store.db.as_ref().unwrap().begin_write().unwrap();
            txn.open_table(HTTP_QUEUED)
                .unwrap()
                .insert(&b"\0\0\0\0\x01c\0\0\0\0\0\0\0\x01"[..], &[1u8, 0][..])
                .unwrap();
            txn.commit().unwrap();
        }
        let error = RedbStore::open(&dir).unwrap().load_http_queued().unwrap_err();
        let text = error.to_string();
        assert!(text.contains(DATABASE_FILE) && text.contains("truncated"), "{text}");
        assert!(!text.contains('\n'), "one line: {text}");
        // A broker with HTTP refuses to start on it rather than lose the queue.
        let http = "127.0.0.1:0".parse().unwrap();
        let error = crate::Broker::builder().data_dir(&dir).listen_http(http).start().unwrap_err();
        assert!(error.to_string().contains(DATABASE_FILE), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
