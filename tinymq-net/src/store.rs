//! The redb store: the broker's durable state in one file under the data
//! directory, and a writer thread that groups writes into one transaction
//! per commit interval so no event loop ever waits on the disk.
//!
//! Stored values go through it. Users live in a table of their own, written
//! by `tinymq user` while no broker runs and read once at start.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tinymq_core::auth::UserRecord;
use tinymq_core::store::{Store, StoreOp, StoredValue, decode_message, encode_message, split_value_key, value_key};

/// Stored values (retained messages and PUTVAL values), by
/// `namespace 0x00 topic`.
const VALUES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("values");

/// Users, by name: their role and salted password hash
/// ([`UserRecord::encode`]).
const USERS: TableDefinition<&str, &[u8]> = TableDefinition::new("users");

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
    /// Another process has the database open.
    #[error("{0} is in use by another running broker")]
    InUse(PathBuf),
    /// The file could not be opened or read (unreadable, corrupted, or not
    /// a tinymq database).
    #[error("cannot open {path}: {source}")]
    Open {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: redb::DatabaseError,
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
    #[error("store {path}: {source}")]
    Record {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: tinymq_core::store::RecordError,
    },
}

/// A redb database file.
pub struct RedbStore {
    db: Database,
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
        std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir { path: dir.to_owned(), source })?;
        let path = dir.join(DATABASE_FILE);
        let db = Database::create(&path).map_err(|source| match source {
            redb::DatabaseError::DatabaseAlreadyOpen => StoreError::InUse(path.clone()),
            source => StoreError::Open { path: path.clone(), source },
        })?;
        Ok(RedbStore { db, path })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io(&self, source: impl Into<redb::Error>) -> StoreError {
        StoreError::Io { path: self.path.clone(), source: source.into() }
    }
}

impl Store for RedbStore {
    type Error = StoreError;

    fn apply(&mut self, ops: &[StoreOp]) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(|e| self.io(e))?;
        {
            let mut values = txn.open_table(VALUES).map_err(|e| self.io(e))?;
            for op in ops {
                match op {
                    StoreOp::PutValue { namespace, message } => {
                        let key = value_key(namespace, &message.topic);
                        values.insert(key.as_slice(), encode_message(message).as_slice()).map_err(|e| self.io(e))?;
                    }
                    StoreOp::DeleteValue { namespace, topic } => {
                        values.remove(value_key(namespace, topic).as_slice()).map_err(|e| self.io(e))?;
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
                    }
                }
            }
        }
        txn.commit().map_err(|e| self.io(e))
    }

    fn load_values(&self) -> Result<Vec<StoredValue>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.io(e))?;
        let values = match txn.open_table(VALUES) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(self.io(e)),
        };
        let record_error = |source| StoreError::Record { path: self.path.clone(), source };
        let mut loaded = Vec::new();
        for entry in values.iter().map_err(|e| self.io(e))? {
            let (key, record) = entry.map_err(|e| self.io(e))?;
            let (namespace, _) = split_value_key(key.value()).map_err(record_error)?;
            let message = decode_message(record.value()).map_err(record_error)?;
            loaded.push(StoredValue { namespace: namespace.to_owned(), message });
        }
        Ok(loaded)
    }

    fn load_users(&self) -> Result<Vec<UserRecord>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.io(e))?;
        let users = match txn.open_table(USERS) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(self.io(e)),
        };
        let mut loaded = Vec::new();
        for entry in users.iter().map_err(|e| self.io(e))? {
            let (name, record) = entry.map_err(|e| self.io(e))?;
            let user = UserRecord::decode(name.value(), record.value())
                .map_err(|source| StoreError::Record { path: self.path.clone(), source })?;
            loaded.push(user);
        }
        Ok(loaded)
    }
}

/// When a write is durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// Committed before it is acknowledged: the writer commits as soon as
    /// it can, grouping whatever arrived meanwhile.
    Immediate,
    /// Committed within this interval: a crash loses at most its writes.
    Batched(Duration),
}

/// A ticket for a submitted write; [`StoreWriter::wait`] returns once it
/// is committed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[must_use]
pub struct Ticket(u64);

/// Called once a write is committed, or with the error of the commit that
/// failed.
type Notify = Box<dyn FnOnce(Result<(), String>) + Send>;

#[derive(Default)]
struct Queue {
    ops: Vec<StoreOp>,
    /// Callbacks waiting for tickets to commit, in ticket order.
    waiters: Vec<(u64, Notify)>,
    /// Tickets handed out / committed so far.
    submitted: u64,
    committed: u64,
    commits: u64,
    /// The last failed commit: the tickets it carried (up to this one)
    /// and its error.
    failed: Option<(u64, String)>,
    stopping: bool,
}

struct WriterShared {
    queue: Mutex<Queue>,
    /// Wakes the writer (work) and waiters (commits).
    work: Condvar,
    done: Condvar,
}

/// The store's own thread: takes writes from any thread and commits them in
/// groups, one transaction per group.
pub struct StoreWriter {
    shared: Arc<WriterShared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for StoreWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreWriter").finish_non_exhaustive()
    }
}

impl StoreWriter {
    /// Starts the writer thread over `store`.
    pub fn spawn<S: Store + Send + 'static>(mut store: S, durability: Durability) -> std::io::Result<Self> {
        let shared = Arc::new(WriterShared { queue: Mutex::default(), work: Condvar::new(), done: Condvar::new() });
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new().name("tinymq-store".into()).spawn(move || {
            let shared = thread_shared;
            let mut batch = Vec::new();
            loop {
                let mut queue = shared.queue.lock();
                while queue.ops.is_empty() && !queue.stopping {
                    shared.work.wait(&mut queue);
                }
                if queue.ops.is_empty() && queue.stopping {
                    return;
                }
                if let (Durability::Batched(interval), false) = (durability, queue.stopping) {
                    // Let the interval fill the batch: one commit for all.
                    let until = Instant::now() + interval;
                    while !queue.stopping && !shared.work.wait_until(&mut queue, until).timed_out() {}
                }
                std::mem::swap(&mut batch, &mut queue.ops);
                let through = queue.submitted;
                drop(queue);
                let result = store.apply(&batch);
                batch.clear();
                let mut queue = shared.queue.lock();
                let ready: Vec<(u64, Notify)> = match &result {
                    Ok(()) => {
                        queue.committed = through;
                        queue.commits += 1;
                        let split = queue.waiters.partition_point(|(ticket, _)| *ticket <= through);
                        queue.waiters.drain(..split).collect()
                    }
                    Err(error) => {
                        log::error!("store commit failed: {error}");
                        queue.failed = Some((through, error.to_string()));
                        let split = queue.waiters.partition_point(|(ticket, _)| *ticket <= through);
                        queue.waiters.drain(..split).collect()
                    }
                };
                drop(queue);
                shared.done.notify_all();
                let outcome = result.map_err(|e| e.to_string());
                for (_, notify) in ready {
                    notify(outcome.clone());
                }
            }
        })?;
        Ok(StoreWriter { shared, thread: Mutex::new(Some(thread)) })
    }

    /// Queues a write; it is committed with the next group.
    pub fn submit(&self, op: StoreOp) -> Ticket {
        let mut queue = self.shared.queue.lock();
        queue.ops.push(op);
        queue.submitted += 1;
        let ticket = Ticket(queue.submitted);
        drop(queue);
        self.shared.work.notify_one();
        ticket
    }

    /// Waits until `ticket`'s write is committed; the error of the commit
    /// that failed otherwise.
    pub fn wait(&self, ticket: Ticket) -> Result<(), String> {
        let mut queue = self.shared.queue.lock();
        loop {
            if queue.committed >= ticket.0 {
                return Ok(());
            }
            if let Some((through, error)) = &queue.failed
                && *through >= ticket.0
            {
                return Err(error.clone());
            }
            self.shared.done.wait(&mut queue);
        }
    }

    /// Calls `notify` once `ticket`'s write is committed (at once if it
    /// is), or with the error of the commit that failed. It runs on the
    /// writer's thread: it must only hand the news on.
    pub fn on_commit(&self, ticket: Ticket, notify: impl FnOnce(Result<(), String>) + Send + 'static) {
        let mut queue = self.shared.queue.lock();
        let now = if queue.committed >= ticket.0 {
            Some(Ok(()))
        } else {
            queue.failed.as_ref().filter(|(through, _)| *through >= ticket.0).map(|(_, e)| Err(e.clone()))
        };
        match now {
            Some(result) => {
                drop(queue);
                notify(result);
            }
            None => {
                // Tickets are handed out in order and callers register soon
                // after submitting, so this keeps the list sorted but for
                // rare races, which the insert position handles.
                let at = queue.waiters.partition_point(|(t, _)| *t <= ticket.0);
                queue.waiters.insert(at, (ticket.0, Box::new(notify)));
            }
        }
    }

    /// Commits made so far (for statistics and tests).
    pub fn commits(&self) -> u64 {
        self.shared.queue.lock().commits
    }

    /// Commits everything queued and stops the thread. Later submits are
    /// not committed.
    pub fn shutdown(&self) {
        self.shared.queue.lock().stopping = true;
        self.shared.work.notify_all();
        if let Some(thread) = self.thread.lock().take() {
            let _ = thread.join();
        }
    }
}

impl Drop for StoreWriter {
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tinymq_core::Message;
    use tinymq_core::store::MemoryStore;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("tinymq-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn put(namespace: &str, topic: &str, payload: &str) -> StoreOp {
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

    fn payloads(values: Vec<StoredValue>) -> Vec<(String, String, String)> {
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
    fn the_writer_groups_writes_and_waits_for_commits() {
        let dir = temp_dir("writer");
        let store = RedbStore::open(&dir).unwrap();
        let writer = StoreWriter::spawn(store, Durability::Batched(Duration::from_millis(200))).unwrap();
        let tickets: Vec<Ticket> = (0..100).map(|i| writer.submit(put("", &format!("t/{i}"), "x"))).collect();
        writer.wait(*tickets.last().unwrap()).unwrap();
        // 100 writes submitted well within one interval: far fewer commits.
        assert!(writer.commits() <= 3, "{} commits", writer.commits());
        writer.shutdown();
        assert_eq!(RedbStore::open(&dir).unwrap().load_values().unwrap().len(), 100);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn shutdown_commits_what_is_queued() {
        let dir = temp_dir("flush");
        let writer =
            StoreWriter::spawn(RedbStore::open(&dir).unwrap(), Durability::Batched(Duration::from_secs(60))).unwrap();
        let _ = writer.submit(put("", "last", "words"));
        writer.shutdown();
        let values = RedbStore::open(&dir).unwrap().load_values().unwrap();
        assert_eq!(payloads(values), [("".into(), "last".into(), "words".into())]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
