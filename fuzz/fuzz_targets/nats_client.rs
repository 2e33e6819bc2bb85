//! Feeds a NATS server's bytes to `NatsClient::handle_input` the way a
//! connection's read loop does and checks that arrival in pieces (each
//! handed over as a shared chunk, `handle_shared_input`, as the bridge
//! does) never changes what comes out: the same events, the same bytes to
//! send, the same error. The client never holds more than one operation's worth of
//! unparsed bytes, and every subject it reports maps back through
//! `SubjectMapping` the same way it came.
//!
//! Input: one byte `n`, then `n % 8` chunk sizes (used in turn; a 0 is a read
//! that brought nothing), then the stream. The client has already dialed and
//! taken a valid INFO when the stream begins, so it is mostly past the
//! handshake; every input runs under the default limits and tiny ones.
#![no_main]

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use tinymq_fuzz::chunks;
use tinymq_core::TopicLimits;
use tinymq_core::nats::{ConnectionError, NatsClient, NatsConfig, NatsEvent, ParseLimits, SubjectMapping};

const INFO: &[u8] = b"INFO {\"server_id\":\"F\",\"headers\":true,\"max_payload\":4096}\r\n";

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fuzz_target!(|input: &[u8]| {
    let Some((&n, rest)) = input.split_first() else { return };
    let (sizes, stream) = rest.split_at(usize::from(n % 8).min(rest.len()));
    let tiny = ParseLimits { max_control_line: 24, max_info_line: 64, max_payload: 16 };
    for limits in [ParseLimits::default(), tiny] {
        let whole = feed(limits, &[stream], false);
        let split = feed(limits, &chunks(sizes, stream), true);
        assert_eq!(whole, split, "split feeding gave something else");
    }
});


/// What one run produced: events, bytes queued for the server, and the
/// error that ended the connection, if any.
type Run = (Vec<NatsEvent>, Vec<u8>, Option<ConnectionError>);

fn feed(limits: ParseLimits, chunks: &[&[u8]], shared: bool) -> Run {
    let now = epoch();
    let config = NatsConfig { limits, max_pending_events: 1 << 20, max_outbound: 4096, ..NatsConfig::default() };
    let mut client = NatsClient::new(config, now);
    client.subscribe(">").unwrap();
    client.subscribe("a.*").unwrap();
    let _ = client.next_server(now);
    client.handle_connected(now);
    client.handle_input(now, INFO).unwrap();
    let mapping = SubjectMapping::new("a").unwrap();

    let mut events = Vec::new();
    let mut sent = Vec::new();
    let mut error = None;
    for (i, chunk) in chunks.iter().enumerate() {
        let at = now + Duration::from_millis(i as u64);
        let handled = if shared {
            // In a larger buffer, as a read fills part of the shell's.
            let mut buffer = chunk.to_vec();
            buffer.resize(chunk.len() + 16, 0);
            client.handle_shared_input(at, &buffer.into(), chunk.len())
        } else {
            client.handle_input(at, chunk)
        };
        if let Err(e) = handled {
            error = Some(e);
            break;
        }
        assert!(client.unparsed_len() <= limits.max_op_len(), "{} bytes held", client.unparsed_len());
        // The event bound is set high: a whole read would drop what split
        // reads, drained in between, keep. Its memory is bounded by the input.
        drain(&mut client, &mut events, &mut sent);
    }
    drain(&mut client, &mut events, &mut sent);
    for event in &events {
        if let NatsEvent::Message(message) = event {
            assert!(message.payload.len() <= limits.max_payload);
            if let Ok(topic) = mapping.subject_to_topic(&message.subject, &TopicLimits::UNBOUNDED) {
                let name = tinymq_core::TopicName::new(&topic, &TopicLimits::UNBOUNDED).unwrap();
                assert_eq!(mapping.topic_to_subject(name), *message.subject);
            }
        }
    }
    (events, sent, error)
}

fn drain(client: &mut NatsClient, events: &mut Vec<NatsEvent>, sent: &mut Vec<u8>) {
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
