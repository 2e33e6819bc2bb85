//! A connection's slot in its loop's slab: what the loop keeps per
//! connection. A leaf, so that the loop (which holds the slab) and the
//! files that handle a connection (which reach into it) both use it without
//! an import circle.

use std::net::IpAddr;
use std::time::Instant;

use mio::Interest;
use tinymq_core::http::call::Call;
use tinymq_core::http::encoding::Encoding;
use tinymq_core::{RouteCache, SubscriberId};

use crate::proto::Proto;
use crate::shared::Sink;
use crate::transport::Stream;

/// A connection as its loop keeps it, in the slab by token. Every slot
/// costs this much however it is used, so rare state is boxed.
pub(super) struct Conn {
    pub(super) serial: u64,
    pub(super) stream: Stream,
    pub(super) proto: Proto,
    pub(super) subscriber: Option<SubscriberId>,
    pub(super) peer_ip: Option<IpAddr>,
    /// Bytes of an incomplete frame carried over between reads. Empty (and
    /// unallocated) on an idle connection.
    pub(super) pending: Vec<u8>,
    pub(super) interest: Interest,
    /// The deadline of this connection's live timer entry.
    pub(super) armed: Option<Instant>,
    /// Accepted only to be refused (counted in `refusing`).
    pub(super) refused: bool,
    /// Where it is in its life: open, holding a request, closing.
    pub(super) state: State,
    /// The read side stopped (EOF or paused by backpressure) with input
    /// possibly left in the socket.
    pub(super) read_paused: bool,
    /// Already on the loop's list of connections to flush this turn.
    pub(super) in_dirty: bool,
    /// The peer has closed its sending side (HTTP): nothing more to read.
    pub(super) peer_eof: bool,
    /// Its unsent output is over the pressure mark (counted in its loop's
    /// [`crate::shared::LoopHandle::under_pressure`]).
    pub(super) pressing: bool,
    /// Its next read is put off: a loop it published to is behind (a
    /// stall), or it had its share of this turn (a yield).
    pub(super) deferred: bool,
    /// The loops (a bit each) its last publish went to.
    pub(super) fed_loops: u64,
    /// Whether its last publish went to an in-process client's queue.
    pub(super) fed_local: bool,
    /// Its read was put off: the next one goes ahead whatever the
    /// pressure, so a stall slows a publisher but never stops it.
    pub(super) read_pass: bool,
    /// On the loop's list of connections to read in this turn's read step.
    pub(super) read_scheduled: bool,
    /// Where its last live publish went (boxed: only publishers have one).
    pub(super) routes: Option<Box<RouteCache<Sink>>>,
}

/// The stages of a connection's life, one at a time: the flags that say
/// what else is going on (paused, deferred, pressing, the peer's EOF)
/// stay fields of [`Conn`], as they combine freely with these.
pub(super) enum State {
    /// Reading and answering.
    Open,
    /// A request waits for its credentials to be checked; the session (or
    /// the HTTP connection) reads nothing more until it is decided. Boxed:
    /// rare, and an idle connection should cost little.
    Held(Box<Held>),
    /// Its session closed: it ends when its output is flushed or the
    /// deadline passes.
    Closing { until: Instant },
    /// Flushed, and its sending side shut: it waits for the peer's EOF (or
    /// the deadline) to close.
    Draining { until: Instant },
}

impl Conn {
    /// When a closing connection ends, whatever is left unsent.
    pub(super) fn linger_until(&self) -> Option<Instant> {
        match self.state {
            State::Closing { until } | State::Draining { until } => Some(until),
            State::Open | State::Held(_) => None,
        }
    }

    /// Whether its sending side is shut.
    pub(super) fn write_shut(&self) -> bool {
        matches!(self.state, State::Draining { .. })
    }

    /// Holds a request for its credentials check. A closing connection
    /// holds nothing: the answer to the check would find it closing.
    pub(super) fn hold(&mut self, held: Held) {
        if self.linger_until().is_none() {
            self.state = State::Held(Box::new(held));
        }
    }

    /// The request held for a credentials check, if any; open again.
    pub(super) fn take_held(&mut self) -> Option<Held> {
        match std::mem::replace(&mut self.state, State::Open) {
            State::Held(held) => Some(*held),
            other => {
                self.state = other;
                None
            }
        }
    }
}

/// What waits for a connection's credentials to be checked.
pub(super) enum Held {
    /// A binary Connect, with the client id and session it asked for.
    Connect { client_id: String, session: super::durable::HeldSession },
    /// An MQTT CONNECT (the session keeps what it asked for).
    MqttConnect,
    /// An HTTP call, and the order its Moustique parameters came in.
    Call(Call, Encoding),
}

#[cfg(test)]
mod tests {
    /// Every connection slot costs `size_of::<Conn>()` however it is used,
    /// and the RSS budget per idle subscribed connection is 1 KiB in all:
    /// rare or large state (an HTTP connection's, a held request, a
    /// session's QoS 1 packet ids) is boxed. 336: 320 until QoS 1 gave
    /// the binary session a pointer to its (boxed) unacknowledged ids.
    #[test]
    fn a_connection_slot_stays_small() {
        let size = std::mem::size_of::<Option<super::Conn>>();
        assert!(size <= 336, "a connection slot grew to {size} bytes");
    }
}
