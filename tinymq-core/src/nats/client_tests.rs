//! Scenario tests of [`NatsClient`] on a virtual clock, the server played
//! by hand-written protocol bytes.

use super::*;

const INFO: &[u8] = b"INFO {\"server_id\":\"N1\",\"headers\":true,\"max_payload\":1024,\"connect_urls\":[\"10.0.0.2:4222\",\"nats://10.0.0.3:4222\"]}\r\n";

/// Any instant will do: only differences between instants matter.
#[allow(clippy::disallowed_methods)]
fn epoch() -> Instant {
    Instant::now()
}

fn config() -> NatsConfig {
    NatsConfig { servers: vec!["nats://a:4222".into(), "b:4222".into()], ..NatsConfig::default() }
}

/// Everything queued for the server, marked as written.
fn sent(client: &mut NatsClient) -> String {
    let mut slices = [&[][..]; 16];
    let n = client.outbound().front_slices(&mut slices);
    let bytes = slices[..n].concat();
    client.outbound_mut().consume(bytes.len());
    String::from_utf8(bytes).unwrap()
}

fn events(client: &mut NatsClient) -> Vec<NatsEvent> {
    std::iter::from_fn(|| client.poll_event()).collect()
}

/// Dials, takes INFO and PONG: a connected client, its output drained.
fn connect(client: &mut NatsClient, now: Instant) -> String {
    let server = client.next_server(now).expect("a server is due").to_owned();
    client.handle_connected(now);
    client.handle_input(now, INFO).unwrap();
    let handshake = sent(client);
    client.handle_input(now, b"PONG\r\n").unwrap();
    assert!(client.is_connected());
    // A Disconnected of the connection before may come first.
    let connected = events(client);
    assert!(matches!(connected.last(), Some(NatsEvent::Connected { server: s, .. }) if *s == server), "{connected:?}");
    handshake
}

#[test]
fn handshake_sends_connect_then_every_subscription_then_ping() {
    let now = epoch();
    let mut client = NatsClient::new(config(), now);
    let a = client.subscribe("p.a").unwrap();
    let b = client.subscribe("p.>").unwrap();
    assert_eq!((a, b), (Sid(1), Sid(2)));
    assert_eq!(client.publish("p.x", None, b"early"), Err(SendError::NotConnected));
    assert_eq!(client.next_server(now), Some("a:4222"));
    assert_eq!(client.next_server(now), None, "one attempt at a time");
    client.handle_connected(now);
    assert!(client.outbound().is_empty(), "the server speaks first");
    let handshake = connect_from_info(&mut client, now);
    let lines: Vec<&str> = handshake.split("\r\n").collect();
    assert!(lines[0].starts_with("CONNECT {") && lines[0].contains("\"verbose\":false"), "{handshake}");
    assert_eq!(&lines[1..], ["SUB p.a 1", "SUB p.> 2", "PING", ""]);
    assert_eq!(client.servers(), ["a:4222", "b:4222", "10.0.0.2:4222", "10.0.0.3:4222"]);
    assert_eq!(client.info().max_payload, 1024);

    // Now connected: operations go out at once.
    let c = client.subscribe("q").unwrap();
    assert!(client.unsubscribe(a));
    assert!(!client.unsubscribe(a));
    client.publish("p.a", None, b"hi").unwrap();
    let headers = Headers::for_bridge("me", true).unwrap();
    client.publish("p.b", Some(&headers), b"on").unwrap();
    assert_eq!(
        sent(&mut client),
        "SUB q 3\r\nUNSUB 1\r\nPUB p.a 2\r\nhi\r\nHPUB p.b 49 51\r\nNATS/1.0\r\nTinymq-Origin: me\r\nTinymq-Retain: 1\r\n\r\non\r\n"
    );
    assert_eq!(client.subscriptions().map(|(sid, _)| sid).collect::<Vec<_>>(), [b, c]);
    assert_eq!(client.stats().messages_out, 2);
}

fn connect_from_info(client: &mut NatsClient, now: Instant) -> String {
    client.handle_input(now, INFO).unwrap();
    let handshake = sent(client);
    client.handle_input(now, b"PONG\r\n").unwrap();
    assert!(matches!(&events(client)[..], [NatsEvent::Connected { .. }]));
    handshake
}

#[test]
fn messages_become_events() {
    let now = epoch();
    let mut client = NatsClient::new(config(), now);
    let sid = client.subscribe("p.*").unwrap();
    connect(&mut client, now);
    let input: &[u8] = b"MSG p.a 1 2\r\nhi\r\nHMSG p.b 1 inbox.1 30 33\r\nNATS/1.0\r\nTinymq-Origin: x\r\n\r\nyes\r\n\
MSG p.c 99 1\r\nz\r\nMSG p.\xff 1 1\r\nz\r\nHMSG p.d 1 17 17\r\nNATS/1.0\r\nbad\r\n\r\n\r\nPING\r\n";
    client.handle_input(now, input).unwrap();
    let got = events(&mut client);
    let expected = [
        NatsEvent::Message(NatsMessage {
            sid,
            subject: "p.a".into(),
            reply: None,
            headers: Headers::new().into(),
            payload: b"hi"[..].into(),
        }),
        NatsEvent::Message(NatsMessage {
            sid,
            subject: "p.b".into(),
            reply: Some("inbox.1".into()),
            headers: Headers::for_bridge("x", false).unwrap().into(),
            payload: b"yes"[..].into(),
        }),
    ];
    assert_eq!(got, expected);
    let stats = client.stats();
    assert_eq!((stats.messages_in, stats.messages_unknown_sid, stats.messages_invalid), (2, 1, 2));
    assert_eq!(sent(&mut client), "PONG\r\n");
}

#[test]
fn input_split_anywhere_gives_the_same_events() {
    let now = epoch();
    let stream: &[u8] = b"MSG p.a 1 2\r\nhi\r\nPING\r\n-ERR 'Permissions Violation for Publish to \"x\"'\r\n\
HMSG p.b 1 12 15\r\nNATS/1.0\r\n\r\nyes\r\nINFO {\"headers\":true,\"connect_urls\":[\"c:1\"]}\r\n";
    let run = |split: usize| {
        let mut client = NatsClient::new(config(), now);
        client.subscribe("p.>").unwrap();
        connect(&mut client, now);
        for chunk in stream.chunks(split) {
            client.handle_input(now, chunk).unwrap();
        }
        (events(&mut client), sent(&mut client), client.servers().to_vec())
    };
    let whole = run(stream.len());
    assert_eq!(whole.0.len(), 4, "{:?}", whole.0);
    assert!(matches!(whole.0[1], NatsEvent::Error { kind: ServerErrorKind::PermissionsViolation, .. }));
    assert!(matches!(&whole.0[3], NatsEvent::Info(info) if info.connect_urls == ["c:1"]));
    for split in 1..stream.len() {
        assert_eq!(run(split), whole, "split {split}");
    }
}

#[test]
fn errors_are_classified() {
    let cases = [
        ("Authorization Violation", ServerErrorKind::AuthorizationViolation),
        ("User Authentication Expired", ServerErrorKind::AuthenticationExpired),
        ("Authentication Timeout", ServerErrorKind::AuthenticationExpired),
        ("Permissions Violation for Subscription to \"a\"", ServerErrorKind::PermissionsViolation),
        ("Stale Connection", ServerErrorKind::StaleConnection),
        ("Slow Consumer", ServerErrorKind::SlowConsumer),
        ("Maximum Payload Violation", ServerErrorKind::MaxPayload),
        ("maximum connections exceeded", ServerErrorKind::MaxConnections),
        ("Unknown Protocol Operation", ServerErrorKind::Other),
    ];
    for (text, kind) in cases {
        assert_eq!(ServerErrorKind::of(text), kind, "{text}");
    }
    // An authorization failure arrives before the handshake's PONG.
    let now = epoch();
    let mut client = NatsClient::new(config(), now);
    let _ = client.next_server(now);
    client.handle_connected(now);
    client.handle_input(now, INFO).unwrap();
    client.handle_input(now, b"-ERR 'Authorization Violation'\r\n").unwrap();
    assert_eq!(
        events(&mut client),
        [NatsEvent::Error { kind: ServerErrorKind::AuthorizationViolation, text: "Authorization Violation".into() }]
    );
    assert!(!client.is_connected());
}

#[test]
fn pings_and_stale_connections() {
    let start = epoch();
    let config = NatsConfig { ping_interval: Duration::from_secs(10), max_pings_out: 2, ..config() };
    let mut client = NatsClient::new(config, start);
    connect(&mut client, start);
    assert_eq!(client.poll_timeout(), Some(start + Duration::from_secs(10)));
    let at = |s| start + Duration::from_secs(s);
    client.handle_timeout(at(9)).unwrap();
    assert_eq!(sent(&mut client), "");
    client.handle_timeout(at(10)).unwrap();
    assert_eq!(sent(&mut client), "PING\r\n");
    client.handle_input(at(11), b"PONG\r\n").unwrap();
    client.handle_timeout(at(20)).unwrap();
    client.handle_timeout(at(30)).unwrap();
    assert_eq!(sent(&mut client), "PING\r\nPING\r\n");
    assert_eq!(client.handle_timeout(at(40)), Err(ConnectionError::Stale(2)));
    assert_eq!(client.poll_timeout(), None);
    client.handle_disconnected(at(40));
    assert_eq!(events(&mut client), [NatsEvent::Disconnected { server: "a:4222".into() }]);
}

#[test]
fn handshake_times_out() {
    let now = epoch();
    let mut client = NatsClient::new(config(), now);
    let _ = client.next_server(now);
    let deadline = now + Duration::from_secs(5);
    assert_eq!(client.poll_timeout(), Some(deadline));
    client.handle_connected(now);
    client.handle_input(now, INFO).unwrap();
    client.handle_timeout(deadline - Duration::from_millis(1)).unwrap();
    assert_eq!(client.handle_timeout(deadline), Err(ConnectionError::HandshakeTimeout(Duration::from_secs(5))));
    client.handle_disconnected(deadline);
    assert_eq!(events(&mut client), [], "never connected, so no Disconnected");
}

#[test]
fn backoff_doubles_to_its_cap_across_servers_and_resets_after_a_connect() {
    let start = epoch();
    let mut client = NatsClient::new(config(), start);
    let mut now = start;
    let mut tried = Vec::new();
    let mut delays = Vec::new();
    for _ in 0..9 {
        tried.push(client.next_server(now).unwrap().to_owned());
        client.handle_disconnected(now);
        let due = client.poll_timeout().unwrap();
        assert_eq!(client.next_server(due - Duration::from_millis(1)), None);
        delays.push((due - now).as_millis());
        now = due;
    }
    assert_eq!(delays, [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
    assert_eq!(tried[..4], ["a:4222", "b:4222", "a:4222", "b:4222"]);

    // A connection that reaches Connected resets the backoff; the servers it
    // names join the rotation.
    connect(&mut client, now);
    client.handle_disconnected(now);
    assert_eq!(client.poll_timeout(), Some(now + Duration::from_millis(100)));
    now += Duration::from_millis(100);
    let mut next = Vec::new();
    for _ in 0..4 {
        next.push(client.next_server(now).unwrap().to_owned());
        client.handle_disconnected(now);
        now = client.poll_timeout().unwrap();
    }
    assert_eq!(next, ["10.0.0.2:4222", "10.0.0.3:4222", "a:4222", "b:4222"]);
}

#[test]
fn bad_bytes_fail_the_connection_and_reconnect_resubscribes() {
    let now = epoch();
    let mut client = NatsClient::new(config(), now);
    client.subscribe("p.>").unwrap();
    connect(&mut client, now);
    assert!(matches!(client.handle_input(now, b"BOGUS\r\n"), Err(ConnectionError::Parse(_))));
    // Until handle_disconnected, input is ignored and nothing is sent.
    client.handle_input(now, b"PING\r\n").unwrap();
    assert_eq!(client.publish("p.a", None, b""), Err(SendError::NotConnected));
    client.handle_disconnected(now);
    assert!(client.outbound().is_empty());
    let later = now + Duration::from_millis(100);
    let handshake = connect(&mut client, later);
    assert!(handshake.ends_with("\r\nSUB p.> 1\r\nPING\r\n"), "{handshake}");
    assert_eq!(client.stats().connects, 2);
}

#[test]
fn wrong_first_operations_and_servers_we_cannot_use() {
    let now = epoch();
    let cases: &[(&[u8], ConnectionError)] = &[
        (b"PING\r\n", ConnectionError::Unexpected("PING")),
        (b"INFO {\"tls_required\":true,\"headers\":true}\r\n", ConnectionError::TlsRequired),
        (b"INFO {\"server_id\":\"old\"}\r\n", ConnectionError::NoHeaders),
    ];
    for (input, expected) in cases {
        let mut client = NatsClient::new(config(), now);
        let _ = client.next_server(now);
        client.handle_connected(now);
        assert_eq!(client.handle_input(now, input).as_ref(), Err(expected));
    }
    let mut client = NatsClient::new(config(), now);
    let _ = client.next_server(now);
    client.handle_connected(now);
    assert!(matches!(client.handle_input(now, b"INFO [\r\n"), Err(ConnectionError::Info(_))));
}

#[test]
fn publishes_are_refused_when_they_cannot_go_out() {
    let now = epoch();
    let mut client = NatsClient::new(NatsConfig { max_outbound: 64, ..config() }, now);
    connect(&mut client, now);
    assert!(matches!(client.publish("a.*", None, b""), Err(SendError::Subject(SubjectError::Wildcard(_)))));
    assert!(matches!(client.publish("a b", None, b""), Err(SendError::Subject(_))));
    assert_eq!(client.publish("a", None, &[0; 1025]), Err(SendError::PayloadTooLarge { size: 1025, max: 1024 }));
    let long = "x".repeat(codec::MAX_CONTROL_LINE);
    assert!(matches!(client.publish(&long, None, b""), Err(SendError::LineTooLong { .. })));
    assert!(matches!(client.subscribe(&long), Err(SendError::LineTooLong { .. })));
    client.publish("a", None, &[b'x'; 40]).unwrap(); // 10 + 40 + 2 = 52 bytes
    assert_eq!(client.publish("a", None, &[b'x'; 10]), Err(SendError::OutboundFull { limit: 64 }));
    assert_eq!(client.outbound().len(), 52, "a refused publish queues nothing");
    client.publish("a", None, b"x").unwrap(); // 12 more: exactly the limit
    // Control operations still go out past it.
    client.handle_input(now, b"PING\r\n").unwrap();
    assert!(sent(&mut client).ends_with("PONG\r\n"));
    assert_eq!(client.stats().messages_out, 2);
}

#[test]
fn a_full_event_queue_drops_and_reports_a_slow_consumer() {
    let now = epoch();
    let mut client = NatsClient::new(NatsConfig { max_pending_events: 3, ..config() }, now);
    client.subscribe(">").unwrap();
    connect(&mut client, now);
    client.handle_input(now, &b"MSG a 1 1\r\nx\r\n".repeat(5)).unwrap();
    let got = events(&mut client);
    assert_eq!(got[0], NatsEvent::SlowConsumer { dropped: 2 });
    assert_eq!(got.len(), 4);
    assert_eq!(client.stats().events_dropped, 2);
    assert_eq!(client.stats().messages_in, 3);
}

#[test]
fn the_partial_operation_held_is_bounded() {
    let now = epoch();
    let limits = ParseLimits { max_payload: 100, ..ParseLimits::default() };
    let mut client = NatsClient::new(NatsConfig { limits, ..config() }, now);
    connect(&mut client, now);
    // A declared size over the limit fails before its payload is held.
    assert_eq!(
        client.handle_input(now, b"MSG a 1 101\r\n"),
        Err(ConnectionError::Parse(ParseError::PayloadTooLarge { size: 101, max: 100 }))
    );
    client.handle_disconnected(now);
    let later = now + Duration::from_secs(1);
    connect(&mut client, later);
    // A line without an end is held only up to its limit.
    client.handle_input(later, b"INFO ").unwrap();
    let result = loop {
        let result = client.handle_input(later, &[b'a'; 500]);
        assert!(client.input.len() <= limits.max_op_len());
        if result.is_err() {
            break result;
        }
    };
    assert_eq!(result, Err(ConnectionError::Parse(ParseError::ControlLineTooLong { max: limits.max_info_line })));
}

#[test]
fn with_tls_the_handshake_waits_for_the_shell_to_start_tls_after_info() {
    let now = epoch();
    let mut client = NatsClient::new(NatsConfig { tls: true, ..config() }, now);
    let _ = client.next_server(now);
    client.handle_connected(now);
    client.handle_input(now, b"INFO {\"server_id\":\"N1\",\"headers\":true,\"tls_required\":true}\r\n").unwrap();
    assert!(client.wants_tls());
    assert!(client.outbound().is_empty(), "nothing in plain text after INFO");
    assert!(client.poll_timeout().is_some(), "the handshake deadline still runs");
    client.handle_tls_started(now);
    assert!(!client.wants_tls());
    assert!(sent(&mut client).starts_with("CONNECT {"));
    client.handle_input(now, b"PONG\r\n").unwrap();
    assert!(client.is_connected());

    // Without TLS asked for, a server that requires it is an error.
    let mut plain = NatsClient::new(config(), now);
    let _ = plain.next_server(now);
    plain.handle_connected(now);
    let error = plain.handle_input(now, b"INFO {\"headers\":true,\"tls_required\":true}\r\n").unwrap_err();
    assert_eq!(error, ConnectionError::TlsRequired);
}

#[test]
fn a_repeated_header_block_is_parsed_once_and_shared() {
    let now = epoch();
    let mut client = NatsClient::new(config(), now);
    client.subscribe("p.*").unwrap();
    connect(&mut client, now);
    let x = b"HMSG p.a 1 30 31\r\nNATS/1.0\r\nTinymq-Origin: x\r\n\r\n1\r\n";
    let y = b"HMSG p.a 1 30 31\r\nNATS/1.0\r\nTinymq-Origin: y\r\n\r\n3\r\n";
    client.handle_input(now, &[&x[..], x, y, b"MSG p.a 1 1\r\n4\r\n"].concat()).unwrap();
    let headers: Vec<std::sync::Arc<Headers>> = events(&mut client)
        .into_iter()
        .filter_map(|event| match event {
            NatsEvent::Message(message) => Some(message.headers),
            _ => None,
        })
        .collect();
    assert_eq!(headers.len(), 4);
    assert!(std::sync::Arc::ptr_eq(&headers[0], &headers[1]), "the same block, parsed once");
    assert_eq!((headers[1].origin(), headers[2].origin(), headers[3].origin()), (Some("x"), Some("y"), None));
}

#[test]
fn payloads_in_a_shared_chunk_are_ranges_of_it_and_a_split_one_a_copy() {
    let now = epoch();
    let mut client = NatsClient::new(config(), now);
    let _sid = client.subscribe("p.*").unwrap();
    connect(&mut client, now);
    // Two whole messages and the start of a third, in a chunk with room.
    let mut bytes = b"MSG p.a 1 2\r\nhi\r\nMSG p.a 1 3\r\nyes\r\nMSG p.a 1 5\r\nsp".to_vec();
    let len = bytes.len();
    bytes.resize(64, 0);
    let chunk: std::sync::Arc<[u8]> = bytes.into();
    client.handle_shared_input(now, &chunk, len).unwrap();
    let got = events(&mut client);
    assert_eq!(std::sync::Arc::strong_count(&chunk), 3, "two payloads share the chunk");
    let payloads: Vec<&[u8]> = got
        .iter()
        .filter_map(|event| if let NatsEvent::Message(m) = event { Some(&m.payload[..]) } else { None })
        .collect();
    assert_eq!(payloads, [&b"hi"[..], b"yes"]);
    drop(got);
    assert_eq!(std::sync::Arc::strong_count(&chunk), 1, "handled: the shell may read into it again");
    // The rest of the split one, in the next chunk: copied, not shared.
    let next: std::sync::Arc<[u8]> = b"lit\r\n"[..].into();
    client.handle_shared_input(now, &next, next.len()).unwrap();
    let got = events(&mut client);
    assert!(matches!(&got[..], [NatsEvent::Message(m)] if &m.payload[..] == b"split"));
    assert_eq!(std::sync::Arc::strong_count(&next), 1);
}
