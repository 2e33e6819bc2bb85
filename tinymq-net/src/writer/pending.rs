//! The writes waiting for the writer's next commit ([`Pending`]): at most
//! one per record, and the Moustique queues' puts undone by the ranged
//! deletes that cover them.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::ops::Range;
use std::sync::Arc;

use tinymq_core::store::{StoreOp, StoreTable};

/// Writes waiting for the next commit, at most one per record: a write to
/// a record already queued replaces it where it stands.
///
/// A queued QoS 1 message acknowledged before the commit that would have
/// stored it (its `DeleteQueued` replacing its `PutQueued` here) leaves
/// nothing to write: both go. Its record cannot be in the store already
/// (a session's sequence numbers are not reused until `DeleteSession`,
/// which is never replaced across), so the store ends as if both were
/// committed. With a subscriber that keeps up, that is most messages.
///
/// A Moustique queue's ranged delete ([`StoreOp::DeleteHttpQueued`])
/// undoes the queued puts it covers (a client that picks up within the
/// interval costs the disk nothing but the delete) and joins a queued
/// delete of the same queue whose range it meets; it touches nothing else,
/// so it is no barrier to other records. A queue's puts are kept apart
/// from the other records, in the order of their sequence numbers, so
/// that a put and the delete that undoes it cost no key built and no hash
/// of one.
#[derive(Default)]
pub(super) struct Pending {
    /// In order; `None` for a write cancelled by a later one (a session's
    /// put by its delete, a Moustique queue's put by a ranged delete): it
    /// held a ticket, which commits with the next commit, even one with
    /// nothing left to write.
    ops: Vec<Option<StoreOp>>,
    /// The `Some` in `ops`.
    live: usize,
    /// Where each queued record's operation is in `ops`. Holds only
    /// operations queued after the last one without a single record, so
    /// nothing is replaced across it.
    slots: HashMap<(StoreTable, Vec<u8>), usize>,
    /// The same for the Moustique queues, by namespace and client.
    queues: HashMap<(Arc<str>, Arc<str>), QueueSlots>,
    /// An operation without a single record was queued since the last
    /// take: nothing after it may reach back past it.
    barrier: bool,
}

/// Where a Moustique queue's writes are in [`Pending::ops`].
#[derive(Default)]
struct QueueSlots {
    /// Its puts, by ascending sequence number.
    puts: VecDeque<(u64, usize)>,
    /// Its ranged delete queued last, which a later one may join.
    delete: Option<usize>,
}

impl Pending {
    /// Queues `op`; true if it replaced (or joined) a queued write.
    pub(super) fn push(&mut self, op: StoreOp) -> bool {
        match &op {
            StoreOp::PutHttpQueued { namespace, client, seq, .. } => {
                let slots = self.queues.entry((namespace.clone(), client.clone())).or_default();
                if slots.puts.back().is_some_and(|&(last, _)| *seq <= last) {
                    // Numbered again from the start (the client was dropped
                    // and came back): what is queued before stays where it
                    // is, and no later delete joins one before this put.
                    *slots = QueueSlots::default();
                }
                slots.puts.push_back((*seq, self.ops.len()));
                self.append(op);
                false
            }
            StoreOp::DeleteHttpQueued { namespace, client, from, below } => {
                let range = *from..*below;
                let slots = self.queues.entry((namespace.clone(), client.clone())).or_default();
                undo_puts(&mut self.ops, &mut self.live, slots, &range);
                let joined = if let Some(at) = slots.delete
                    && let Some(StoreOp::DeleteHttpQueued { from, below, .. }) = &mut self.ops[at]
                    && range.start <= *below
                    && *from <= range.end
                {
                    // Where the queued one stands is early enough: every put
                    // the two cover, before or after it, is undone.
                    (*from, *below) = ((*from).min(range.start), (*below).max(range.end));
                    true
                } else {
                    slots.delete = Some(self.ops.len());
                    self.append(op);
                    false
                };
                if self.ops.len() > 2 * self.live + 4096 {
                    self.compact();
                }
                joined
            }
            _ => match op.record() {
                Some(record) => match self.slots.entry(record) {
                    Entry::Occupied(slot) => {
                        let at = *slot.get();
                        let queued = &mut self.ops[at];
                        if matches!(op, StoreOp::DeleteQueued { .. })
                            && matches!(queued, Some(StoreOp::PutQueued { .. }))
                        {
                            *queued = None;
                            slot.remove();
                            self.live -= 1;
                        } else {
                            self.live += usize::from(queued.is_none());
                            *queued = Some(op);
                        }
                        true
                    }
                    Entry::Vacant(slot) => {
                        slot.insert(self.ops.len());
                        self.append(op);
                        false
                    }
                },
                None => {
                    self.slots.clear();
                    self.queues.clear();
                    self.barrier = true;
                    self.append(op);
                    false
                }
            },
        }
    }

    /// Whether a write queued now could replace or cancel one queued
    /// before: false once an operation without a single record (a
    /// session's or user's delete) has been queued.
    pub(super) fn reaches_back(&self) -> bool {
        !self.barrier
    }

    /// Whether a write to `record` is queued here since the last barrier.
    pub(super) fn holds(&self, record: &(StoreTable, Vec<u8>)) -> bool {
        self.slots.contains_key(record)
    }

    /// Cancels the queued [`StoreOp::PutQueued`] of `record` (the message a
    /// later `DeleteQueued` acknowledges), if that is what is queued for
    /// it; true if it did.
    pub(super) fn cancel_queued_put(&mut self, record: &(StoreTable, Vec<u8>)) -> bool {
        let Some(&at) = self.slots.get(record) else { return false };
        if !matches!(self.ops[at], Some(StoreOp::PutQueued { .. })) {
            return false;
        }
        self.ops[at] = None;
        self.slots.remove(record);
        self.live -= 1;
        true
    }

    /// Holds a place for a ticket whose write left nothing to do (it
    /// cancelled a write queued elsewhere): it commits with the next
    /// commit of this queue.
    pub(super) fn hold_ticket(&mut self) {
        self.ops.push(None);
    }

    fn append(&mut self, op: StoreOp) {
        self.ops.push(Some(op));
        self.live += 1;
    }

    /// Drops the undone puts' places, so that a queue that drops its
    /// oldest on every put while the disk is slow holds no more than its
    /// live writes (and those are bounded by the queues' own bounds: a
    /// put past a full queue undoes the oldest one's).
    fn compact(&mut self) {
        let mut moved = Vec::with_capacity(self.ops.len());
        let mut kept = 0;
        for op in &self.ops {
            moved.push(kept);
            kept += usize::from(op.is_some());
        }
        self.ops.retain(Option::is_some);
        for at in self.slots.values_mut() {
            *at = moved[*at];
        }
        for slots in self.queues.values_mut() {
            for (_, at) in &mut slots.puts {
                *at = moved[*at];
            }
            if let Some(at) = &mut slots.delete {
                *at = moved[*at];
            }
        }
    }

    pub(super) fn len(&self) -> usize {
        self.live
    }

    /// Whether nothing waits for a commit (not even a cancelled write's
    /// ticket).
    pub(super) fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Moves everything queued into `batch` (which must be empty); it may
    /// be empty if every write was cancelled.
    pub(super) fn take(&mut self, batch: &mut Vec<StoreOp>) {
        debug_assert!(batch.is_empty());
        batch.extend(self.ops.drain(..).flatten());
        self.live = 0;
        self.slots.clear();
        self.queues.clear();
        self.barrier = false;
    }

    /// Puts a failed batch back in front of what was queued since: the
    /// newer writes still replace the older ones.
    pub(super) fn requeue(&mut self, batch: &mut Vec<StoreOp>) {
        let newer = std::mem::take(&mut self.ops);
        self.slots.clear();
        self.queues.clear();
        self.live = 0;
        self.barrier = false;
        for op in batch.drain(..).chain(newer.into_iter().flatten()) {
            self.push(op);
        }
    }
}

/// Undoes the queued puts of a queue (`slots`) whose sequence numbers are
/// in `range`: the oldest first, as pickups and full queues delete.
fn undo_puts(ops: &mut [Option<StoreOp>], live: &mut usize, slots: &mut QueueSlots, range: &Range<u64>) {
    let mut undo = |at: usize| {
        if ops[at].take().is_some() {
            *live -= 1;
        }
    };
    while let Some(&(seq, at)) = slots.puts.front() {
        if !range.contains(&seq) {
            break;
        }
        slots.puts.pop_front();
        undo(at);
    }
    // A range that does not start at the oldest queued put (none the broker
    // makes): look through them all.
    if slots.puts.front().is_some_and(|&(seq, _)| seq < range.start)
        && slots.puts.back().is_some_and(|&(seq, _)| seq >= range.start)
    {
        slots.puts.retain(|&(seq, at)| {
            let covered = range.contains(&seq);
            if covered {
                undo(at);
            }
            !covered
        });
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tinymq_core::store::{Store, StoreOp};

    use super::*;
    use crate::store::tests::put;

    fn queued(client: &str, seq: u64) -> StoreOp {
        let StoreOp::PutValue { message, .. } = put("", "t", &format!("{client}{seq}")) else { unreachable!() };
        let subscribers: Arc<[Arc<str>]> = vec![Arc::from(client)].into();
        StoreOp::PutHttpQueued { namespace: "".into(), client: client.into(), seq, message, subscribers }
    }

    fn picked(client: &str, from: u64, below: u64) -> StoreOp {
        StoreOp::DeleteHttpQueued { namespace: "".into(), client: client.into(), from, below }
    }

    #[test]
    fn a_pickup_undoes_the_queued_puts_it_covers_and_joins_the_last_delete() {
        let mut pending = Pending::default();
        let ops = [
            queued("c", 0),
            put("", "a", "1"),
            queued("c", 1),
            queued("c", 2),
            picked("c", 0, 2),
            put("", "a", "2"),
            queued("c", 3),
            picked("c", 2, 4),
            queued("d", 0),
        ];
        for op in ops {
            let _ = pending.push(op);
        }
        assert_eq!(pending.len(), 3);
        let mut batch = Vec::new();
        pending.take(&mut batch);
        assert_eq!(batch, [put("", "a", "2"), picked("c", 0, 4), queued("d", 0)]);
        assert!(pending.is_empty());
    }

    #[test]
    fn a_full_queue_on_a_slow_disk_keeps_the_pending_writes_bounded() {
        let mut pending = Pending::default();
        // A queue of 100 that drops its oldest on every put, 100,000 times
        // before one commit, with a value written now and then.
        for seq in 0..100_000u64 {
            let _ = pending.push(queued("c", seq));
            if seq >= 100 {
                let _ = pending.push(picked("c", seq - 100, seq - 99));
            }
            if seq % 1000 == 0 {
                let _ = pending.push(put("", "v", &seq.to_string()));
            }
        }
        assert_eq!(pending.len(), 100 + 1 + 1, "the live puts, the joined delete, the value");
        assert!(pending.ops.len() < 2 * pending.len() + 4096 + 2, "{} places", pending.ops.len());
        let mut batch = Vec::new();
        pending.take(&mut batch);
        assert_eq!(batch[0], put("", "v", "99000"), "the value replaced in its place");
        assert_eq!(batch[1], picked("c", 0, 99_900));
        assert_eq!(batch[2..], (99_900..100_000).map(|seq| queued("c", seq)).collect::<Vec<_>>()[..]);
    }

    /// Random writes to two queues, values and a barrier: the coalesced
    /// batch leaves a store exactly as the writes one by one do.
    #[test]
    fn coalesced_queue_writes_store_what_the_writes_one_by_one_do() {
        use tinymq_core::store::MemoryStore;
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move |bound: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % bound
        };
        for _ in 0..1000 {
            // What earlier commits left: some messages of each queue.
            let mut base = MemoryStore::new();
            let mut seqs = [0u64; 2];
            let mut oldest = [0u64; 2];
            let clients = ["c", "c\0\0\0\0\0\0\0\0\u{1}"];
            let mut committed = Vec::new();
            for (i, client) in clients.iter().enumerate() {
                for _ in 0..next(4) {
                    committed.push(queued(client, seqs[i]));
                    seqs[i] += 1;
                }
            }
            base.apply(&committed).unwrap();
            let mut ops = Vec::new();
            for _ in 0..next(40) {
                let i = next(2) as usize;
                let client = clients[i];
                match next(10) {
                    0..=4 => {
                        ops.push(queued(client, seqs[i]));
                        seqs[i] += 1;
                    }
                    5 | 6 => {
                        // A pickup, or a full queue dropping its oldest.
                        let below = if next(2) == 0 { seqs[i] } else { oldest[i] + next(seqs[i] - oldest[i] + 1) };
                        ops.push(picked(client, oldest[i], below));
                        oldest[i] = below;
                    }
                    7 => {
                        // The client is dropped; a new one of its name
                        // numbers from 0 again.
                        ops.push(picked(client, 0, u64::MAX));
                        (seqs[i], oldest[i]) = (0, 0);
                    }
                    8 => ops.push(put("", "v", &next(3).to_string())),
                    _ => ops.push(StoreOp::DeleteUser { name: "nobody".into() }),
                }
            }
            let mut one_by_one = base.clone();
            for op in &ops {
                one_by_one.apply(std::slice::from_ref(op)).unwrap();
            }
            let mut pending = Pending::default();
            for op in ops.iter().cloned() {
                let _ = pending.push(op);
            }
            let mut batch = Vec::new();
            pending.take(&mut batch);
            assert!(batch.len() <= ops.len());
            let mut coalesced = base.clone();
            coalesced.apply(&batch).unwrap();
            assert_eq!(coalesced.load_http_queued().unwrap(), one_by_one.load_http_queued().unwrap(), "{ops:#?}");
            assert_eq!(coalesced.load_values().unwrap(), one_by_one.load_values().unwrap());
        }
    }
}
