//! Users: password hashing, and checking credentials without ever making an
//! event loop wait for it.
//!
//! Passwords are stored only as PBKDF2-HMAC-SHA256 hashes with a random
//! salt and [`ITERATIONS`] iterations ([`new_user`]), and checked with
//! `ring`'s constant-time [`pbkdf2::verify`]. One check takes hundreds of
//! milliseconds by design, and Moustique clients send their password with
//! every request, so the broker checks on its own verifier thread(s) and
//! remembers success:
//!
//! - A password that verified is remembered per user as its HMAC-SHA256
//!   under a key drawn at start-up, so the same credentials again cost one
//!   HMAC and a constant-time comparison. Failures are never remembered as
//!   success; a user replaced or removed forgets what it remembered.
//! - Anything else is queued for a verifier, and its connection waits
//!   (the event loop goes on serving others). Identical credentials
//!   already queued join that check instead of queueing another. The
//!   queue is bounded: beyond [`MAX_PENDING`] checks, credentials are
//!   refused at once as [`AuthError::Busy`] (503, or Disconnect 2).
//! - An unknown user name is checked against a decoy hash, so it is
//!   refused no sooner than a wrong password: timing does not tell which
//!   names exist.

use std::collections::{HashMap, VecDeque};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::{Condvar, Mutex, RwLock};
use ring::rand::{SecureRandom, SystemRandom};
use ring::{hmac, pbkdf2};
use tinymq_core::auth::{
    AuthError, HASH_LEN, Identity, MAX_PASSWORD_LEN, MAX_USER_NAME_LEN, UserNameError, UserRecord, check_user_name,
};

/// PBKDF2 iterations for new passwords: OWASP's figure for
/// PBKDF2-HMAC-SHA256.
pub const ITERATIONS: u32 = 600_000;
/// Bytes of random salt per password.
const SALT_LEN: usize = 16;
/// Credential checks queued at once; more are refused as busy.
pub const MAX_PENDING: usize = 64;

/// Why a user cannot be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UserError {
    /// The name cannot be used.
    #[error(transparent)]
    Name(#[from] UserNameError),
    /// An empty password.
    #[error("the password is empty")]
    EmptyPassword,
    /// A password over [`MAX_PASSWORD_LEN`] bytes.
    #[error("the password is over {MAX_PASSWORD_LEN} bytes")]
    PasswordTooLong,
    /// The system's random generator failed.
    #[error("cannot draw a random salt from the system")]
    Randomness,
}

/// A new user: checks the name and password, draws a salt and derives
/// the hash (this takes a while: `ITERATIONS`, 600,000 rounds of PBKDF2).
pub fn new_user(name: &str, password: &str, admin: bool) -> Result<UserRecord, UserError> {
    check_user_name(name)?;
    if password.is_empty() {
        return Err(UserError::EmptyPassword);
    }
    if password.len() > MAX_PASSWORD_LEN {
        return Err(UserError::PasswordTooLong);
    }
    let mut salt = vec![0; SALT_LEN];
    SystemRandom::new().fill(&mut salt).map_err(|_| UserError::Randomness)?;
    let mut hash = [0; HASH_LEN];
    pbkdf2::derive(pbkdf2::PBKDF2_HMAC_SHA256, iterations(ITERATIONS), &salt, password.as_bytes(), &mut hash);
    Ok(UserRecord { name: name.to_owned(), admin, iterations: ITERATIONS, salt, hash })
}

/// Whether `password` is the user's, compared in constant time.
pub fn verify_password(user: &UserRecord, password: &str) -> bool {
    pbkdf2::verify(pbkdf2::PBKDF2_HMAC_SHA256, iterations(user.iterations), &user.salt, password.as_bytes(), &user.hash)
        .is_ok()
}

fn iterations(count: u32) -> NonZeroU32 {
    // Records are checked on decode (at least 1); a zero made in code
    // still costs one round rather than a panic.
    NonZeroU32::new(count).unwrap_or(NonZeroU32::MIN)
}

/// The decision on credentials, when it can be made at once.
#[derive(Debug, PartialEq, Eq)]
#[must_use]
pub(crate) enum Decision {
    /// Decided now (the callback is dropped unused).
    Now(Result<Identity, AuthError>),
    /// Queued: the callback gets the decision from a verifier thread.
    Later,
}

/// Called with the decision on queued credentials, on a verifier thread:
/// it must only hand the news on.
type Notify = Box<dyn FnOnce(Result<Identity, AuthError>) + Send>;

struct Account {
    name: Arc<str>,
    record: Arc<UserRecord>,
    /// Tells this account from a later one of the same name, so a check
    /// that started before a replacement caches nothing.
    generation: u64,
    /// HMAC of the password that last verified.
    verified: Option<[u8; HASH_LEN]>,
}

/// Credentials a verifier checks: the user (or none: the decoy) and the
/// password's HMAC, which with the name identifies identical checks.
#[derive(Clone, PartialEq, Eq, Hash)]
struct CheckKey {
    name: Arc<str>,
    digest: [u8; HASH_LEN],
}

struct Check {
    key: CheckKey,
    password: String,
    account: Option<(Arc<UserRecord>, u64)>,
}

#[derive(Default)]
struct Queue {
    checks: VecDeque<Check>,
    /// Callbacks by the check they wait for, queued or running.
    waiting: HashMap<CheckKey, Vec<Notify>>,
    stopping: bool,
}

struct Inner {
    accounts: RwLock<HashMap<Arc<str>, Account>>,
    next_generation: Mutex<u64>,
    cache_key: hmac::Key,
    decoy: UserRecord,
    queue: Mutex<Queue>,
    work: Condvar,
}

/// The broker's users and the verifier threads that check passwords.
pub(crate) struct Authenticator {
    inner: Arc<Inner>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Authenticator {
    /// Starts `threads` verifier threads (at least one) over `users`.
    pub(crate) fn start(users: Vec<UserRecord>, threads: usize) -> std::io::Result<Self> {
        let authenticator = Self::new(users)?;
        for index in 0..threads.max(1) {
            let inner = authenticator.inner.clone();
            let thread =
                std::thread::Builder::new().name(format!("tinymq-verify-{index}")).spawn(move || inner.run())?;
            authenticator.threads.lock().push(thread);
        }
        Ok(authenticator)
    }

    /// The users, with no verifier thread yet.
    fn new(users: Vec<UserRecord>) -> std::io::Result<Self> {
        let random = SystemRandom::new();
        let no_randomness = |_| std::io::Error::other("cannot draw random bytes from the system");
        let cache_key = hmac::Key::generate(hmac::HMAC_SHA256, &random).map_err(no_randomness)?;
        let mut decoy = UserRecord {
            name: String::new(),
            admin: false,
            iterations: ITERATIONS,
            salt: vec![0; SALT_LEN],
            hash: [0; HASH_LEN],
        };
        random.fill(&mut decoy.salt).map_err(no_randomness)?;
        random.fill(&mut decoy.hash).map_err(no_randomness)?;
        let inner = Arc::new(Inner {
            accounts: RwLock::new(HashMap::new()),
            next_generation: Mutex::new(1),
            cache_key,
            decoy,
            queue: Mutex::new(Queue::default()),
            work: Condvar::new(),
        });
        let authenticator = Authenticator { inner, threads: Mutex::new(Vec::new()) };
        for user in users {
            authenticator.insert(user);
        }
        Ok(authenticator)
    }

    /// Adds a user, or replaces the one of that name (forgetting which
    /// password verified for it).
    pub(crate) fn insert(&self, record: UserRecord) {
        let generation = {
            let mut next = self.inner.next_generation.lock();
            *next += 1;
            *next
        };
        let name: Arc<str> = record.name.as_str().into();
        let account = Account { name: name.clone(), record: Arc::new(record), generation, verified: None };
        self.inner.accounts.write().insert(name, account);
    }

    /// Number of users.
    pub(crate) fn len(&self) -> usize {
        self.inner.accounts.read().len()
    }

    /// Checks a user name and password: decided at once when this password
    /// verified for this user before (or the queue is full), otherwise
    /// queued, with `notify` called once a verifier has decided. `gate` is
    /// asked before a password is queued for hashing, and its error is the
    /// decision (a throttled peer's password is not hashed).
    pub(crate) fn authenticate(
        &self,
        name: &str,
        password: &str,
        gate: impl FnOnce() -> Result<(), AuthError>,
        notify: impl FnOnce(Result<Identity, AuthError>) + Send + 'static,
    ) -> Decision {
        let inner = &self.inner;
        // No stored password is empty or longer (new_user refuses them), so
        // these cannot match: refused at once, whatever the name, which
        // tells nothing about it; and a huge password is neither copied
        // into the queue nor hashed.
        if password.is_empty() || password.len() > MAX_PASSWORD_LEN || name.len() > MAX_USER_NAME_LEN {
            return Decision::Now(Err(AuthError::WrongCredentials));
        }
        let (name, account) = {
            let accounts = inner.accounts.read();
            match accounts.get(name) {
                Some(account) => {
                    if let Some(verified) = &account.verified
                        && hmac::verify(&inner.cache_key, password.as_bytes(), verified).is_ok()
                    {
                        let identity = Identity::User { name: account.name.clone(), admin: account.record.admin };
                        return Decision::Now(Ok(identity));
                    }
                    (account.name.clone(), Some((account.record.clone(), account.generation)))
                }
                None => (Arc::from(name), None),
            }
        };
        if let Err(refused) = gate() {
            return Decision::Now(Err(refused));
        }
        let digest = hmac::sign(&inner.cache_key, password.as_bytes());
        let key = CheckKey { name, digest: digest.as_ref().try_into().expect("HMAC-SHA256 is 32 bytes") };
        let mut queue = inner.queue.lock();
        if queue.stopping {
            return Decision::Now(Err(AuthError::Busy));
        }
        if let Some(waiting) = queue.waiting.get_mut(&key) {
            waiting.push(Box::new(notify));
            return Decision::Later;
        }
        if queue.checks.len() >= MAX_PENDING {
            return Decision::Now(Err(AuthError::Busy));
        }
        queue.waiting.insert(key.clone(), vec![Box::new(notify)]);
        queue.checks.push_back(Check { key, password: password.to_owned(), account });
        drop(queue);
        inner.work.notify_one();
        Decision::Later
    }

    /// Stops the verifier threads; queued checks are dropped unanswered.
    pub(crate) fn shutdown(&self) {
        {
            let mut queue = self.inner.queue.lock();
            queue.stopping = true;
            queue.checks.clear();
            // The callbacks hold the broker's shared state: let it go.
            queue.waiting.clear();
        }
        self.inner.work.notify_all();
        for thread in self.threads.lock().drain(..) {
            let _ = thread.join();
        }
    }
}

impl Drop for Authenticator {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl Inner {
    /// A verifier thread: takes checks until stopped.
    fn run(&self) {
        loop {
            let check = {
                let mut queue = self.queue.lock();
                loop {
                    if queue.stopping {
                        return;
                    }
                    if let Some(check) = queue.checks.pop_front() {
                        break check;
                    }
                    self.work.wait(&mut queue);
                }
            };
            let result = self.verify(&check);
            let waiting = self.queue.lock().waiting.remove(&check.key).unwrap_or_default();
            for notify in waiting {
                notify(result.clone());
            }
        }
    }

    fn verify(&self, check: &Check) -> Result<Identity, AuthError> {
        let Some((record, generation)) = &check.account else {
            // As long as a real check, and never a match.
            let _ = verify_password(&self.decoy, &check.password);
            return Err(AuthError::WrongCredentials);
        };
        if !verify_password(record, &check.password) {
            return Err(AuthError::WrongCredentials);
        }
        if let Some(account) = self.accounts.write().get_mut(&check.key.name)
            && account.generation == *generation
        {
            account.verified = Some(check.key.digest);
        }
        Ok(Identity::User { name: check.key.name.clone(), admin: record.admin })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use super::*;

    /// A user hashed with few iterations, so tests run fast; verification
    /// reads the count from the record.
    fn quick_user(name: &str, password: &str, admin: bool) -> UserRecord {
        let salt = vec![3; SALT_LEN];
        let mut hash = [0; HASH_LEN];
        pbkdf2::derive(pbkdf2::PBKDF2_HMAC_SHA256, iterations(10), &salt, password.as_bytes(), &mut hash);
        UserRecord { name: name.into(), admin, iterations: 10, salt, hash }
    }

    type Answers = mpsc::Receiver<Result<Identity, AuthError>>;

    /// Authenticates; the decision, waiting for a verifier if queued.
    fn check(auth: &Authenticator, name: &str, password: &str) -> (bool, Result<Identity, AuthError>) {
        let (tx, rx): (_, Answers) = mpsc::channel();
        match auth.authenticate(name, password, || Ok(()), move |result| tx.send(result).unwrap()) {
            Decision::Now(result) => (true, result),
            Decision::Later => (false, rx.recv_timeout(Duration::from_secs(30)).expect("a verifier answers")),
        }
    }

    fn alice(admin: bool) -> Result<Identity, AuthError> {
        Ok(Identity::User { name: "alice".into(), admin })
    }

    #[test]
    fn new_users_have_a_random_salt_and_a_hash_that_verifies() {
        let user = new_user("alice", "correct horse", true).unwrap();
        assert_eq!((user.iterations, user.salt.len(), user.admin), (ITERATIONS, SALT_LEN, true));
        assert!(verify_password(&user, "correct horse"));
        assert!(!verify_password(&user, "correct horsE"));
        assert!(!verify_password(&user, ""));
        let again = new_user("alice", "correct horse", true).unwrap();
        assert_ne!(user.salt, again.salt, "a fresh salt each time");
        assert_ne!(user.hash, again.hash);
        assert!(!user.hash.windows(5).any(|w| w == b"horse"));
    }

    #[test]
    fn bad_names_and_passwords_make_no_user() {
        assert!(matches!(new_user("a/b", "pw", false), Err(UserError::Name(UserNameError::Forbidden('/')))));
        assert!(matches!(new_user("a\0b", "pw", false), Err(UserError::Name(_))));
        assert!(matches!(new_user("alice", "", false), Err(UserError::EmptyPassword)));
        let long = "x".repeat(MAX_PASSWORD_LEN + 1);
        assert!(matches!(new_user("alice", &long, false), Err(UserError::PasswordTooLong)));
    }

    #[test]
    fn a_verified_password_is_remembered_and_a_wrong_one_is_not() {
        let auth = Authenticator::start(vec![quick_user("alice", "secret", false)], 1).unwrap();
        assert_eq!(check(&auth, "alice", "secret"), (false, alice(false)), "first time: a verifier checks");
        assert_eq!(check(&auth, "alice", "secret"), (true, alice(false)), "then remembered");
        assert_eq!(check(&auth, "alice", "Secret"), (false, Err(AuthError::WrongCredentials)));
        assert_eq!(check(&auth, "alice", "Secret"), (false, Err(AuthError::WrongCredentials)), "never cached");
        assert_eq!(check(&auth, "alice", "secret"), (true, alice(false)), "a failure forgets nothing");
        assert_eq!(check(&auth, "bob", "secret"), (false, Err(AuthError::WrongCredentials)), "unknown user");
        // What no user can have is refused at once, for any name.
        for (name, password) in [("alice", ""), ("bob", ""), ("alice", &*"x".repeat(MAX_PASSWORD_LEN + 1))] {
            assert_eq!(check(&auth, name, password), (true, Err(AuthError::WrongCredentials)));
        }
    }

    #[test]
    fn replacing_a_user_forgets_its_password() {
        let auth = Authenticator::start(vec![quick_user("alice", "old", false)], 1).unwrap();
        assert_eq!(check(&auth, "alice", "old"), (false, alice(false)));
        assert_eq!(check(&auth, "alice", "old"), (true, alice(false)));
        auth.insert(quick_user("alice", "new", true));
        assert_eq!(check(&auth, "alice", "old"), (false, Err(AuthError::WrongCredentials)));
        assert_eq!(check(&auth, "alice", "new"), (false, alice(true)));
        assert_eq!(check(&auth, "alice", "new"), (true, alice(true)));
        assert_eq!(auth.len(), 1);
    }

    #[test]
    fn a_check_that_started_before_a_replacement_caches_nothing() {
        let auth = Authenticator::start(vec![quick_user("alice", "old", false)], 1).unwrap();
        let account = {
            let accounts = auth.inner.accounts.read();
            let a = &accounts["alice"];
            (a.record.clone(), a.generation)
        };
        auth.insert(quick_user("alice", "new", false));
        let digest = hmac::sign(&auth.inner.cache_key, b"old");
        let stale = Check {
            key: CheckKey { name: "alice".into(), digest: digest.as_ref().try_into().unwrap() },
            password: "old".into(),
            account: Some(account),
        };
        assert_eq!(auth.inner.verify(&stale), alice(false), "the old record did match");
        assert_eq!(check(&auth, "alice", "old"), (false, Err(AuthError::WrongCredentials)), "but it is not cached");
    }

    #[test]
    fn a_closed_gate_refuses_what_would_be_hashed_but_not_a_remembered_password() {
        let auth = Authenticator::start(vec![quick_user("alice", "secret", false)], 1).unwrap();
        assert_eq!(check(&auth, "alice", "secret"), (false, alice(false)));
        let throttled = AuthError::Throttled { retry_after_secs: 3 };
        let closed = || Err(throttled);
        assert_eq!(auth.authenticate("alice", "secret", closed, |_| {}), Decision::Now(alice(false)), "remembered");
        assert_eq!(auth.authenticate("alice", "guess", closed, |_| {}), Decision::Now(Err(throttled)));
        assert_eq!(auth.authenticate("mallory", "guess", closed, |_| {}), Decision::Now(Err(throttled)));
        assert!(auth.inner.queue.lock().checks.is_empty(), "nothing queued for hashing");
    }

    #[test]
    fn a_full_queue_refuses_at_once_and_identical_checks_share_one() {
        // No verifier thread: the queue only fills.
        let auth = Authenticator::new(vec![quick_user("alice", "secret", false)]).unwrap();
        for i in 0..MAX_PENDING {
            assert_eq!(auth.authenticate("alice", &format!("guess {i}"), || Ok(()), |_| {}), Decision::Later);
        }
        assert_eq!(auth.authenticate("alice", "guess 0", || Ok(()), |_| {}), Decision::Later, "joins the queued check");
        assert_eq!(auth.authenticate("alice", "one more", || Ok(()), |_| {}), Decision::Now(Err(AuthError::Busy)));
        let queue = auth.inner.queue.lock();
        assert_eq!((queue.checks.len(), queue.waiting.len()), (MAX_PENDING, MAX_PENDING));
    }
}
