//! What an in-process client's queue holds. A small message is copied into
//! one growing byte buffer, so queuing it allocates nothing and the
//! receiving thread frees nothing the publishing thread allocated; the
//! topic and sender are held once for each run of messages that share
//! them. A large message stays shared with its other receivers.
//!
//! The receiver takes the whole queue by swapping buffers with it
//! ([`ReceivedBatch`]) and reads the messages in place.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::Arc;

use tinymq_core::{Delivery, Message, Qos};

/// A message received by an in-process client. It owns its payload (or
/// shares the broker's copy of a large one).
#[derive(Clone, Debug)]
pub struct Received {
    message: Message,
    retained: bool,
    /// The packet id of a QoS 1 message from the client's session (for
    /// [`LocalClient::ack`](crate::LocalClient::ack)); 0 at QoS 0.
    pub(crate) packet_id: u16,
    dup: bool,
}

impl Received {
    /// A QoS 1 message taken from the client's session.
    pub(crate) fn qos1(message: Message, packet_id: u16, dup: bool) -> Self {
        Received { message, retained: false, packet_id, dup }
    }
    /// The QoS it was delivered at: [`Qos::AtLeastOnce`] for a message of
    /// a QoS 1 subscription published at QoS 1, which the client
    /// acknowledges (on receipt, or with
    /// [`LocalClient::ack`](crate::LocalClient::ack)).
    pub fn qos(&self) -> Qos {
        if self.packet_id == 0 { Qos::AtMostOnce } else { Qos::AtLeastOnce }
    }
    /// Whether this QoS 1 message may have been received before (by this
    /// client id, before a restart or a takeover): at-least-once delivery
    /// means duplicates are possible, and this says when.
    pub fn is_duplicate(&self) -> bool {
        self.dup
    }
    /// The topic it was published to.
    pub fn topic(&self) -> &str {
        &self.message.topic
    }
    /// The payload.
    pub fn payload(&self) -> &[u8] {
        &self.message.payload
    }
    /// The sender's client id (or HTTP `from`).
    pub fn from(&self) -> &str {
        &self.message.from
    }
    /// The whole message, with its time stamp and sender address.
    pub fn message(&self) -> &Message {
        &self.message
    }
    /// Whether it is a stored value sent because of a new subscription.
    pub fn is_retained(&self) -> bool {
        self.retained
    }
}

/// A message in a [`ReceivedBatch`], read where it lies.
#[derive(Clone, Copy, Debug)]
pub struct ReceivedRef<'a> {
    topic: &'a Arc<str>,
    from: &'a Arc<str>,
    payload: &'a [u8],
    updated_time: u64,
    ip: Option<IpAddr>,
    retained: bool,
    /// The shared message, when it was not copied.
    shared: Option<&'a Arc<Delivery>>,
}

impl<'a> ReceivedRef<'a> {
    /// The topic it was published to.
    pub fn topic(&self) -> &'a str {
        self.topic
    }
    /// The payload.
    pub fn payload(&self) -> &'a [u8] {
        self.payload
    }
    /// The sender's client id (or HTTP `from`).
    pub fn from(&self) -> &'a str {
        self.from
    }
    /// Unix seconds: given by the sender, else the broker's clock.
    pub fn updated_time(&self) -> u64 {
        self.updated_time
    }
    /// The sender's address, when it came over a network transport.
    pub fn ip(&self) -> Option<IpAddr> {
        self.ip
    }
    /// Whether it is a stored value sent because of a new subscription.
    pub fn is_retained(&self) -> bool {
        self.retained
    }
    /// An owned copy, to keep beyond the batch.
    pub fn to_received(&self) -> Received {
        let message = match self.shared {
            Some(delivery) => delivery.message().clone(),
            None => Message {
                topic: self.topic.clone(),
                payload: self.payload.into(),
                from: self.from.clone(),
                updated_time: self.updated_time,
                ip: self.ip,
            },
        };
        Received { message, retained: self.retained, packet_id: 0, dup: false }
    }
}

/// Messages taken from an in-process client's queue in one go by
/// [`LocalClient::recv_many`](crate::LocalClient::recv_many), read in
/// place. Reused from call to call, it keeps its buffers: a steady stream
/// costs no allocation on either side.
#[derive(Debug, Default)]
pub struct ReceivedBatch {
    pub(crate) pending: Pending,
}

impl ReceivedBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }
    /// How many messages it holds.
    pub fn len(&self) -> usize {
        self.pending.len
    }
    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.pending.len == 0
    }
    /// The messages, oldest first.
    pub fn iter(&self) -> ReceivedIter<'_> {
        self.pending.iter()
    }
}

impl<'a> IntoIterator for &'a ReceivedBatch {
    type Item = ReceivedRef<'a>;
    type IntoIter = ReceivedIter<'a>;
    fn into_iter(self) -> ReceivedIter<'a> {
        self.iter()
    }
}

/// Payloads shorter than this are copied into each in-process queue;
/// longer ones are shared.
pub(crate) const COPY_BELOW: usize = 4096;

/// Who sent a run of copied messages, to what topic and when.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Origin<'a> {
    pub(crate) topic: &'a Arc<str>,
    pub(crate) from: &'a Arc<str>,
    pub(crate) updated_time: u64,
    pub(crate) ip: Option<IpAddr>,
    pub(crate) retained: bool,
}

impl<'a> Origin<'a> {
    fn of(message: &'a Message, retained: bool) -> Self {
        Origin {
            topic: &message.topic,
            from: &message.from,
            updated_time: message.updated_time,
            ip: message.ip,
            retained,
        }
    }
}

#[derive(Debug)]
enum Run {
    /// `count` copied messages in a row from one origin; their lengths are
    /// the next `count` of [`Pending::lens`].
    Copied { topic: Arc<str>, from: Arc<str>, updated_time: u64, ip: Option<IpAddr>, retained: bool, count: usize },
    /// One message shared with its other receivers.
    Shared { delivery: Arc<Delivery>, retained: bool },
}

impl Run {
    fn count(&self) -> usize {
        match self {
            Run::Copied { count, .. } => *count,
            Run::Shared { .. } => 1,
        }
    }
}

/// Messages in order: runs of copied messages and shared ones.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    runs: VecDeque<Run>,
    /// The payload length of each copied message.
    lens: VecDeque<u32>,
    /// The copied payloads back to back, from `read` on.
    bytes: Vec<u8>,
    read: usize,
    len: usize,
    /// Payload bytes of the messages, copied or shared.
    payload_bytes: usize,
    /// The topic and sender of the last run of copied messages removed,
    /// kept for the next run: the publisher reuses them rather than clone
    /// its own, so a stream taken a few messages at a time does not make
    /// both threads write the same reference counts.
    spare: Option<(Arc<str>, Arc<str>)>,
}

/// Keeping this much of a buffer needs no reason (see [`Pending::clear`]).
const KEEP_BYTES: usize = 1 << 20;
/// Consumed bytes are moved out of the front of the buffer once there are
/// at least this many and they are half of it.
const COMPACT_AFTER: usize = 64 << 10;

impl Pending {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(crate) fn payload_bytes(&self) -> usize {
        self.payload_bytes
    }

    /// Queues a copy of `payload` (which should be under [`COPY_BELOW`]).
    pub(crate) fn push_copy(&mut self, origin: Origin<'_>, payload: &[u8]) {
        let len = u32::try_from(payload.len()).expect("a copied payload is small");
        match self.runs.back_mut() {
            Some(Run::Copied { topic, from, updated_time, ip, retained, count })
                if Arc::ptr_eq(topic, origin.topic)
                    && Arc::ptr_eq(from, origin.from)
                    && *updated_time == origin.updated_time
                    && *ip == origin.ip
                    && *retained == origin.retained =>
            {
                *count += 1;
            }
            _ => {
                let (topic, from) = match self.spare.take() {
                    Some((topic, from)) if Arc::ptr_eq(&topic, origin.topic) && Arc::ptr_eq(&from, origin.from) => {
                        (topic, from)
                    }
                    _ => (origin.topic.clone(), origin.from.clone()),
                };
                self.runs.push_back(Run::Copied {
                    topic,
                    from,
                    updated_time: origin.updated_time,
                    ip: origin.ip,
                    retained: origin.retained,
                    count: 1,
                });
            }
        }
        self.lens.push_back(len);
        self.bytes.extend_from_slice(payload);
        self.len += 1;
        self.payload_bytes += payload.len();
    }

    /// Queues `delivery`: copied if small, else shared.
    pub(crate) fn push_delivery(&mut self, delivery: &Arc<Delivery>, retained: bool) {
        let message = delivery.message();
        if message.payload.len() < COPY_BELOW {
            self.push_copy(Origin::of(message, retained), &message.payload);
        } else {
            self.runs.push_back(Run::Shared { delivery: delivery.clone(), retained });
            self.len += 1;
            self.payload_bytes += message.payload.len();
        }
    }

    /// Removes the oldest message and gives it to `f`.
    pub(crate) fn pop_with<R>(&mut self, f: impl FnOnce(ReceivedRef<'_>) -> R) -> Option<R> {
        let run = self.runs.front_mut()?;
        let result = match run {
            Run::Copied { topic, from, updated_time, ip, retained, count } => {
                let len = self.lens.pop_front().expect("a length for each copied message") as usize;
                let start = self.read;
                self.read += len;
                self.payload_bytes -= len;
                *count -= 1;
                let done = *count == 0;
                let result = f(ReceivedRef {
                    topic,
                    from,
                    payload: &self.bytes[start..start + len],
                    updated_time: *updated_time,
                    ip: *ip,
                    retained: *retained,
                    shared: None,
                });
                if done {
                    let run = self.runs.pop_front();
                    self.keep_spare(run);
                }
                result
            }
            Run::Shared { delivery, retained } => {
                self.payload_bytes -= delivery.message().payload.len();
                let result = f(shared_ref(delivery, *retained));
                self.runs.pop_front();
                result
            }
        };
        self.len -= 1;
        if self.len == 0 {
            self.bytes.clear();
            self.read = 0;
        } else if self.read >= COMPACT_AFTER && self.read * 2 >= self.bytes.len() {
            self.bytes.drain(..self.read);
            self.read = 0;
        }
        Some(result)
    }

    /// Empties it for reuse. The buffers keep their capacity unless this
    /// use filled less than an eighth of a large one: a burst's memory goes
    /// back once the burst is over, and a steady stream reallocates nothing.
    pub(crate) fn clear(&mut self) {
        if self.bytes.capacity() > KEEP_BYTES && self.bytes.len() < self.bytes.capacity() / 8 {
            self.bytes = Vec::new();
        }
        // Each entry is a few bytes: as many as KEEP_BYTES's worth of small
        // messages are kept.
        shrink_after_burst(&mut self.lens, KEEP_BYTES / 16);
        shrink_after_burst(&mut self.runs, KEEP_BYTES / 64);
        let last = self.runs.pop_back();
        self.keep_spare(last);
        self.runs.clear();
        self.lens.clear();
        self.bytes.clear();
        self.read = 0;
        self.len = 0;
        self.payload_bytes = 0;
    }

    fn keep_spare(&mut self, run: Option<Run>) {
        if let Some(Run::Copied { topic, from, .. }) = run {
            self.spare = Some((topic, from));
        }
    }

    pub(crate) fn iter(&self) -> ReceivedIter<'_> {
        ReceivedIter { runs: self.runs.iter(), run: None, lens: self.lens.iter(), bytes: &self.bytes[self.read..] }
    }
}

/// Frees `entries`' buffer if it is over `keep` entries and this use filled
/// less than an eighth of it.
fn shrink_after_burst<T>(entries: &mut VecDeque<T>, keep: usize) {
    if entries.capacity() > keep && entries.len() < entries.capacity() / 8 {
        *entries = VecDeque::new();
    }
}

fn shared_ref(delivery: &Arc<Delivery>, retained: bool) -> ReceivedRef<'_> {
    let message = delivery.message();
    ReceivedRef {
        topic: &message.topic,
        from: &message.from,
        payload: &message.payload,
        updated_time: message.updated_time,
        ip: message.ip,
        retained,
        shared: Some(delivery),
    }
}

/// The messages of a [`ReceivedBatch`], oldest first.
#[derive(Debug)]
pub struct ReceivedIter<'a> {
    runs: std::collections::vec_deque::Iter<'a, Run>,
    /// The run being read and how many of its messages are left.
    run: Option<(&'a Run, usize)>,
    lens: std::collections::vec_deque::Iter<'a, u32>,
    bytes: &'a [u8],
}

impl<'a> Iterator for ReceivedIter<'a> {
    type Item = ReceivedRef<'a>;

    fn next(&mut self) -> Option<ReceivedRef<'a>> {
        loop {
            match &mut self.run {
                Some((Run::Copied { topic, from, updated_time, ip, retained, .. }, left)) if *left > 0 => {
                    *left -= 1;
                    let len = *self.lens.next().expect("a length for each copied message") as usize;
                    let (payload, rest) = self.bytes.split_at(len);
                    self.bytes = rest;
                    return Some(ReceivedRef {
                        topic,
                        from,
                        payload,
                        updated_time: *updated_time,
                        ip: *ip,
                        retained: *retained,
                        shared: None,
                    });
                }
                Some((Run::Shared { delivery, retained }, left)) if *left > 0 => {
                    *left = 0;
                    return Some(shared_ref(delivery, *retained));
                }
                _ => {
                    let run = self.runs.next()?;
                    self.run = Some((run, run.count()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(topic: &str, payload: &[u8]) -> Arc<Delivery> {
        Delivery::new(Message {
            topic: topic.into(),
            payload: payload.into(),
            from: "me".into(),
            updated_time: 7,
            ip: None,
        })
    }

    /// A topic and a sender, for [`live`].
    fn names() -> (Arc<str>, Arc<str>) {
        (Arc::from("t"), Arc::from("a"))
    }

    /// A live message's origin.
    fn live<'a>(topic: &'a Arc<str>, from: &'a Arc<str>) -> Origin<'a> {
        Origin { topic, from, updated_time: 1, ip: None, retained: false }
    }

    fn payloads(pending: &Pending) -> Vec<Vec<u8>> {
        pending.iter().map(|m| m.payload().to_vec()).collect()
    }

    #[test]
    fn copied_and_shared_messages_come_out_in_the_order_they_went_in() {
        let mut pending = Pending::default();
        let (topic, from) = names();
        let origin = live(&topic, &from);
        pending.push_copy(origin, b"one");
        pending.push_copy(origin, b"two");
        let big = vec![9u8; COPY_BELOW];
        pending.push_delivery(&delivery("u", &big), true);
        pending.push_delivery(&delivery("v", b"four"), false);
        pending.push_copy(origin, b"");
        assert_eq!(pending.len(), 5);
        assert_eq!(pending.runs.len(), 4, "the first two share a run; the others differ in origin");
        assert_eq!(payloads(&pending), [&b"one"[..], b"two", &big, b"four", b""]);
        let topics: Vec<_> = pending.iter().map(|m| (m.topic().to_owned(), m.is_retained())).collect();
        assert_eq!(
            topics,
            [("t", false), ("t", false), ("u", true), ("v", false), ("t", false)].map(|(t, r)| (t.into(), r))
        );
        let first = pending.pop_with(|m| m.to_received()).unwrap();
        assert_eq!((first.topic(), first.payload(), first.from()), ("t", &b"one"[..], "a"));
        assert_eq!(payloads(&pending), [&b"two"[..], &big, b"four", b""]);
        let mut popped = Vec::new();
        while let Some(m) = pending.pop_with(|m| m.to_received()) {
            popped.push(m.payload().to_vec());
        }
        assert_eq!(popped, [&b"two"[..], &big, b"four", b""]);
        assert!(pending.is_empty() && pending.bytes.is_empty() && pending.lens.is_empty());
        assert_eq!(pending.payload_bytes(), 0);
    }

    #[test]
    fn payload_bytes_count_copied_and_shared_messages_until_they_leave() {
        let mut pending = Pending::default();
        let (topic, from) = names();
        let origin = live(&topic, &from);
        pending.push_copy(origin, &[0; 10]);
        pending.push_delivery(&delivery("u", &[0; COPY_BELOW + 5]), false);
        pending.push_delivery(&delivery("v", &[0; 3]), false);
        assert_eq!(pending.payload_bytes(), 10 + COPY_BELOW + 5 + 3);
        pending.pop_with(|_| ());
        assert_eq!(pending.payload_bytes(), COPY_BELOW + 5 + 3);
        pending.pop_with(|_| ());
        assert_eq!(pending.payload_bytes(), 3);
        pending.clear();
        assert_eq!(pending.payload_bytes(), 0);
    }

    #[test]
    fn a_queue_read_one_at_a_time_does_not_keep_what_was_read() {
        let mut pending = Pending::default();
        let (topic, from) = names();
        let origin = live(&topic, &from);
        pending.push_copy(origin, &[0; 100]);
        for i in 0..100_000u32 {
            pending.push_copy(origin, &i.to_be_bytes());
            pending.pop_with(|_| ()).unwrap();
        }
        assert_eq!(pending.len(), 1);
        assert_eq!(pending.iter().next().unwrap().payload(), 99_999u32.to_be_bytes());
        assert!(pending.bytes.len() <= 2 * COMPACT_AFTER, "{} bytes held for one message", pending.bytes.len());
    }

    #[test]
    fn clearing_after_a_burst_gives_its_memory_back() {
        let mut pending = Pending::default();
        let (topic, from) = names();
        let origin = live(&topic, &from);
        for _ in 0..100_000 {
            pending.push_copy(origin, &[1; 20]);
        }
        pending.clear();
        assert!(pending.bytes.capacity() > KEEP_BYTES, "a full buffer is kept for the next batch");
        pending.push_copy(origin, b"small");
        pending.clear();
        assert_eq!(pending.bytes.capacity(), 0, "a large buffer mostly unused is freed");
        assert_eq!(pending.lens.capacity(), 0);
        // The same for a burst of shared messages, which use no bytes.
        let big = delivery("u", &[0; COPY_BELOW]);
        for _ in 0..100_000 {
            pending.push_delivery(&big, false);
        }
        pending.clear();
        pending.push_delivery(&big, false);
        pending.clear();
        assert_eq!(pending.runs.capacity(), 0, "the runs of a past burst are freed");
    }
}
