//! A received message's payload: a range of a shared read buffer, so a
//! stream of small messages read in one chunk costs no allocation each.

use std::fmt;
use std::ops::{Deref, Range};
use std::sync::Arc;

/// Bytes shared by reference: the whole of an `Arc<[u8]>`, or a range of
/// one (a chunk the shell read, handed over with
/// [`NatsClient::handle_shared_input`](super::NatsClient::handle_shared_input)).
/// Kept only while it is handled: a payload that is stored becomes its own
/// allocation ([`Payload::to_arc`]), never pins a chunk.
#[derive(Clone)]
pub struct Payload {
    buf: Arc<[u8]>,
    range: Range<usize>,
}

impl Payload {
    /// A copy of `bytes`, in an allocation of its own.
    pub fn copy_of(bytes: &[u8]) -> Self {
        Payload::from(Arc::<[u8]>::from(bytes))
    }

    /// `part` as a range of `buf`, without copying; `None` when `part` is
    /// not inside `buf`'s bytes.
    pub fn within(buf: &Arc<[u8]>, part: &[u8]) -> Option<Self> {
        // Addresses compared as numbers: no pointer is made from them.
        let base = buf.as_ptr() as usize;
        let start = (part.as_ptr() as usize).checked_sub(base)?;
        let end = start.checked_add(part.len())?;
        (end <= buf.len()).then(|| Payload { buf: buf.clone(), range: start..end })
    }

    /// The bytes in an `Arc` of their own (the buffer itself when the
    /// payload is all of it).
    pub fn to_arc(&self) -> Arc<[u8]> {
        if self.range == (0..self.buf.len()) { self.buf.clone() } else { Arc::from(&**self) }
    }
}

impl From<&[u8]> for Payload {
    fn from(bytes: &[u8]) -> Self {
        Payload::copy_of(bytes)
    }
}

impl From<Arc<[u8]>> for Payload {
    fn from(buf: Arc<[u8]>) -> Self {
        let range = 0..buf.len();
        Payload { buf, range }
    }
}

impl Deref for Payload {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.buf[self.range.clone()]
    }
}

impl PartialEq for Payload {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl Eq for Payload {}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_part_of_a_buffer_is_shared_and_anything_else_refused() {
        let buf: Arc<[u8]> = b"MSG a 1 5\r\nhello\r\n".as_slice().into();
        let part = Payload::within(&buf, &buf[11..16]).unwrap();
        assert_eq!(&*part, b"hello");
        assert_eq!(Arc::strong_count(&buf), 2, "shared, not copied");
        assert_eq!(&*part.to_arc(), b"hello");
        let elsewhere = b"hello".to_vec();
        assert!(Payload::within(&buf, &elsewhere).is_none());
        assert!(Payload::within(&buf, &buf[..0]).is_some(), "an empty part at its start");
        let whole = Payload::within(&buf, &buf[..]).unwrap();
        assert!(Arc::ptr_eq(&whole.to_arc(), &buf), "all of it: the buffer itself");
        assert_eq!(Payload::copy_of(b"hello"), part);
        drop((part, whole));
        assert_eq!(Arc::strong_count(&buf), 1);
    }
}
