//! RFC 6455 frames: an incremental decoder that checks every rule of
//! section 5 and reassembles fragmented messages in a bounded buffer, and
//! an encoder for the frames a server sends (and, for tests, masked client
//! frames).

/// The frame opcodes of RFC 6455 section 5.2.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Opcode {
    /// 0x0: continuation of a fragmented message.
    Continuation = 0x0,
    /// 0x1: text (UTF-8) data.
    Text = 0x1,
    /// 0x2: binary data.
    Binary = 0x2,
    /// 0x8: close.
    Close = 0x8,
    /// 0x9: ping.
    Ping = 0x9,
    /// 0xA: pong.
    Pong = 0xA,
}

impl Opcode {
    /// The opcode for four bits, `None` for the reserved ones.
    pub fn from_u8(value: u8) -> Option<Self> {
        Some(match value {
            0x0 => Opcode::Continuation,
            0x1 => Opcode::Text,
            0x2 => Opcode::Binary,
            0x8 => Opcode::Close,
            0x9 => Opcode::Ping,
            0xA => Opcode::Pong,
            _ => return None,
        })
    }

    /// Close, ping and pong.
    pub fn is_control(self) -> bool {
        self as u8 & 0x8 != 0
    }
}

/// Close status codes tinymq sends (RFC 6455 section 7.4.1).
pub mod close_code {
    /// Normal closure.
    pub const NORMAL: u16 = 1000;
    /// The endpoint is going away (server shutting down).
    pub const GOING_AWAY: u16 = 1001;
    /// A protocol error.
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// A data type the endpoint cannot accept.
    pub const UNSUPPORTED_DATA: u16 = 1003;
    /// Data not consistent with the message type (bad UTF-8 in text).
    pub const INVALID_PAYLOAD: u16 = 1007;
    /// A policy violation.
    pub const POLICY_VIOLATION: u16 = 1008;
    /// A message too big to process.
    pub const MESSAGE_TOO_BIG: u16 = 1009;
    /// An unexpected condition on the server.
    pub const INTERNAL_ERROR: u16 = 1011;

    /// Whether a peer may send `code` in a close frame: the defined codes
    /// other than those reserved for local use (1004, 1005, 1006, 1015),
    /// and 3000-4999 for libraries and applications.
    pub fn is_valid(code: u16) -> bool {
        matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}

/// One received message, or control frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Message<'a> {
    /// A whole text message, UTF-8 checked.
    Text(&'a str),
    /// A whole binary message.
    Binary(&'a [u8]),
    /// A ping: answer with a pong carrying the same payload.
    Ping(&'a [u8]),
    /// A pong (unsolicited ones included); nothing to do.
    Pong(&'a [u8]),
    /// A close: answer with a close frame (echoing the code, RFC 6455
    /// section 5.5.1), then close the connection.
    Close {
        /// The status code, if the frame had one.
        code: Option<u16>,
        /// The reason, UTF-8 checked.
        reason: &'a str,
    },
}

/// Why the frames from a peer were refused; fatal for the connection.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// A rule of RFC 6455 section 5 was broken.
    #[error("WebSocket protocol error: {0}")]
    Protocol(&'static str),
    /// A text message or close reason that is not UTF-8.
    #[error("WebSocket text is not UTF-8")]
    InvalidUtf8,
    /// A frame or reassembled message over the maximum message size.
    #[error("WebSocket message of {len} bytes is over the maximum of {max}")]
    TooBig {
        /// The declared size (of the message so far, for a fragment).
        len: u64,
        /// The maximum in force.
        max: usize,
    },
}

impl FrameError {
    /// The close code the peer is sent before the connection is closed.
    pub fn close_code(&self) -> u16 {
        match self {
            FrameError::Protocol(_) => close_code::PROTOCOL_ERROR,
            FrameError::InvalidUtf8 => close_code::INVALID_PAYLOAD,
            FrameError::TooBig { .. } => close_code::MESSAGE_TOO_BIG,
        }
    }
}

/// The result of a decode call that did not fail.
#[derive(Debug, PartialEq, Eq)]
pub enum Received<'a> {
    /// Only part of a frame: call again with the same bytes plus more.
    Partial {
        /// Total bytes the frame is known to need so far (a lower bound).
        needed: usize,
    },
    /// A whole frame was taken: drop `consumed` bytes from the input. It
    /// completed `message`, or was a fragment that did not (`None`).
    Frame {
        /// Bytes of the input the frame took.
        consumed: usize,
        /// The message or control frame it completed.
        message: Option<Message<'a>>,
    },
}

/// The decoder for one connection's incoming frames.
///
/// Call [`FrameDecoder::decode`] with the bytes received so far until it
/// returns [`Received::Partial`], dropping each frame's `consumed` bytes in
/// between. A whole frame's payload is unmasked in place in the caller's
/// buffer, which is why the input is `&mut`: those bytes must be dropped,
/// not decoded twice. Fragments are copied to a buffer of at most
/// `max_message_size` bytes until the last one arrives.
#[derive(Clone, Debug)]
pub struct FrameDecoder {
    max_message_size: usize,
    expect_masked: bool,
    /// The opcode of the fragmented message in progress, if any.
    fragmented: Option<Opcode>,
    fragments: Vec<u8>,
    /// How much of `fragments` is known to be valid UTF-8 (text only), so a
    /// bad text fails at the fragment that breaks it.
    utf8_valid: usize,
}

impl FrameDecoder {
    /// A server's decoder: client frames must be masked, and a message (or a
    /// frame) may be at most `max_message_size` bytes.
    pub fn server(max_message_size: usize) -> Self {
        FrameDecoder { max_message_size, expect_masked: true, fragmented: None, fragments: Vec::new(), utf8_valid: 0 }
    }

    /// A client's decoder: server frames must not be masked.
    pub fn client(max_message_size: usize) -> Self {
        FrameDecoder { expect_masked: false, ..FrameDecoder::server(max_message_size) }
    }

    /// The maximum message size in force.
    pub fn max_message_size(&self) -> usize {
        self.max_message_size
    }

    /// Decodes the frame at the start of `input`.
    pub fn decode<'a>(&'a mut self, input: &'a mut [u8]) -> Result<Received<'a>, FrameError> {
        let (header_len, fin, opcode, len, mask) = match self.header(input)? {
            Ok(header) => header,
            Err(needed) => return Ok(Received::Partial { needed }),
        };
        let end = header_len + len;
        if input.len() < end {
            return Ok(Received::Partial { needed: end });
        }
        let payload = &mut input[header_len..end];
        if let Some(mask) = mask {
            apply_mask(payload, mask);
        }
        let payload: &'a [u8] = payload;
        let message = match opcode {
            Opcode::Ping => Some(Message::Ping(payload)),
            Opcode::Pong => Some(Message::Pong(payload)),
            Opcode::Close => Some(close_message(payload)?),
            Opcode::Text | Opcode::Binary if fin => Some(data_message(opcode, payload)?),
            Opcode::Text | Opcode::Binary => {
                self.fragmented = Some(opcode);
                self.fragments.clear();
                self.utf8_valid = 0;
                self.append(payload)?;
                None
            }
            Opcode::Continuation => {
                self.append(payload)?;
                if fin {
                    let opcode = self.fragmented.take().expect("checked in header");
                    Some(data_message(opcode, &self.fragments)?)
                } else {
                    None
                }
            }
        };
        Ok(Received::Frame { consumed: end, message })
    }

    /// Reads and checks the header: `Ok(Ok((header length, FIN, opcode,
    /// payload length, mask)))`, or `Ok(Err(bytes needed))`.
    #[allow(clippy::type_complexity)]
    fn header(&self, input: &[u8]) -> Result<Result<(usize, bool, Opcode, usize, Option<[u8; 4]>), usize>, FrameError> {
        let [b0, b1, ..] = *input else { return Ok(Err(2)) };
        let fin = b0 & 0x80 != 0;
        if b0 & 0x70 != 0 {
            return Err(FrameError::Protocol("RSV bits set without an extension"));
        }
        let opcode = Opcode::from_u8(b0 & 0x0f).ok_or(FrameError::Protocol("reserved opcode"))?;
        let masked = b1 & 0x80 != 0;
        if masked != self.expect_masked {
            return Err(FrameError::Protocol(if masked {
                "server frames are not masked"
            } else {
                "client frames must be masked"
            }));
        }
        let len7 = b1 & 0x7f;
        if opcode.is_control() && (!fin || len7 > 125) {
            return Err(FrameError::Protocol("fragmented or long control frame"));
        }
        match opcode {
            Opcode::Continuation if self.fragmented.is_none() => {
                return Err(FrameError::Protocol("continuation without a message to continue"));
            }
            Opcode::Text | Opcode::Binary if self.fragmented.is_some() => {
                return Err(FrameError::Protocol("new message inside a fragmented one"));
            }
            _ => {}
        }
        let (len, mut header_len) = match len7 {
            126 => {
                let Some(bytes) = input.get(2..4) else { return Ok(Err(4)) };
                let len = u64::from(u16::from_be_bytes([bytes[0], bytes[1]]));
                if len < 126 {
                    return Err(FrameError::Protocol("length not in its shortest form"));
                }
                (len, 4)
            }
            127 => {
                let Some(bytes) = input.get(2..10) else { return Ok(Err(10)) };
                let len = u64::from_be_bytes(bytes.try_into().expect("eight bytes"));
                if len >> 63 != 0 {
                    return Err(FrameError::Protocol("64-bit length with the top bit set"));
                }
                if len <= 0xffff {
                    return Err(FrameError::Protocol("length not in its shortest form"));
                }
                (len, 10)
            }
            len => (u64::from(len), 2),
        };
        let so_far = if opcode == Opcode::Continuation { self.fragments.len() as u64 } else { 0 };
        if so_far + len > self.max_message_size as u64 {
            return Err(FrameError::TooBig { len: so_far + len, max: self.max_message_size });
        }
        let mask = if masked {
            let Some(bytes) = input.get(header_len..header_len + 4) else { return Ok(Err(header_len + 4)) };
            header_len += 4;
            Some([bytes[0], bytes[1], bytes[2], bytes[3]])
        } else {
            None
        };
        Ok(Ok((header_len, fin, opcode, len as usize, mask)))
    }

    fn append(&mut self, payload: &[u8]) -> Result<(), FrameError> {
        self.fragments.extend_from_slice(payload);
        if self.fragmented == Some(Opcode::Text) {
            match std::str::from_utf8(&self.fragments[self.utf8_valid..]) {
                Ok(_) => self.utf8_valid = self.fragments.len(),
                // A character cut at the end may be completed by the next
                // fragment; anything else is invalid already.
                Err(error) if error.error_len().is_none() => self.utf8_valid += error.valid_up_to(),
                Err(_) => return Err(FrameError::InvalidUtf8),
            }
        }
        Ok(())
    }
}

fn data_message(opcode: Opcode, payload: &[u8]) -> Result<Message<'_>, FrameError> {
    if opcode == Opcode::Text {
        Ok(Message::Text(std::str::from_utf8(payload).map_err(|_| FrameError::InvalidUtf8)?))
    } else {
        Ok(Message::Binary(payload))
    }
}

fn close_message(payload: &[u8]) -> Result<Message<'_>, FrameError> {
    match payload {
        [] => Ok(Message::Close { code: None, reason: "" }),
        [_] => Err(FrameError::Protocol("close payload of one byte")),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !close_code::is_valid(code) {
                return Err(FrameError::Protocol("invalid close code"));
            }
            let reason = std::str::from_utf8(reason).map_err(|_| FrameError::InvalidUtf8)?;
            Ok(Message::Close { code: Some(code), reason })
        }
    }
}

/// XORs `payload` with the masking key (RFC 6455 section 5.3).
pub fn apply_mask(payload: &mut [u8], mask: [u8; 4]) {
    for (i, byte) in payload.iter_mut().enumerate() {
        *byte ^= mask[i % 4];
    }
}

/// Appends a frame header for `len` bytes of payload.
pub(super) fn put_header(out: &mut Vec<u8>, fin: bool, opcode: Opcode, len: usize, mask: Option<[u8; 4]>) {
    out.push(u8::from(fin) << 7 | opcode as u8);
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    match len {
        0..=125 => out.push(mask_bit | len as u8),
        126..=0xffff => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    if let Some(mask) = mask {
        out.extend_from_slice(&mask);
    }
}

/// Appends a server frame (unmasked) to `out`.
///
/// # Panics
///
/// If `opcode` is a control opcode and the payload is over 125 bytes or
/// `fin` is false.
pub fn encode_frame(fin: bool, opcode: Opcode, payload: &[u8], out: &mut Vec<u8>) {
    assert!(!opcode.is_control() || (fin && payload.len() <= 125), "control frames are short and whole");
    out.reserve(payload.len() + 10);
    put_header(out, fin, opcode, payload.len(), None);
    out.extend_from_slice(payload);
}

/// Appends a masked (client) frame to `out`; the caller chooses the key,
/// since the core has no randomness. For tests and clients.
pub fn encode_masked_frame(fin: bool, opcode: Opcode, mask: [u8; 4], payload: &[u8], out: &mut Vec<u8>) {
    put_header(out, fin, opcode, payload.len(), Some(mask));
    let start = out.len();
    out.extend_from_slice(payload);
    apply_mask(&mut out[start..], mask);
}

/// Appends a server close frame with `code` and a reason (cut to fit the
/// 125 bytes of a control frame, at a character boundary).
pub fn encode_close(code: u16, reason: &str, out: &mut Vec<u8>) {
    let mut cut = reason.len().min(123);
    while !reason.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut payload = Vec::with_capacity(2 + cut);
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(&reason.as_bytes()[..cut]);
    encode_frame(true, Opcode::Close, &payload, out);
}
