//! A connection's I/O: reading until `WouldBlock` (or a short
//! read), flushing its output, closing it with a linger, and the readiness
//! interest it needs.

use std::io::{self, IoSlice};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use mio::{Interest, Token};
use tinymq_core::ReasonCode;

use super::EventLoop;
use super::slot::State;
use crate::flow;
use crate::proto::Proto;
use crate::shared::{ConnRef, Control};

/// How long a closing connection may take to drain its last bytes.
const LINGER: Duration = Duration::from_secs(5);

/// Vectored-write width.
const IOVECS: usize = 64;

impl EventLoop {
    pub(super) fn conn_ref(&self, token: usize) -> Option<ConnRef> {
        let conn = self.conns.get(token)?.as_ref()?;
        Some(ConnRef::new(self.index, token, conn.serial, conn.stream.transport()))
    }

    /// Reads until `WouldBlock`, handling every whole frame as it comes.
    pub(super) fn read(&mut self, token: usize, now: Instant) {
        self.read_until(token, now, false);
    }

    /// Reads after a readable event: until `WouldBlock` or a short read.
    pub(super) fn read_event(&mut self, token: usize, now: Instant) {
        self.read_until(token, now, true);
    }

    fn read_until(&mut self, token: usize, now: Instant, short_read_ends: bool) {
        // No handler reads (they schedule reads instead), so no read runs
        // inside another's and the scratch buffer is always here. Were it
        // not, an empty buffer would read as end of file: read later.
        let mut scratch = std::mem::take(&mut self.scratch);
        if scratch.is_empty() {
            debug_assert!(false, "a read inside another read");
            self.schedule_read(token);
            return;
        }
        let mut tls_scratch = std::mem::take(&mut self.tls_scratch);
        let mut chunks = 0;
        while let Some(conn) = self.conns.get_mut(token).and_then(Option::as_mut) {
            if !conn.proto.wants_read() {
                conn.read_paused = !conn.proto.is_closed();
                break;
            }
            conn.read_paused = false;
            if conn.peer_eof {
                break;
            }
            let pass = std::mem::take(&mut conn.read_pass);
            if let Some(at) = flow::read_deferred_until(&self.shared, pass, conn.fed_loops, conn.fed_local, chunks, now)
            {
                self.defer_read(token, at);
                break;
            }
            chunks += 1;
            let n = match conn.stream.read(&mut scratch, &mut tls_scratch) {
                Ok(0) => {
                    self.end_of_input(token);
                    break;
                }
                Ok(n) => n,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => {
                    log::debug!("read error on {}:{}: {error}", self.index, conn.serial);
                    if conn.stream.failed_handshake() {
                        self.shared.stats.tls_handshake_failures.fetch_add(1, Ordering::Relaxed);
                    }
                    self.peer_closed(token);
                    break;
                }
            };
            self.counted.bytes_in += n as u64;
            let mut pending = std::mem::take(&mut conn.pending);
            let input: &[u8] = if pending.is_empty() {
                &scratch[..n]
            } else {
                pending.extend_from_slice(&scratch[..n]);
                &pending
            };
            let used = self.handle_input(token, input, now);
            let rest = &input[used..];
            // What this input published reaches the other loops before
            // anything is written back, and before more is read.
            self.flush_outbox();
            let Some(conn) = self.conns.get_mut(token).and_then(Option::as_mut) else { break };
            // A large message takes many reads: the loops its last
            // message went to are remembered until the next one is whole.
            let fed = std::mem::take(&mut self.fed_loops);
            let fed_local = std::mem::take(&mut self.fed_local);
            if fed != 0 || fed_local {
                conn.fed_loops = fed;
                conn.fed_local = fed_local;
            }
            if rest.is_empty() {
                // An idle connection keeps no buffer.
                pending = Vec::new();
            } else if pending.is_empty() {
                pending = rest.to_vec();
            } else {
                pending.drain(..used);
            }
            conn.pending = pending;
            if short_read_ends && n < scratch.len() && !conn.stream.has_unreported_eof() {
                break;
            }
        }
        self.scratch = scratch;
        if self.tls_scratch.is_empty() {
            self.tls_scratch = tls_scratch;
        }
        self.after_io(token, now);
    }

    /// Feeds `input` to the connection's protocol; returns bytes consumed.
    pub(super) fn handle_input(&mut self, token: usize, input: &[u8], now: Instant) -> usize {
        match self.conns.get(token).and_then(Option::as_ref).map(|c| &c.proto) {
            Some(Proto::Binary(_)) => self.handle_frames(token, input, now),
            Some(Proto::Http(_)) => self.handle_requests(token, input, now),
            Some(Proto::Mqtt(_)) => self.handle_packets(token, input, now),
            None => 0,
        }
    }

    /// Reads `token` in this turn's read step (see [`EventLoop::run`]):
    /// what wants a connection read while handling something else (an
    /// accept, a flush that made room, an answer that was held) asks for
    /// it here instead of reading from inside that handler.
    pub(super) fn schedule_read(&mut self, token: usize) {
        let Some(conn) = self.conns.get_mut(token).and_then(Option::as_mut) else { return };
        if !conn.read_scheduled {
            conn.read_scheduled = true;
            self.to_read.push((token, conn.serial));
        }
    }

    /// Reads the connections [`EventLoop::schedule_read`] named, once
    /// each: those named meanwhile wait for the next pass.
    pub(super) fn read_scheduled(&mut self, now: Instant) {
        let mut due = std::mem::take(&mut self.to_read);
        for &(token, serial) in &due {
            let Some(conn) = self.conns.get_mut(token).and_then(Option::as_mut) else { continue };
            if conn.serial != serial || !std::mem::take(&mut conn.read_scheduled) {
                continue;
            }
            self.read(token, now);
        }
        due.clear();
        if self.to_read.is_empty() {
            // Keeps the allocation.
            self.to_read = due;
        }
    }

    /// Puts off reading `token` until `at` (a connection keeps its place).
    fn defer_read(&mut self, token: usize, at: Instant) {
        let Some(conn) = self.conns.get_mut(token).and_then(Option::as_mut) else { return };
        if !conn.deferred {
            conn.deferred = true;
            self.deferred.push((token, conn.serial, at));
            self.deferred_until = Some(self.deferred_until.map_or(at, |until| until.min(at)));
        }
    }

    /// Connections whose deferral is over read again (at least once each);
    /// the others keep waiting, so a yield's immediate turn does not cut a
    /// stall short.
    pub(super) fn resume_deferred(&mut self, now: Instant) {
        let mut deferred = std::mem::take(&mut self.deferred);
        let due: Vec<(usize, u64)> =
            deferred.extract_if(.., |&mut (_, _, at)| at <= now).map(|(token, serial, _)| (token, serial)).collect();
        self.deferred_until = deferred.iter().map(|&(_, _, at)| at).min();
        self.deferred = deferred;
        for (token, serial) in due {
            let Some(conn) = self.conns.get_mut(token).and_then(Option::as_mut) else { continue };
            if conn.serial != serial || !conn.deferred {
                continue;
            }
            conn.deferred = false;
            conn.read_pass = true;
            self.read(token, now);
        }
    }

    pub(super) fn close_conn(&mut self, target: ConnRef, reason: ReasonCode, now: Instant) {
        if target.loop_index() != self.index {
            self.shared.send(target.loop_index(), Control::Close(target, reason).into());
            return;
        }
        let Some(conn) = self.conns.get_mut(target.token()).and_then(Option::as_mut) else { return };
        if conn.serial != target.serial {
            return;
        }
        conn.proto.close(reason);
        self.begin_close(target.token(), now);
        self.mark_dirty(target.token());
    }

    /// The peer closed its half. A binary session ends at once, as MQTT
    /// brokers do; an HTTP connection first answers what it has read.
    fn end_of_input(&mut self, token: usize) {
        let Some(conn) = self.conns.get_mut(token).and_then(Option::as_mut) else { return };
        let write_shut = conn.write_shut();
        match &mut conn.proto {
            Proto::Http(http) if !write_shut => {
                log::debug!("connection {}:{} finished sending", self.index, conn.serial);
                http.end_of_input();
                conn.peer_eof = true;
            }
            _ => self.peer_closed(token),
        }
    }

    fn peer_closed(&mut self, token: usize) {
        let Some(conn) = self.conns.get_mut(token).and_then(Option::as_mut) else { return };
        log::debug!("connection {}:{} closed by peer", self.index, conn.serial);
        self.remove(token);
    }

    /// The session closed: release its subscriptions now (nothing more is
    /// routed to it) and give its last bytes until the linger deadline.
    pub(super) fn begin_close(&mut self, token: usize, now: Instant) {
        self.begin_close_within(token, now, LINGER);
    }

    pub(super) fn begin_close_within(&mut self, token: usize, now: Instant, linger: Duration) {
        // Before its subscriber is released: an MQTT client's will, a
        // binary client's session.
        self.publish_will(token);
        self.close_binary_session(token, now);
        let Some(conn) = self.conns.get_mut(token).and_then(Option::as_mut) else { return };
        if conn.linger_until().is_some() {
            return;
        }
        // A request held for its credentials is dropped: nothing answers a
        // closing connection's check.
        conn.state = State::Closing { until: now + linger };
        // What it still has to send is no reason to slow anyone down.
        if std::mem::take(&mut conn.pressing) {
            self.shared.loops[self.index].press(false);
        }
        self.shared.broker.write().release(conn.subscriber.take());
        if let Some(reason) = conn.proto.close_reason() {
            self.shared.stats.count_disconnect(reason);
        }
        self.arm(token);
    }

    pub(super) fn after_io(&mut self, token: usize, now: Instant) {
        let Some(conn) = self.conns.get_mut(token).and_then(Option::as_mut) else { return };
        if conn.proto.is_closed() && conn.linger_until().is_none() {
            self.begin_close(token, now);
        }
        // Input can bring a deadline forward (an HTTP request's timeout
        // starts with its first byte, an event stream's heartbeat with its
        // head).
        self.arm(token);
        self.mark_dirty(token);
    }

    /// Puts a connection on this turn's flush list, once however many
    /// frames were queued for it (a fan-out queues one per message).
    pub(super) fn mark_dirty(&mut self, token: usize) {
        if let Some(conn) = self.conns.get_mut(token).and_then(Option::as_mut)
            && !conn.in_dirty
        {
            conn.in_dirty = true;
            self.dirty.push(token);
        }
    }

    pub(super) fn flush_dirty(&mut self, now: Instant) {
        while let Some(token) = self.dirty.pop() {
            if let Some(conn) = self.conns.get_mut(token).and_then(Option::as_mut) {
                conn.in_dirty = false;
            }
            self.flush(token, now);
        }
    }

    /// Writes queued output until `WouldBlock`, then sets the interest the
    /// connection needs, and closes it once a closed session is flushed.
    pub(super) fn flush(&mut self, token: usize, now: Instant) {
        self.flush_outbox();
        self.counted.add_to(&self.shared.stats);
        let Some(conn) = self.conns.get_mut(token).and_then(Option::as_mut) else { return };
        let mut broken = false;
        while !conn.proto.outbound().is_empty() {
            let result = {
                let mut slices: [&[u8]; IOVECS] = [&[]; IOVECS];
                let n = conn.proto.outbound().front_slices(&mut slices);
                let iovecs: smallvec::SmallVec<[IoSlice<'_>; IOVECS]> =
                    slices[..n].iter().map(|s| IoSlice::new(s)).collect();
                conn.stream.write_vectored(&iovecs)
            };
            match result {
                Ok(0) => {
                    broken = true;
                    break;
                }
                Ok(written) => {
                    conn.proto.outbound_mut().consume(written);
                    self.counted.bytes_out += written as u64;
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    broken = true;
                    break;
                }
            }
        }
        // TLS: records (or a handshake's answer, a close_notify) the
        // socket did not take yet.
        if !broken && conn.stream.wants_write() {
            match conn.stream.send_pending() {
                Ok(()) => {}
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => broken = true,
            }
        }
        if conn.proto.is_closed() && conn.linger_until().is_none() {
            self.begin_close(token, now);
        }
        let Some(conn) = self.conns.get_mut(token).and_then(Option::as_mut) else { return };
        let flushed_closing =
            conn.linger_until().is_some() && conn.proto.outbound().is_empty() && !conn.stream.wants_write();
        if let State::Closing { until } = conn.state
            && flushed_closing
            && !broken
            && conn.proto.drains_before_close()
            && !conn.peer_eof
        {
            // Half-close and read until the peer's EOF (or the linger
            // deadline), so unread request bytes do not reset the
            // connection before the peer has read the response.
            conn.state = State::Draining { until };
            if conn.stream.shutdown_write().is_ok() {
                self.schedule_read(token);
                return;
            }
        }
        if broken || (flushed_closing && !conn.write_shut()) {
            self.remove(token);
            return;
        }
        let outbound = conn.proto.outbound();
        if conn.pressing && !flow::over_pressure_mark(outbound) {
            conn.pressing = false;
            self.shared.loops[self.index].press(false);
        }
        let wants_write = !conn.proto.outbound().is_empty() || conn.stream.wants_write();
        let interest = if wants_write { Interest::READABLE | Interest::WRITABLE } else { Interest::READABLE };
        if interest != conn.interest {
            conn.interest = interest;
            if let Err(error) = conn.stream.reregister(self.poll.registry(), Token(token), interest) {
                log::warn!("cannot reregister a connection: {error}");
            }
        }
        // Output drained below the pause mark: read what the peer sent
        // meanwhile (edge-triggered readiness will not say it again), in
        // the turn's read step.
        if conn.read_paused && conn.proto.wants_read() {
            self.schedule_read(token);
        }
    }

    pub(super) fn remove(&mut self, token: usize) {
        self.publish_will(token);
        // Rare, and reached from paths with no time at hand.
        self.close_binary_session(token, Instant::now());
        let Some(mut conn) = self.conns.get_mut(token).and_then(Option::take) else { return };
        if conn.pressing {
            self.shared.loops[self.index].press(false);
        }
        self.shared.broker.write().release(conn.subscriber.take());
        conn.stream.close();
        let _ = conn.stream.deregister(self.poll.registry());
        self.shared.stats.closed(conn.stream.transport());
        if conn.refused {
            self.refusing -= 1;
        }
        log::debug!("connection {}:{} removed", self.index, conn.serial);
        self.free.push(token);
    }
}
