//! RFC 6455's examples, a capture from a real client, and Autobahn-style
//! edge cases.

use super::*;

fn hex(text: &str) -> Vec<u8> {
    let text: String = text.split_whitespace().collect();
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap()).collect()
}

/// Decodes every frame of `input`, with owned results, or the first error.
fn decode_all(mut decoder: FrameDecoder, input: &[u8]) -> Result<Vec<Option<Owned>>, FrameError> {
    let mut held = input.to_vec();
    let mut out = Vec::new();
    loop {
        match decoder.decode(&mut held)? {
            Received::Partial { .. } => return Ok(out),
            Received::Frame { consumed, message } => {
                out.push(message.map(Owned::from));
                held.drain(..consumed);
            }
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Owned {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<u16>, String),
}

impl From<Message<'_>> for Owned {
    fn from(message: Message<'_>) -> Self {
        match message {
            Message::Text(t) => Owned::Text(t.to_owned()),
            Message::Binary(b) => Owned::Binary(b.to_vec()),
            Message::Ping(b) => Owned::Ping(b.to_vec()),
            Message::Pong(b) => Owned::Pong(b.to_vec()),
            Message::Close { code, reason } => Owned::Close(code, reason.to_owned()),
        }
    }
}

fn server() -> FrameDecoder {
    FrameDecoder::server(1 << 17)
}

fn client() -> FrameDecoder {
    FrameDecoder::client(1 << 17)
}

/// RFC 6455 section 5.7, every example.
#[test]
fn websocket_rfc6455_examples() {
    let hello = || Some(Owned::Text("Hello".into()));
    assert_eq!(decode_all(client(), &hex("81 05 48656c6c6f")).unwrap(), [hello()]);
    assert_eq!(decode_all(server(), &hex("81 85 37fa213d 7f9f4d5158")).unwrap(), [hello()]);
    assert_eq!(decode_all(client(), &hex("01 03 48656c 80 02 6c6f")).unwrap(), [None, hello()]);
    assert_eq!(decode_all(client(), &hex("89 05 48656c6c6f")).unwrap(), [Some(Owned::Ping(b"Hello".to_vec()))]);
    assert_eq!(
        decode_all(server(), &hex("8a 85 37fa213d 7f9f4d5158")).unwrap(),
        [Some(Owned::Pong(b"Hello".to_vec()))]
    );
    let mut big = hex("82 7e 0100");
    big.extend([0xab; 256]);
    assert_eq!(decode_all(client(), &big).unwrap(), [Some(Owned::Binary(vec![0xab; 256]))]);
    let mut bigger = hex("82 7f 0000000000010000");
    bigger.extend([0xcd; 65536]);
    assert_eq!(decode_all(client(), &bigger).unwrap(), [Some(Owned::Binary(vec![0xcd; 65536]))]);

    // And the encoder writes the unmasked ones, and masks like the example.
    let mut out = Vec::new();
    encode_frame(false, Opcode::Text, b"Hel", &mut out);
    encode_frame(true, Opcode::Continuation, b"lo", &mut out);
    encode_frame(true, Opcode::Ping, b"Hello", &mut out);
    encode_frame(true, Opcode::Binary, &[0xab; 256], &mut out);
    encode_frame(true, Opcode::Binary, &[0xcd; 65536], &mut out);
    let mut expected = hex("01 03 48656c 80 02 6c6f 89 05 48656c6c6f");
    expected.extend(&big);
    expected.extend(&bigger);
    assert_eq!(out, expected);
    let mut masked = Vec::new();
    encode_masked_frame(true, Opcode::Text, [0x37, 0xfa, 0x21, 0x3d], b"Hello", &mut masked);
    assert_eq!(masked, hex("81 85 37fa213d 7f9f4d5158"));
}

/// The opening handshake example of RFC 6455 sections 1.3 and 4.2.2.
#[test]
fn websocket_rfc6455_accept_key() {
    assert_eq!(accept_key("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

/// What paho-mqtt 2.1.0 sent with `transport="websockets"`,
/// `ws_set_options(path="/mqtt")`, MQTT 3.1.1, client id "pahows", captured
/// by a recording server: its request head, then its first frame (a masked
/// binary frame holding the MQTT CONNECT).
#[test]
fn websocket_paho_capture() {
    let request = b"GET /mqtt HTTP/1.1\r\nHost: 127.0.0.1:18833\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Origin: http://127.0.0.1:18833\r\nSec-WebSocket-Key: /AhMVAE/QtKTW7d0mlRCdg==\r\nSec-Websocket-Version: 13\r\n\
Sec-Websocket-Protocol: mqtt\r\n\r\n";
    let mut headers = [httparse::EMPTY_HEADER; 16];
    let mut parsed = httparse::Request::new(&mut headers);
    assert!(parsed.parse(request).unwrap().is_complete());
    let headers = parsed.headers.iter().map(|h| (h.name, h.value));
    let upgrade = accept(parsed.method.unwrap(), headers, &["mqtt"]).unwrap();
    // The value Python's hashlib gave for the same key.
    assert_eq!(upgrade, Upgrade { accept: "jdF/U2yY2lywSvZSuFcI12p25ys=".into(), protocol: Some("mqtt") });
    assert_eq!(
        upgrade.response(),
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Accept: jdF/U2yY2lywSvZSuFcI12p25ys=\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n"
    );

    let frame = hex("8294c027c792d035c7968d7693c6c425c78cc021b7f3a848b0e1");
    let [Some(Owned::Binary(connect))] = &decode_all(server(), &frame).unwrap()[..] else { panic!() };
    let decoded = crate::mqtt::Decoder::default().decode_connect(connect).unwrap();
    let crate::mqtt::Decoded::Complete { packet: crate::mqtt::Packet::Connect(c), .. } = decoded else { panic!() };
    assert_eq!((c.client_id, c.keep_alive), ("pahows", 30));
}

fn request(lines: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static [u8])> {
    lines.iter().map(|&(name, value)| (name, value.as_bytes())).collect()
}

#[test]
fn websocket_handshake_checks() {
    let good = [
        ("Host", "x"),
        ("Upgrade", "WebSocket"),
        ("Connection", "keep-alive, Upgrade"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Protocol", "mqttv3.1, mqtt"),
    ];
    let with = |change: &[(&'static str, Option<&'static str>)]| {
        let mut lines: Vec<_> = good.to_vec();
        for &(name, value) in change {
            lines.retain(|(n, _)| *n != name);
            if let Some(value) = value {
                lines.push((name, value));
            }
        }
        lines
    };
    let check = |method: &str, lines: &[(&'static str, &'static str)], offered: &[&'static str]| {
        accept(method, request(lines), offered)
    };
    let up = check("GET", &good, &["mqtt"]).unwrap();
    assert_eq!((up.accept.as_str(), up.protocol), ("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", Some("mqtt")));
    // `/ws` offers no subprotocol: none is answered.
    assert_eq!(check("GET", &good, &[]).unwrap().protocol, None);
    assert!(
        !String::from_utf8(check("GET", &good, &[]).unwrap().response()).unwrap().contains("Sec-WebSocket-Protocol")
    );

    let status = |method: &str, change: &[(&'static str, Option<&'static str>)]| {
        check(method, &with(change), &["mqtt"]).unwrap_err().status()
    };
    assert_eq!(status("POST", &[]), 400);
    assert_eq!(status("GET", &[("Upgrade", None)]), 426);
    assert_eq!(status("GET", &[("Connection", Some("keep-alive"))]), 426);
    assert_eq!(status("GET", &[("Sec-WebSocket-Version", Some("8"))]), 426);
    assert_eq!(status("GET", &[("Sec-WebSocket-Version", None)]), 426);
    assert_eq!(status("GET", &[("Sec-WebSocket-Key", None)]), 400);
    assert_eq!(status("GET", &[("Sec-WebSocket-Key", Some("c2hvcnQga2V5"))]), 400);
    assert_eq!(status("GET", &[("Sec-WebSocket-Key", Some("not base64 at all!!!!!!="))]), 400);
    assert_eq!(status("GET", &[("Sec-WebSocket-Protocol", None)]), 400);
    assert_eq!(status("GET", &[("Sec-WebSocket-Protocol", Some("mqttv3.1"))]), 400);

    let refusal = HandshakeError::UnsupportedVersion.response();
    let text = String::from_utf8(refusal).unwrap();
    assert!(text.starts_with("HTTP/1.1 426 Upgrade Required\r\n"));
    assert!(text.contains("Sec-WebSocket-Version: 13\r\n"));
}

fn code(decoder: FrameDecoder, input: &str) -> u16 {
    decode_all(decoder, &hex(input)).unwrap_err().close_code()
}

/// Autobahn-style cases (sections 2 to 7 of its test suite).
#[test]
fn websocket_protocol_violations() {
    // RSV bits; reserved opcodes (data and control).
    for first in ["91", "a1", "c1", "83", "87", "8b", "8f"] {
        assert_eq!(code(client(), &format!("{first} 00")), 1002, "{first}");
    }
    // Control frames: over 125 bytes; fragmented.
    assert_eq!(code(client(), "89 7e 007e"), 1002);
    assert_eq!(code(client(), "09 00"), 1002);
    // Continuation with nothing to continue; a new message inside a fragmented one.
    assert_eq!(code(client(), "80 00"), 1002);
    assert_eq!(code(client(), "01 01 61 81 01 62"), 1002);
    // Masking: clients must mask, servers must not.
    assert_eq!(code(server(), "81 00"), 1002);
    assert_eq!(code(client(), "81 80 00000000"), 1002);
    // Lengths not in their shortest form; a 64-bit length with the top bit set.
    assert_eq!(code(client(), "82 7e 0005"), 1002);
    assert_eq!(code(client(), "82 7f 000000000000ffff"), 1002);
    assert_eq!(code(client(), "82 7f 8000000000000000"), 1002);
}

#[test]
fn websocket_close_frames() {
    let close = |payload: &str| decode_all(client(), &hex(&format!("88 {:02x} {payload}", hex(payload).len())));
    assert_eq!(close("").unwrap(), [Some(Owned::Close(None, String::new()))]);
    assert_eq!(close("03e8 6279 65").unwrap(), [Some(Owned::Close(Some(1000), "bye".into()))]);
    for ok in [1000u16, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999] {
        assert!(close(&format!("{ok:04x}")).is_ok(), "{ok}");
    }
    for bad in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535] {
        assert_eq!(close(&format!("{bad:04x}")).unwrap_err().close_code(), 1002, "{bad}");
    }
    assert_eq!(close("03").unwrap_err().close_code(), 1002);
    assert_eq!(close("03e8 ff").unwrap_err().close_code(), 1007);

    let mut out = Vec::new();
    encode_close(1000, "", &mut out);
    assert_eq!(out, hex("88 02 03e8"));
    let mut out = Vec::new();
    encode_close(1009, &"é".repeat(100), &mut out);
    assert_eq!(out.len(), 2 + 2 + 122, "cut to 123 bytes at a character boundary");
}

#[test]
fn websocket_fragmentation_and_utf8() {
    // Pings between fragments are answered at once; empty fragments are fine.
    let frames = "01 02 6865 89 01 70 00 00 80 03 6c6c6f";
    assert_eq!(
        decode_all(client(), &hex(frames)).unwrap(),
        [None, Some(Owned::Ping(b"p".to_vec())), None, Some(Owned::Text("hello".into()))]
    );
    // "κόσμε" cut inside a character between fragments.
    let kosme = "κόσμε".as_bytes();
    let mut input = vec![0x01, 3];
    input.extend(&kosme[..3]);
    input.extend([0x80, (kosme.len() - 3) as u8]);
    input.extend(&kosme[3..]);
    assert_eq!(decode_all(client(), &input).unwrap(), [None, Some(Owned::Text("κόσμε".into()))]);
    // Invalid UTF-8: whole, fails fast in the first fragment, cut at the end.
    assert_eq!(code(client(), "81 02 c328"), 1007);
    assert_eq!(code(client(), "01 02 ff61 80 01 61"), 1007);
    let mut decoder = client();
    let mut first = hex("01 02 ff61");
    assert_eq!(decoder.decode(&mut first).unwrap_err().close_code(), 1007);
    assert_eq!(code(client(), "01 01 ce 80 00"), 1007);
    // Binary is not checked.
    assert_eq!(decode_all(client(), &hex("82 02 ff00")).unwrap(), [Some(Owned::Binary(vec![0xff, 0]))]);
}

#[test]
fn websocket_size_limits_before_buffering() {
    // A 2^62-byte frame is refused from its ten header bytes.
    let mut decoder = FrameDecoder::server(1000);
    let mut header = hex("82 ff 4000000000000000");
    assert_eq!(decoder.decode(&mut header).unwrap_err(), FrameError::TooBig { len: 1 << 62, max: 1000 });
    // Fragments add up.
    let mut decoder = FrameDecoder::client(4);
    let mut input = hex("02 03 010203 80 02 0405");
    let Received::Frame { consumed, message: None } = decoder.decode(&mut input).unwrap() else { panic!() };
    assert_eq!(decoder.decode(&mut input[consumed..]).unwrap_err().close_code(), 1009);
    // Exactly at the limit is fine.
    assert!(decode_all(FrameDecoder::client(4), &hex("82 04 01020304")).is_ok());
}

#[test]
fn websocket_every_prefix_is_partial() {
    let mut stream = Vec::new();
    encode_masked_frame(false, Opcode::Text, [1, 2, 3, 4], "κό".as_bytes(), &mut stream);
    encode_masked_frame(true, Opcode::Ping, [5, 6, 7, 8], b"ping", &mut stream);
    encode_masked_frame(true, Opcode::Continuation, [9, 9, 9, 9], "σμε".as_bytes(), &mut stream);
    encode_masked_frame(true, Opcode::Binary, [0, 0, 0, 1], &[7; 300], &mut stream);
    encode_masked_frame(true, Opcode::Binary, [0, 0, 1, 0], &[8; 70000], &mut stream);
    let whole = decode_all(FrameDecoder::server(1 << 20), &stream).unwrap();
    assert_eq!(whole.len(), 5);
    assert_eq!(whole[2], Some(Owned::Text("κόσμε".into())));
    // Frame by frame, each prefix of a frame is Partial with a growing `needed`.
    let mut decoder = FrameDecoder::server(1 << 20);
    let mut rest = stream.clone();
    while !rest.is_empty() {
        let mut last = 0;
        let mut len = 0;
        while len <= rest.len() {
            let mut prefix = rest[..len].to_vec();
            match decoder.decode(&mut prefix).unwrap() {
                Received::Partial { needed } => {
                    assert!(needed > len && needed >= last);
                    last = needed;
                    len = needed;
                }
                Received::Frame { consumed, .. } => {
                    rest.drain(..consumed);
                    break;
                }
            }
        }
    }
}
