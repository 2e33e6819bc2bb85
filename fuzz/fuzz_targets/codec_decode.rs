//! Feeds bytes to `Decoder::decode` the way a connection's read loop does and
//! checks that arrival in pieces never changes what is decoded. A Connect
//! whose session and will options parse encodes back from them to the very
//! bytes it came from; a packet id is never 0.
//!
//! Input: one byte `n`, then `n % 8` chunk sizes (used in turn; a 0 is a read
//! that brought nothing), then the stream. Every input runs under the default
//! limits and under tiny ones, so the TooLong paths are reached by short
//! inputs too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tinymq_fuzz::chunks;
use tinymq_core::{ConnectOptions, DecodeError, Decoded, Decoder, FrameLimits, FrameType, Qos};

/// How decoding a stream ended.
#[derive(Debug, PartialEq)]
enum End {
    /// Out of bytes with this many held, waiting for more.
    Incomplete(usize),
    /// A fatal error; the connection would be closed.
    Error(DecodeError),
}

fuzz_target!(|input: &[u8]| {
    let Some((&n, rest)) = input.split_first() else { return };
    let (sizes, stream) = rest.split_at(usize::from(n % 8).min(rest.len()));
    let tiny = FrameLimits { max_topic_len: 5, max_payload_len: 16, max_client_id_len: 3 };
    for decoder in [Decoder::default(), Decoder::new(tiny)] {
        let whole = feed(&decoder, &[stream]);
        let split = feed(&decoder, &chunks(sizes, stream));
        assert_eq!(whole, split, "split feeding decoded differently");
    }
});


/// A read loop: append each chunk, take every whole frame, keep the rest.
/// Returns the frames' bytes in order and how the stream ended.
fn feed(decoder: &Decoder, chunks: &[&[u8]]) -> (Vec<Vec<u8>>, End) {
    let limits = decoder.limits();
    let mut held = Vec::new();
    let mut frames = Vec::new();
    // What the frame at the front of `held` was last said to need.
    let mut last_needed = 0;
    for chunk in chunks {
        held.extend_from_slice(chunk);
        loop {
            match decoder.decode(&held) {
                Ok(Decoded::Frame { frame, consumed }) => {
                    assert!(frame.topic.len() <= limits.max_topic_len);
                    assert!(frame.payload.len() <= limits.max_payload_len);
                    assert!(frame.client_id.len() <= limits.max_client_id_len);
                    let bytes = frame.to_vec();
                    assert_eq!(bytes, held[..consumed], "re-encoding differs from the input");
                    let with_id = frame.kind == FrameType::PubAck
                        || (frame.kind == FrameType::Publish && frame.qos == Qos::AtLeastOnce);
                    assert_eq!(frame.packet_id != 0, with_id, "packet id {} on {:?}", frame.packet_id, frame.kind);
                    if frame.kind == FrameType::Connect
                        && let Ok(options) = ConnectOptions::parse(&frame)
                    {
                        let mut again = Vec::new();
                        options.encode(frame.client_id, &mut again);
                        assert_eq!(again, bytes, "connect options encode differently");
                    }
                    frames.push(bytes);
                    held.drain(..consumed);
                    last_needed = 0;
                }
                Ok(Decoded::Incomplete { needed }) => {
                    assert!(needed > held.len(), "needed {needed} with {} held", held.len());
                    assert!(needed <= limits.max_frame_len(), "needed {needed} over the limits");
                    // A lower bound only grows as bytes arrive.
                    assert!(needed >= last_needed, "needed fell from {last_needed} to {needed}");
                    last_needed = needed;
                    break;
                }
                Err(error) => return (frames, End::Error(error)),
            }
        }
    }
    (frames, End::Incomplete(held.len()))
}
