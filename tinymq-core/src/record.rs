//! The byte reader every stored record is read with: the store's value and
//! HTTP-client records ([`crate::store`]) and the user record
//! ([`crate::auth::UserRecord`]). It sits below both so that neither
//! depends on the other for it.

/// Why a stored record could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// The record ends before its fields do.
    #[error("stored record is truncated")]
    Truncated,
    /// A version this build does not know.
    #[error("stored record has unknown version {0}")]
    UnknownVersion(u8),
    /// A text field is not UTF-8, or the address does not parse.
    #[error("stored record has a malformed {0}")]
    Malformed(&'static str),
    /// Bytes left over after the last field.
    #[error("stored record has {0} trailing bytes")]
    Trailing(usize),
    /// A key without the namespace separator.
    #[error("stored key has no namespace separator")]
    BadKey,
}

/// A cursor over a stored record. Never panics: a store file can be
/// damaged, and a short record is [`RecordError::Truncated`].
pub(crate) struct Record<'a>(&'a [u8]);

impl<'a> Record<'a> {
    pub(crate) fn new(record: &'a [u8]) -> Self {
        Record(record)
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], RecordError> {
        if self.0.len() < n {
            return Err(RecordError::Truncated);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    pub(crate) fn byte(&mut self) -> Result<u8, RecordError> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn u32(&mut self) -> Result<u32, RecordError> {
        Ok(u32::from_be_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, RecordError> {
        Ok(u64::from_be_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }

    /// A field with a 4-byte big-endian length prefix.
    pub(crate) fn field(&mut self) -> Result<&'a [u8], RecordError> {
        let len = self.u32()?;
        self.take(len as usize)
    }

    /// A length-prefixed field that must be UTF-8; `what` names it in the
    /// error.
    pub(crate) fn text(&mut self, what: &'static str) -> Result<&'a str, RecordError> {
        std::str::from_utf8(self.field()?).map_err(|_| RecordError::Malformed(what))
    }

    /// Checks that every byte was read.
    pub(crate) fn finish(self) -> Result<(), RecordError> {
        match self.0.len() {
            0 => Ok(()),
            left => Err(RecordError::Trailing(left)),
        }
    }
}
