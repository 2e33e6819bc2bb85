//! Flow control: how a publisher is slowed when what it feeds falls
//! behind, network publishers (an event loop reads them less often) and
//! in-process ones (paced with a sleep) alike.
//!
//! A loop is *behind* when one of its connections has much unsent output
//! (over the pressure mark) or its inbox is long; an in-process queue is
//! *filling* when it is over half full and not dropping. A publisher that
//! fed a loop behind, or a filling queue, is read at most [`READ_CHUNK`]
//! per [`STALL`]; one that feeds nothing behind reads [`READ_BUDGET`]
//! chunks a turn, then yields. So a consumer slower than its producers
//! slows them rather than being cut, and one that reads nothing still
//! reaches its queue limit.
//!
//! What stays elsewhere: the gauges a loop is judged by
//! ([`LoopHandle::under_pressure`](crate::shared::LoopHandle::under_pressure),
//! updated under the loop's inbox lock in `shared`), an in-process queue's
//! filling count (kept under its queue's lock, beside the queue), and the
//! event loop's list of deferred reads (its own state, in
//! `event_loop::conn`). This module asks the questions and makes the
//! decisions; those own the state.

use std::time::{Duration, Instant};

use tinymq_core::Outbound;

use crate::shared::{Shared, Sink};

/// Bytes read from a socket per call, into an event loop's scratch
/// buffer. With [`STALL`], the pace of a publisher feeding a loop that is
/// behind, network (the event loop) or in-process (`local`) alike.
pub(crate) const READ_CHUNK: usize = 64 * 1024;
/// How long a publisher feeding a loop that is behind waits before its
/// next read (of at most [`READ_CHUNK`] bytes).
pub(crate) const STALL: Duration = Duration::from_millis(1);
/// Chunks of [`READ_CHUNK`] read from one connection before the others'
/// turn.
pub(crate) const READ_BUDGET: usize = 16;
/// A connection whose unsent output is over `1 / PRESSURE_FRACTION` of its
/// queue limit puts its loop under pressure.
const PRESSURE_FRACTION: usize = 8;

/// How much longer than [`STALL`] a publisher feeding a loop that is
/// choked waits: its pace is a quarter of the pressed one.
const CHOKED_STALLS: u32 = 4;

/// The pressure mark of a connection whose output queue holds `limit`
/// bytes: over it, the connection puts its loop behind.
pub(crate) fn pressure_mark(limit: usize) -> usize {
    limit / PRESSURE_FRACTION
}

/// Whether a connection's unsent output is over the pressure mark.
pub(crate) fn over_pressure_mark(outbound: &Outbound) -> bool {
    outbound.len() > pressure_mark(outbound.limit())
}

/// Whether a connection's unsent output is over the choke mark, half its
/// limit: what it is fed must slow down further, or soon be dropped.
pub(crate) fn over_choke_mark(outbound: &Outbound) -> bool {
    outbound.len() > outbound.limit() / 2
}

/// `index`'s bit in a set of loops (loops past 63 share the last bit).
pub(crate) fn loop_bit(index: usize) -> u64 {
    1 << index.min(63)
}

/// Whether one of the loops `fed` (by index) is behind: the one question
/// both kinds of publisher ask.
pub(crate) fn feeds_a_loop_behind(shared: &Shared, fed: impl IntoIterator<Item = usize>) -> bool {
    fed.into_iter().any(|index| shared.loops[index].under_pressure())
}

/// The loops in a set of [`loop_bit`]s, as an event loop remembers what a
/// connection last published to.
fn loops_in(fed: u64, loops: usize) -> impl Iterator<Item = usize> {
    (0..loops).filter(move |&index| fed & loop_bit(index) != 0)
}

/// The loops the connections among `receivers` live on (a loop once per
/// connection there).
fn loops_of(receivers: &[Sink]) -> impl Iterator<Item = usize> + '_ {
    receivers.iter().filter_map(|sink| match sink {
        Sink::Conn(target) => Some(target.loop_index()),
        _ => None,
    })
}

/// Whether an in-process queue is filling (see [`Shared::local_filling`]).
pub(crate) fn local_queues_filling(shared: &Shared) -> bool {
    shared.local_filling.load(std::sync::atomic::Ordering::Relaxed) > 0
}

/// When a network connection's next read goes ahead, if not now: after
/// [`CHOKED_STALLS`] stalls when its last publish fed a loop that is
/// choked (see [`over_choke_mark`]); after a [`STALL`] when it fed a loop
/// that is behind (`fed_loops`,
/// [`loop_bit`]s) or a filling in-process queue (`fed_local`); at the next
/// turn when it had its [`READ_BUDGET`] of `chunks` this turn. A `pass`
/// (its read was put off last time) reads once whatever the pressure, so
/// a stall slows a publisher but never stops it.
pub(crate) fn read_deferred_until(
    shared: &Shared,
    pass: bool,
    fed_loops: u64,
    fed_local: bool,
    chunks: usize,
    now: Instant,
) -> Option<Instant> {
    if pass {
        // Read once whatever the pressure.
        None
    } else if fed_loops != 0 && loops_in(fed_loops, shared.loops.len()).any(|index| shared.loops[index].choked()) {
        Some(now + STALL * CHOKED_STALLS)
    } else if (fed_loops != 0 && feeds_a_loop_behind(shared, loops_in(fed_loops, shared.loops.len())))
        || (fed_local && local_queues_filling(shared))
    {
        Some(now + STALL)
    } else if chunks == READ_BUDGET {
        // Others' turn: this connection is read again next turn.
        Some(now)
    } else {
        None
    }
}

/// Slows a publish of `bytes` that feeds an event loop which is behind
/// (one of its connections has much unsent): [`STALL`] for each
/// [`READ_CHUNK`] sent there, the pace a network publisher feeding it
/// is read at. So a slow network subscriber slows its in-process
/// publisher down rather than being cut, and one that reads nothing
/// still reaches its limit. `paced` carries the bytes short of a chunk.
pub(crate) fn pace(shared: &Shared, paced: &mut usize, receivers: &[Sink], bytes: usize) {
    if shared.config.local_queue_wait.is_zero() || !feeds_a_loop_behind(shared, loops_of(receivers)) {
        return;
    }
    *paced += bytes;
    let chunks = *paced / READ_CHUNK;
    if chunks > 0 {
        *paced %= READ_CHUNK;
        std::thread::sleep(STALL * u32::try_from(chunks).unwrap_or(u32::MAX));
    }
}
