//! `tinymq pub` and `tinymq sub`: the publisher and subscriber of the
//! original design, on the network client. Both reconnect and resubscribe
//! when the broker restarts.

use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use signal_hook::consts::{SIGINT, SIGTERM};
use tinymq_core::Qos;
use tinymq_net::{Address, Client, ClientOptions, ReceivedMessage};

use crate::args::{self, Failure, Outcome, UsageError};
use crate::broker::Network;
use crate::tls::TlsFlags;

const PUB_USAGE: &str = concat!(
    "\
Usage: tinymq pub --topic TOPIC [OPTIONS]

Publishes a message (from --message, or else standard input).

Options:
  --topic TOPIC          the topic to publish to (no wildcards)
  --message TEXT         the payload; else standard input, less one final line ending
  --retain               store it as the topic's value too
  --interval SECS        publish again every SECS seconds until interrupted
  --count N              publish N times (with --interval: then stop)
  --qos 0|1              1: the broker acknowledges each message; exit 0 only once every one
                         was, 1 naming how many were not [default: 0]
  --ack-timeout SECS     --qos 1: how long to wait for the last acknowledgements [default: 30]
  --network tcp|unix     [default: tcp]
  --address ADDR         HOST:PORT, or a socket path for unix [default: 127.0.0.1:1883]
  --client-id ID         [default: assigned by the broker]
  --username U --password P
  --session              keep this client's session while it is away (needs --client-id)
  --will-topic TOPIC --will-message TEXT  published by the broker if the connection is lost
  --will-qos 0|1 --will-retain            the will's QoS [default: 0] and RETAIN
",
    tls_usage!()
);

const SUB_USAGE: &str = concat!(
    "\
Usage: tinymq sub --topic FILTER [--topic FILTER ...] [OPTIONS]

Subscribes and prints each message: `TOPIC PAYLOAD` per line, or JSON.

Options:
  --topic FILTER         a topic filter (+ and # allowed); repeat for several
  --count N              exit after N messages
  --format text|json     [default: text]
  --qos 0|1              1: messages published at QoS 1 are queued for this client and sent
                         again until it acknowledges them [default: 0]
  --network tcp|unix     [default: tcp]
  --address ADDR         HOST:PORT, or a socket path for unix [default: 127.0.0.1:1883]
  --client-id ID         [default: assigned by the broker]
  --username U --password P
  --session              keep this client's session (subscriptions, queued QoS 1 messages)
                         while it is away, for the broker's session expiry (needs --client-id)
  --will-topic TOPIC --will-message TEXT  published by the broker if the connection is lost
  --will-qos 0|1 --will-retain            the will's QoS [default: 0] and RETAIN
",
    tls_usage!()
);

/// The connection flags `pub` and `sub` share.
fn client_options(args: &mut pico_args::Arguments) -> Result<ClientOptions, Failure> {
    let network = args::opt(args, "--network")?.unwrap_or(Network::Tcp);
    let address: Option<String> = args::opt(args, "--address")?;
    let address = match network {
        Network::Tcp => Address::tcp(address.unwrap_or_else(|| "127.0.0.1:1883".into())),
        Network::Unix => {
            Address::unix(address.ok_or_else(|| UsageError("--address: --network unix needs a socket path".into()))?)
        }
    };
    let tls = TlsFlags::parse(args)?;
    if tls.enabled() && network == Network::Unix {
        return Err(UsageError("--tls needs --network tcp".into()).into());
    }
    let mut options = ClientOptions::new(address);
    if let Some(tls) = tls.load()? {
        options = options.tls(tls);
    }
    let client_id = args::opt::<String>(args, "--client-id")?;
    if args::switch(args, "--session") {
        if client_id.is_none() {
            return Err(UsageError("--session needs --client-id".into()).into());
        }
        options = options.persistent_session(true);
    }
    if let Some(id) = client_id {
        options = options.client_id(id);
    }
    let will_topic: Option<String> = args::opt(args, "--will-topic")?;
    let will_message: Option<String> = args::opt(args, "--will-message")?;
    let will_qos: Option<QosFlag> = args::opt(args, "--will-qos")?;
    let will_retain = args::switch(args, "--will-retain");
    match (will_topic, will_message) {
        (Some(topic), Some(message)) => {
            options = options.will(topic, message, will_retain, will_qos.unwrap_or(QosFlag(Qos::AtMostOnce)).0)
        }
        (None, None) if will_qos.is_none() && !will_retain => {}
        _ => return Err(UsageError("--will-topic and --will-message go together".into()).into()),
    }
    let username: Option<String> = args::opt(args, "--username")?;
    let password: Option<String> = args::opt(args, "--password")?;
    match (username, password) {
        (Some(user), Some(password)) => options = options.credentials(user, password),
        (None, None) => {}
        (Some(_), None) => return Err(UsageError("--username needs --password".into()).into()),
        (None, Some(_)) => return Err(UsageError("--password needs --username".into()).into()),
    }
    Ok(options)
}

/// A `--qos` value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct QosFlag(Qos);

impl std::str::FromStr for QosFlag {
    type Err = &'static str;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "0" => Ok(QosFlag(Qos::AtMostOnce)),
            "1" => Ok(QosFlag(Qos::AtLeastOnce)),
            _ => Err("expected 0 or 1"),
        }
    }
}

/// Set by SIGINT or SIGTERM: finish cleanly instead of dying mid-write.
fn stop_flag() -> Result<Arc<AtomicBool>, Failure> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [SIGINT, SIGTERM] {
        signal_hook::flag::register(signal, stop.clone()).map_err(Failure::run)?;
    }
    Ok(stop)
}

pub fn run_pub(mut args: pico_args::Arguments) -> Outcome {
    if args::help(&mut args, PUB_USAGE) {
        return Ok(());
    }
    let mut options = client_options(&mut args)?;
    let topic: Option<String> = args::opt(&mut args, "--topic")?;
    let message: Option<String> = args::opt(&mut args, "--message")?;
    let retain = args::switch(&mut args, "--retain");
    let interval: Option<f64> = args::opt(&mut args, "--interval")?;
    let count: Option<u64> = args::opt(&mut args, "--count")?;
    let qos = args::opt(&mut args, "--qos")?.unwrap_or(QosFlag(Qos::AtMostOnce)).0;
    let ack_timeout: u64 = args::opt(&mut args, "--ack-timeout")?.unwrap_or(30);
    args::finish(args)?;
    if qos == Qos::AtLeastOnce {
        // Also bounds a wait for room in the window.
        options = options.request_timeout(Duration::from_secs(ack_timeout.max(1)));
    }
    let topic = topic.ok_or_else(|| UsageError("--topic is required".into()))?;
    let interval = match interval {
        Some(secs) if !(secs > 0.0 && secs.is_finite()) => {
            return Err(UsageError("--interval: must be a positive number of seconds".into()).into());
        }
        Some(secs) => Some(Duration::from_secs_f64(secs)),
        None => None,
    };
    let payload = match message {
        Some(text) => text.into_bytes(),
        None => {
            let mut bytes = Vec::new();
            std::io::stdin().lock().read_to_end(&mut bytes).map_err(|e| Failure::run(format!("reading stdin: {e}")))?;
            // `echo 23.1 | tinymq pub` means "23.1": drop one line ending.
            if bytes.ends_with(b"\n") {
                bytes.pop();
                if bytes.ends_with(b"\r") {
                    bytes.pop();
                }
            }
            bytes
        }
    };
    let stop = stop_flag()?;
    let mut client = Client::connect(options).map_err(Failure::run)?;
    // Without --interval: --count times back to back (default once). With
    // it: every interval, --count times or until interrupted.
    let times = count.unwrap_or(if interval.is_some() { u64::MAX } else { 1 });
    let start = Instant::now();
    let mut published = 0u64;
    for n in 0..times {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        if qos == Qos::AtLeastOnce {
            if let Err(error) = client.publish_qos1(&topic, &payload, retain) {
                let left = client.unacknowledged();
                return Err(Failure::run(format!(
                    "{error}: {left} of {published} messages to {topic} not acknowledged (the last {left} sent), \
                     {} not sent",
                    times.saturating_sub(published)
                )));
            }
            published += 1;
        } else {
            client.publish(&topic, &payload, retain).map_err(Failure::run)?;
        }
        let Some(interval) = interval else { continue };
        if n + 1 == times {
            break;
        }
        // Sleep in short steps so a signal ends the wait promptly; keep
        // the connection alive meanwhile.
        let due = start + interval.mul_f64((n + 1) as f64);
        while !stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            if now >= due {
                break;
            }
            client.recv_timeout((due - now).min(Duration::from_millis(200))).map_err(Failure::run)?;
        }
    }
    if qos == Qos::AtLeastOnce {
        let left = client.wait_acknowledged(Duration::from_secs(ack_timeout)).map_err(Failure::run)?;
        if left > 0 {
            // Acknowledged in order: the ones left are the last sent.
            return Err(Failure::run(format!(
                "{left} of {published} messages to {topic} not acknowledged (the last {left} sent) within {ack_timeout} s"
            )));
        }
    }
    client.disconnect().map_err(Failure::run)
}

/// How `sub` prints a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Text,
    Json,
}

impl std::str::FromStr for Format {
    type Err = &'static str;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(Format::Text),
            "json" => Ok(Format::Json),
            _ => Err("expected text or json"),
        }
    }
}

fn print(out: &mut impl Write, message: &ReceivedMessage, format: Format) -> std::io::Result<()> {
    let payload = String::from_utf8_lossy(&message.payload);
    match format {
        Format::Text => writeln!(out, "{} {}", message.topic, payload),
        Format::Json => {
            let json = serde_json::json!({
                "topic": message.topic,
                "payload": payload,
                "from": message.from,
                "retained": message.retained,
            });
            writeln!(out, "{json}")
        }
    }
}

pub fn run_sub(mut args: pico_args::Arguments) -> Outcome {
    if args::help(&mut args, SUB_USAGE) {
        return Ok(());
    }
    let options = client_options(&mut args)?;
    let filters: Vec<String> = args::many(&mut args, "--topic")?;
    let count: Option<u64> = args::opt(&mut args, "--count")?;
    let format = args::opt(&mut args, "--format")?.unwrap_or(Format::Text);
    let qos = args::opt(&mut args, "--qos")?.unwrap_or(QosFlag(Qos::AtMostOnce)).0;
    args::finish(args)?;
    if filters.is_empty() {
        return Err(UsageError("--topic is required (repeat it for several filters)".into()).into());
    }
    let stop = stop_flag()?;
    let mut client = Client::connect(options).map_err(Failure::run)?;
    for filter in &filters {
        match qos {
            Qos::AtLeastOnce => client.subscribe_qos1(filter).map_err(Failure::run)?,
            Qos::AtMostOnce => client.subscribe(filter).map_err(Failure::run)?,
        }
    }
    let stdout = std::io::stdout();
    let mut received = 0;
    while count.is_none_or(|count| received < count) && !stop.load(Ordering::Relaxed) {
        let Some(message) = client.recv_timeout(Duration::from_millis(200)).map_err(Failure::run)? else {
            continue;
        };
        let mut out = stdout.lock();
        // A closed pipe (`| head`) ends the subscriber quietly.
        if print(&mut out, &message, format).and_then(|()| out.flush()).is_err() {
            break;
        }
        received += 1;
    }
    client.disconnect().map_err(Failure::run)
}
