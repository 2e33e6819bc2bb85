//! `DeliveryQueue` under arbitrary push, transmit, ack and reconnect
//! sequences, against a model written here: a list of (sequence, packet id
//! or none, sent on this connection). The same sequence numbers, the same
//! transmits in the same order, the same DUP flags; in flight never over
//! the window; packet ids never 0 and never shared while in flight; the
//! limits never exceeded, and a refused push changes nothing.
//!
//! Input: three bytes of limits (window `% 8 + 1`, messages `% 16 + 1`,
//! bytes in entries `% 16 + 1`), then op bytes: `% 4` 0 push (the byte's
//! high bits pick the payload size), 1 transmit, 2 ack (the next byte, `%
//! 16`, an id), 3 reconnect.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use tinymq_core::durable::{DeliveryQueue, QueueLimits, entry_size};
use tinymq_core::{Delivery, Message};

struct Entry {
    seq: u64,
    packet_id: Option<u16>,
    sent: bool,
    maybe_sent: bool,
    size: usize,
}

fn message(seq: u64, len: usize) -> Arc<Delivery> {
    Delivery::new(Message {
        topic: "t".into(),
        payload: vec![0; len].into(),
        from: seq.to_string().into(),
        updated_time: 0,
        ip: None,
    })
}

fuzz_target!(|input: &[u8]| {
    let [window, messages, bytes, ops @ ..] = input else { return };
    let base = entry_size(&message(0, 0));
    let limits = QueueLimits {
        max_inflight: u16::from(window % 8 + 1),
        max_messages: usize::from(messages % 16 + 1),
        max_bytes: usize::from(bytes % 16 + 1) * (base + 8),
    };
    let mut queue = DeliveryQueue::new(limits);
    let mut model: Vec<Entry> = Vec::new();
    let mut next_seq = 1;
    let mut ops = ops.iter();
    while let Some(&op) = ops.next() {
        match op % 4 {
            0 => {
                let len = usize::from(op >> 4);
                let delivery = message(next_seq, len);
                let size = entry_size(&delivery);
                let held: usize = model.iter().map(|e| e.size).sum();
                let fits = model.len() < limits.max_messages && held + size <= limits.max_bytes;
                match queue.push(delivery) {
                    Ok(seq) => {
                        assert!(fits, "took a message over the limits");
                        assert_eq!(seq, next_seq);
                        model.push(Entry { seq, packet_id: None, sent: false, maybe_sent: false, size });
                        next_seq += 1;
                    }
                    Err(_) => assert!(!fits, "refused a message within the limits"),
                }
            }
            1 => {
                let inflight = model.iter().filter(|e| e.packet_id.is_some()).count();
                // The model's choice: the first in-flight entry not yet sent
                // here, else the first waiting one if the window has room.
                let resend = model.iter().position(|e| e.packet_id.is_some() && !e.sent);
                let fresh = model.iter().position(|e| e.packet_id.is_none());
                let expected = resend.or(fresh.filter(|_| inflight < usize::from(limits.max_inflight)));
                let got = queue.poll_transmit();
                match (expected, got) {
                    (None, None) => {}
                    (Some(index), Some(transmit)) => {
                        let entry = &mut model[index];
                        assert_eq!(transmit.seq, entry.seq);
                        assert_ne!(transmit.packet_id, 0);
                        match entry.packet_id {
                            Some(id) => {
                                assert_eq!(transmit.packet_id, id, "a resend keeps its id");
                                assert!(transmit.dup);
                            }
                            None => assert_eq!(transmit.dup, entry.maybe_sent),
                        }
                        entry.packet_id = Some(transmit.packet_id);
                        entry.sent = true;
                        entry.maybe_sent = true;
                        let ids: Vec<u16> = model.iter().filter_map(|e| e.packet_id).collect();
                        let mut unique = ids.clone();
                        unique.sort_unstable();
                        unique.dedup();
                        assert_eq!(unique.len(), ids.len(), "packet ids shared in flight");
                    }
                    (expected, got) => panic!("model says {expected:?}, queue gave {:?}", got.map(|t| t.seq)),
                }
            }
            2 => {
                let id = ops.next().map_or(1, |b| u16::from(b % 16));
                let index = model.iter().position(|e| e.packet_id == Some(id));
                let expected = index.map(|i| model.remove(i).seq);
                assert_eq!(queue.ack(id), expected, "ack of {id}");
            }
            _ => {
                queue.reconnected();
                for entry in &mut model {
                    entry.sent = false;
                }
            }
        }
        let inflight = model.iter().filter(|e| e.packet_id.is_some()).count();
        assert_eq!(queue.inflight(), inflight);
        assert!(inflight <= usize::from(limits.max_inflight));
        assert_eq!(queue.len(), model.len());
        assert_eq!(queue.bytes(), model.iter().map(|e| e.size).sum::<usize>());
    }
});
