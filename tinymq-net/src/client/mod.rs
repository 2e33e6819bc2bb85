//! A blocking network client for the binary protocol, over TCP (plain or
//! TLS) and Unix sockets, with automatic reconnect and resubscribe.
//!
//! The manual is on [`Client`], since this module is private.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use tinymq_core::client::{ClientError as SessionError, ClientEvent, ClientSession, Reason};

/// Reads one call may make just to take what has already arrived, so that a
/// broker sending without pause cannot hold a publish forever.
const MAX_DRAIN_READS: usize = 64;
/// The least time a reconnect attempt gets, even from a call whose own time
/// is up (`recv_timeout(Duration::ZERO)`), so that polling calls reconnect too.
const MIN_ATTEMPT_TIME: Duration = Duration::from_millis(100);

mod connection;
mod options;
mod qos;
#[cfg(test)]
mod tests;

use connection::{AckKind, AwaitedAck, Connection, Ended, Lost, connect};
pub use options::{Address, ClientError, ClientOptions, ReceivedMessage};

/// A blocking connection to a broker.
///
/// It only moves bytes: the protocol (frames, remembered
/// subscriptions, the assigned client id, keep-alive) is
/// [`tinymq_core::client::ClientSession`]. Every call runs on the caller's
/// thread; there is no background thread. Pings are sent from within the
/// calls, as the keep-alive needs them, so a client that sits idle for longer
/// than the broker's keep-alive without calling [`Client::recv`] (or any
/// other method) is disconnected by the broker, and reconnects on its next
/// call.
///
/// # Reconnecting
///
/// When the connection is lost (the socket fails or reaches its end, the
/// broker stops answering Pings, or it sends Disconnect for any reason but
/// "not authorized" (2) or "session taken over" (3)) and reconnecting is on,
/// the next call reconnects with a backoff that doubles up to a cap, asks
/// for the same client id, subscribes again to every filter, and goes on:
/// a publish is sent on the new connection, a subscribe waits for its SubAck
/// there. Reasons 2 and 3 are never retried: they end the client, and every
/// later call returns the same error. With reconnecting off, any lost
/// connection ends the client.
///
/// [`Client::publish`] is at most once: a publish it wrote to the socket
/// just before the broker died is lost. What the client knows (a closed
/// socket, a lost connection) it does not drop: the publish is retried on
/// the next connection within [`ClientOptions::request_timeout`], or fails.
/// [`Client::publish_qos1`] is at least once: the broker acknowledges it
/// (once stored, under `--durability immediate`), and until then it is
/// sent again on every new connection; [`Client::wait_acknowledged`]
/// waits for the acknowledgements. [`Client::subscribe_qos1`] with
/// [`ClientOptions::persistent_session`] gets the QoS 1 messages published
/// while the client was away.
///
/// ```no_run
/// use std::time::Duration;
/// use tinymq_net::{Address, ClientOptions};
///
/// let mut client = ClientOptions::new(Address::tcp("localhost:1883")).client_id("thermostat").connect()?;
/// client.subscribe("sensors/+/temperature")?;
/// client.publish("thermostat/state", b"on", true)?;
/// while let Some(message) = client.recv_timeout(Duration::from_secs(1))? {
///     println!("{} from {}: {:?}", message.topic, message.from, message.payload);
/// }
/// client.disconnect()?;
/// # Ok::<(), tinymq_net::ClientError>(())
/// ```
///
/// All methods take `&mut self`: a client is used from one thread at a
/// time (it is `Send`). A program that publishes from one thread and
/// receives on another uses two clients.
#[derive(Debug)]
pub struct Client {
    options: ClientOptions,
    session: ClientSession,
    connection: Option<Connection>,
    /// Received bytes not yet decoded: at most one frame's worth plus a read.
    unread: Vec<u8>,
    inbox: VecDeque<ReceivedMessage>,
    dropped: u64,
    awaited_ack: Option<AwaitedAck>,
    backoff: Duration,
    next_attempt: Option<Instant>,
    /// Why the last connection or attempt failed, to report if reconnecting
    /// runs out of time.
    last_failure: Option<Lost>,
    /// Set when the client cannot go on; every call returns it.
    ended: Option<Ended>,
    /// QoS 1 publishes acknowledged so far.
    acknowledged: u64,
    /// The last ConnAck's SESSION_PRESENT.
    session_present: bool,
}

impl ClientOptions {
    /// Connects; see [`Client::connect`].
    pub fn connect(self) -> Result<Client, ClientError> {
        Client::connect(self)
    }
}

impl Client {
    /// Connects to the broker and waits for its ConnAck, for at most the
    /// connect timeout. One attempt: a broker that cannot be reached or
    /// refuses is an error here, not retried.
    pub fn connect(options: ClientOptions) -> Result<Client, ClientError> {
        let session = ClientSession::new(&options.session, Instant::now()).map_err(ClientError::from_session)?;
        let mut client = Client {
            backoff: options.backoff_first,
            options,
            session,
            connection: None,
            unread: Vec::new(),
            inbox: VecDeque::new(),
            dropped: 0,
            awaited_ack: None,
            next_attempt: None,
            last_failure: None,
            ended: None,
            acknowledged: 0,
            session_present: false,
        };
        client.open(None).map_err(Lost::into_error)?;
        Ok(client)
    }

    /// The session's client id: the one asked for, or the one the broker
    /// assigned.
    pub fn client_id(&self) -> &str {
        self.session.client_id()
    }

    /// Whether the client holds an accepted connection right now (a lost
    /// connection is noticed during calls).
    pub fn is_connected(&self) -> bool {
        self.connection.is_some() && self.session.is_connected()
    }

    /// The filters subscribed to, in the order first subscribed; each is
    /// subscribed again on every new connection.
    pub fn subscriptions(&self) -> impl Iterator<Item = &str> {
        self.session.subscriptions()
    }

    /// Messages dropped because the inbox was full
    /// (see [`ClientOptions::inbox_limit`]).
    pub fn dropped_messages(&self) -> u64 {
        self.dropped
    }

    /// Publishes `payload` to `topic`, stored as the topic's retained value
    /// when `retain` (an empty retained payload deletes it, and is
    /// delivered, empty, to the topic's subscribers). Returns once
    /// the frame is written to the socket. When disconnected, reconnects
    /// first, within the request timeout.
    pub fn publish(&mut self, topic: &str, payload: &[u8], retain: bool) -> Result<(), ClientError> {
        self.check_open()?;
        let deadline = Instant::now() + self.options.request_timeout;
        let mut tries = 0;
        loop {
            if tries > 0 && Instant::now() >= deadline {
                return Err(self.gave_up());
            }
            tries += 1;
            // The broker may have closed the connection since the last call:
            // notice it now rather than write into a dead socket.
            if let Err(lost) = self.take_arrived() {
                self.connection_lost(lost)?;
            }
            match self.session.publish(Instant::now(), topic, payload, retain) {
                Ok(()) => {}
                Err(SessionError::NotConnected) => {
                    if !self.reconnect(Some(deadline))? {
                        return Err(self.gave_up());
                    }
                    continue;
                }
                Err(error) => return Err(ClientError::from_session(error)),
            }
            match self.flush() {
                Ok(()) => return Ok(()),
                Err(lost) => self.connection_lost(lost)?,
            }
        }
    }

    /// Subscribes to `filter` and waits for the broker's SubAck, within the
    /// request timeout (reconnecting included). A refused filter is
    /// [`ClientError::Refused`] and is not kept. The filter is subscribed
    /// again on every new connection. Retained values matching it arrive
    /// through [`Client::recv`] with `retained` set.
    pub fn subscribe(&mut self, filter: &str) -> Result<(), ClientError> {
        self.check_open()?;
        if let Err(lost) = self.take_arrived() {
            self.connection_lost(lost)?;
        }
        self.session.subscribe(Instant::now(), filter).map_err(ClientError::from_session)?;
        // When disconnected the Subscribe goes out after the next ConnAck.
        self.await_ack(AckKind::Subscribe, filter)
    }

    /// Unsubscribes from `filter` and waits for the broker's UnsubAck,
    /// within the request timeout. When disconnected there is nothing to
    /// wait for: a new connection starts without it.
    pub fn unsubscribe(&mut self, filter: &str) -> Result<(), ClientError> {
        self.check_open()?;
        if let Err(lost) = self.take_arrived() {
            self.connection_lost(lost)?;
        }
        let connected = self.is_connected();
        self.session.unsubscribe(Instant::now(), filter).map_err(ClientError::from_session)?;
        if !connected {
            return Ok(());
        }
        self.await_ack(AckKind::Unsubscribe, filter)
    }

    /// Waits for the next message, for at most `timeout` (`Ok(None)` then).
    /// Sends Pings meanwhile and reconnects when the connection is lost;
    /// a reconnect that is still failing when the time is up is
    /// `Ok(None)` too (see [`Client::is_connected`]), unless reconnecting
    /// is off.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Option<ReceivedMessage>, ClientError> {
        let deadline = Instant::now().checked_add(timeout);
        self.recv_until(deadline)
    }

    /// Waits for the next message, however long it takes, reconnecting
    /// as often as needed.
    pub fn recv(&mut self) -> Result<ReceivedMessage, ClientError> {
        loop {
            if let Some(message) = self.recv_until(None)? {
                return Ok(message);
            }
        }
    }

    /// Sends Disconnect and closes the connection. The broker drops the
    /// session's subscriptions.
    pub fn disconnect(mut self) -> Result<(), ClientError> {
        if self.connection.is_none() {
            return Ok(());
        }
        self.session.disconnect(Instant::now());
        let result = self.flush();
        if let Some(mut connection) = self.connection.take() {
            // Best effort: the socket closes when dropped anyway.
            let _ = connection.socket.shutdown();
        }
        result.map_err(Lost::into_error)
    }

    fn recv_until(&mut self, deadline: Option<Instant>) -> Result<Option<ReceivedMessage>, ClientError> {
        self.check_open()?;
        let mut waited = false;
        loop {
            if let Err(lost) = self.absorb_events() {
                self.connection_lost(lost)?;
            }
            if let Some(message) = self.inbox.pop_front() {
                return Ok(Some(message));
            }
            if self.connection.is_none() {
                if !self.reconnect(deadline)? {
                    return Ok(None);
                }
                continue;
            }
            if waited && deadline.is_some_and(|deadline| Instant::now() >= deadline) {
                return Ok(None);
            }
            if let Err(lost) = self.step(deadline) {
                self.connection_lost(lost)?;
            }
            waited = true;
        }
    }

    /// Waits for the ack of `filter`, reconnecting as needed, within the
    /// request timeout.
    fn await_ack(&mut self, kind: AckKind, filter: &str) -> Result<(), ClientError> {
        self.awaited_ack = Some(AwaitedAck { kind, filter: filter.to_owned(), result: None });
        let result = self.await_ack_inner();
        self.awaited_ack = None;
        result
    }

    fn await_ack_inner(&mut self) -> Result<(), ClientError> {
        let deadline = Instant::now() + self.options.request_timeout;
        loop {
            if let Err(lost) = self.absorb_events() {
                self.connection_lost(lost)?;
            }
            if let Some(result) = self.awaited_ack.as_mut().and_then(|ack| ack.result.take()) {
                return result.map_err(|Reason { code, text }| ClientError::Refused { code, text });
            }
            if self.connection.is_none() {
                if !self.reconnect(Some(deadline))? {
                    return Err(self.gave_up());
                }
                continue;
            }
            if Instant::now() >= deadline {
                return Err(ClientError::Timeout(self.options.request_timeout));
            }
            if let Err(lost) = self.step(Some(deadline)) {
                self.connection_lost(lost)?;
            }
        }
    }

    fn check_open(&self) -> Result<(), ClientError> {
        match &self.ended {
            None => Ok(()),
            Some(Ended::Refused(Reason { code, text })) => {
                Err(ClientError::Refused { code: *code, text: text.clone() })
            }
            Some(Ended::Terminated(Reason { code, text })) => {
                Err(ClientError::SessionEnded { code: *code, text: text.clone() })
            }
            Some(Ended::Closed) => Err(ClientError::Closed),
        }
    }

    /// One connection attempt: socket, Connect, and wait for ConnAck until
    /// the connect timeout or `deadline`, whichever is first (but at least
    /// [`MIN_ATTEMPT_TIME`]).
    fn open(&mut self, deadline: Option<Instant>) -> Result<(), Lost> {
        let result = self.try_open(deadline);
        if result.is_err() {
            self.drop_connection();
        }
        result
    }

    fn try_open(&mut self, deadline: Option<Instant>) -> Result<(), Lost> {
        let start = Instant::now();
        let mut until = start + self.options.connect_timeout;
        if let Some(deadline) = deadline {
            until = until.min(deadline.max(start + MIN_ATTEMPT_TIME));
        }
        self.drop_connection();
        let socket = connect(&self.options.address, self.options.tls.as_ref(), until)?;
        self.connection = Some(Connection::new(socket).map_err(Lost::Io)?);
        self.session.connect(Instant::now());
        loop {
            self.absorb_events()?;
            if self.connection.as_ref().is_some_and(|connection| connection.accepted) {
                log::debug!("connected to {} as {:?}", self.options.address, self.session.client_id());
                return Ok(());
            }
            if Instant::now() >= until {
                return Err(Lost::NoConnAck(until - start));
            }
            self.step(Some(until))?;
        }
    }

    /// Reconnects, waiting out the backoff, until connected (`Ok(true)`)
    /// or `deadline` (`Ok(false)`; `None` waits for ever). Fails when the
    /// broker refuses in a way that is not retried.
    fn reconnect(&mut self, deadline: Option<Instant>) -> Result<bool, ClientError> {
        loop {
            if let Some(at) = self.next_attempt {
                let now = Instant::now();
                if at > now {
                    let wake = deadline.map_or(at, |deadline| deadline.min(at));
                    std::thread::sleep(wake.saturating_duration_since(now));
                    if Instant::now() < at {
                        return Ok(false);
                    }
                }
            }
            match self.open(deadline) {
                Ok(()) => {
                    if self.last_failure.take().is_some() {
                        log::info!("reconnected to {} as {:?}", self.options.address, self.session.client_id());
                    }
                    self.backoff = self.options.backoff_first;
                    self.next_attempt = None;
                    return Ok(true);
                }
                Err(lost) if !lost.is_retried() => return Err(self.end(lost)),
                Err(lost) => {
                    log::debug!(
                        "reconnecting to {} failed: {lost}; next try in {:?}",
                        self.options.address,
                        self.backoff
                    );
                    self.next_attempt = Some(Instant::now() + self.backoff);
                    self.backoff = (self.backoff * 2).min(self.options.backoff_max);
                    self.last_failure = Some(lost);
                }
            }
        }
    }

    /// The connection is gone: drop it, and decide whether the client can
    /// go on (`Ok`: reconnect on the next need) or not.
    fn connection_lost(&mut self, lost: Lost) -> Result<(), ClientError> {
        self.drop_connection();
        if let Some(ack) = &mut self.awaited_ack {
            // A new connection starts without the filter: unsubscribed.
            if ack.kind == AckKind::Unsubscribe && ack.result.is_none() {
                ack.result = Some(Ok(()));
            }
        }
        if !lost.is_retried() || !self.options.reconnect {
            return Err(self.end(lost));
        }
        log::warn!("connection to {} lost: {lost}; reconnecting", self.options.address);
        self.last_failure = Some(lost);
        Ok(())
    }

    /// Ends the client because of `lost`, and returns the error to report.
    fn end(&mut self, lost: Lost) -> ClientError {
        log::warn!("connection to {} ended: {lost}", self.options.address);
        let error = lost.into_error();
        self.ended = Some(match &error {
            ClientError::Refused { code, text } => Ended::Refused(Reason { code: *code, text: text.clone() }),
            ClientError::SessionEnded { code, text } => Ended::Terminated(Reason { code: *code, text: text.clone() }),
            _ => Ended::Closed,
        });
        error
    }

    /// The error for a call whose time ran out while disconnected.
    fn gave_up(&mut self) -> ClientError {
        self.last_failure.take().map_or(ClientError::Timeout(self.options.request_timeout), Lost::into_error)
    }

    fn drop_connection(&mut self) {
        self.connection = None;
        self.session.reset();
        self.unread.clear();
    }

    /// Takes what the broker already sent, without waiting, and handles
    /// what is due.
    fn take_arrived(&mut self) -> Result<(), Lost> {
        if self.connection.is_none() {
            return Ok(());
        }
        let now = Instant::now();
        for _ in 0..MAX_DRAIN_READS {
            self.absorb_events()?;
            if !self.step(Some(now))? {
                break;
            }
        }
        self.absorb_events()
    }

    /// One turn: write what is queued, wait for input until `until` or the
    /// keep-alive timer, decode it, handle the timer, write again. Returns
    /// whether anything was read.
    fn step(&mut self, until: Option<Instant>) -> Result<bool, Lost> {
        self.flush()?;
        let Some(connection) = self.connection.as_mut() else {
            return Ok(false);
        };
        let wake = match (until, self.session.poll_timeout()) {
            (Some(until), Some(timer)) => Some(until.min(timer)),
            (until, timer) => until.or(timer),
        };
        let read = match connection.read_into(&mut self.unread, wake).map_err(Lost::Io)? {
            Some(0) => return Err(Lost::Eof),
            Some(_) => true,
            None => false,
        };
        let now = Instant::now();
        // After a broker Disconnect the rest is not read; its event is pending.
        if read && self.session.state() != tinymq_core::client::ConnectionState::Closed {
            let used = self.session.handle_input(now, &self.unread).map_err(Lost::Session)?;
            self.unread.drain(..used);
        }
        if self.session.poll_timeout().is_some_and(|timer| now >= timer) {
            self.session.handle_timeout(now).map_err(Lost::Session)?;
        }
        self.flush()?;
        Ok(read)
    }

    fn flush(&mut self) -> Result<(), Lost> {
        match self.connection.as_mut() {
            Some(connection) => {
                let until = Instant::now() + self.options.connect_timeout;
                connection.flush(&mut self.session, until).map_err(Lost::Io)
            }
            None => Ok(()),
        }
    }

    /// Moves the state machine's events where the calls look for them, up
    /// to and including a ConnAck.
    fn absorb_events(&mut self) -> Result<(), Lost> {
        while let Some(event) = self.session.poll_event() {
            match event {
                ClientEvent::Connected { session_present, .. } => {
                    self.session_present = session_present;
                    if let Some(connection) = &mut self.connection {
                        connection.accepted = true;
                    }
                    // Let a connecting caller see the ConnAck before whatever follows it.
                    return Ok(());
                }
                ClientEvent::Message { topic, payload, from, retained, .. } => {
                    if self.inbox.len() >= self.options.inbox_limit {
                        self.inbox.pop_front();
                        self.dropped += 1;
                        if self.dropped.is_power_of_two() {
                            log::warn!(
                                "inbox full ({} messages): {} dropped so far, oldest first",
                                self.options.inbox_limit,
                                self.dropped
                            );
                        }
                    }
                    self.inbox.push_back(ReceivedMessage { topic, payload, from, retained });
                }
                ClientEvent::SubAck { filter, result } => self.acked(AckKind::Subscribe, filter, result),
                ClientEvent::UnsubAck { filter, result } => self.acked(AckKind::Unsubscribe, filter, result),
                ClientEvent::Published { .. } => self.acknowledged += 1,
                ClientEvent::Disconnected(reason) => {
                    let accepted = self.connection.as_ref().is_some_and(|connection| connection.accepted);
                    return Err(Lost::Broker { reason, accepted });
                }
            }
        }
        Ok(())
    }

    fn acked(&mut self, kind: AckKind, filter: String, result: Result<(), Reason>) {
        match &mut self.awaited_ack {
            Some(ack) if ack.kind == kind && ack.filter == filter && ack.result.is_none() => ack.result = Some(result),
            // A resubscription after a reconnect; it is forgotten if refused.
            _ => match result {
                Ok(()) => log::debug!("{kind} {filter:?} accepted"),
                Err(reason) => log::warn!("{kind} {filter:?} refused by the broker: {reason}"),
            },
        }
    }
}
