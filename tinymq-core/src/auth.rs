//! Users and what a request may do: the stored user record, who a client
//! acts as once its credentials are checked ([`Identity`]), why it was
//! refused ([`AuthError`]), which peers may connect at all ([`AllowList`])
//! and how bad peers are slowed down ([`PeerBudgets`]).
//!
//! The core holds no cryptography: a [`UserRecord`] carries a salted
//! PBKDF2-HMAC-SHA256 hash that the I/O shell derives and verifies (with
//! `ring`, off its event loops). What the core decides is the rest: a user's
//! name is the name of its namespace, a wrong password is never taken as
//! anonymous, and admin rights gate the statistics endpoints.
//!
//! # The record
//!
//! A user is filed under its name; the record is `version(1)
//! algorithm(1) flags(1) iterations(4, big-endian) salt_len(1) salt
//! hash_len(1) hash`. Version 1 knows one algorithm (1, PBKDF2-HMAC-SHA256)
//! and one flag (bit 0, admin). [`UserRecord::decode`] checks every field
//! against its bounds, so a damaged file can neither panic the broker nor
//! make it hash for hours.

use std::sync::Arc;

use crate::record::{Record, RecordError};

mod allow_list;
mod budget;

pub use allow_list::{AllowList, AllowListError, IpNetwork};
pub use budget::{BudgetConfig, Fault, PeerBudgets, PeerReport, Throttled};

/// The first byte of a user record written by this version.
const USER_RECORD_V1: u8 = 1;
/// The only hashing algorithm of version 1: PBKDF2-HMAC-SHA256.
const PBKDF2_HMAC_SHA256: u8 = 1;
const FLAG_ADMIN: u8 = 1;

/// Length of a derived hash (SHA-256 output).
pub const HASH_LEN: usize = 32;
/// Shortest salt a record may carry.
pub const MIN_SALT_LEN: usize = 16;
/// Longest salt a record may carry.
pub const MAX_SALT_LEN: usize = 64;
/// Most PBKDF2 iterations a record may ask for: a damaged record must not
/// keep a verifier busy for minutes.
pub const MAX_ITERATIONS: u32 = 20_000_000;
/// Longest user name, in bytes.
pub const MAX_USER_NAME_LEN: usize = 128;
/// Longest password `tinymq user add` accepts, in bytes.
pub const MAX_PASSWORD_LEN: usize = 1024;

/// One user as stored: its name, its role and its salted password hash.
///
/// Its `Debug` output leaves the salt and hash out.
#[derive(Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// The user's name, also the name of its namespace.
    pub name: String,
    /// Whether the user may read the broker's statistics when anonymous
    /// access is off.
    pub admin: bool,
    /// PBKDF2 iterations the hash was derived with.
    pub iterations: u32,
    /// The random salt, [`MIN_SALT_LEN`] to [`MAX_SALT_LEN`] bytes.
    pub salt: Vec<u8>,
    /// PBKDF2-HMAC-SHA256(password, salt, iterations).
    pub hash: [u8; HASH_LEN],
}

impl std::fmt::Debug for UserRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserRecord")
            .field("name", &self.name)
            .field("admin", &self.admin)
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

impl UserRecord {
    /// The role as `tinymq user list` shows it.
    pub fn role(&self) -> &'static str {
        if self.admin { "admin" } else { "user" }
    }

    /// The stored form of the record (the name is the key, not part of it).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(9 + self.salt.len() + HASH_LEN);
        out.push(USER_RECORD_V1);
        out.push(PBKDF2_HMAC_SHA256);
        out.push(if self.admin { FLAG_ADMIN } else { 0 });
        out.extend_from_slice(&self.iterations.to_be_bytes());
        // Bounded by MAX_SALT_LEN when made; a longer one is cut to what
        // decode accepts rather than written unreadable.
        let salt = &self.salt[..self.salt.len().min(MAX_SALT_LEN)];
        out.push(salt.len() as u8);
        out.extend_from_slice(salt);
        out.push(HASH_LEN as u8);
        out.extend_from_slice(&self.hash);
        out
    }

    /// Reads a record filed under `name`. Never panics on bad input.
    pub fn decode(name: &str, record: &[u8]) -> Result<Self, RecordError> {
        let mut reader = Record::new(record);
        let version = reader.byte()?;
        if version != USER_RECORD_V1 {
            return Err(RecordError::UnknownVersion(version));
        }
        if reader.byte()? != PBKDF2_HMAC_SHA256 {
            return Err(RecordError::Malformed("hashing algorithm"));
        }
        let flags = reader.byte()?;
        if flags & !FLAG_ADMIN != 0 {
            return Err(RecordError::Malformed("user flags"));
        }
        let iterations = reader.u32()?;
        if iterations == 0 || iterations > MAX_ITERATIONS {
            return Err(RecordError::Malformed("iteration count"));
        }
        let salt_len = usize::from(reader.byte()?);
        if !(MIN_SALT_LEN..=MAX_SALT_LEN).contains(&salt_len) {
            return Err(RecordError::Malformed("salt"));
        }
        let salt = reader.take(salt_len)?.to_vec();
        if usize::from(reader.byte()?) != HASH_LEN {
            return Err(RecordError::Malformed("hash"));
        }
        let hash: [u8; HASH_LEN] = reader.take(HASH_LEN)?.try_into().expect("HASH_LEN bytes");
        reader.finish()?;
        check_user_name(name).map_err(|_| RecordError::Malformed("user name"))?;
        Ok(UserRecord { name: name.to_owned(), admin: flags & FLAG_ADMIN != 0, iterations, salt, hash })
    }
}

/// Why a user name cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UserNameError {
    /// The empty name is the public namespace's.
    #[error("a user name cannot be empty")]
    Empty,
    /// Over [`MAX_USER_NAME_LEN`] bytes.
    #[error("a user name is at most {MAX_USER_NAME_LEN} bytes")]
    TooLong,
    /// A character the name cannot hold.
    #[error("a user name cannot contain {0:?}")]
    Forbidden(char),
}

/// Checks a name for a new user. Names file stored values (`name 0x00
/// topic`), so they hold no NUL; no `/`, as in a topic level; no `:`, which
/// HTTP Basic credentials cannot carry in a name; no control characters.
pub fn check_user_name(name: &str) -> Result<(), UserNameError> {
    if name.is_empty() {
        return Err(UserNameError::Empty);
    }
    if name.len() > MAX_USER_NAME_LEN {
        return Err(UserNameError::TooLong);
    }
    match name.chars().find(|&c| c == '/' || c == ':' || c.is_control()) {
        Some(c) => Err(UserNameError::Forbidden(c)),
        None => Ok(()),
    }
}

/// What a throttled peer is told (the 429's body, the Disconnect's text).
pub const THROTTLED_TEXT: &str = "too many bad requests from this address; try again later";

/// Who a request acts as, once its credentials (if any) are checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Identity {
    /// No credentials: the public namespace, if the broker allows it.
    Anonymous,
    /// A user whose password was verified.
    User {
        /// Its name, which is its namespace's.
        name: Arc<str>,
        /// Whether it has admin rights.
        admin: bool,
    },
}

impl Identity {
    /// The name of its namespace: empty for anonymous clients.
    pub fn namespace_name(&self) -> &str {
        match self {
            Identity::Anonymous => "",
            Identity::User { name, .. } => name,
        }
    }

    /// Whether it has admin rights.
    pub fn is_admin(&self) -> bool {
        matches!(self, Identity::User { admin: true, .. })
    }
}

/// Why credentials were not accepted. Each maps to a Disconnect 2 on the
/// binary protocol and to an HTTP status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
#[error("{}", self.text())]
pub enum AuthError {
    /// No such user, or not its password (the two are not told apart).
    WrongCredentials,
    /// No credentials, and the broker serves only users.
    CredentialsRequired,
    /// Too many credentials are waiting to be checked.
    Busy,
    /// The peer's address spent its budget of bad requests (see
    /// [`PeerBudgets`]): its credentials are not checked for now.
    Throttled {
        /// Seconds until it may try again.
        retry_after_secs: u64,
    },
}

impl AuthError {
    /// What the peer is told: the Disconnect's text, the 401's body.
    pub fn text(&self) -> &'static str {
        match self {
            AuthError::WrongCredentials => "unknown user or wrong password",
            AuthError::CredentialsRequired => "this broker needs credentials",
            AuthError::Busy => "too many logins waiting to be checked; try again later",
            AuthError::Throttled { .. } => THROTTLED_TEXT,
        }
    }

    /// The bad request this refusal charges to the peer's budget: wrong
    /// credentials only. Missing credentials are a question, not a guess;
    /// a busy broker or a throttled peer is no new fault of the peer's.
    pub fn fault(&self) -> Option<Fault> {
        match self {
            AuthError::WrongCredentials => Some(Fault::WrongCredentials),
            AuthError::CredentialsRequired | AuthError::Busy | AuthError::Throttled { .. } => None,
        }
    }

    /// The HTTP status of the refusal: 401, 503 when busy, 429 when
    /// throttled.
    pub fn status(&self) -> u16 {
        match self {
            AuthError::Busy => 503,
            AuthError::Throttled { .. } => 429,
            AuthError::WrongCredentials | AuthError::CredentialsRequired => 401,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(admin: bool) -> UserRecord {
        UserRecord { name: "alice".into(), admin, iterations: 600_000, salt: vec![7; 16], hash: [9; HASH_LEN] }
    }

    #[test]
    fn only_wrong_credentials_are_charged() {
        assert_eq!(AuthError::WrongCredentials.fault(), Some(Fault::WrongCredentials));
        for refusal in [AuthError::CredentialsRequired, AuthError::Busy, AuthError::Throttled { retry_after_secs: 3 }] {
            assert_eq!(refusal.fault(), None, "{refusal:?}");
        }
    }

    #[test]
    fn records_round_trip() {
        for admin in [false, true] {
            let user = record(admin);
            assert_eq!(UserRecord::decode("alice", &user.encode()), Ok(user));
        }
        let long_salt = UserRecord { salt: vec![1; MAX_SALT_LEN], ..record(false) };
        assert_eq!(UserRecord::decode("alice", &long_salt.encode()), Ok(long_salt));
    }

    #[test]
    fn damaged_records_are_errors_not_panics() {
        let bytes = record(true).encode();
        for cut in 0..bytes.len() {
            assert!(UserRecord::decode("alice", &bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert_eq!(UserRecord::decode("alice", &trailing), Err(RecordError::Trailing(1)));
        let with = |at: usize, value: &[u8]| {
            let mut changed = bytes.clone();
            changed[at..at + value.len()].copy_from_slice(value);
            UserRecord::decode("alice", &changed)
        };
        assert_eq!(with(0, &[2]), Err(RecordError::UnknownVersion(2)));
        assert_eq!(with(1, &[9]), Err(RecordError::Malformed("hashing algorithm")));
        assert_eq!(with(2, &[0x81]), Err(RecordError::Malformed("user flags")));
        assert_eq!(with(3, &0u32.to_be_bytes()), Err(RecordError::Malformed("iteration count")));
        assert_eq!(with(3, &u32::MAX.to_be_bytes()), Err(RecordError::Malformed("iteration count")));
        assert_eq!(with(7, &[8]), Err(RecordError::Malformed("salt")), "a salt under 16 bytes");
        assert_eq!(with(7, &[255]), Err(RecordError::Malformed("salt")), "a salt over 64 bytes");
        assert_eq!(with(24, &[64]), Err(RecordError::Malformed("hash")));
        assert_eq!(UserRecord::decode("a/b", &bytes), Err(RecordError::Malformed("user name")));
    }

    #[test]
    fn debug_output_leaves_the_hash_out() {
        let shown = format!("{:?}", record(true));
        assert!(shown.contains("alice") && shown.contains("admin: true"), "{shown}");
        assert!(!shown.contains("hash") && !shown.contains("salt") && !shown.contains("[9"), "{shown}");
    }

    #[test]
    fn user_names_that_cannot_file_values_are_refused() {
        assert_eq!(check_user_name("alice"), Ok(()));
        assert_eq!(check_user_name("Zoë Ünicode-1.x"), Ok(()));
        assert_eq!(check_user_name(""), Err(UserNameError::Empty));
        assert_eq!(check_user_name("a\0b"), Err(UserNameError::Forbidden('\0')));
        assert_eq!(check_user_name("a/b"), Err(UserNameError::Forbidden('/')));
        assert_eq!(check_user_name("a:b"), Err(UserNameError::Forbidden(':')));
        assert_eq!(check_user_name("a\nb"), Err(UserNameError::Forbidden('\n')));
        assert_eq!(check_user_name(&"x".repeat(MAX_USER_NAME_LEN + 1)), Err(UserNameError::TooLong));
    }

    #[test]
    fn identities_name_their_namespace() {
        assert_eq!(Identity::Anonymous.namespace_name(), "");
        let alice = Identity::User { name: "alice".into(), admin: false };
        assert_eq!(alice.namespace_name(), "alice");
        assert!(!alice.is_admin() && !Identity::Anonymous.is_admin());
        assert!(Identity::User { name: "root".into(), admin: true }.is_admin());
    }
}
