//! What `--durability batched` keeps, on the real binary with a real data
//! directory: kill -9 under a sustained POST load loses only writes the
//! store had not yet reported committed, and only the latest ones; a clean
//! stop (SIGTERM, SIGINT) commits everything first, however long the
//! interval.
//!
//! No timing is guessed. One writer POSTs in sequence on one connection,
//! so its k-th POST is the broker's k-th store write, and the broker's
//! `store_committed_writes` (STATS) says how many of them are durable.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::support::http::{HttpConn, Json, JsonExt, Next, call, eventually, moustique_request};
use crate::support::{BrokerProcess, ScratchDir, WAIT};

const CYCLES: usize = 3;

fn stats(addr: SocketAddr) -> Json {
    call(addr, "GET", "/api/v1/stats", &[], b"").plain_json("stats")
}

fn figure(figures: &Json, key: &str) -> usize {
    figures.field(key).num() as usize
}

fn topic(cycle: usize, n: usize) -> String {
    format!("/load/{cycle}/{n}")
}

fn message(n: usize) -> String {
    format!("value {n}")
}

/// A writer POSTing `/load/CYCLE/N` for N = 0, 1, ... on one keep-alive
/// connection until told to stop or the connection ends.
struct Load {
    acked: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl Load {
    fn start(addr: SocketAddr, cycle: usize) -> Self {
        let acked = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (acked, stop) = (acked.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut conn = HttpConn::open(addr);
                for n in 0.. {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let request =
                        moustique_request("POST", "POST", &[("topic", &topic(cycle, n)), ("message", &message(n))]);
                    if conn.try_send(&request).is_err() {
                        return;
                    }
                    match conn.next_within(WAIT) {
                        Next::Response(response) if response.status == 200 => {
                            // In order: POST n is acknowledged once n+1 are.
                            acked.store(n + 1, Ordering::SeqCst);
                        }
                        Next::Response(response) => panic!("POST {n}: {} {}", response.status, response.text()),
                        Next::Closed | Next::Timeout => return,
                    }
                }
            })
        };
        Load { acked, stop, thread }
    }

    fn acked(&self) -> usize {
        self.acked.load(Ordering::SeqCst)
    }

    fn wait_for(&self, at_least: usize) {
        eventually(Duration::from_secs(30), &format!("{at_least} POSTs acknowledged"), || {
            (self.acked() >= at_least).then_some(())
        });
    }

    /// Stops the writer (or lets it see its connection end) and returns
    /// how many POSTs were acknowledged.
    fn finish(self) -> usize {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().expect("the writer thread");
        self.acked.load(Ordering::SeqCst)
    }
}

/// Which of `/load/CYCLE/0..upto` a broker has, in order.
fn present(broker: &BrokerProcess, cycle: usize, upto: usize) -> Vec<bool> {
    let mut conn = HttpConn::open(broker.http_addr());
    (0..upto)
        .map(|n| {
            let reply = conn.moustique("GETVAL", &[("topic", &topic(cycle, n))]);
            match reply.status {
                200 => {
                    assert_eq!(reply.moustique_json("GETVAL").field("message").str(), message(n));
                    true
                }
                404 => false,
                other => panic!("GETVAL {}: {other}", topic(cycle, n)),
            }
        })
        .collect()
}

#[test]
fn kill_9_after_the_store_reports_the_last_write_committed_loses_nothing() {
    let data = ScratchDir::new();
    let dir = data.path().to_str().unwrap();
    let mut acked_per_cycle = Vec::new();
    for cycle in 0..CYCLES {
        let mut broker = BrokerProcess::start_http(&["--data", dir, "--durability", "batched"]);
        let load = Load::start(broker.http_addr(), cycle);
        load.wait_for(300);
        let acked = load.finish();
        // Every write of this process is one of the writer's POSTs.
        eventually(Duration::from_secs(10), "the store to commit every acknowledged POST", || {
            let figures = stats(broker.http_addr());
            (figure(&figures, "store_writes") >= acked && figure(&figures, "store_committed_writes") >= acked)
                .then_some(())
        });
        broker.kill();
        acked_per_cycle.push(acked);
    }
    let broker = BrokerProcess::start_http(&["--data", dir]);
    for (cycle, &acked) in acked_per_cycle.iter().enumerate() {
        let missing = present(&broker, cycle, acked).iter().filter(|&&p| !p).count();
        assert_eq!(missing, 0, "cycle {cycle}: {missing} of {acked} committed POSTs lost to kill -9");
    }
    eprintln!("acknowledged and committed before kill -9, all present: {acked_per_cycle:?}");
}

#[test]
fn kill_9_mid_load_loses_only_writes_not_yet_committed_and_only_the_latest() {
    let data = ScratchDir::new();
    let dir = data.path().to_str().unwrap();
    // (acknowledged, reported committed before the kill) per cycle.
    let mut cycles = Vec::new();
    for cycle in 0..CYCLES {
        let mut broker = BrokerProcess::start_http(&["--data", dir, "--durability", "batched"]);
        let load = Load::start(broker.http_addr(), cycle);
        load.wait_for(200);
        // Kill as soon as STATS shows a commit covering at least 200 writes,
        // with the writer still going.
        let committed = eventually(Duration::from_secs(10), "a commit of 200 writes", || {
            let committed = figure(&stats(broker.http_addr()), "store_committed_writes");
            (committed >= 200).then_some(committed)
        });
        broker.kill();
        let acked = load.finish();
        cycles.push((acked, committed));
    }
    let broker = BrokerProcess::start_http(&["--data", dir]);
    let report = Arc::new(Mutex::new(Vec::new()));
    for (cycle, &(acked, committed)) in cycles.iter().enumerate() {
        // One past the acknowledged: the POST in flight may be there too.
        let have = present(&broker, cycle, acked + 1);
        let first_missing = have.iter().position(|&p| !p).unwrap_or(have.len());
        assert!(
            have[first_missing..].iter().all(|&p| !p),
            "cycle {cycle}: a value is present after a missing one: the durable writes are not a prefix"
        );
        assert!(
            first_missing >= committed,
            "cycle {cycle}: STATS said {committed} writes were committed, but only {first_missing} survived"
        );
        let lost = acked.saturating_sub(first_missing);
        report.lock().unwrap().push(format!(
            "cycle {cycle}: {acked} acknowledged, {committed} reported committed, {first_missing} present, {lost} acknowledged and lost"
        ));
    }
    for line in report.lock().unwrap().iter() {
        eprintln!("{line}");
    }
}

/// POSTs `count` values on a broker whose batch interval outlasts the test,
/// checks none is committed yet, stops it with `signal`, and checks they
/// are all there after a restart.
fn a_clean_stop_commits_everything(signal: libc::c_int) {
    let data = ScratchDir::new();
    let dir = data.path().to_str().unwrap();
    let flags = ["--data", dir, "--durability", "batched", "--commit-interval-ms", "600000"];
    let mut broker = BrokerProcess::start_http(&flags);
    let count = 500;
    let mut conn = HttpConn::open(broker.http_addr());
    for n in 0..count {
        let reply = conn.moustique("POST", &[("topic", &topic(0, n)), ("message", &message(n))]);
        reply.assert_empty_ok("POST");
    }
    let figures = stats(broker.http_addr());
    assert_eq!(
        (figure(&figures, "store_writes"), figure(&figures, "store_commits"), figure(&figures, "store_pending")),
        (count, 0, count),
        "nothing committed before the stop: {figures}"
    );
    broker.signal(signal);
    let status = broker.wait_exit(WAIT);
    assert!(status.success(), "exit status after signal {signal}: {status}");
    let broker = BrokerProcess::start_http(&["--data", dir]);
    let have = present(&broker, 0, count);
    assert!(have.iter().all(|&p| p), "{} of {count} values lost by a clean stop", have.iter().filter(|&&p| !p).count());
}

#[test]
fn sigterm_commits_every_queued_write_before_exiting() {
    a_clean_stop_commits_everything(libc::SIGTERM);
}

#[test]
fn sigint_commits_every_queued_write_before_exiting() {
    a_clean_stop_commits_everything(libc::SIGINT);
}
