//! Feeds an MQTT server's bytes to `MqttClient::handle_input` the way a
//! bridge's read loop does and checks that arrival in pieces never changes
//! what comes out: the same events, the same bytes to send, the same
//! error. The client never holds more than one packet's worth of unparsed
//! bytes, and never panics.
//!
//! Input: one byte `n`, then `n % 8` chunk sizes (used in turn; a 0 is a
//! read that brought nothing), then the stream. `n & 0x80`: the client has
//! already taken CONNACK and SUBACK (else the stream starts with what
//! answers CONNECT); `n & 0x40`: it speaks 3.1.1 (else 5).
#![no_main]

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use tinymq_fuzz::chunks;
use tinymq_core::mqtt::{ConnectionError, MqttClient, MqttClientConfig, MqttEvent, MqttVersion};

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fuzz_target!(|input: &[u8]| {
    let Some((&n, rest)) = input.split_first() else { return };
    let (sizes, stream) = rest.split_at(usize::from(n % 8).min(rest.len()));
    let (handshaken, v311) = (n & 0x80 != 0, n & 0x40 != 0);
    for max_packet_size in [1 << 16, 24] {
        let whole = feed(max_packet_size, handshaken, v311, &[stream]);
        let split = feed(max_packet_size, handshaken, v311, &chunks(sizes, stream));
        assert_eq!(whole, split, "split feeding gave something else");
    }
});


/// What one run produced: events, bytes queued for the server, and the
/// error that ended the connection, if any.
type Run = (Vec<MqttEvent>, Vec<u8>, Option<ConnectionError>);

fn feed(max_packet_size: usize, handshaken: bool, v311: bool, chunks: &[&[u8]]) -> Run {
    let now = epoch();
    let mut config = MqttClientConfig::new(vec!["127.0.0.1:1883".into()], "fuzz");
    config.max_packet_size = max_packet_size;
    config.max_pending_events = 1 << 20;
    config.max_outbound = 4096;
    config.origin = "A".into();
    config.version = if v311 { MqttVersion::V311 } else { MqttVersion::Auto };
    let mut client = MqttClient::new(config, now);
    client.subscribe("#").unwrap();
    let _ = client.next_server(now);
    client.handle_connected(now);
    if handshaken {
        let (connack, suback): (&[u8], &[u8]) =
            if v311 { (&[0x20, 2, 0, 0], &[0x90, 3, 0, 1, 0]) } else { (&[0x20, 3, 0, 0, 0], &[0x90, 4, 0, 1, 0, 0]) };
        client.handle_input(now, connack).unwrap();
        client.handle_input(now, suback).unwrap();
        assert!(client.is_connected());
    }
    let mut events = Vec::new();
    let mut sent = Vec::new();
    let mut error = None;
    for (i, chunk) in chunks.iter().enumerate() {
        let at = now + Duration::from_millis(i as u64);
        if let Err(e) = client.handle_input(at, chunk) {
            error = Some(e);
            break;
        }
        assert!(client.unparsed_len() <= max_packet_size, "{} bytes held", client.unparsed_len());
        drain(&mut client, &mut events, &mut sent);
    }
    drain(&mut client, &mut events, &mut sent);
    // Publishing never panics, whatever state the input left.
    let _ = client.publish("a/b", b"x", true);
    (events, sent, error)
}

fn drain(client: &mut MqttClient, events: &mut Vec<MqttEvent>, sent: &mut Vec<u8>) {
    events.extend(std::iter::from_fn(|| client.poll_event()));
    loop {
        let mut slices = [&[][..]; 8];
        let n = client.outbound().front_slices(&mut slices);
        if n == 0 {
            break;
        }
        let before = sent.len();
        for slice in &slices[..n] {
            sent.extend_from_slice(slice);
        }
        client.outbound_mut().consume(sent.len() - before);
    }
}
