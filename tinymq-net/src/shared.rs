//! State shared by the event loops, the in-process clients and the
//! embedding handle.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use mio::Waker;
use parking_lot::Mutex;
use tinymq_core::broker::AuthResult;
use tinymq_core::{Credentials, Delivery, NamespaceId, ReasonCode, Router};

use crate::broker::BrokerConfig;
use crate::local::LocalInbox;
use crate::store::{StoreWriter, Ticket};
use crate::transport::Stream;
use tinymq_core::store::StoreOp;

/// A connection on some event loop. The serial tells a reused slab slot
/// from the connection that held it before.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ConnRef {
    pub(crate) loop_index: usize,
    pub(crate) token: usize,
    pub(crate) serial: u64,
}

/// Where the router sends a subscriber's deliveries.
#[derive(Clone, Debug)]
pub(crate) enum Sink {
    Conn(ConnRef),
    Local(Arc<LocalInbox>),
}

/// Work handed to an event loop by other threads.
pub(crate) enum InboxItem {
    Deliver(ConnRef, Arc<Delivery>),
    Close(ConnRef, ReasonCode),
    Accept(Stream, Option<IpAddr>),
}

pub(crate) struct LoopHandle {
    pub(crate) waker: Waker,
    pub(crate) inbox: Mutex<Vec<InboxItem>>,
}

/// Broker-wide counters, read by statistics.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub(crate) connections: AtomicU64,
    pub(crate) connections_total: AtomicU64,
    pub(crate) refused_connections: AtomicU64,
    pub(crate) accept_errors: AtomicU64,
    pub(crate) messages_in: AtomicU64,
    pub(crate) messages_out: AtomicU64,
    pub(crate) bytes_in: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
    pub(crate) slow_consumer_drops: AtomicU64,
    pub(crate) local_queue_drops: AtomicU64,
    pub(crate) store_writes: AtomicU64,
    /// Broker-sent Disconnects, by reason code (index = code).
    pub(crate) disconnects: [AtomicU64; 9],
}

impl Stats {
    pub(crate) fn count_disconnect(&self, reason: ReasonCode) {
        if let Some(counter) = self.disconnects.get(reason as usize) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }
}

pub(crate) struct Shared {
    pub(crate) config: BrokerConfig,
    pub(crate) router: Mutex<Router<Sink>>,
    /// The store's writer thread; `None` for an in-memory broker.
    pub(crate) store: Option<StoreWriter>,
    pub(crate) loops: Vec<LoopHandle>,
    pub(crate) stats: Stats,
    shutting_down: AtomicBool,
}

impl Shared {
    pub(crate) fn new(
        config: BrokerConfig,
        router: Router<Sink>,
        store: Option<StoreWriter>,
        loops: Vec<LoopHandle>,
    ) -> Self {
        Shared {
            config,
            router: Mutex::new(router),
            store,
            loops,
            stats: Stats::default(),
            shutting_down: AtomicBool::new(false),
        }
    }

    /// Hands a changed stored value to the store's writer (a delete when
    /// the payload is empty). `None` when nothing is stored on disk.
    pub(crate) fn persist(&self, namespace: &str, delivery: &Delivery) -> Option<Ticket> {
        let writer = self.store.as_ref()?;
        let message = delivery.message();
        let op = if message.payload.is_empty() {
            StoreOp::DeleteValue { namespace: namespace.to_owned(), topic: message.topic.to_string() }
        } else {
            StoreOp::PutValue { namespace: namespace.to_owned(), message: message.clone() }
        };
        self.stats.store_writes.fetch_add(1, Ordering::Relaxed);
        Some(writer.submit(op))
    }

    pub(crate) fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    pub(crate) fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::Release);
        for handle in &self.loops {
            let _ = handle.waker.wake();
        }
    }

    /// Decides a binary client's credentials. Until users exist (a later
    /// issue), only anonymous clients are let in: credentials are refused
    /// rather than silently ignored.
    pub(crate) fn authenticate(&self, credentials: Option<Credentials<'_>>) -> AuthResult {
        match credentials {
            None if self.config.allow_anonymous => Ok(NamespaceId::PUBLIC),
            None => Err("this broker needs credentials"),
            Some(_) => Err("unknown user or wrong password"),
        }
    }

    /// Queues work for loop `index`, waking it if its inbox was empty (one
    /// wake per batch, not per item).
    pub(crate) fn send(&self, index: usize, item: InboxItem) {
        let handle = &self.loops[index];
        let was_empty = {
            let mut inbox = handle.inbox.lock();
            inbox.push(item);
            inbox.len() == 1
        };
        if was_empty {
            let _ = handle.waker.wake();
        }
    }

    /// Delivers to receivers not on the calling loop: connections through
    /// their loop's inbox, in-process clients straight into their queue.
    pub(crate) fn dispatch(&self, delivery: &Arc<Delivery>, receivers: &[Sink]) {
        for sink in receivers {
            match sink {
                Sink::Conn(target) => self.send(target.loop_index, InboxItem::Deliver(*target, delivery.clone())),
                Sink::Local(inbox) => {
                    if inbox.push(delivery.clone(), false) {
                        self.stats.messages_out.fetch_add(1, Ordering::Relaxed);
                    } else {
                        self.stats.local_queue_drops.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
    }
}
