//! The redb store: the broker's durable state in one file under the data
//! directory, its tables, and how each [`StoreOp`] reads and writes them.
//! Writes reach it through the writer thread ([`crate::writer`]), which
//! groups them into one transaction per commit.
//!
//! Stored values, Moustique HTTP clients (with their filters) and the
//! messages queued for their PICKUP ([`http_queued`]) go through it. Users live in a table of their own, written by `tinymq user`
//! while no broker runs and read once at start.
//!
//! # Failures
//!
//! At start, a file that cannot be opened, is held by another broker or is
//! damaged is an error naming it ([`StoreError`]); redb's own assertions on
//! a damaged file are caught and reported the same way (the process's
//! panic hook, which this crate never replaces, still sees them). A commit that
//! fails drops the database, and the next one reopens it (redb refuses all
//! work after an I/O error until it is reopened).

mod http_queued;

use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tinymq_core::auth::UserRecord;
use tinymq_core::store::{
    SessionRecord, StoredQueued, StoredSession, decode_queued, encode_queued_into, queued_key, queued_key_into,
    session_key, split_queued_key,
};
use tinymq_core::store::{Store, StoreOp, StoredValue, decode_message, encode_message, split_value_key, value_key};
use tinymq_core::store::{StoredHttpClient, StoredHttpQueued, encode_http_client, http_client_key};

/// Stored values (retained messages and PUTVAL values), by
/// `namespace 0x00 topic`.
const VALUES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("values");

/// Moustique HTTP clients (first-seen time and filters), by
/// `namespace 0x00 client`.
const HTTP_CLIENTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("http_clients");
/// Users, by name: their role and salted password hash
/// ([`UserRecord::encode`]).
const USERS: TableDefinition<&str, &[u8]> = TableDefinition::new("users");

/// Persistent sessions ([`SessionRecord`]), by `namespace 0x00 client_id`.
const SESSIONS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("sessions");

/// QoS 1 messages queued for sessions, by `namespace 0x00 client_id 0x00
/// seq` ([`queued_key`]).
const QUEUED: TableDefinition<&[u8], &[u8]> = TableDefinition::new("queued");

use self::http_queued::{HTTP_QUEUED, QueueWriter};

/// The file inside the data directory.
pub const DATABASE_FILE: &str = "tinymq.redb";

/// What went wrong with the store, naming the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The data directory could not be created.
    #[error("cannot create the data directory {path}: {source}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The data directory's path names something that is not a directory.
    #[error("the data directory {0} is not a directory")]
    NotADirectory(PathBuf),
    /// Another process has the database open.
    #[error("{0} is in use by another running broker")]
    InUse(PathBuf),
    /// The file could not be opened (permissions, a directory in its
    /// place, an I/O error).
    #[error("cannot open {path}: {source}")]
    Open {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: redb::DatabaseError,
    },
    /// The file is not a redb database, or is damaged (truncated,
    /// overwritten).
    #[error("{path} is damaged or not a tinymq database: {detail}")]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What redb found.
        detail: String,
    },
    /// A read or write failed (disk full, read-only, I/O error).
    #[error("store {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: redb::Error,
    },
    /// A stored record could not be decoded.
    #[error("{path} holds a damaged record: {source}")]
    Record {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: tinymq_core::store::RecordError,
    },
    /// A stored Moustique HTTP client could not be decoded.
    #[error("store {path}: HTTP client {client:?}: {source}")]
    HttpClientRecord {
        /// The file.
        path: PathBuf,
        /// The client's key (`namespace 0x00 name`), lossily as text and
        /// cut short.
        client: String,
        /// The cause.
        source: tinymq_core::store::RecordError,
    },
}

/// A redb database file.
pub struct RedbStore {
    /// `None` after a failed commit, until the next one reopens it: redb
    /// refuses every operation after an I/O error until it is reopened.
    db: Option<Database>,
    path: PathBuf,
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore").field("path", &self.path).finish_non_exhaustive()
    }
}

impl RedbStore {
    /// Opens (creating if needed) the database in `dir`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        if let Ok(meta) = std::fs::metadata(dir)
            && !meta.is_dir()
        {
            return Err(StoreError::NotADirectory(dir.to_owned()));
        }
        std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir { path: dir.to_owned(), source })?;
        let path = dir.join(DATABASE_FILE);
        let db = open_database(&path)?;
        Ok(RedbStore { db: Some(db), path })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io(&self, source: impl Into<redb::Error>) -> StoreError {
        StoreError::Io { path: self.path.clone(), source: source.into() }
    }

    /// The open database, reopening it after a failure.
    fn database(&mut self) -> Result<&Database, StoreError> {
        if self.db.is_none() {
            self.db = Some(open_database(&self.path)?);
            log::debug!("reopened {}", self.path.display());
        }
        Ok(self.db.as_ref().expect("opened above"))
    }

    fn write(&mut self, ops: &[StoreOp]) -> Result<(), StoreError> {
        let txn = self.database()?.begin_write().map_err(|e| self.io(e))?;
        {
            let mut values = txn.open_table(VALUES).map_err(|e| self.io(e))?;
            let mut http_clients = txn.open_table(HTTP_CLIENTS).map_err(|e| self.io(e))?;
            let mut http_queued = txn.open_table(HTTP_QUEUED).map_err(|e| self.io(e))?;
            // Opened once per commit, not per record: a commit under load
            // carries thousands of queued messages' puts and deletes.
            let mut sessions = txn.open_table(SESSIONS).map_err(|e| self.io(e))?;
            let mut queued = txn.open_table(QUEUED).map_err(|e| self.io(e))?;
            let mut queue_writer = QueueWriter::default();
            // Reused for every queued message's key and record.
            let (mut key, mut record) = (Vec::new(), Vec::new());
            for op in ops {
                match op {
                    StoreOp::PutValue { namespace, message } => {
                        let key = value_key(namespace, &message.topic);
                        values.insert(key.as_slice(), encode_message(message).as_slice()).map_err(|e| self.io(e))?;
                    }
                    StoreOp::DeleteValue { namespace, topic } => {
                        values.remove(value_key(namespace, topic).as_slice()).map_err(|e| self.io(e))?;
                    }
                    StoreOp::PutHttpClient { namespace, client, first_seen, filters } => {
                        let key = http_client_key(namespace, client);
                        let record = encode_http_client(*first_seen, filters);
                        http_clients.insert(key.as_slice(), record.as_slice()).map_err(|e| self.io(e))?;
                    }
                    StoreOp::DeleteHttpClient { namespace, client } => {
                        http_clients.remove(http_client_key(namespace, client).as_slice()).map_err(|e| self.io(e))?;
                    }
                    StoreOp::PutUser(user) => {
                        let mut users = txn.open_table(USERS).map_err(|e| self.io(e))?;
                        users.insert(user.name.as_str(), user.encode().as_slice()).map_err(|e| self.io(e))?;
                    }
                    StoreOp::DeleteUser { name } => {
                        txn.open_table(USERS).map_err(|e| self.io(e))?.remove(name.as_str()).map_err(|e| self.io(e))?;
                        // Its values are the keys from `name 0x00` up to `name 0x01`.
                        let (from, to) = (value_key(name, ""), [name.as_bytes(), &[1]].concat());
                        values.retain_in(from.as_slice()..to.as_slice(), |_, _| false).map_err(|e| self.io(e))?;
                        // And its Moustique clients and sessions, filed the same way.
                        http_clients.retain_in(from.as_slice()..to.as_slice(), |_, _| false).map_err(|e| self.io(e))?;
                        sessions.retain_in(from.as_slice()..to.as_slice(), |_, _| false).map_err(|e| self.io(e))?;
                        queued.retain_in(from.as_slice()..to.as_slice(), |_, _| false).map_err(|e| self.io(e))?;
                        http_queued.retain_in(from.as_slice()..to.as_slice(), |_, _| false).map_err(|e| self.io(e))?;
                    }
                    StoreOp::PutSession { namespace, client_id, record } => {
                        let key = session_key(namespace, client_id);
                        sessions.insert(key.as_slice(), record.encode().as_slice()).map_err(|e| self.io(e))?;
                    }
                    StoreOp::DeleteSession { namespace, client_id } => {
                        let key = session_key(namespace, client_id);
                        sessions.remove(key.as_slice()).map_err(|e| self.io(e))?;
                        // Its queued messages: every sequence number after `key 0x00`
                        // (and only those: a longer key in that range is another
                        // client's, whose id goes on with 0x00).
                        let (from, to) =
                            (queued_key(namespace, client_id, 0), queued_key(namespace, client_id, u64::MAX));
                        let len = from.len();
                        queued
                            .retain_in(from.as_slice()..=to.as_slice(), |k, _| k.len() != len)
                            .map_err(|e| self.io(e))?;
                    }
                    StoreOp::PutQueued { namespace, client_id, seq, message, retained } => {
                        queued_key_into(namespace, client_id, *seq, &mut key);
                        encode_queued_into(message, *retained, &mut record);
                        queued.insert(key.as_slice(), record.as_slice()).map_err(|e| self.io(e))?;
                    }
                    StoreOp::DeleteQueued { namespace, client_id, seq } => {
                        queued_key_into(namespace, client_id, *seq, &mut key);
                        queued.remove(key.as_slice()).map_err(|e| self.io(e))?;
                    }
                    StoreOp::PutHttpQueued { .. } | StoreOp::DeleteHttpQueued { .. } => {
                        queue_writer.write(&mut http_queued, op).map_err(|e| self.io(e))?;
                    }
                }
            }
        }
        txn.commit().map_err(|e| self.io(e))
    }

    /// Drops the database after a failure so the next commit reopens it
    /// (redb repairs it from its last commit when needed).
    fn close(&mut self) {
        if let Some(db) = self.db.take() {
            // Dropping tries a last write, which may meet the same damage.
            let _ = std::panic::catch_unwind(AssertUnwindSafe(move || drop(db)));
        }
    }
}

/// Opens or creates the database file, telling a busy, unreadable or
/// damaged file apart.
fn open_database(path: &Path) -> Result<Database, StoreError> {
    let damaged = |detail: String| StoreError::Damaged { path: path.to_owned(), detail };
    match catch_panics(|| Database::create(path)) {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(redb::DatabaseError::DatabaseAlreadyOpen)) => Err(StoreError::InUse(path.to_owned())),
        Ok(Err(redb::DatabaseError::Storage(redb::StorageError::Corrupted(detail)))) => Err(damaged(detail)),
        Ok(Err(redb::DatabaseError::Storage(redb::StorageError::Io(error))))
            if error.kind() == std::io::ErrorKind::InvalidData =>
        {
            Err(damaged(error.to_string()))
        }
        Ok(Err(source)) => Err(StoreError::Open { path: path.to_owned(), source }),
        Err(panic) => Err(damaged(panic)),
    }
}

/// Runs `f`, turning a panic in it into `Err` with the panic's message.
///
/// redb asserts rather than returns an error on some damaged files (a
/// truncated one, say); a broker must refuse such a file with an error
/// naming it, not die. Used where a damaged file is met: opening and
/// loading. The panic hook is left alone: the process's hook still sees
/// the panic (the default one prints it); a program that wants it silent
/// installs its own, as the `tinymq` command does.
fn catch_panics<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    std::panic::catch_unwind(AssertUnwindSafe(f)).map_err(|payload| panic_text(payload.as_ref()))
}

pub(crate) fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    let text = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into());
    format!("redb failed: {}", one_line(&text))
}

/// Error text fit for a log line or an HTTP answer.
pub(crate) fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl Store for RedbStore {
    type Error = StoreError;

    fn apply(&mut self, ops: &[StoreOp]) -> Result<(), StoreError> {
        match std::panic::catch_unwind(AssertUnwindSafe(|| self.write(ops))) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => {
                self.close();
                Err(error)
            }
            Err(panic) => {
                self.close();
                Err(StoreError::Damaged { path: self.path.clone(), detail: panic_text(panic.as_ref()) })
            }
        }
    }

    fn load_values(&self) -> Result<Vec<StoredValue>, StoreError> {
        self.load_table(VALUES, |key, record| {
            let record_error = |source| StoreError::Record { path: self.path.clone(), source };
            let (namespace, _) = split_value_key(key).map_err(record_error)?;
            let message = decode_message(record).map_err(record_error)?;
            Ok(StoredValue { namespace: namespace.to_owned(), message })
        })
    }

    fn load_http_clients(&self) -> Result<Vec<StoredHttpClient>, StoreError> {
        self.load_table(HTTP_CLIENTS, |key, record| {
            StoredHttpClient::decode(key, record).map_err(|source| {
                let client = String::from_utf8_lossy(key).chars().take(80).collect();
                StoreError::HttpClientRecord { path: self.path.clone(), client, source }
            })
        })
    }

    fn load_users(&self) -> Result<Vec<UserRecord>, StoreError> {
        self.load_table(USERS, |name, record| {
            UserRecord::decode(name, record).map_err(|source| StoreError::Record { path: self.path.clone(), source })
        })
    }

    fn load_sessions(&self) -> Result<Vec<StoredSession>, StoreError> {
        self.load_table(SESSIONS, |key, record| {
            let record_error = |source| StoreError::Record { path: self.path.clone(), source };
            let (namespace, client_id) = split_value_key(key).map_err(record_error)?;
            let record = SessionRecord::decode(record).map_err(record_error)?;
            Ok(StoredSession { namespace: namespace.to_owned(), client_id: client_id.to_owned(), record })
        })
    }

    fn load_http_queued(&self) -> Result<Vec<StoredHttpQueued>, StoreError> {
        self.load_table(HTTP_QUEUED, |key, record| {
            StoredHttpQueued::decode(key, record)
                .map_err(|source| StoreError::Record { path: self.path.clone(), source })
        })
    }

    fn load_queued(&self) -> Result<Vec<StoredQueued>, StoreError> {
        self.load_table(QUEUED, |key, record| {
            let record_error = |source| StoreError::Record { path: self.path.clone(), source };
            let (namespace, client_id, seq) = split_queued_key(key).map_err(record_error)?;
            let (message, retained) = decode_queued(record).map_err(record_error)?;
            let (namespace, client_id) = (namespace.to_owned(), client_id.to_owned());
            Ok(StoredQueued { namespace, client_id, seq, message, retained })
        })
    }
}

impl RedbStore {
    /// Every record of `table` (none if it does not exist yet), in key
    /// order, through `decode`. redb's assertions on a damaged file are
    /// caught and reported as [`StoreError::Damaged`].
    fn load_table<K: redb::Key + 'static, T>(
        &self,
        table: TableDefinition<K, &'static [u8]>,
        decode: impl for<'a> Fn(K::SelfType<'a>, &'a [u8]) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        let db = self.db.as_ref().ok_or_else(|| self.io(redb::StorageError::PreviousIo))?;
        let load = || {
            let txn = db.begin_read().map_err(|e| self.io(e))?;
            let entries = match txn.open_table(table) {
                Ok(table) => table,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
                Err(e) => return Err(self.io(e)),
            };
            let mut loaded = Vec::new();
            for entry in entries.iter().map_err(|e| self.io(e))? {
                let (key, record) = entry.map_err(|e| self.io(e))?;
                loaded.push(decode(key.value(), record.value())?);
            }
            Ok(loaded)
        };
        catch_panics(load).unwrap_or_else(|detail| Err(StoreError::Damaged { path: self.path.clone(), detail }))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use tinymq_core::Message;
    use tinymq_core::store::MemoryStore;

    pub(crate) fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("tinymq-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    pub(crate) fn put(namespace: &str, topic: &str, payload: &str) -> StoreOp {
        StoreOp::PutValue {
            namespace: namespace.into(),
            message: Message {
                topic: topic.into(),
                payload: payload.as_bytes().into(),
                from: "test".into(),
                updated_time: 1,
                ip: None,
            },
        }
    }

    pub(crate) fn payloads(values: Vec<StoredValue>) -> Vec<(String, String, String)> {
        values
            .into_iter()
            .map(|v| (v.namespace, v.message.topic.to_string(), String::from_utf8_lossy(&v.message.payload).into()))
            .collect()
    }

    #[test]
    fn values_survive_reopening_and_match_the_memory_model() {
        let dir = temp_dir("reopen");
        let ops = [
            put("", "a/b", "1"),
            put("alice", "a/b", "2"),
            put("", "c", "3"),
            StoreOp::DeleteValue { namespace: "".into(), topic: "c".into() },
            put("", "a/b", "4"),
        ];
        let mut model = MemoryStore::new();
        model.apply(&ops).unwrap();
        {
            let mut store = RedbStore::open(&dir).unwrap();
            assert!(store.load_values().unwrap().is_empty(), "a new file holds nothing");
            store.apply(&ops[..2]).unwrap();
            store.apply(&ops[2..]).unwrap();
        }
        let store = RedbStore::open(&dir).unwrap();
        assert_eq!(payloads(store.load_values().unwrap()), payloads(model.load_values().unwrap()));
        drop(store);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn users_survive_reopening_and_removing_one_removes_its_values() {
        let dir = temp_dir("users");
        let user = |name: &str, admin: bool| UserRecord {
            name: name.into(),
            admin,
            iterations: 600_000,
            salt: vec![5; 16],
            hash: [6; 32],
        };
        let ops = [
            StoreOp::PutUser(user("al", false)),
            StoreOp::PutUser(user("alice", false)),
            StoreOp::PutUser(user("alice", true)),
            put("al", "t", "1"),
            put("al", "u", "2"),
            put("alice", "t", "3"),
            put("", "t", "4"),
            StoreOp::DeleteUser { name: "al".into() },
        ];
        let mut model = MemoryStore::new();
        model.apply(&ops).unwrap();
        {
            let mut store = RedbStore::open(&dir).unwrap();
            assert!(store.load_users().unwrap().is_empty(), "a new file holds no users");
            store.apply(&ops).unwrap();
        }
        let store = RedbStore::open(&dir).unwrap();
        assert_eq!(store.load_users().unwrap(), [user("alice", true)], "replaced, and al removed");
        assert_eq!(store.load_users().unwrap(), model.load_users().unwrap());
        assert_eq!(payloads(store.load_values().unwrap()), payloads(model.load_values().unwrap()));
        assert_eq!(
            payloads(store.load_values().unwrap()),
            [("".into(), "t".into(), "4".into()), ("alice".into(), "t".into(), "3".into())]
        );
        drop(store);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_second_open_of_the_same_directory_is_refused() {
        let dir = temp_dir("in-use");
        let _first = RedbStore::open(&dir).unwrap();
        match RedbStore::open(&dir) {
            Err(StoreError::InUse(path)) => assert_eq!(path, dir.join(DATABASE_FILE)),
            other => panic!("expected InUse, got {other:?}"),
        }
        drop(_first);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_file_that_is_not_a_database_is_an_error_naming_it() {
        let dir = temp_dir("garbage");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(DATABASE_FILE), vec![0x5a; 8192]).unwrap();
        let error = RedbStore::open(&dir).unwrap_err();
        assert!(error.to_string().contains(DATABASE_FILE), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_truncated_file_is_refused_naming_it_without_a_panic() {
        let dir = temp_dir("truncated");
        {
            let mut store = RedbStore::open(&dir).unwrap();
            let ops: Vec<StoreOp> = (0..200).map(|i| put("", &format!("t/{i}"), &"x".repeat(300))).collect();
            store.apply(&ops).unwrap();
        }
        let path = dir.join(DATABASE_FILE);
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        file.set_len(4096).unwrap();
        drop(file);
        match RedbStore::open(&dir) {
            Err(error @ StoreError::Damaged { .. }) => {
                assert!(error.to_string().starts_with(&path.display().to_string()), "{error}")
            }
            other => panic!("expected Damaged, got {other:?}"),
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_store_closed_after_a_failure_reopens_for_the_next_commit() {
        let dir = temp_dir("reopen-after-failure");
        let mut store = RedbStore::open(&dir).unwrap();
        store.apply(&[put("", "a", "1")]).unwrap();
        store.close();
        store.apply(&[put("", "b", "2")]).unwrap();
        assert_eq!(store.load_values().unwrap().len(), 2);
        drop(store);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn put_client(namespace: &str, client: &str, filters: &[&str]) -> StoreOp {
        StoreOp::PutHttpClient {
            namespace: namespace.into(),
            client: client.into(),
            first_seen: 42,
            filters: filters.iter().map(|f| f.to_string()).collect(),
        }
    }

    #[test]
    fn sessions_and_queued_messages_survive_reopening_and_match_the_memory_model() {
        use tinymq_core::Qos;
        use tinymq_core::store::{SessionRecord, WillMessage};
        use tinymq_core::topic::{Filter, TopicLimits};
        let dir = temp_dir("sessions");
        let session = |client: &str, expiry_secs| StoreOp::PutSession {
            namespace: "".into(),
            client_id: client.into(),
            record: SessionRecord {
                expiry_secs,
                offline_since: 7,
                subscriptions: vec![(Filter::new("a/#", &TopicLimits::default()).unwrap(), Qos::AtLeastOnce)],
                will: Some(WillMessage {
                    topic: "w".into(),
                    payload: b"x"[..].into(),
                    retain: true,
                    qos: Qos::AtMostOnce,
                }),
            },
        };
        let queued = |client: &str, seq| {
            let StoreOp::PutValue { message, .. } = put("", "a/b", &format!("{client}-{seq}")) else { unreachable!() };
            StoreOp::PutQueued { namespace: "".into(), client_id: client.into(), seq, message, retained: seq == 2 }
        };
        let delete_queued =
            |client: &str, seq| StoreOp::DeleteQueued { namespace: "".into(), client_id: client.into(), seq };
        // A client id that goes on from "b" with 0x00: its queue is not b's.
        let b2 = "b\0\0\0\0\0\0\0\0\u{1}";
        let ops = [
            session("a", 60),
            session("b", 60),
            session(b2, 60),
            queued("a", 1),
            queued("a", 2),
            queued("b", 1),
            queued(b2, 1),
            delete_queued("a", 1),
            session("a", 120),
            StoreOp::DeleteSession { namespace: "".into(), client_id: "b".into() },
        ];
        let mut model = MemoryStore::new();
        model.apply(&ops).unwrap();
        {
            let mut store = RedbStore::open(&dir).unwrap();
            assert!(store.load_sessions().unwrap().is_empty() && store.load_queued().unwrap().is_empty());
            store.apply(&ops[..5]).unwrap();
            store.apply(&ops[5..]).unwrap();
        }
        let store = RedbStore::open(&dir).unwrap();
        assert_eq!(store.load_sessions().unwrap(), model.load_sessions().unwrap());
        assert_eq!(store.load_queued().unwrap(), model.load_queued().unwrap());
        let sessions: Vec<(String, u32)> =
            store.load_sessions().unwrap().into_iter().map(|s| (s.client_id, s.record.expiry_secs)).collect();
        assert_eq!(sessions, [("a".into(), 120), (b2.into(), 60)]);
        // Kept with whether it was published retained (every second one).
        let queued: Vec<(String, u64, bool)> =
            store.load_queued().unwrap().into_iter().map(|q| (q.client_id, q.seq, q.retained)).collect();
        assert_eq!(queued, [("a".into(), 2, true), (b2.into(), 1, false)]);
        drop(store);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn http_clients_survive_reopening_and_match_the_memory_model() {
        let dir = temp_dir("clients");
        let ops = [
            put_client("", "a", &["x/+"]),
            put_client("", "a", &["x/+", "y/#"]),
            put_client("alice", "a", &["z"]),
            put_client("", "b", &["w"]),
            put("", "x/1", "a value"),
            StoreOp::DeleteHttpClient { namespace: "".into(), client: "b".into() },
        ];
        let mut model = MemoryStore::new();
        model.apply(&ops).unwrap();
        {
            let mut store = RedbStore::open(&dir).unwrap();
            assert!(store.load_http_clients().unwrap().is_empty(), "a new file holds no client");
            store.apply(&ops[..3]).unwrap();
            store.apply(&ops[3..]).unwrap();
        }
        let store = RedbStore::open(&dir).unwrap();
        let loaded = store.load_http_clients().unwrap();
        assert_eq!(loaded, model.load_http_clients().unwrap());
        let shown: Vec<(&str, &str, Vec<&str>)> = loaded
            .iter()
            .map(|c| (c.namespace.as_str(), c.client.as_str(), c.filters.iter().map(|f| f.as_str()).collect()))
            .collect();
        assert_eq!(shown, [("", "a", vec!["x/+", "y/#"]), ("alice", "a", vec!["z"])]);
        assert_eq!(store.load_values().unwrap().len(), 1, "values are apart from clients");
        drop(store);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_damaged_http_client_record_is_an_error_naming_the_file_and_client() {
        let dir = temp_dir("damaged-client");
        {
            let mut store = RedbStore::open(&dir).unwrap();
            store.apply(&[put_client("", "fine", &["a"])]).unwrap();
            // Damage one record the way a bad disk or a bug might.
            let txn = store.db.as_ref().unwrap().begin_write().unwrap();
            txn.open_table(HTTP_CLIENTS).unwrap().insert(&b"\0broken"[..], &[1u8, 0, 0][..]).unwrap();
            txn.commit().unwrap();
        }
        let error = RedbStore::open(&dir).unwrap().load_http_clients().unwrap_err();
        let text = error.to_string();
        assert!(text.contains(DATABASE_FILE) && text.contains("broken") && text.contains("truncated"), "{text}");
        assert!(!text.contains('\n'), "one line: {text}");
        // A broker refuses to start on it rather than start without clients.
        let error = crate::Broker::builder().data_dir(&dir).start().unwrap_err();
        assert!(error.to_string().contains(DATABASE_FILE), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
