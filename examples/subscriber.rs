//! Prints every message under `sensors/` with the network client.
//!
//! `cargo run -p tinymq-examples --example subscriber [HOST:PORT]` against
//! a running broker (`tinymq broker`). The client reconnects and
//! resubscribes by itself if the broker restarts.

use tinymq_net::{Address, Client, ClientOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let address = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:1883".into());
    let mut client = Client::connect(ClientOptions::new(Address::tcp(address)).client_id("example-subscriber"))?;
    client.subscribe("sensors/#")?;
    loop {
        let message = client.recv()?;
        let retained = if message.retained { " (retained)" } else { "" };
        println!("{} {}{retained} from {}", message.topic, String::from_utf8_lossy(&message.payload), message.from);
    }
}
