//! Bridge servers given by host name, resolved on a thread of their own:
//! the system resolver blocks for as long as DNS takes, and loop 0 serves
//! clients meanwhile, and every address the name has is given back: the
//! bridge dials them in turn (a `localhost` that is `::1` first, with the
//! server listening on `127.0.0.1` only, is still reached). The loop hands a name over with
//! [`Resolver::lookup`]; the thread wakes it when the answer is in, and
//! the loop takes it with [`Resolver::take_answers`].

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;

use mio::Waker;
use parking_lot::Mutex;

/// A name to resolve for a bridge.
struct Lookup {
    bridge: usize,
    serial: u64,
    host_port: String,
}

/// What a name resolved to, for the bridge that asked.
pub(crate) struct Answer {
    pub(crate) bridge: usize,
    /// The [`Resolver::lookup`] it answers: a bridge that gave up on a
    /// lookup (its handshake timed out) ignores a late answer.
    pub(crate) serial: u64,
    /// Every address the name resolved to, in the resolver's order; never
    /// empty.
    pub(crate) result: io::Result<Vec<SocketAddr>>,
}

#[derive(Default)]
struct Answers {
    /// Whether `list` holds answers: checked every turn without the lock.
    ready: AtomicBool,
    list: Mutex<Vec<Answer>>,
}

/// The resolver thread of loop 0, started at the first name and stopped
/// (joined) when the loop ends: a lookup in progress then is waited for,
/// within the system resolver's own timeout.
pub(crate) struct Resolver {
    waker: Arc<Waker>,
    thread: Option<(mpsc::Sender<Lookup>, JoinHandle<()>)>,
    answers: Arc<Answers>,
    next_serial: u64,
}

impl Resolver {
    pub(crate) fn new(waker: Arc<Waker>) -> Self {
        Resolver { waker, thread: None, answers: Arc::default(), next_serial: 0 }
    }

    /// Starts resolving `host_port` for `bridge`; returns the serial its
    /// answer will carry.
    pub(crate) fn lookup(&mut self, bridge: usize, host_port: &str) -> io::Result<u64> {
        if self.thread.is_none() {
            let (sender, receiver) = mpsc::channel::<Lookup>();
            let (answers, waker) = (self.answers.clone(), self.waker.clone());
            let handle = std::thread::Builder::new().name("tinymq-resolve".into()).spawn(move || {
                for lookup in receiver {
                    let result = resolve(&lookup.host_port);
                    answers.list.lock().push(Answer { bridge: lookup.bridge, serial: lookup.serial, result });
                    answers.ready.store(true, Ordering::Release);
                    let _ = waker.wake();
                }
            })?;
            self.thread = Some((sender, handle));
        }
        self.next_serial += 1;
        let serial = self.next_serial;
        let Some((sender, _)) = &self.thread else { unreachable!("started above") };
        sender
            .send(Lookup { bridge, serial, host_port: host_port.to_owned() })
            .map_err(|_| io::Error::other("the resolver thread is gone"))?;
        Ok(serial)
    }

    /// Moves the answers that came in to `into`; cheap when there are none.
    pub(crate) fn take_answers(&self, into: &mut Vec<Answer>) {
        if self.answers.ready.swap(false, Ordering::Acquire) {
            into.append(&mut self.answers.list.lock());
        }
    }
}

impl Drop for Resolver {
    fn drop(&mut self) {
        if let Some((sender, handle)) = self.thread.take() {
            drop(sender);
            let _ = handle.join();
        }
    }
}

/// `host:port` as the addresses the name resolves to, each once, in order.
fn resolve(host_port: &str) -> io::Result<Vec<SocketAddr>> {
    let mut addresses: Vec<SocketAddr> = Vec::new();
    for address in host_port.to_socket_addrs()? {
        if !addresses.contains(&address) {
            addresses.push(address);
        }
    }
    if addresses.is_empty() {
        return Err(io::Error::other("the name resolves to no address"));
    }
    Ok(addresses)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mio::{Events, Poll, Token};
    use std::time::Duration;

    fn answer(resolver: &mut Resolver, poll: &mut Poll, name: &str) -> Answer {
        let serial = resolver.lookup(3, name).unwrap();
        let mut events = Events::with_capacity(4);
        let mut answers = Vec::new();
        while answers.is_empty() {
            poll.poll(&mut events, Some(Duration::from_secs(30))).unwrap();
            assert!(!events.is_empty(), "no wake within 30 s for {name}");
            resolver.take_answers(&mut answers);
        }
        let answer = answers.pop().unwrap();
        assert_eq!((answer.bridge, answer.serial), (3, serial));
        answer
    }

    #[test]
    fn names_are_resolved_off_the_caller_and_wake_it() {
        let mut poll = Poll::new().unwrap();
        let waker = Arc::new(Waker::new(poll.registry(), Token(7)).unwrap());
        let mut resolver = Resolver::new(waker);
        let localhost = answer(&mut resolver, &mut poll, "localhost:4222").result.unwrap();
        assert!(!localhost.is_empty());
        for address in &localhost {
            assert!(address.ip().is_loopback() && address.port() == 4222, "{localhost:?}");
        }
        let error = answer(&mut resolver, &mut poll, "no-such-host.invalid:4222").result.unwrap_err();
        assert!(!error.to_string().is_empty());
    }
}
