//! A worker inside the broker's process that must not lose a job: its
//! in-process client has a persistent session (kept while it is away, and
//! in the data directory across restarts, kill -9 included) and
//! acknowledges each job only once it is done, so a job it was working on
//! when the program died comes back on the next start.
//!
//! Run it twice with `cargo run -p tinymq-examples --example durable_worker
//! -- DIR`: the first run queues five jobs and "crashes" in the middle of
//! the third (it exits without acknowledging it); the second finds the
//! rest waiting and finishes them.

use std::time::Duration;

use tinymq_net::{Broker, Durability, LocalOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args().nth(1).ok_or("usage: durable_worker DATA_DIR")?;
    // `Immediate`: publish_qos1 returns once the job is committed.
    let broker = Broker::builder().data_dir(&dir).durability(Durability::Immediate).threads(1).start()?;
    let options = LocalOptions::new("resizer").persistent_session(true).manual_ack(true);
    let worker = broker.local_client(options)?;
    worker.subscribe_qos1("jobs/resize/#")?;

    let first_run = !worker.session_present();
    if first_run {
        let frontend = broker.client("frontend")?;
        for n in 1..=5 {
            frontend.publish_qos1(&format!("jobs/resize/{n}"), format!("photo-{n}.jpg").as_bytes())?;
        }
        println!("queued 5 jobs");
    } else {
        println!("resumed the stored session: jobs waited for us");
    }

    while let Some(job) = worker.recv_timeout(Duration::from_millis(500))? {
        let name = String::from_utf8_lossy(job.payload()).into_owned();
        let again = if job.is_duplicate() { " (again: it may have been started before)" } else { "" };
        println!("resizing {name}{again}");
        if first_run && name == "photo-3.jpg" {
            println!("crashing in the middle of {name}: run me again");
            // Like a kill -9: no acknowledgement, no clean shutdown.
            std::process::exit(1);
        }
        worker.ack(&job)?;
    }
    println!("no jobs left");
    drop(worker);
    broker.shutdown();
    Ok(())
}
