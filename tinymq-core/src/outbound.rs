//! A connection's bounded queue of bytes to send.
//!
//! Deliveries are shared frames (`Arc<[u8]>`) queued by reference, so a
//! fan-out copies no payload; small control frames are appended to an owned
//! tail chunk. The shell writes the front chunks (vectored) and calls
//! [`Outbound::consume`] with what the socket took.

use std::collections::VecDeque;
use std::sync::Arc;

/// One piece of the queue.
#[derive(Debug)]
enum Chunk {
    Shared(Arc<[u8]>),
    Owned(Vec<u8>),
}

impl Chunk {
    fn bytes(&self) -> &[u8] {
        match self {
            Chunk::Shared(bytes) => bytes,
            Chunk::Owned(bytes) => bytes,
        }
    }
}

/// Owned chunks grow to this size before a new one starts, so the queue of
/// a connection that receives only small frames stays short.
const OWNED_CHUNK: usize = 16 * 1024;
/// Room past [`OWNED_CHUNK`] that a chunk started after a full one is
/// allocated with, so the frame that crosses the mark fits too: a stream of
/// owned bytes allocates each chunk once, never grows it (growing by
/// doubling copied each byte about twice more, an eighth of a bridge's
/// time). The first chunk of a queue starts empty and grows: a connection
/// queueing a small frame holds a small buffer.
const OWNED_ROOM: usize = 2 * 1024;
/// Shared frames smaller than this are copied into the owned tail instead:
/// one memcpy is cheaper than one more iovec and a refcount.
pub const COPY_BELOW: usize = 256;

/// The queue. `len()` counts unsent bytes; pushes fail past `limit`.
#[derive(Debug)]
pub struct Outbound {
    chunks: VecDeque<Chunk>,
    /// Bytes of the front chunk already sent.
    front_offset: usize,
    len: usize,
    limit: usize,
    /// A client that streams to one server (a bridge): full-size owned
    /// chunks already sent, kept (up to [`SPARES`], even when the queue
    /// empties) for the next bytes, rather than given back to the allocator,
    /// which gave them back to the system, to be faulted in again every
    /// turn. `None` for a connection: an idle one holds no buffer (and the
    /// slot stays one pointer larger, not a `Vec`).
    #[allow(clippy::box_collection, reason = "one pointer in every connection's slot, not a Vec's three words")]
    spares: Option<Box<Vec<Vec<u8>>>>,
}

/// Spares a streaming queue keeps: enough for a socket write.
const SPARES: usize = 8;

/// The queue is over its limit: the peer is not reading fast enough.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("outbound queue over its limit of {limit} bytes")]
pub struct Overflow {
    /// The limit in force.
    pub limit: usize,
}

impl Outbound {
    /// An empty queue that refuses pushes past `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Outbound { chunks: VecDeque::new(), front_offset: 0, len: 0, limit, spares: None }
    }

    /// An empty queue for a client that streams to one server (a bridge):
    /// it keeps a few sent chunks for the next bytes even when emptied.
    pub fn streaming(limit: usize) -> Self {
        Outbound { spares: Some(Box::default()), ..Outbound::new(limit) }
    }

    /// Unsent bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether everything has been sent.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The byte limit.
    pub fn limit(&self) -> usize {
        self.limit
    }

    fn check(&self, extra: usize) -> Result<(), Overflow> {
        if self.len + extra > self.limit { Err(Overflow { limit: self.limit }) } else { Ok(()) }
    }

    /// Queues a shared frame without copying it (small ones are copied).
    pub fn push_shared(&mut self, frame: &Arc<[u8]>) -> Result<(), Overflow> {
        self.check(frame.len())?;
        if frame.len() < COPY_BELOW {
            self.tail().extend_from_slice(frame);
        } else {
            self.chunks.push_back(Chunk::Shared(frame.clone()));
        }
        self.len += frame.len();
        Ok(())
    }

    /// Appends bytes written by `write` into the owned tail. The limit is
    /// checked after writing; on overflow the bytes are removed again.
    pub fn push_with(&mut self, write: impl FnOnce(&mut Vec<u8>)) -> Result<(), Overflow> {
        let (len, limit) = (self.len, self.limit);
        let tail = self.tail();
        let before = tail.len();
        write(tail);
        let added = tail.len() - before;
        if len + added > limit {
            // This chunk, not `self.tail()`: the write may have filled it,
            // and a new tail would leave the refused bytes queued.
            tail.truncate(before);
            return Err(Overflow { limit });
        }
        self.len += added;
        Ok(())
    }

    /// Queues control bytes even past the limit (a final Disconnect, an
    /// error response): the connection closes after them anyway.
    pub fn push_final(&mut self, bytes: &[u8]) {
        self.tail().extend_from_slice(bytes);
        self.len += bytes.len();
    }

    fn tail(&mut self) -> &mut Vec<u8> {
        let (start_new, after_full) = match self.chunks.back() {
            Some(Chunk::Owned(bytes)) => (bytes.len() >= OWNED_CHUNK, true),
            _ => (true, false),
        };
        if start_new {
            // Full size only in a stream of owned bytes (or a streaming
            // client's empty queue): small frames between shared ones get
            // small chunks, so the memory held stays near `len`.
            let chunk = if after_full || (self.spares.is_some() && self.chunks.is_empty()) {
                let spare = self.spares.as_mut().and_then(|spares| spares.pop());
                spare.unwrap_or_else(|| Vec::with_capacity(OWNED_CHUNK + OWNED_ROOM))
            } else {
                Vec::new()
            };
            self.chunks.push_back(Chunk::Owned(chunk));
        }
        match self.chunks.back_mut() {
            Some(Chunk::Owned(bytes)) => bytes,
            _ => unreachable!("an owned chunk was just pushed"),
        }
    }

    /// Fills `slices` with the unsent bytes in order, up to `slices.len()`
    /// chunks, for one vectored write. Returns how many were filled.
    pub fn front_slices<'a>(&'a self, slices: &mut [&'a [u8]]) -> usize {
        let mut filled = 0;
        for (i, chunk) in self.chunks.iter().enumerate() {
            if filled == slices.len() {
                break;
            }
            let bytes = if i == 0 { &chunk.bytes()[self.front_offset..] } else { chunk.bytes() };
            if !bytes.is_empty() {
                slices[filled] = bytes;
                filled += 1;
            }
        }
        filled
    }

    /// Marks `sent` bytes from the front as written.
    pub fn consume(&mut self, mut sent: usize) {
        debug_assert!(sent <= self.len);
        self.len -= sent.min(self.len);
        while sent > 0 {
            let Some(front) = self.chunks.front() else { break };
            let remaining = front.bytes().len() - self.front_offset;
            if sent < remaining {
                self.front_offset += sent;
                return;
            }
            sent -= remaining;
            if let Some(Chunk::Owned(mut bytes)) = self.chunks.pop_front()
                && bytes.capacity() >= OWNED_CHUNK
                && let Some(spares) = self.spares.as_mut()
                && spares.len() < SPARES
            {
                bytes.clear();
                spares.push(bytes);
            }
            self.front_offset = 0;
        }
        if self.len == 0 {
            // Drop the owned tail too, so an idle connection holds no buffer
            // (a streaming client keeps its few spares).
            self.chunks.clear();
            self.front_offset = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(out: &mut Outbound, step: usize) -> Vec<u8> {
        let mut sent = Vec::new();
        while !out.is_empty() {
            let mut slices: [&[u8]; 4] = [&[]; 4];
            let n = out.front_slices(&mut slices);
            let mut budget = step;
            let mut took = 0;
            for slice in &slices[..n] {
                let take = slice.len().min(budget);
                sent.extend_from_slice(&slice[..take]);
                budget -= take;
                took += take;
            }
            out.consume(took);
        }
        sent
    }

    #[test]
    fn bytes_come_out_in_order_whatever_the_write_size() {
        for step in [1, 3, 100, 1 << 20] {
            let mut out = Outbound::new(1 << 20);
            let big: Arc<[u8]> = (0..1000u32).map(|i| i as u8).collect::<Vec<_>>().into();
            let mut expected = Vec::new();
            out.push_final(b"hello");
            expected.extend_from_slice(b"hello");
            out.push_shared(&big).unwrap();
            expected.extend_from_slice(&big);
            out.push_with(|b| b.extend_from_slice(b"tail")).unwrap();
            expected.extend_from_slice(b"tail");
            out.push_shared(&big).unwrap();
            expected.extend_from_slice(&big);
            assert_eq!(out.len(), expected.len());
            assert_eq!(drain(&mut out, step), expected, "step {step}");
            assert!(out.chunks.is_empty());
        }
    }

    /// The capacity of the buffers the queue holds, sent or not.
    fn held(out: &Outbound) -> usize {
        let owned = |chunk: &Chunk| if let Chunk::Owned(bytes) = chunk { bytes.capacity() } else { 0 };
        let spares = out.spares.iter().flat_map(|spares| spares.iter());
        out.chunks.iter().map(owned).sum::<usize>() + spares.map(Vec::capacity).sum::<usize>()
    }

    #[test]
    fn a_stream_of_owned_bytes_reuses_its_chunks_and_an_idle_queue_holds_none() {
        for streaming in [false, true] {
            let mut out = if streaming { Outbound::streaming(1 << 20) } else { Outbound::new(1 << 20) };
            let mut expected = Vec::new();
            let mut spares_after_first = 0;
            for round in 0..3u8 {
                for i in 0..7000u32 {
                    let frame = [round, i as u8, (i >> 8) as u8, 0xAB, 0xCD, 0xEF, 0x01, 0x23];
                    out.push_with(|b| b.extend_from_slice(&frame)).unwrap();
                    expected.extend_from_slice(&frame);
                }
                // Four chunks: none grew past its size.
                assert_eq!(out.chunks.len(), 4);
                for chunk in &out.chunks {
                    assert!(chunk.bytes().len() <= OWNED_CHUNK + 8, "a chunk of {}", chunk.bytes().len());
                }
                assert_eq!(drain(&mut out, 5000), expected);
                expected.clear();
                assert!(out.chunks.is_empty());
                if !streaming {
                    assert_eq!(held(&out), 0, "an emptied queue holds no buffer");
                } else if round == 0 {
                    spares_after_first = out.spares.as_ref().map_or(0, |spares| spares.len());
                    assert!((3..=SPARES).contains(&spares_after_first), "{spares_after_first} spares");
                } else {
                    // The same chunks served again: none allocated.
                    assert_eq!(
                        out.spares.as_ref().map_or(0, |spares| spares.len()),
                        spares_after_first,
                        "round {round}"
                    );
                }
            }
        }
        // Small frames between shared ones get small chunks: what is held
        // stays near what is queued.
        let mut out = Outbound::new(1 << 20);
        let big: Arc<[u8]> = vec![9u8; 1000].into();
        for _ in 0..100 {
            out.push_shared(&big).unwrap();
            out.push_with(|b| b.extend_from_slice(b"ack")).unwrap();
        }
        assert!(held(&out) < 100 * 64, "{} bytes held for 300 owned", held(&out));
    }

    #[test]
    fn pushes_past_the_limit_fail_and_change_nothing() {
        let mut out = Outbound::new(600);
        let frame: Arc<[u8]> = vec![7u8; 400].into();
        out.push_shared(&frame).unwrap();
        assert_eq!(out.push_shared(&frame), Err(Overflow { limit: 600 }));
        assert_eq!(out.push_with(|b| b.extend_from_slice(&[1; 300])), Err(Overflow { limit: 600 }));
        assert_eq!(out.len(), 400);
        assert_eq!(drain(&mut out, 7), vec![7u8; 400]);
    }

    #[test]
    fn a_refused_push_that_filled_the_owned_tail_leaves_nothing_behind() {
        let mut out = Outbound::new(OWNED_CHUNK + 100);
        out.push_with(|b| b.resize(OWNED_CHUNK - 10, 1)).unwrap();
        // Takes the tail past OWNED_CHUNK and the queue past its limit.
        assert_eq!(out.push_with(|b| b.extend_from_slice(&[2; 200])), Err(Overflow { limit: OWNED_CHUNK + 100 }));
        assert_eq!(out.len(), OWNED_CHUNK - 10);
        out.push_with(|b| b.extend_from_slice(&[3; 50])).unwrap();
        let mut expected = vec![1u8; OWNED_CHUNK - 10];
        expected.extend_from_slice(&[3; 50]);
        assert_eq!(drain(&mut out, 4096), expected);
    }
}
