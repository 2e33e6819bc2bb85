//! A service that runs a tinymq broker inside its own process, uses it
//! through an in-process client, and lets network clients in over TCP.
//!
//! Run with `cargo run -p tinymq-examples --example embedded`.

use std::time::Duration;

use tinymq_net::{Address, Broker, Client, ClientOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Port 0: the system picks a free port; the broker says which.
    let broker = Broker::builder().listen_tcp("127.0.0.1:0".parse()?).threads(1).start()?;
    let address = broker.tcp_addr().expect("a TCP listener");
    println!("broker listening on {address}");

    // The service's own logic subscribes in-process: no socket, no copy.
    let alarms = broker.client("alarm-handler")?;
    alarms.subscribe("alarms/#")?;

    // A device connects over TCP, like any network client would.
    let mut device = Client::connect(ClientOptions::new(Address::from(address)).client_id("front-door"))?;
    device.publish("alarms/front-door", b"open", false)?;

    let message = alarms.recv_timeout(Duration::from_secs(5))?.ok_or("no alarm arrived")?;
    println!(
        "in-process client got {:?} on {} from {}",
        String::from_utf8_lossy(message.payload()),
        message.topic(),
        message.from()
    );

    // And the other way: the service tells the device what to do.
    device.subscribe("commands/front-door")?;
    broker.client("controller")?.publish("commands/front-door", b"lock")?;
    let command = device.recv_timeout(Duration::from_secs(5))?.ok_or("no command arrived")?;
    println!(
        "TCP client got {:?} on {} from {}",
        String::from_utf8_lossy(&command.payload),
        command.topic,
        command.from
    );

    device.disconnect()?;
    // Tells remaining connections the broker is stopping; returns once
    // every broker thread has ended.
    broker.shutdown();
    println!("broker stopped");
    Ok(())
}
