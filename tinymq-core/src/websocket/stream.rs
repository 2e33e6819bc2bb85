//! A byte stream carried in WebSocket binary messages, sans-IO: what a
//! protocol that is a stream of bytes (the tinymq binary protocol, MQTT)
//! needs to run over a WebSocket connection.
//!
//! Message boundaries mean nothing: a frame of the protocol inside may
//! span messages, and a message may hold several. Pings are answered,
//! a close is echoed, and anything else (a text message, a broken frame)
//! closes the connection with the close code RFC 6455 names.

use super::frame::{
    FrameDecoder, FrameError, Message, Opcode, Received, close_code, encode_close, encode_frame, put_header,
};

/// Why a WebSocket byte stream ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamEnd {
    /// The peer sent a close frame (its code, if any); ours is queued.
    Closed(Option<u16>),
    /// The peer broke the rules; a close frame with this code is queued.
    Failed(u16, String),
}

/// The server side of a byte stream in WebSocket binary messages.
///
/// Feed it what the socket read ([`ByteStream::handle_input`]), which
/// appends the payload bytes for the protocol inside; wrap what that
/// protocol sends with [`ByteStream::frame`]; and send
/// [`ByteStream::take_control`] (pongs, the close) ahead of the next
/// data.
#[derive(Debug)]
pub struct ByteStream {
    decoder: FrameDecoder,
    /// Received bytes that do not yet make a whole frame.
    raw: Vec<u8>,
    /// Control frames to send: pongs, and the close.
    control: Vec<u8>,
    ended: Option<StreamEnd>,
}

impl ByteStream {
    /// A server's stream: client frames must be masked, and a message may
    /// be at most `max_message_size` bytes.
    pub fn server(max_message_size: usize) -> Self {
        ByteStream {
            decoder: FrameDecoder::server(max_message_size),
            raw: Vec::new(),
            control: Vec::new(),
            ended: None,
        }
    }

    /// Takes `input` from the socket: the payload of each whole binary
    /// message goes to `plain`. Once the stream has ended (the peer's
    /// close, a broken frame) input is ignored and the end is returned.
    pub fn handle_input(&mut self, input: &[u8], plain: &mut Vec<u8>) -> Result<(), StreamEnd> {
        if let Some(end) = &self.ended {
            return Err(end.clone());
        }
        self.raw.extend_from_slice(input);
        let mut used = 0;
        let result = loop {
            match self.decoder.decode(&mut self.raw[used..]) {
                Ok(Received::Partial { .. }) => break Ok(()),
                Ok(Received::Frame { consumed, message }) => {
                    used += consumed;
                    match message {
                        None | Some(Message::Pong(_)) => {}
                        Some(Message::Binary(data)) => plain.extend_from_slice(data),
                        Some(Message::Ping(data)) => encode_frame(true, Opcode::Pong, data, &mut self.control),
                        Some(Message::Text(_)) => {
                            let reason = "only binary messages are spoken here";
                            break Err(StreamEnd::Failed(close_code::UNSUPPORTED_DATA, reason.into()));
                        }
                        Some(Message::Close { code, .. }) => break Err(StreamEnd::Closed(code)),
                    }
                }
                Err(error) => break Err(failed(&error)),
            }
        };
        self.raw.drain(..used);
        if let Err(end) = &result {
            self.end(end.clone());
        }
        result
    }

    /// Closes the stream from this side with `code` (e.g. 1001 when the
    /// server stops), unless it has ended already.
    pub fn close(&mut self, code: u16, reason: &str) {
        if self.ended.is_none() {
            self.end(StreamEnd::Failed(code, reason.into()));
        }
    }

    fn end(&mut self, end: StreamEnd) {
        self.raw = Vec::new();
        match &end {
            // The close echoes the peer's code (RFC 6455 section 5.5.1).
            StreamEnd::Closed(code) => encode_close(code.unwrap_or(close_code::NORMAL), "", &mut self.control),
            StreamEnd::Failed(code, reason) => encode_close(*code, reason, &mut self.control),
        }
        self.ended = Some(end);
    }

    /// Whether the stream has ended (nothing more comes in; the close
    /// frame waits in [`ByteStream::take_control`]).
    pub fn ended(&self) -> Option<&StreamEnd> {
        self.ended.as_ref()
    }

    /// Appends `data` to `out` as one binary message (nothing for no
    /// data, nor once the stream has ended).
    pub fn frame(&self, data: &[u8], out: &mut Vec<u8>) {
        if !data.is_empty() && self.ended.is_none() {
            encode_frame(true, Opcode::Binary, data, out);
        }
    }

    /// Appends the header of one binary message of `len` bytes to `out`,
    /// for a caller that appends the payload itself (from several
    /// buffers, say) right after.
    pub fn frame_header(&self, len: usize, out: &mut Vec<u8>) {
        put_header(out, true, Opcode::Binary, len, None);
    }

    /// Control frames to send before any more data, taken.
    pub fn take_control(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.control)
    }

    /// Bytes held for a frame not yet whole.
    pub fn buffered(&self) -> usize {
        self.raw.len()
    }
}

fn failed(error: &FrameError) -> StreamEnd {
    StreamEnd::Failed(error.close_code(), error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::websocket::encode_masked_frame;

    const MASK: [u8; 4] = [1, 2, 3, 4];

    fn masked(opcode: Opcode, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_masked_frame(true, opcode, MASK, payload, &mut out);
        out
    }

    #[test]
    fn binary_messages_make_one_stream_whatever_their_boundaries() {
        let mut stream = ByteStream::server(1 << 16);
        let mut input = masked(Opcode::Binary, b"hel");
        input.extend(masked(Opcode::Binary, b"lo "));
        let mut fragmented = Vec::new();
        encode_masked_frame(false, Opcode::Binary, MASK, b"wor", &mut fragmented);
        encode_masked_frame(true, Opcode::Continuation, MASK, b"ld", &mut fragmented);
        input.extend(fragmented);
        let mut plain = Vec::new();
        // A byte at a time: frames complete across reads.
        for byte in &input {
            stream.handle_input(std::slice::from_ref(byte), &mut plain).unwrap();
        }
        assert_eq!(plain, b"hello world");
        assert_eq!(stream.buffered(), 0);
        let mut out = Vec::new();
        stream.frame(b"abc", &mut out);
        assert_eq!(out, [0x82, 3, b'a', b'b', b'c'], "unmasked, one binary message");
    }

    #[test]
    fn a_ping_is_answered_and_a_close_echoed() {
        let mut stream = ByteStream::server(1 << 16);
        let mut plain = Vec::new();
        stream.handle_input(&masked(Opcode::Ping, b"hi"), &mut plain).unwrap();
        assert_eq!(stream.take_control(), [0x8a, 2, b'h', b'i']);
        let mut close = Vec::new();
        encode_masked_frame(true, Opcode::Close, MASK, &1001u16.to_be_bytes(), &mut close);
        assert_eq!(stream.handle_input(&close, &mut plain), Err(StreamEnd::Closed(Some(1001))));
        assert_eq!(stream.take_control(), [0x88, 2, 0x03, 0xe9], "the code echoed");
        assert!(plain.is_empty());
        // Nothing more is read or sent.
        assert!(stream.handle_input(&masked(Opcode::Binary, b"x"), &mut plain).is_err());
        let mut out = Vec::new();
        stream.frame(b"late", &mut out);
        assert!(plain.is_empty() && out.is_empty());
    }

    #[test]
    fn text_unmasked_and_oversized_frames_end_the_stream_with_their_codes() {
        let cases: [(Vec<u8>, u16); 3] = [
            (masked(Opcode::Text, b"{}"), close_code::UNSUPPORTED_DATA),
            (
                {
                    let mut unmasked = Vec::new();
                    encode_frame(true, Opcode::Binary, b"x", &mut unmasked);
                    unmasked
                },
                close_code::PROTOCOL_ERROR,
            ),
            (masked(Opcode::Binary, &[0; 100]), close_code::MESSAGE_TOO_BIG),
        ];
        for (input, code) in cases {
            let mut stream = ByteStream::server(64);
            let mut plain = Vec::new();
            let Err(StreamEnd::Failed(got, _)) = stream.handle_input(&input, &mut plain) else { panic!("ended") };
            assert_eq!(got, code);
            assert_eq!(&stream.take_control()[2..4], code.to_be_bytes(), "the close frame carries it");
            assert!(plain.is_empty());
        }
    }
}
