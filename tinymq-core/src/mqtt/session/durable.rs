//! A session kept after the connection: what the CONNECT asked of it,
//! and the CONNACK of one the broker's durable sessions hold (see the
//! parent module's docs). Its QoS 1 sends are `delivery.rs`'s
//! [`ServerSession::deliver_qos1`].

use std::sync::Arc;

use super::{ProtocolVersion, ServerSession, State, WillMessage};
use crate::router::NamespaceId;

impl ServerSession {
    /// What the CONNECT asked of its session: `None` for one that ends
    /// with the connection, `Some(secs)` for one kept that long after it
    /// (3.1.1 Clean Session 0: 0, the broker's default; MQTT 5: the
    /// Session Expiry Interval, which the broker caps).
    pub fn persistence(&self) -> Option<u32> {
        match self.version? {
            ProtocolVersion::V311 => (!self.clean_start).then_some(0),
            ProtocolVersion::V5 => (self.expiry_asked > 0).then_some(self.expiry_asked),
        }
    }

    /// Whether the CONNECT asked to start afresh (Clean Session or Clean
    /// Start): a stored session of its client id is discarded.
    pub fn clean_start(&self) -> bool {
        self.clean_start
    }

    /// Whether the session is the broker's durable one.
    pub fn is_durable(&self) -> bool {
        self.durable
    }

    /// Whether the client's DISCONNECT asked for its will to be published
    /// all the same (MQTT 5 reason 0x04): a durable session's will is the
    /// broker's, so the broker must be told.
    pub fn disconnected_with_will(&self) -> bool {
        self.will_on_disconnect
    }

    /// The will its CONNECT carried, while it is this value's.
    pub fn will(&self) -> Option<&WillMessage> {
        self.will.as_deref()
    }

    /// Accepts the CONNECT with the broker's durable session: as
    /// [`ServerSession::accept`], and CONNACK says whether a stored session
    /// was resumed (`session_present`) and, to an MQTT 5 client, the
    /// expiry granted when it is not what was asked. The will is the
    /// session's from now on (the broker keeps it), so
    /// [`ServerSession::take_will`] gives none.
    pub fn accept_session(
        &mut self,
        client_id: Arc<str>,
        assigned: bool,
        namespace: NamespaceId,
        session_present: bool,
        expiry_secs: u32,
    ) {
        if self.state != State::Connecting {
            return;
        }
        let expiry =
            (self.version == Some(ProtocolVersion::V5) && expiry_secs != self.expiry_asked).then_some(expiry_secs);
        self.durable = true;
        self.will = None;
        self.accept_with(client_id, assigned, namespace, session_present, expiry);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::durable::Transmit;
    use crate::message::Message;
    use crate::mqtt::packet::{Ack, Connect, Packet, Properties, PropertiesBuf, Property, QoS};
    use crate::mqtt::session::{Request, SessionConfig, Step};
    use crate::mqtt::{Decoded, Decoder, to_vec};
    use crate::router::{Delivery, Router};

    #[allow(clippy::disallowed_methods)] // the virtual clock's start
    fn now() -> Instant {
        Instant::now()
    }

    /// A session whose CONNECT (`clean`, MQTT 5 `expiry`) is read.
    fn connecting(version: ProtocolVersion, clean: bool, expiry: u32) -> ServerSession {
        let mut properties = PropertiesBuf::new();
        if expiry > 0 {
            properties.push(Property::SessionExpiryInterval(expiry));
        }
        let connect = Connect {
            version,
            client_id: "kept",
            clean_start: clean,
            keep_alive: 0,
            will: None,
            username: None,
            password: None,
            properties: properties.as_properties(),
        };
        let mut session = ServerSession::new(now(), &SessionConfig::default());
        let bytes = to_vec(&Packet::Connect(connect), version);
        assert!(matches!(
            session.handle_input(now(), &bytes),
            Ok(Step::Request { request: Request::Connect { .. }, .. })
        ));
        session
    }

    /// The packets queued for the client, decoded with `f`.
    fn sent<T>(session: &mut ServerSession, version: ProtocolVersion, mut f: impl FnMut(Packet<'_>) -> T) -> Vec<T> {
        let outbound = session.outbound_mut();
        let mut slices: [&[u8]; 16] = [&[]; 16];
        let n = outbound.front_slices(&mut slices);
        let bytes: Vec<u8> = slices[..n].concat();
        outbound.consume(bytes.len());
        let decoder = Decoder::new(1 << 20, QoS::ExactlyOnce);
        let mut rest = &bytes[..];
        let mut out = Vec::new();
        while !rest.is_empty() {
            let Ok(Decoded::Complete { packet, consumed }) = decoder.decode(version, rest) else {
                panic!("{rest:02x?}")
            };
            out.push(f(packet));
            rest = &rest[consumed..];
        }
        out
    }

    fn namespace() -> NamespaceId {
        Router::<()>::new().namespace("")
    }

    fn message(payload: &str) -> Arc<Delivery> {
        Delivery::new(Message {
            topic: "t".into(),
            payload: payload.as_bytes().into(),
            from: "p".into(),
            updated_time: 0,
            ip: None,
        })
    }

    #[test]
    fn what_a_connect_asks_of_its_session() {
        use ProtocolVersion::{V5, V311};
        assert_eq!(connecting(V311, true, 0).persistence(), None);
        assert_eq!(connecting(V311, false, 0).persistence(), Some(0), "the broker's default expiry");
        assert_eq!(connecting(V5, false, 0).persistence(), None, "MQTT 5 without an expiry keeps nothing");
        assert_eq!(connecting(V5, true, 30).persistence(), Some(30));
        assert!(connecting(V5, true, 30).clean_start());
        assert!(!connecting(V5, false, 30).clean_start());
    }

    #[test]
    fn connack_says_session_present_and_a_capped_expiry() {
        use ProtocolVersion::{V5, V311};
        let connack = |packet: Packet<'_>| match packet {
            Packet::ConnAck(ack) => (ack.session_present, ack.properties.session_expiry_interval()),
            other => panic!("{other:?}"),
        };
        let mut v311 = connecting(V311, false, 0);
        v311.accept_session("kept".into(), false, namespace(), true, 86_400);
        assert_eq!(sent(&mut v311, V311, connack), [(true, None)]);
        assert!(v311.is_durable() && v311.is_connected());
        // Asked for an hour, granted ten minutes: MQTT 5 is told.
        let mut capped = connecting(V5, false, 3600);
        capped.accept_session("kept".into(), false, namespace(), false, 600);
        assert_eq!(sent(&mut capped, V5, connack), [(false, Some(600))]);
        let mut granted = connecting(V5, false, 600);
        granted.accept_session("kept".into(), false, namespace(), true, 600);
        assert_eq!(sent(&mut granted, V5, connack), [(true, None)], "granted as asked: nothing to say");
        // Not kept: MQTT 5 is told 0, and Session Present is never set.
        let mut plain = connecting(V5, true, 600);
        plain.accept("kept".into(), false, namespace());
        assert_eq!(sent(&mut plain, V5, connack), [(false, Some(0))]);
        assert!(!plain.is_durable());
    }

    #[test]
    fn a_durable_session_sends_the_queues_messages_and_hands_pubacks_to_the_broker() {
        let version = ProtocolVersion::V311;
        let mut session = connecting(version, false, 0);
        session.accept_session("kept".into(), false, namespace(), true, 60);
        sent(&mut session, version, |_| ());
        let resend = Transmit { packet_id: 7, delivery: message("old"), dup: true, seq: 1 };
        let fresh = Transmit { packet_id: 8, delivery: message("new"), dup: false, seq: 2 };
        assert_eq!(session.deliver_qos1(&resend), Ok(true));
        assert_eq!(session.deliver_qos1(&fresh), Ok(true));
        // Whatever else reaches it goes at QoS 0: the broker chose.
        let mqtt_qos1 = Delivery::from_mqtt(message("live").message().clone(), QoS::AtLeastOnce, None);
        session.deliver(&mqtt_qos1).unwrap();
        let publishes = sent(&mut session, version, |packet| match packet {
            Packet::Publish(p) => (p.payload.to_vec(), p.qos, p.packet_id, p.dup),
            other => panic!("{other:?}"),
        });
        assert_eq!(
            publishes,
            [
                (b"old".to_vec(), QoS::AtLeastOnce, Some(7), true),
                (b"new".to_vec(), QoS::AtLeastOnce, Some(8), false),
                (b"live".to_vec(), QoS::AtMostOnce, None, false),
            ]
        );
        assert_eq!(session.inflight(), 0, "the connection's own window is not used");
        let puback = to_vec(&Packet::PubAck(Ack { packet_id: 7, reason: 0, properties: Properties::EMPTY }), version);
        assert!(matches!(
            session.handle_input(now(), &puback),
            Ok(Step::Request { request: Request::PubAck { packet_id: 7 }, consumed: 4 })
        ));
    }

    #[test]
    fn a_publisher_waiting_for_max_inflight_pubacks_is_not_read() {
        use crate::mqtt::packet::{Disconnect, Publish};
        let version = ProtocolVersion::V5;
        let mut session = connecting(version, true, 0);
        session.config.max_inflight = 2;
        session.accept("pub".into(), false, namespace());
        let publish = |id| {
            let publish = Publish {
                dup: false,
                qos: QoS::AtLeastOnce,
                retain: false,
                topic: "t",
                packet_id: Some(id),
                properties: Properties::EMPTY,
                payload: b"x",
            };
            to_vec(&Packet::Publish(publish), version)
        };
        for id in [1, 2] {
            assert!(session.wants_read());
            let bytes = publish(id);
            assert!(matches!(session.handle_input(now(), &bytes), Ok(Step::Request { .. })));
        }
        assert!(!session.wants_read(), "two PUBACKs held for a commit: nothing more is read");
        session.pub_ack(1, crate::mqtt::ReasonCode::Success);
        assert!(session.wants_read());
        // DISCONNECT 0x04 is told to the broker, which holds the will.
        let bye = Disconnect { reason: 0x04, properties: Properties::EMPTY };
        let _ = session.handle_input(now(), &to_vec(&Packet::Disconnect(bye), version));
        assert!(session.disconnected_with_will());
    }

    #[test]
    fn a_queued_message_larger_than_the_client_takes_is_skipped() {
        let version = ProtocolVersion::V5;
        let mut properties = PropertiesBuf::new();
        properties.push(Property::MaximumPacketSize(32)).push(Property::SessionExpiryInterval(60));
        let connect = Connect {
            version,
            client_id: "small",
            clean_start: false,
            keep_alive: 0,
            will: None,
            username: None,
            password: None,
            properties: properties.as_properties(),
        };
        let mut session = ServerSession::new(now(), &SessionConfig::default());
        let _ = session.handle_input(now(), &to_vec(&Packet::Connect(connect), version));
        session.accept_session("small".into(), false, namespace(), false, 60);
        let big = Transmit { packet_id: 1, delivery: message(&"x".repeat(64)), dup: false, seq: 1 };
        assert_eq!(session.deliver_qos1(&big), Ok(false));
        assert_eq!(sent(&mut session, version, |_| ()).len(), 1, "CONNACK alone");
    }
}
