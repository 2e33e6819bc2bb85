//! Publishes a reading every second with the network client.
//!
//! `cargo run -p tinymq-examples --example publisher [HOST:PORT] [COUNT]`
//! against a running broker (`tinymq broker`). The client reconnects by
//! itself if the broker restarts.

use std::time::Duration;

use tinymq_net::{Address, Client, ClientOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let address = args.next().unwrap_or_else(|| "127.0.0.1:1883".into());
    let count: u32 = args.next().map_or(Ok(10), |n| n.parse())?;

    let mut client = Client::connect(ClientOptions::new(Address::tcp(address)).client_id("example-publisher"))?;
    for i in 0..count {
        let reading = format!("{:.1}", 20.0 + f64::from(i % 10) / 10.0);
        // Retained: a subscriber that starts later still gets the latest.
        client.publish("sensors/temperature", reading.as_bytes(), true)?;
        println!("published sensors/temperature {reading}");
        std::thread::sleep(Duration::from_secs(1));
    }
    client.disconnect()?;
    Ok(())
}
