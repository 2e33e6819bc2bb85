//! Acknowledged delivery for the blocking client: QoS 1 publishes with a
//! window, waiting for their acknowledgements, and QoS 1 subscriptions.

use std::time::{Duration, Instant};

use tinymq_core::Qos;
use tinymq_core::client::ClientError as SessionError;

use super::connection::AckKind;
use super::{Client, ClientError};

impl Client {
    /// Publishes at QoS 1: the broker acknowledges it once it is routed and
    /// queued for every QoS 1 subscription (`--durability batched`) or once
    /// the queued copies are committed to its store (`immediate`). Returns
    /// its packet id as soon as the Publish is written, so several are in
    /// flight at once; when the window
    /// ([`ClientOptions::max_inflight`](crate::ClientOptions::max_inflight))
    /// is full it first waits, within the request timeout, for an
    /// acknowledgement. Unacknowledged publishes are sent again (DUP) on
    /// the next connection; [`Client::wait_acknowledged`] waits for them.
    pub fn publish_qos1(&mut self, topic: &str, payload: &[u8], retain: bool) -> Result<u16, ClientError> {
        self.check_open()?;
        let deadline = Instant::now() + self.options.request_timeout;
        loop {
            if let Err(lost) = self.take_arrived() {
                self.connection_lost(lost)?;
            }
            match self.session.publish_qos1(Instant::now(), topic, payload, retain) {
                Ok(packet_id) => {
                    if let Err(lost) = self.flush() {
                        // Kept by the session: sent again after the reconnect.
                        self.connection_lost(lost)?;
                    }
                    return Ok(packet_id);
                }
                Err(SessionError::WindowFull(_)) => {}
                Err(error) => return Err(ClientError::from_session(error)),
            }
            if Instant::now() >= deadline {
                return Err(ClientError::Timeout(self.options.request_timeout));
            }
            if self.connection.is_none() {
                if !self.reconnect(Some(deadline))? {
                    return Err(self.gave_up());
                }
                continue;
            }
            if let Err(lost) = self.step(Some(deadline)) {
                self.connection_lost(lost)?;
            }
        }
    }

    /// Waits, for at most `timeout`, until the broker acknowledged every
    /// QoS 1 publish, reconnecting (and so resending) as needed. Returns
    /// how many are still unacknowledged (0: all are).
    pub fn wait_acknowledged(&mut self, timeout: Duration) -> Result<usize, ClientError> {
        self.check_open()?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Err(lost) = self.absorb_events() {
                self.connection_lost(lost)?;
            }
            let left = self.session.unacknowledged();
            if left == 0 || Instant::now() >= deadline {
                return Ok(left);
            }
            if self.connection.is_none() {
                if !self.reconnect(Some(deadline))? {
                    return Ok(self.session.unacknowledged());
                }
                continue;
            }
            if let Err(lost) = self.step(Some(deadline)) {
                self.connection_lost(lost)?;
            }
        }
    }

    /// QoS 1 publishes the broker has not acknowledged yet.
    pub fn unacknowledged(&self) -> usize {
        self.session.unacknowledged()
    }

    /// QoS 1 publishes the broker acknowledged since the client was made.
    pub fn acknowledged(&self) -> u64 {
        self.acknowledged
    }

    /// Subscribes to `filter` at QoS 1 and waits for the broker's SubAck:
    /// matching QoS 1 publishes are queued for this client (and, with
    /// [`ClientOptions::persistent_session`](crate::ClientOptions::persistent_session),
    /// kept while it is away) and sent again until it acknowledges them. A
    /// message is acknowledged when the client takes it off the socket
    /// into its inbox.
    pub fn subscribe_qos1(&mut self, filter: &str) -> Result<(), ClientError> {
        self.check_open()?;
        if let Err(lost) = self.take_arrived() {
            self.connection_lost(lost)?;
        }
        self.session.subscribe_qos(Instant::now(), filter, Qos::AtLeastOnce).map_err(ClientError::from_session)?;
        self.await_ack(AckKind::Subscribe, filter)
    }

    /// Whether the broker resumed a stored session on the last connection
    /// (SESSION_PRESENT).
    pub fn session_present(&self) -> bool {
        self.session_present
    }
}
