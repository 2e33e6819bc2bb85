//! Feeds bytes to the WebSocket frame decoder the way a connection's read
//! loop does: no panic, arrival in pieces never changes what is decoded, and
//! every message survives encode → decode. Then fragments the input into
//! frames of its own and checks the reassembled message is the input. The
//! same bytes also go through httparse and the upgrade handshake, and
//! through the byte stream `/ws` and `/mqtt` connections carry
//! (`ByteStream`), whole and split, which must agree.
//!
//! Input: a mode byte (bit 0: client decoder, else server; bit 1: a tiny
//! maximum message size), a byte `n`, then `n % 8` chunk sizes (used in turn;
//! 0 is a read that brought nothing), then the stream.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tinymq_fuzz::chunks;
use tinymq_core::websocket::{self, FrameDecoder, Message, Opcode, Received};

#[derive(Debug, PartialEq)]
enum Owned {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<u16>, String),
    /// A fragment that completed nothing.
    Fragment,
}

fn owned(message: Option<Message<'_>>) -> Owned {
    match message {
        None => Owned::Fragment,
        Some(Message::Text(t)) => Owned::Text(t.to_owned()),
        Some(Message::Binary(b)) => Owned::Binary(b.to_vec()),
        Some(Message::Ping(b)) => Owned::Ping(b.to_vec()),
        Some(Message::Pong(b)) => Owned::Pong(b.to_vec()),
        Some(Message::Close { code, reason }) => Owned::Close(code, reason.to_owned()),
    }
}

fuzz_target!(|input: &[u8]| {
    let [mode, n, rest @ ..] = input else { return };
    let (sizes, stream) = rest.split_at(usize::from(n % 8).min(rest.len()));
    let max = if mode & 2 != 0 { 16 } else { 1 << 16 };
    let decoder = if mode & 1 != 0 { FrameDecoder::client(max) } else { FrameDecoder::server(max) };
    let whole = feed(decoder.clone(), &[stream]);
    let split = feed(decoder, &chunks(sizes, stream));
    assert_eq!(whole, split, "split feeding decoded differently");
    for message in &whole.0 {
        round_trip(message);
    }
    fragments_reassemble(sizes, stream);
    handshake(stream);
    byte_stream(sizes, stream, max);
});

/// The byte stream a `/ws` or `/mqtt` connection carries: split or whole,
/// the same payload bytes, the same end, the same control frames to send.
fn byte_stream(sizes: &[u8], stream: &[u8], max: usize) {
    let run = |pieces: &[&[u8]]| {
        let mut bytes = websocket::ByteStream::server(max);
        let (mut plain, mut control, mut end) = (Vec::new(), Vec::new(), None);
        for piece in pieces {
            if let Err(ended) = bytes.handle_input(piece, &mut plain) {
                end.get_or_insert(ended);
            }
            control.extend(bytes.take_control());
            assert!(bytes.buffered() <= max + 14 + piece.len(), "holds at most a frame and a read");
        }
        (plain, control, end)
    };
    assert_eq!(run(&[stream]), run(&chunks(sizes, stream)), "split feeding changed the byte stream");
}


/// A read loop: the messages in order, and the error or held byte count.
fn feed(mut decoder: FrameDecoder, chunks: &[&[u8]]) -> (Vec<Owned>, Result<usize, String>) {
    let max = decoder.max_message_size();
    let mut held = Vec::new();
    let mut out = Vec::new();
    let mut last_needed = 0;
    for chunk in chunks {
        held.extend_from_slice(chunk);
        loop {
            let held_len = held.len();
            match decoder.decode(&mut held) {
                Ok(Received::Frame { consumed, message }) => {
                    assert!(consumed <= held_len);
                    let message = owned(message);
                    if let Owned::Text(t) | Owned::Close(_, t) = &message {
                        assert!(t.len() <= max);
                    }
                    out.push(message);
                    held.drain(..consumed);
                    last_needed = 0;
                }
                Ok(Received::Partial { needed }) => {
                    assert!(needed > held_len, "needed {needed} with {held_len} held");
                    assert!(needed <= max + 14, "needed {needed} over the maximum");
                    assert!(needed >= last_needed, "needed fell from {last_needed} to {needed}");
                    last_needed = needed;
                    break;
                }
                Err(error) => {
                    let mut close = Vec::new();
                    websocket::encode_close(error.close_code(), &error.to_string(), &mut close);
                    return (out, Err(error.to_string()));
                }
            }
        }
    }
    (out, Ok(held.len()))
}

/// A message encoded as one masked frame decodes to itself.
fn round_trip(message: &Owned) {
    let (opcode, payload): (Opcode, Vec<u8>) = match message {
        Owned::Text(t) => (Opcode::Text, t.as_bytes().to_vec()),
        Owned::Binary(b) => (Opcode::Binary, b.clone()),
        Owned::Ping(b) => (Opcode::Ping, b.clone()),
        Owned::Pong(b) => (Opcode::Pong, b.clone()),
        Owned::Close(None, _) => (Opcode::Close, Vec::new()),
        Owned::Close(Some(code), reason) => (Opcode::Close, [&code.to_be_bytes()[..], reason.as_bytes()].concat()),
        Owned::Fragment => return,
    };
    let mut bytes = Vec::new();
    websocket::encode_masked_frame(true, opcode, [0xa5, 0x5a, 0x0f, 0xf0], &payload, &mut bytes);
    let (again, end) = feed(FrameDecoder::server(1 << 16), &[&bytes]);
    assert_eq!((&again[..], end), (std::slice::from_ref(message), Ok(0)));
}

/// The stream as one binary message, cut into fragments of the given sizes
/// (pings in between), reassembles to itself; with a limit below its size it
/// is refused with 1009.
fn fragments_reassemble(sizes: &[u8], stream: &[u8]) {
    let mut bytes = Vec::new();
    let pieces = chunks(sizes, stream);
    for (i, piece) in pieces.iter().enumerate() {
        let opcode = if i == 0 { Opcode::Binary } else { Opcode::Continuation };
        websocket::encode_frame(i + 1 == pieces.len(), opcode, piece, &mut bytes);
        if i % 2 == 1 {
            websocket::encode_frame(true, Opcode::Ping, &piece[..piece.len().min(125)], &mut bytes);
        }
    }
    let (messages, end) = feed(FrameDecoder::client(stream.len()), &[&bytes]);
    assert_eq!(end, Ok(0));
    let data: Vec<_> = messages.iter().filter(|m| !matches!(m, Owned::Ping(_) | Owned::Fragment)).collect();
    assert_eq!(data, [&Owned::Binary(stream.to_vec())]);
    if !stream.is_empty() {
        let (_, end) = feed(FrameDecoder::client(stream.len() - 1), &[&bytes]);
        assert!(end.is_err());
    }
}

fn handshake(stream: &[u8]) {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut request = httparse::Request::new(&mut headers);
    if let Ok(httparse::Status::Complete(_)) = request.parse(stream) {
        let headers = request.headers.iter().map(|h| (h.name, h.value));
        match websocket::accept(request.method.unwrap_or(""), headers, &["mqtt"]) {
            Ok(upgrade) => assert!(upgrade.response().starts_with(b"HTTP/1.1 101 ")),
            Err(error) => assert!(matches!(error.status(), 400 | 426) && !error.response().is_empty()),
        }
    }
}
