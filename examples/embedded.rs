//! A service that runs a tinymq broker inside its own process, uses it
//! through an in-process client, and lets network clients in over TCP.
//!
//! Run with `cargo run -p tinymq-examples --example embedded`.

use std::time::Duration;

use tinymq_net::{Address, Broker, Client, ClientOptions, ReceivedBatch};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Port 0: the system picks a free port; the broker says which.
    let broker = Broker::builder().listen_tcp("127.0.0.1:0".parse()?).threads(1).start()?;
    let address = broker.tcp_addr().expect("a TCP listener");
    println!("broker listening on {address}");

    // The service's own logic subscribes in-process: no socket, no encoding.
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

    // At high rates, in batches: one publish_many routes the topic once;
    // one recv_many takes everything queued, read in place.
    let logger = broker.client("logger")?;
    logger.subscribe("sensors/#")?;
    let readings: Vec<String> = (0..1000).map(|i| format!("{}.{} C", 20 + i / 100, i % 10)).collect();
    broker.client("sensors")?.publish_many("sensors/temperature", &readings)?;
    let (mut batch, mut got, mut last) = (ReceivedBatch::new(), 0, String::new());
    while got < readings.len() {
        if logger.recv_many(&mut batch, Duration::from_secs(5))? == 0 {
            return Err("the readings stopped coming".into());
        }
        for message in &batch {
            got += 1;
            last = String::from_utf8_lossy(message.payload()).into_owned();
        }
    }
    println!("in-process batch: {got} readings, the last {last:?}");

    device.disconnect()?;
    // Tells remaining connections the broker is stopping; returns once
    // every broker thread has ended.
    broker.shutdown();
    println!("broker stopped");
    Ok(())
}
