//! The store's writer thread: it groups writes into one transaction per
//! commit interval ([`Durability`]) so no event loop ever waits on the
//! disk, keeps at most one queued write per record, and tells each
//! writer when its write is durable ([`Ticket`]).
//!
//! # Failures
//!
//! A failed commit (disk full, I/O error) keeps its writes queued and is
//! retried with a growing delay; the store reopens its database first.
//! The error is logged once per distinct error and shown by
//! [`StoreWriter::failing`] until a commit succeeds again. A panic inside a
//! commit fails that commit, not the thread.

mod pending;

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use tinymq_core::metrics::DurationHistogram;
use tinymq_core::store::{Store, StoreOp};

use self::pending::Pending;
use crate::store::{one_line, panic_text};

/// The first retry of a failed commit waits this long; each further
/// failure doubles it, up to [`RETRY_MAX`].
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(2);

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
    /// The writes the next commit carries.
    pending: Pending,
    /// Under `batched`, writes held back for half an interval before they
    /// join `pending`: an acknowledgement arriving meanwhile cancels its
    /// queued message's put here or in `pending`, so that a subscriber
    /// that keeps up costs the disk nothing. Empty under `immediate`.
    fresh: Pending,
    /// When the oldest write in `fresh` arrived.
    fresh_oldest: Option<Instant>,
    /// Every ticket up to this one is in `pending` (or committed).
    due_through: u64,
    /// When `pending` is to be committed under `batched`.
    due_at: Option<Instant>,
    /// Writes go through `fresh` (`batched`).
    hold: bool,
    /// Callbacks waiting for tickets to commit, in ticket order.
    waiters: Vec<(u64, Notify)>,
    /// Callbacks waiting for tickets to be durable, in ticket order: told
    /// by the commit that succeeds (a failed one keeps them for the
    /// retry), or when the writer stops.
    durable_waiters: Vec<(u64, Notify)>,
    /// Tickets handed out so far; every ticket up to `committed` is
    /// durable (its write, or a later one to the same record, committed).
    submitted: u64,
    committed: u64,
    commits: u64,
    failed_commits: u64,
    /// Records written by successful commits.
    records_written: u64,
    /// How long successful commits took.
    commit_seconds: DurationHistogram,
    /// The last failed commit: the tickets it carried (up to this one)
    /// and its error.
    failed: Option<(u64, String)>,
    /// The error of the last commit while it is the latest attempt.
    failing: Option<String>,
    stopping: bool,
    /// The thread has ended: nothing more will commit.
    stopped: bool,
}

impl Queue {
    /// Queues `op` and hands out its ticket.
    fn push(&mut self, op: StoreOp) -> u64 {
        self.submitted += 1;
        // A failing store commits everything at once when it recovers.
        if !self.hold || self.failing.is_some() {
            self.pending.push(op);
            return self.submitted;
        }
        if self.fresh.is_empty() {
            self.fresh_oldest = Some(Instant::now());
        }
        // An acknowledgement whose message's put waits in `pending`
        // cancels it there, unless something in `fresh` stands between.
        if matches!(op, StoreOp::DeleteQueued { .. })
            && self.fresh.reaches_back()
            && let Some(record) = op.record()
            && !self.fresh.holds(&record)
            && self.pending.cancel_queued_put(&record)
        {
            self.fresh.hold_ticket();
        } else {
            self.fresh.push(op);
        }
        self.submitted
    }

    /// Whether nothing waits for a commit.
    fn idle(&self) -> bool {
        self.pending.is_empty() && self.fresh.is_empty()
    }

    /// Moves the held writes into the (empty) `pending`: they are due
    /// half an interval from now, and no later than one interval after
    /// the oldest of them arrived.
    fn shift(&mut self, now: Instant, interval: Duration) {
        debug_assert!(self.pending.is_empty());
        std::mem::swap(&mut self.pending, &mut self.fresh);
        self.due_through = self.submitted;
        self.due_at = Some((now + interval / 2).min(self.fresh_oldest.take().unwrap_or(now) + interval));
    }

    /// Moves everything queued into `batch`; the ticket it carries up to.
    fn take_all(&mut self, batch: &mut Vec<StoreOp>) -> u64 {
        self.pending.take(batch);
        let mut fresh = Vec::new();
        self.fresh.take(&mut fresh);
        batch.append(&mut fresh);
        self.fresh_oldest = None;
        self.due_at = None;
        self.due_through = self.submitted;
        self.submitted
    }

    /// What a waiter on `ticket` is told now, if its fate is known.
    fn outcome(&self, ticket: u64) -> Option<Result<(), String>> {
        if self.committed >= ticket {
            return Some(Ok(()));
        }
        if let Some((through, error)) = &self.failed
            && *through >= ticket
        {
            return Some(Err(error.clone()));
        }
        self.stopped.then(|| Err("the store has stopped".to_owned()))
    }
}

struct WriterShared {
    queue: Mutex<Queue>,
    /// Wakes the writer (work) and waiters (commits).
    work: Condvar,
    done: Condvar,
    /// Mirrors `Queue::failing.is_some()`, read on every batched write.
    failing: AtomicBool,
}

/// The store writer's counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WriterFigures {
    /// Writes submitted.
    pub submitted: u64,
    /// Writes made durable (their own commit, or that of a later write to
    /// the same record which replaced them in the queue).
    pub committed: u64,
    /// Successful commits (transactions).
    pub commits: u64,
    /// Commits that failed.
    pub failed_commits: u64,
    /// Records written by successful commits.
    pub records_written: u64,
    /// Records queued for the next commit (at most one per record).
    pub pending: u64,
    /// The error of the last commit, while no later one has succeeded.
    pub failing: Option<String>,
    /// How long successful commits took.
    pub commit_seconds: DurationHistogram,
}

/// The store's own thread: takes writes from any thread and commits them in
/// groups, one transaction per group.
///
/// Writes queued for the same record replace each other (last write wins),
/// so the queue holds at most one write per record whatever the update
/// rate. A [`Ticket`] whose write was replaced is committed with the write
/// that replaced it. A failed commit tells the waiters of its tickets, and
/// its writes stay queued (behind nothing, replaced by newer ones) for a
/// retry after a growing delay, until a commit succeeds.
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
        let queue = Queue { hold: matches!(durability, Durability::Batched(_)), ..Queue::default() };
        let shared = Arc::new(WriterShared {
            queue: Mutex::new(queue),
            work: Condvar::new(),
            done: Condvar::new(),
            failing: AtomicBool::new(false),
        });
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("tinymq-store".into())
            .spawn(move || write_loop(&mut store, &thread_shared, durability))?;
        Ok(StoreWriter { shared, thread: Mutex::new(Some(thread)) })
    }

    /// Queues a write; it is committed with the next group.
    pub fn submit(&self, op: StoreOp) -> Ticket {
        let mut queue = self.shared.queue.lock();
        let was_empty = queue.idle();
        let ticket = Ticket(queue.push(op));
        drop(queue);
        // The writer waits for work only on an empty queue; otherwise it
        // is committing or letting the interval fill the batch.
        if was_empty {
            self.shared.work.notify_one();
        }
        ticket
    }

    /// Queues writes in order, taking the queue's lock once for them all
    /// (a publish to many Moustique clients makes many); the ticket of the
    /// last, which covers them all, if there was any.
    pub fn submit_all(&self, ops: impl IntoIterator<Item = StoreOp>) -> Option<Ticket> {
        let mut ops = ops.into_iter().peekable();
        ops.peek()?;
        let mut queue = self.shared.queue.lock();
        let was_empty = queue.idle();
        for op in ops {
            queue.push(op);
        }
        let ticket = Ticket(queue.submitted);
        drop(queue);
        if was_empty {
            self.shared.work.notify_one();
        }
        Some(ticket)
    }

    /// Waits until `ticket`'s write is committed; the error of the commit
    /// that failed otherwise.
    pub fn wait(&self, ticket: Ticket) -> Result<(), String> {
        let mut queue = self.shared.queue.lock();
        loop {
            if let Some(outcome) = queue.outcome(ticket.0) {
                return outcome;
            }
            self.shared.done.wait(&mut queue);
        }
    }

    /// Calls `notify` once `ticket`'s write is committed (at once if it
    /// is), or with the error of the commit that failed. It runs on the
    /// writer's thread: it must only hand the news on.
    pub fn on_commit(&self, ticket: Ticket, notify: impl FnOnce(Result<(), String>) + Send + 'static) {
        let mut queue = self.shared.queue.lock();
        match queue.outcome(ticket.0) {
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

    /// Calls `notify` once `ticket`'s write is committed (at once if it
    /// is). Unlike [`Self::on_commit`], a failed commit does not tell it:
    /// the write stays queued and `notify` waits for the retry that
    /// commits it. It is told an error only when the writer stops first.
    /// It runs on the writer's thread: it must only hand the news on.
    pub fn on_durable(&self, ticket: Ticket, notify: impl FnOnce(Result<(), String>) + Send + 'static) {
        let mut queue = self.shared.queue.lock();
        let now = if queue.committed >= ticket.0 {
            Some(Ok(()))
        } else {
            queue.stopped.then(|| Err("the store has stopped".to_owned()))
        };
        match now {
            Some(result) => {
                drop(queue);
                notify(result);
            }
            None => {
                let at = queue.durable_waiters.partition_point(|(t, _)| *t <= ticket.0);
                queue.durable_waiters.insert(at, (ticket.0, Box::new(notify)));
            }
        }
    }

    /// The error of the last commit while no later one has succeeded:
    /// writes made meanwhile are not durable (yet).
    pub fn failing(&self) -> Option<String> {
        if !self.shared.failing.load(Ordering::Acquire) {
            return None;
        }
        self.shared.queue.lock().failing.clone()
    }

    /// Commits made so far (the broker reads them from [`Self::figures`]).
    #[cfg(test)]
    pub fn commits(&self) -> u64 {
        self.shared.queue.lock().commits
    }

    /// The writer's counters.
    pub fn figures(&self) -> WriterFigures {
        let queue = self.shared.queue.lock();
        WriterFigures {
            submitted: queue.submitted,
            committed: queue.committed,
            commits: queue.commits,
            failed_commits: queue.failed_commits,
            records_written: queue.records_written,
            pending: (queue.pending.len() + queue.fresh.len()) as u64,
            failing: queue.failing.clone(),
            commit_seconds: queue.commit_seconds.clone(),
        }
    }

    /// Commits everything queued and stops the thread. Later submits are
    /// not committed. If that last commit fails, its writes are lost and
    /// the error is logged.
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

/// The writer thread: wait for work, let the interval (or the retry delay)
/// fill the batch, commit it, tell the waiters.
fn write_loop<S: Store>(store: &mut S, shared: &WriterShared, durability: Durability) {
    let mut batch = Vec::new();
    let mut retry = RETRY_MIN;
    // The last error logged: a failure that repeats is logged once.
    let mut logged: Option<String> = None;
    let mut queue = shared.queue.lock();
    loop {
        while queue.idle() && !queue.stopping {
            shared.work.wait(&mut queue);
        }
        if queue.idle() {
            break;
        }
        let now = Instant::now();
        let until = match (durability, queue.failing.is_some()) {
            (Durability::Batched(interval), true) => Some(now + interval.max(retry)),
            (Durability::Immediate, true) => Some(now + retry),
            // Held writes only: they become due half an interval after
            // the first arrived.
            (Durability::Batched(interval), false) if queue.pending.is_empty() && !queue.stopping => {
                let until = queue.fresh_oldest.unwrap_or(now) + interval / 2;
                while !queue.stopping && !shared.work.wait_until(&mut queue, until).timed_out() {}
                if !queue.stopping {
                    queue.shift(Instant::now(), interval);
                }
                continue;
            }
            (Durability::Batched(_), false) => queue.due_at,
            (Durability::Immediate, false) => None,
        };
        if let Some(until) = until {
            while !queue.stopping && !shared.work.wait_until(&mut queue, until).timed_out() {}
        }
        let through = match durability {
            Durability::Batched(interval) if !queue.stopping && queue.failing.is_none() => {
                // Commit what is due; what was held meanwhile is due next.
                queue.pending.take(&mut batch);
                let through = queue.due_through;
                queue.shift(Instant::now(), interval);
                through
            }
            _ => queue.take_all(&mut batch),
        };
        let stopping = queue.stopping;
        drop(queue);
        let started = Instant::now();
        let result = match std::panic::catch_unwind(AssertUnwindSafe(|| {
            // Every write cancelled: the tickets commit with no transaction.
            if batch.is_empty() { Ok(()) } else { store.apply(&batch) }
        })) {
            Ok(result) => result.map_err(|error| one_line(&error.to_string())),
            Err(panic) => Err(panic_text(panic.as_ref())),
        };
        queue = shared.queue.lock();
        let split = queue.waiters.partition_point(|(ticket, _)| *ticket <= through);
        let mut ready: Vec<(u64, Notify)> = queue.waiters.drain(..split).collect();
        let outcome = match result {
            Ok(()) => {
                queue.committed = through;
                let durable = queue.durable_waiters.partition_point(|(ticket, _)| *ticket <= through);
                let durable: Vec<(u64, Notify)> = queue.durable_waiters.drain(..durable).collect();
                ready.extend(durable);
                queue.commits += 1;
                queue.commit_seconds.record(started.elapsed());
                queue.records_written += batch.len() as u64;
                batch.clear();
                if let Some(error) = queue.failing.take() {
                    log::warn!("store commits succeed again after failing with: {error}");
                }
                logged = None;
                retry = RETRY_MIN;
                Ok(())
            }
            Err(error) => {
                queue.failed_commits += 1;
                queue.failed = Some((through, error.clone()));
                if stopping {
                    log::error!("store commit failed while stopping; {} writes are lost: {error}", batch.len());
                    batch.clear();
                } else {
                    if logged.as_ref() != Some(&error) {
                        log::error!("store commit failed; its writes stay queued and are retried: {error}");
                        logged = Some(error.clone());
                    }
                    queue.pending.requeue(&mut batch);
                    // Until a commit succeeds nothing is held back: later
                    // writes queue behind the held ones.
                    if !queue.fresh.is_empty() {
                        let mut fresh = Vec::new();
                        queue.fresh.take(&mut fresh);
                        for op in fresh {
                            let _ = queue.pending.push(op);
                        }
                        // Its tickets (a cancelled write's too) wait for
                        // the retry.
                        queue.pending.hold_ticket();
                    }
                    queue.fresh_oldest = None;
                    retry = (retry * 2).min(RETRY_MAX);
                }
                queue.failing = Some(error.clone());
                Err(error)
            }
        };
        shared.failing.store(queue.failing.is_some(), Ordering::Release);
        let stop = stopping && outcome.is_err();
        drop(queue);
        shared.done.notify_all();
        for (_, notify) in ready {
            notify(outcome.clone());
        }
        queue = shared.queue.lock();
        if stop {
            break;
        }
    }
    queue.stopped = true;
    let mut left: Vec<(u64, Notify)> = queue.waiters.drain(..).collect();
    left.append(&mut queue.durable_waiters);
    drop(queue);
    shared.done.notify_all();
    for (_, notify) in left {
        notify(Err("the store has stopped".to_owned()));
    }
}

#[cfg(test)]
mod tests {
    use tinymq_core::auth::UserRecord;
    use tinymq_core::store::{StoredHttpClient, StoredValue};

    use super::*;
    use crate::store::RedbStore;
    use crate::store::tests::{payloads, put, temp_dir};

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

    /// A store that records each batch, and fails or panics on demand.
    #[derive(Clone, Default)]
    struct Scripted {
        batches: Arc<Mutex<Vec<Vec<StoreOp>>>>,
        fail: Arc<AtomicBool>,
        panic: Arc<AtomicBool>,
        /// Held by a test to hold every commit attempt at its start.
        gate: Arc<Mutex<()>>,
    }

    impl Store for Scripted {
        type Error = std::io::Error;

        fn apply(&mut self, ops: &[StoreOp]) -> Result<(), std::io::Error> {
            drop(self.gate.lock());
            assert!(!self.panic.load(Ordering::SeqCst), "scripted panic");
            if self.fail.load(Ordering::SeqCst) {
                return Err(std::io::Error::other("No space left on device (scripted)"));
            }
            self.batches.lock().push(ops.to_vec());
            Ok(())
        }

        fn load_values(&self) -> Result<Vec<StoredValue>, std::io::Error> {
            Ok(Vec::new())
        }

        fn load_http_clients(&self) -> Result<Vec<StoredHttpClient>, std::io::Error> {
            Ok(Vec::new())
        }

        fn load_users(&self) -> Result<Vec<UserRecord>, std::io::Error> {
            Ok(Vec::new())
        }
    }

    fn delete(namespace: &str, topic: &str) -> StoreOp {
        StoreOp::DeleteValue { namespace: namespace.into(), topic: topic.into() }
    }

    /// (namespace, topic, payload or "deleted") of each op.
    fn described(ops: &[StoreOp]) -> Vec<(String, String, String)> {
        ops.iter()
            .map(|op| match op {
                StoreOp::PutValue { namespace, message } => (
                    namespace.clone(),
                    message.topic.to_string(),
                    String::from_utf8_lossy(&message.payload).into_owned(),
                ),
                StoreOp::DeleteValue { namespace, topic } => (namespace.clone(), topic.clone(), "deleted".into()),
                StoreOp::PutHttpClient { namespace, client, .. } => {
                    (namespace.clone(), client.clone(), "http client".into())
                }
                StoreOp::DeleteHttpClient { namespace, client } => {
                    (namespace.clone(), client.clone(), "http client deleted".into())
                }
                StoreOp::PutUser(user) => (String::new(), user.name.clone(), "user".into()),
                StoreOp::DeleteUser { name } => (String::new(), name.clone(), "user deleted".into()),
                op => (String::new(), String::new(), format!("{op:?}")),
            })
            .collect()
    }

    fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !condition() {
            assert!(Instant::now() < deadline, "still waiting for {what}");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn queued(seq: u64, put: bool) -> StoreOp {
        let (namespace, client_id) = ("".to_owned(), "sub".to_owned());
        if !put {
            return StoreOp::DeleteQueued { namespace, client_id, seq };
        }
        let message = tinymq_core::Message {
            topic: "q".into(),
            payload: b"m"[..].into(),
            from: "pub".into(),
            updated_time: 0,
            ip: None,
        };
        StoreOp::PutQueued { namespace, client_id, seq, message, retained: false }
    }

    #[test]
    fn a_queued_message_acknowledged_before_its_commit_is_never_written() {
        let store = Scripted::default();
        let writer = StoreWriter::spawn(store.clone(), Durability::Batched(Duration::from_secs(60))).unwrap();
        let tickets = [
            writer.submit(queued(1, true)),
            writer.submit(queued(2, true)),
            writer.submit(queued(1, false)),
            // A delete of a message stored by an earlier commit is kept.
            writer.submit(queued(0, false)),
        ];
        assert_eq!(writer.figures().pending, 2);
        writer.shutdown();
        for ticket in tickets {
            assert_eq!(writer.wait(ticket), Ok(()));
        }
        assert_eq!(*store.batches.lock(), [vec![queued(2, true), queued(0, false)]]);
        // Nothing left to write at all: the tickets commit with no
        // transaction.
        let store = Scripted::default();
        let writer = StoreWriter::spawn(store.clone(), Durability::Batched(Duration::from_secs(60))).unwrap();
        let tickets = [writer.submit(queued(5, true)), writer.submit(queued(5, false))];
        assert_eq!(writer.figures().pending, 0);
        writer.shutdown();
        for ticket in tickets {
            assert_eq!(writer.wait(ticket), Ok(()));
        }
        assert!(store.batches.lock().is_empty());
    }

    #[test]
    fn under_batched_an_ack_cancels_its_messages_put_held_for_the_next_commit() {
        let mut queue = Queue { hold: true, ..Queue::default() };
        let interval = Duration::from_secs(1);
        assert_eq!([queue.push(queued(1, true)), queue.push(queued(2, true)), queue.push(queued(3, true))], [1, 2, 3]);
        // Half an interval on, they are due at the next commit.
        queue.shift(Instant::now(), interval);
        assert_eq!(queue.due_through, 3);
        // Acknowledged before that commit: its put goes, and so does the
        // delete, whose ticket still commits (with the writes held now).
        assert_eq!(queue.push(queued(1, false)), 4);
        // A session's delete stands between the put of 3 and this delete
        // of 2: kept, as are the puts it follows.
        let _ = queue.push(StoreOp::DeleteSession { namespace: String::new(), client_id: "sub".into() });
        let _ = queue.push(queued(2, false));
        let mut due = Vec::new();
        queue.pending.take(&mut due);
        assert_eq!(due, [queued(2, true), queued(3, true)]);
        assert!(!queue.fresh.is_empty(), "the cancelled delete's ticket waits for the next commit");
        let mut held = Vec::new();
        let through = queue.take_all(&mut held);
        assert_eq!(through, 6);
        assert_eq!(
            held,
            [StoreOp::DeleteSession { namespace: String::new(), client_id: "sub".into() }, queued(2, false)]
        );
        // Under immediate nothing is held: a delete meets its put only in
        // the same pending batch.
        let mut queue = Queue::default();
        let _ = queue.push(queued(1, true));
        assert!(queue.fresh.is_empty());
        assert_eq!(queue.pending.len(), 1);
    }

    #[test]
    fn a_batched_writer_commits_held_writes_within_the_interval() {
        let store = Scripted::default();
        let writer = StoreWriter::spawn(store.clone(), Durability::Batched(Duration::from_millis(20))).unwrap();
        let put = writer.submit(queued(7, true));
        // No shutdown: the held put must reach the store by itself.
        assert_eq!(writer.wait(put), Ok(()));
        assert_eq!(*store.batches.lock(), [vec![queued(7, true)]]);
        let ack = writer.submit(queued(7, false));
        assert_eq!(writer.wait(ack), Ok(()));
        assert_eq!(store.batches.lock().last(), Some(&vec![queued(7, false)]));
    }

    #[test]
    fn writes_to_one_record_replace_each_other_and_every_ticket_commits() {
        let store = Scripted::default();
        let writer = StoreWriter::spawn(store.clone(), Durability::Batched(Duration::from_secs(60))).unwrap();
        let first = writer.submit(put("", "t/0", "first"));
        let (told, news) = std::sync::mpsc::channel();
        writer.on_commit(first, move |result| told.send(result).unwrap());
        let mut tickets = vec![first];
        for i in 1..100_000 {
            tickets.push(writer.submit(put("", &format!("t/{}", i % 10), &i.to_string())));
        }
        tickets.push(writer.submit(delete("", "t/3")));
        tickets.push(writer.submit(put("alice", "t/0", "hers")));
        // 100,002 writes, 11 records: the queue holds one write per record.
        assert_eq!(writer.figures().pending, 11);
        assert!(news.try_recv().is_err(), "nothing is committed before the interval ends");
        writer.shutdown();
        assert_eq!(news.recv_timeout(Duration::from_secs(10)).unwrap(), Ok(()), "the replaced first write commits");
        for ticket in tickets {
            assert_eq!(writer.wait(ticket), Ok(()));
        }
        let batches = store.batches.lock().clone();
        assert_eq!(batches.len(), 1, "one commit");
        let mut expected: Vec<(String, String, String)> =
            (0..10).map(|t| ("".into(), format!("t/{t}"), (99_990 + t).to_string())).collect();
        expected[3].2 = "deleted".into();
        expected.push(("alice".into(), "t/0".into(), "hers".into()));
        assert_eq!(described(&batches[0]), expected, "the last write to each record, in first-queued order");
        let figures = writer.figures();
        assert_eq!((figures.submitted, figures.committed), (100_002, 100_002));
        assert_eq!((figures.commits, figures.records_written, figures.pending), (1, 11, 0));
    }

    #[test]
    fn a_failed_commit_is_reported_retried_and_recovered_from() {
        let store = Scripted::default();
        store.fail.store(true, Ordering::SeqCst);
        let writer = StoreWriter::spawn(store.clone(), Durability::Immediate).unwrap();
        let lost = writer.submit(put("", "a", "1"));
        let error = writer.wait(lost).unwrap_err();
        assert!(error.contains("No space left on device"), "{error}");
        assert_eq!(writer.failing().as_deref(), Some(error.as_str()));
        let figures = writer.figures();
        assert!(figures.failed_commits >= 1 && figures.commits == 0, "{figures:?}");
        assert_eq!(figures.pending, 1, "the failed write stays queued");

        // The disk recovers: the retry commits the kept write with a new one.
        store.fail.store(false, Ordering::SeqCst);
        let next = writer.submit(put("", "b", "2"));
        assert_eq!(writer.wait(next), Ok(()));
        assert_eq!(writer.failing(), None);
        assert_eq!(writer.wait(lost), Ok(()), "the kept write is durable now");
        let written: Vec<_> = store.batches.lock().iter().flat_map(|b| described(b)).collect();
        assert_eq!(written, [("".into(), "a".into(), "1".into()), ("".into(), "b".into(), "2".into())]);
    }

    #[test]
    fn a_durable_waiter_sits_out_failed_commits_and_is_told_by_the_retry() {
        let store = Scripted::default();
        store.fail.store(true, Ordering::SeqCst);
        let writer = StoreWriter::spawn(store.clone(), Durability::Immediate).unwrap();
        let kept = writer.submit(put("", "a", "1"));
        let (durable_tx, durable) = std::sync::mpsc::channel();
        writer.on_durable(kept, move |result| durable_tx.send(result).unwrap());
        let (commit_tx, committed) = std::sync::mpsc::channel();
        writer.on_commit(kept, move |result| commit_tx.send(result).unwrap());
        let failed = committed.recv_timeout(Duration::from_secs(10)).expect("the commit's outcome");
        assert!(failed.is_err(), "{failed:?}");
        assert_eq!(durable.try_recv(), Err(std::sync::mpsc::TryRecvError::Empty), "not told of the failure");

        // The disk recovers: the retry, with nothing new submitted, commits
        // the kept write and tells the durable waiter.
        store.fail.store(false, Ordering::SeqCst);
        assert_eq!(durable.recv_timeout(Duration::from_secs(10)), Ok(Ok(())));
        assert_eq!(writer.failing(), None);
        // Registered after the commit: told at once.
        let (late_tx, late) = std::sync::mpsc::channel();
        writer.on_durable(kept, move |result| late_tx.send(result).unwrap());
        assert_eq!(late.try_recv(), Ok(Ok(())));
    }

    #[test]
    fn a_durable_waiter_is_told_an_error_when_the_writer_stops_first() {
        let store = Scripted::default();
        store.fail.store(true, Ordering::SeqCst);
        let writer = StoreWriter::spawn(store.clone(), Durability::Immediate).unwrap();
        let kept = writer.submit(put("", "a", "1"));
        let (tx, told) = std::sync::mpsc::channel();
        writer.on_durable(kept, move |result| tx.send(result).unwrap());
        writer.shutdown();
        assert!(told.try_recv().expect("told by the stop").is_err());
    }

    #[test]
    fn a_newer_write_replaces_a_kept_one_and_batched_writers_see_the_failure() {
        let store = Scripted::default();
        store.fail.store(true, Ordering::SeqCst);
        let writer = StoreWriter::spawn(store.clone(), Durability::Batched(Duration::from_millis(5))).unwrap();
        let old = writer.submit(put("", "a", "old"));
        wait_for("the commit to fail", || writer.failing().is_some());
        assert!(writer.wait(old).is_err());
        // Hold the next attempt, so the new write meets the old one either
        // in the queue or in a batch that is about to fail and be requeued.
        let gate = store.gate.lock();
        let new = writer.submit(put("", "a", "new"));
        assert_eq!(writer.figures().pending, 1, "one record queued");
        let failures = writer.figures().failed_commits;
        drop(gate);
        wait_for("an attempt after the new write", || writer.figures().failed_commits > failures);
        assert!(writer.wait(new).is_err(), "that attempt carried the new write, and failed");
        store.fail.store(false, Ordering::SeqCst);
        wait_for("the failure to clear", || writer.failing().is_none());
        assert_eq!(writer.wait(new), Ok(()), "committed by the retry");
        let written: Vec<_> = store.batches.lock().iter().flat_map(|b| described(b)).collect();
        assert_eq!(written, [("".into(), "a".into(), "new".into())], "the old value is never written");
    }

    #[test]
    fn a_panicking_store_fails_the_commit_but_not_the_writer() {
        let store = Scripted::default();
        store.panic.store(true, Ordering::SeqCst);
        let writer = StoreWriter::spawn(store.clone(), Durability::Immediate).unwrap();
        let error = writer.wait(writer.submit(put("", "a", "1"))).unwrap_err();
        assert!(error.contains("scripted panic"), "{error}");
        store.panic.store(false, Ordering::SeqCst);
        assert_eq!(writer.wait(writer.submit(put("", "b", "2"))), Ok(()));
    }

    #[test]
    fn stopping_while_the_store_fails_returns_and_fails_the_waiters() {
        let store = Scripted::default();
        store.fail.store(true, Ordering::SeqCst);
        let writer = StoreWriter::spawn(store, Durability::Batched(Duration::from_secs(60))).unwrap();
        let ticket = writer.submit(put("", "a", "1"));
        writer.shutdown();
        assert!(writer.wait(ticket).is_err());
        assert_eq!(writer.figures().failed_commits, 1, "one last attempt");
        let late = writer.submit(put("", "b", "2"));
        assert_eq!(writer.wait(late), Err("the store has stopped".into()));
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
