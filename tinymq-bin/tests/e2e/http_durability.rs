//! What an HTTP writer was told is stored survives kill -9 of the real
//! binary, under `--durability immediate`: the 200 of a POST is sent only
//! after its value is committed to the redb file.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::http::{HttpConn, JsonExt, Next, moustique_request};
use crate::support::{BrokerProcess, ScratchDir, WAIT};

/// POSTs acknowledged before each kill.
const ACKED_BEFORE_KILL: usize = 150;
const CYCLES: usize = 3;

/// Every acknowledged value must be there, with its payload.
fn assert_all_present(broker: &BrokerProcess, acked: &[(String, String)]) {
    let mut conn = HttpConn::open(broker.http_addr());
    for (topic, message) in acked {
        let value = conn.moustique("GETVAL", &[("topic", topic)]);
        assert_eq!(value.status, 200, "acknowledged {topic} lost after kill -9");
        assert_eq!(value.moustique_json("GETVAL").field("message").str(), message, "{topic}");
    }
}

#[test]
fn every_acknowledged_post_survives_kill_9_with_immediate_durability() {
    let data = ScratchDir::new();
    let data_dir = data.path().to_str().expect("a UTF-8 path").to_owned();
    let flags = ["--data", data_dir.as_str(), "--durability", "immediate"];
    let mut acked: Vec<(String, String)> = Vec::new();
    for cycle in 0..CYCLES {
        let mut broker = BrokerProcess::start_http(&flags);
        assert_all_present(&broker, &acked);

        // A writer POSTs as fast as the broker answers, on one keep-alive
        // connection, and records what was acknowledged.
        let addr = broker.http_addr();
        let acked_now = Arc::new(Mutex::new(Vec::new()));
        let count = Arc::new(AtomicUsize::new(0));
        let writer = {
            let (acked_now, count) = (acked_now.clone(), count.clone());
            std::thread::spawn(move || {
                let mut conn = HttpConn::open(addr);
                for n in 0.. {
                    let (topic, message) = (format!("/crash/{cycle}/{n}"), format!("value {n}"));
                    let request = moustique_request("POST", "POST", &[("topic", &topic), ("message", &message)]);
                    if conn.try_send(&request).is_err() {
                        return;
                    }
                    match conn.next_within(WAIT) {
                        Next::Response(response) if response.status == 200 => {
                            acked_now.lock().unwrap().push((topic, message));
                            count.fetch_add(1, Ordering::SeqCst);
                        }
                        Next::Response(response) => panic!("POST {topic}: {} {}", response.status, response.text()),
                        Next::Closed | Next::Timeout => return,
                    }
                }
            })
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while count.load(Ordering::SeqCst) < ACKED_BEFORE_KILL {
            assert!(Instant::now() < deadline, "only {} POSTs acknowledged in 30 s", count.load(Ordering::SeqCst));
            std::thread::sleep(Duration::from_millis(5));
        }
        // Mid-load: the writer has a POST in flight or about to be.
        broker.kill();
        writer.join().expect("the writer thread");
        let acked_this_cycle = acked_now.lock().unwrap().clone();
        assert!(acked_this_cycle.len() >= ACKED_BEFORE_KILL);
        acked.extend(acked_this_cycle);
    }
    let broker = BrokerProcess::start_http(&flags);
    assert_all_present(&broker, &acked);
    eprintln!("{} acknowledged POSTs over {CYCLES} kill -9 cycles, all present", acked.len());
}
