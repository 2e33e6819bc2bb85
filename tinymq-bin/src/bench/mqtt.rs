//! The part of MQTT 3.1.1 the bench speaks: CONNECT (clean session or not),
//! SUBSCRIBE, PUBLISH at QoS 0 or 1, PUBACK and PINGREQ out; CONNACK,
//! SUBACK, PUBLISH (acknowledged when QoS 1), PUBACK and PINGRESP in.

use super::event::Event;

const CONNECT: u8 = 0x10;
const CONNACK: u8 = 2;
const PUBLISH: u8 = 3;
const SUBSCRIBE: u8 = 0x82;
const SUBACK: u8 = 9;
const PINGREQ: u8 = 0xc0;
const PINGRESP: u8 = 13;
const PUBACK: u8 = 4;

/// The largest remaining length four varint bytes hold.
pub const MAX_REMAINING: usize = 268_435_455;

/// The keep-alive the bench announces: longer than any run, and the
/// broker still times out a bench that died.
const KEEP_ALIVE_SECS: u16 = 300;

/// Appends a remaining length (at most [`MAX_REMAINING`]).
pub fn push_remaining_len(mut len: usize, out: &mut Vec<u8>) {
    assert!(len <= MAX_REMAINING, "an MQTT packet over 256 MiB");
    loop {
        let byte = (len % 128) as u8;
        len /= 128;
        if len == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// A remaining length at the start of `input`: `Ok(None)` when more bytes
/// are needed, else the length and how many bytes encoded it.
pub fn parse_remaining_len(input: &[u8]) -> Result<Option<(usize, usize)>, String> {
    let mut len = 0usize;
    for (i, &byte) in input.iter().enumerate().take(4) {
        len |= usize::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(Some((len, i + 1)));
        }
    }
    if input.len() >= 4 { Err("an MQTT remaining length over four bytes".into()) } else { Ok(None) }
}

fn push_str(s: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s);
}

/// CONNECT with a clean session.
pub fn encode_connect(client_id: &str, out: &mut Vec<u8>) {
    encode_connect_session(client_id, true, out);
}

/// CONNECT with a clean session, or (`clean` false) one the broker keeps
/// after the connection.
pub fn encode_connect_session(client_id: &str, clean: bool, out: &mut Vec<u8>) {
    out.push(CONNECT);
    push_remaining_len(10 + 2 + client_id.len(), out);
    push_str(b"MQTT", out);
    out.push(4); // protocol level: 3.1.1
    out.push(if clean { 0x02 } else { 0 }); // clean session
    out.extend_from_slice(&KEEP_ALIVE_SECS.to_be_bytes());
    push_str(client_id.as_bytes(), out);
}

/// SUBSCRIBE to one filter at `qos` (0 or 1), packet id 1.
pub fn encode_subscribe(filter: &str, qos: u8, out: &mut Vec<u8>) {
    out.push(SUBSCRIBE);
    push_remaining_len(2 + 2 + filter.len() + 1, out);
    out.extend_from_slice(&1u16.to_be_bytes());
    push_str(filter.as_bytes(), out);
    out.push(qos);
}

/// PUBLISH at QoS 1 with `packet_id`, not retained.
pub fn encode_publish_qos1(topic: &str, payload: &[u8], packet_id: u16, out: &mut Vec<u8>) {
    out.push((PUBLISH << 4) | 0x02);
    push_remaining_len(2 + topic.len() + 2 + payload.len(), out);
    push_str(topic.as_bytes(), out);
    out.extend_from_slice(&packet_id.to_be_bytes());
    out.extend_from_slice(payload);
}

/// PUBACK for a QoS 1 delivery.
pub fn encode_puback(packet_id: u16, out: &mut Vec<u8>) {
    out.push(PUBACK << 4);
    out.push(2);
    out.extend_from_slice(&packet_id.to_be_bytes());
}

/// PUBLISH at QoS 0 (no packet id), not retained.
pub fn encode_publish(topic: &str, payload: &[u8], out: &mut Vec<u8>) {
    out.push(PUBLISH << 4);
    push_remaining_len(2 + topic.len() + payload.len(), out);
    push_str(topic.as_bytes(), out);
    out.extend_from_slice(payload);
}

/// PINGREQ.
pub fn encode_ping(out: &mut Vec<u8>) {
    out.extend_from_slice(&[PINGREQ, 0]);
}

/// Parses one packet at the start of `input`: `Ok(None)` when it is
/// incomplete, else the event and the bytes it took.
pub fn parse(input: &[u8]) -> Result<Option<(Event<'_>, usize)>, String> {
    let Some(&first) = input.first() else { return Ok(None) };
    let Some((len, len_bytes)) = parse_remaining_len(&input[1..])? else { return Ok(None) };
    let start = 1 + len_bytes;
    let end = start + len;
    if input.len() < end {
        return Ok(None);
    }
    let body = &input[start..end];
    let event = match first >> 4 {
        PUBLISH => {
            if body.len() < 2 {
                return Err("an MQTT PUBLISH without a topic".into());
            }
            let topic_len = usize::from(u16::from_be_bytes([body[0], body[1]]));
            // QoS 1 and 2 carry a packet id after the topic.
            let id_len = if (first >> 1) & 3 == 0 { 0 } else { 2 };
            let payload_at = 2 + topic_len + id_len;
            if body.len() < payload_at {
                return Err("an MQTT PUBLISH shorter than its topic".into());
            }
            match id_len {
                0 => Event::Message(&body[payload_at..]),
                _ => {
                    let packet_id = u16::from_be_bytes([body[payload_at - 2], body[payload_at - 1]]);
                    Event::MessageToAck(&body[payload_at..], packet_id)
                }
            }
        }
        // The broker's answer to our QoS 1 PUBLISH.
        PUBACK => Event::PubAck,
        CONNACK => match body {
            [_, 0] => Event::Ack,
            [_, code] => return Err(format!("the broker refused the connection (CONNACK return code {code})")),
            _ => return Err("a malformed MQTT CONNACK".into()),
        },
        SUBACK => match body {
            [_, _, 0x80] => return Err("the broker refused the subscription (SUBACK 0x80)".into()),
            [_, _, _] => Event::Ack,
            _ => return Err("a malformed MQTT SUBACK".into()),
        },
        PINGRESP => Event::Pong,
        other => return Err(format!("an unexpected MQTT packet of type {other}")),
    };
    Ok(Some((event, end)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    #[test]
    fn remaining_length_edges() {
        for (len, encoded) in [
            (0, "00"),
            (127, "7f"),
            (128, "8001"),
            (16_383, "ff7f"),
            (16_384, "808001"),
            (2_097_151, "ffff7f"),
            (2_097_152, "80808001"),
            (MAX_REMAINING, "ffffff7f"),
        ] {
            let mut out = Vec::new();
            push_remaining_len(len, &mut out);
            assert_eq!(out, hex(encoded), "{len}");
            assert_eq!(parse_remaining_len(&out).unwrap(), Some((len, out.len())));
            for cut in 0..out.len() {
                assert_eq!(parse_remaining_len(&out[..cut]).unwrap(), None, "{len} cut at {cut}");
            }
        }
        assert!(parse_remaining_len(&hex("ffffffff01")).is_err());
        assert!(parse_remaining_len(&hex("ffffffff")).is_err());
    }

    #[test]
    fn encodes_client_packets() {
        let mut out = Vec::new();
        encode_connect("c1", &mut out);
        assert_eq!(out, hex("10 0e 0004 4d515454 04 02 012c 0002 6331"));
        out.clear();
        encode_connect_session("c1", false, &mut out);
        assert_eq!(out, hex("10 0e 0004 4d515454 04 00 012c 0002 6331"));
        out.clear();
        encode_subscribe("a/b", 0, &mut out);
        assert_eq!(out, hex("82 08 0001 0003 612f62 00"));
        out.clear();
        encode_publish_qos1("a/b", b"hi", 7, &mut out);
        assert_eq!(out, hex("32 09 0003 612f62 0007 6869"));
        out.clear();
        encode_puback(7, &mut out);
        assert_eq!(out, hex("40 02 0007"));
        out.clear();
        encode_publish("a/b", b"hi", &mut out);
        assert_eq!(out, hex("30 07 0003 612f62 6869"));
        out.clear();
        encode_ping(&mut out);
        assert_eq!(out, hex("c0 00"));
        // 2 + 3 + 123 = 128: a two-byte remaining length.
        out.clear();
        encode_publish("a/b", &[7; 123], &mut out);
        assert_eq!(out[..3], hex("30 8001"));
        assert_eq!(out.len(), 3 + 128);
    }

    /// Parses `input` whole and split at every byte, as a reader does.
    fn parse_all(input: &[u8]) -> Vec<String> {
        let run = |first: &[u8], rest: &[u8]| {
            let mut buf = first.to_vec();
            let mut events = Vec::new();
            for chunk in [&[][..], rest] {
                buf.extend_from_slice(chunk);
                while let Some((event, used)) = parse(&buf).unwrap() {
                    events.push(format!("{event:?}"));
                    buf.drain(..used);
                }
            }
            assert!(buf.is_empty());
            events
        };
        let whole = run(input, &[]);
        for split in 0..=input.len() {
            assert_eq!(run(&input[..split], &input[split..]), whole, "split at {split}");
        }
        whole
    }

    #[test]
    fn parses_broker_packets_split_anywhere() {
        let mut input =
            hex("20 02 00 00   90 03 0001 00   d0 00   30 07 0003 612f62 6869   32 09 0003 612f62 0005 6869");
        // A PUBLISH with a two-byte remaining length (200 = c8 01).
        input.extend(hex("30 c801 0001 78"));
        input.extend([9; 197]);
        let events = parse_all(&input);
        assert_eq!(events[..5], ["Ack", "Ack", "Pong", "Message([104, 105])", "MessageToAck([104, 105], 5)"]);
        assert_eq!(events[5], format!("{:?}", Event::Message(&[9; 197])));
    }

    #[test]
    fn refusals_and_garbage_are_errors() {
        assert!(parse(&hex("20 02 00 05")).unwrap_err().contains("code 5"));
        assert!(parse(&hex("90 03 0001 80")).unwrap_err().contains("refused"));
        assert!(parse(&hex("30 01 00")).is_err());
        assert!(parse(&hex("30 03 0005 61")).is_err());
        assert!(parse(&hex("e0 00")).is_err());
        assert!(parse(&hex("30 ff ff ff ff 01")).is_err());
    }
}
