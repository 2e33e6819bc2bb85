//! MQTT control packets as values borrowing from the bytes they were decoded
//! from (or that the caller built them from), and MQTT 5 properties.

use std::fmt;

/// The protocol level a CONNECT names; fixed for the rest of the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ProtocolVersion {
    /// MQTT 3.1.1 (protocol level 4).
    V311 = 4,
    /// MQTT 5.0 (protocol level 5).
    V5 = 5,
}

/// A quality of service level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum QoS {
    /// QoS 0: at most once.
    AtMostOnce = 0,
    /// QoS 1: at least once.
    AtLeastOnce = 1,
    /// QoS 2: exactly once (recognised; tinymq does not offer it).
    ExactlyOnce = 2,
}

impl QoS {
    /// The level for two bits' value, `None` for 3.
    pub fn from_u8(value: u8) -> Option<Self> {
        match value {
            0 => Some(QoS::AtMostOnce),
            1 => Some(QoS::AtLeastOnce),
            2 => Some(QoS::ExactlyOnce),
            _ => None,
        }
    }
}

/// MQTT 5 reason codes (MQTT 5.0 section 2.4). Packets carry the byte; these
/// name the values tinymq sends or checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
#[non_exhaustive]
pub enum ReasonCode {
    /// 0x00: success, normal disconnection, granted QoS 0.
    Success = 0x00,
    /// 0x01: granted QoS 1.
    GrantedQos1 = 0x01,
    /// 0x02: granted QoS 2.
    GrantedQos2 = 0x02,
    /// 0x04: disconnect with will message.
    DisconnectWithWill = 0x04,
    /// 0x10: no matching subscribers.
    NoMatchingSubscribers = 0x10,
    /// 0x11: no subscription existed.
    NoSubscriptionExisted = 0x11,
    /// 0x80: unspecified error.
    UnspecifiedError = 0x80,
    /// 0x81: malformed packet.
    MalformedPacket = 0x81,
    /// 0x82: protocol error.
    ProtocolError = 0x82,
    /// 0x83: implementation specific error.
    ImplementationSpecificError = 0x83,
    /// 0x84: unsupported protocol version.
    UnsupportedProtocolVersion = 0x84,
    /// 0x85: client identifier not valid.
    ClientIdentifierNotValid = 0x85,
    /// 0x86: bad user name or password.
    BadUserNameOrPassword = 0x86,
    /// 0x87: not authorized.
    NotAuthorized = 0x87,
    /// 0x88: server unavailable.
    ServerUnavailable = 0x88,
    /// 0x89: server busy.
    ServerBusy = 0x89,
    /// 0x8B: server shutting down.
    ServerShuttingDown = 0x8B,
    /// 0x8C: bad authentication method.
    BadAuthenticationMethod = 0x8C,
    /// 0x8D: keep alive timeout.
    KeepAliveTimeout = 0x8D,
    /// 0x8E: session taken over.
    SessionTakenOver = 0x8E,
    /// 0x8F: topic filter invalid.
    TopicFilterInvalid = 0x8F,
    /// 0x90: topic name invalid.
    TopicNameInvalid = 0x90,
    /// 0x91: packet identifier in use.
    PacketIdentifierInUse = 0x91,
    /// 0x92: packet identifier not found.
    PacketIdentifierNotFound = 0x92,
    /// 0x93: receive maximum exceeded.
    ReceiveMaximumExceeded = 0x93,
    /// 0x94: topic alias invalid.
    TopicAliasInvalid = 0x94,
    /// 0x95: packet too large.
    PacketTooLarge = 0x95,
    /// 0x97: quota exceeded.
    QuotaExceeded = 0x97,
    /// 0x99: payload format invalid.
    PayloadFormatInvalid = 0x99,
    /// 0x9A: retain not supported.
    RetainNotSupported = 0x9A,
    /// 0x9B: QoS not supported.
    QosNotSupported = 0x9B,
    /// 0x9E: shared subscriptions not supported.
    SharedSubscriptionsNotSupported = 0x9E,
    /// 0xA1: subscription identifiers not supported.
    SubscriptionIdentifiersNotSupported = 0xA1,
    /// 0xA2: wildcard subscriptions not supported.
    WildcardSubscriptionsNotSupported = 0xA2,
}

impl ReasonCode {
    /// The MQTT 3.1.1 CONNACK return code closest to this refusal
    /// (3.1.1 section 3.2.2.3): 1 unacceptable protocol version, 2 identifier
    /// rejected, 3 server unavailable, 4 bad user name or password, 5 not
    /// authorized.
    pub fn v311_connack_code(self) -> u8 {
        match self {
            ReasonCode::Success => 0,
            ReasonCode::UnsupportedProtocolVersion => 1,
            ReasonCode::ClientIdentifierNotValid => 2,
            ReasonCode::BadUserNameOrPassword => 4,
            ReasonCode::NotAuthorized | ReasonCode::BadAuthenticationMethod => 5,
            _ => 3,
        }
    }
}

impl fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?} ({:#04x})", *self as u8)
    }
}

/// One MQTT 5 property (MQTT 5.0 section 2.2.2.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)] // each variant is the property of the same name in the spec
pub enum Property<'a> {
    PayloadFormatIndicator(u8),
    MessageExpiryInterval(u32),
    ContentType(&'a str),
    ResponseTopic(&'a str),
    CorrelationData(&'a [u8]),
    SubscriptionIdentifier(u32),
    SessionExpiryInterval(u32),
    AssignedClientIdentifier(&'a str),
    ServerKeepAlive(u16),
    AuthenticationMethod(&'a str),
    AuthenticationData(&'a [u8]),
    RequestProblemInformation(u8),
    WillDelayInterval(u32),
    RequestResponseInformation(u8),
    ResponseInformation(&'a str),
    ServerReference(&'a str),
    ReasonString(&'a str),
    ReceiveMaximum(u16),
    TopicAliasMaximum(u16),
    TopicAlias(u16),
    MaximumQos(u8),
    RetainAvailable(u8),
    UserProperty(&'a str, &'a str),
    MaximumPacketSize(u32),
    WildcardSubscriptionAvailable(u8),
    SubscriptionIdentifierAvailable(u8),
    SharedSubscriptionAvailable(u8),
}

impl Property<'_> {
    /// The property's identifier byte.
    pub fn id(&self) -> u8 {
        use Property::*;
        match self {
            PayloadFormatIndicator(_) => 0x01,
            MessageExpiryInterval(_) => 0x02,
            ContentType(_) => 0x03,
            ResponseTopic(_) => 0x08,
            CorrelationData(_) => 0x09,
            SubscriptionIdentifier(_) => 0x0B,
            SessionExpiryInterval(_) => 0x11,
            AssignedClientIdentifier(_) => 0x12,
            ServerKeepAlive(_) => 0x13,
            AuthenticationMethod(_) => 0x15,
            AuthenticationData(_) => 0x16,
            RequestProblemInformation(_) => 0x17,
            WillDelayInterval(_) => 0x18,
            RequestResponseInformation(_) => 0x19,
            ResponseInformation(_) => 0x1A,
            ServerReference(_) => 0x1C,
            ReasonString(_) => 0x1F,
            ReceiveMaximum(_) => 0x21,
            TopicAliasMaximum(_) => 0x22,
            TopicAlias(_) => 0x23,
            MaximumQos(_) => 0x24,
            RetainAvailable(_) => 0x25,
            UserProperty(..) => 0x26,
            MaximumPacketSize(_) => 0x27,
            WildcardSubscriptionAvailable(_) => 0x28,
            SubscriptionIdentifierAvailable(_) => 0x29,
            SharedSubscriptionAvailable(_) => 0x2A,
        }
    }
}

/// The validated property block of an MQTT 5 packet, kept as its bytes
/// (without the length prefix) so that it is passed through unchanged.
/// Empty in MQTT 3.1.1.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Properties<'a> {
    pub(crate) raw: &'a [u8],
}

impl<'a> Properties<'a> {
    /// No properties.
    pub const EMPTY: Properties<'static> = Properties { raw: &[] };

    /// The block's bytes, as on the wire after the length.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.raw
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// The properties in wire order.
    pub fn iter(&self) -> impl Iterator<Item = Property<'a>> + 'a {
        let mut reader = super::decode::Reader::new(self.raw);
        // The block was validated (or built by `PropertiesBuf`), so a read
        // error cannot happen; it would end the iteration.
        std::iter::from_fn(move || if reader.is_empty() { None } else { reader.property().ok() })
    }

    /// Session Expiry Interval, in seconds.
    pub fn session_expiry_interval(&self) -> Option<u32> {
        self.iter().find_map(|p| if let Property::SessionExpiryInterval(v) = p { Some(v) } else { None })
    }

    /// Receive Maximum (never 0).
    pub fn receive_maximum(&self) -> Option<u16> {
        self.iter().find_map(|p| if let Property::ReceiveMaximum(v) = p { Some(v) } else { None })
    }

    /// Maximum Packet Size (never 0).
    pub fn maximum_packet_size(&self) -> Option<u32> {
        self.iter().find_map(|p| if let Property::MaximumPacketSize(v) = p { Some(v) } else { None })
    }

    /// Topic Alias (never 0).
    pub fn topic_alias(&self) -> Option<u16> {
        self.iter().find_map(|p| if let Property::TopicAlias(v) = p { Some(v) } else { None })
    }

    /// Will Delay Interval, in seconds.
    pub fn will_delay_interval(&self) -> Option<u32> {
        self.iter().find_map(|p| if let Property::WillDelayInterval(v) = p { Some(v) } else { None })
    }

    /// The user properties, in order, duplicates kept.
    pub fn user_properties(&self) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        self.iter().filter_map(|p| if let Property::UserProperty(k, v) = p { Some((k, v)) } else { None })
    }
}

/// An owned property block being built, for packets the broker sends.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PropertiesBuf {
    raw: Vec<u8>,
}

impl PropertiesBuf {
    /// An empty block.
    pub fn new() -> Self {
        PropertiesBuf::default()
    }

    /// Appends one property. The caller keeps to the spec's rules on which
    /// properties a packet may carry; the encoder does not check them.
    ///
    /// # Panics
    ///
    /// If a string or binary value is longer than 65535 bytes.
    pub fn push(&mut self, property: Property<'_>) -> &mut Self {
        super::encode::put_property(&mut self.raw, &property);
        self
    }

    /// The block as [`Properties`] for a packet.
    pub fn as_properties(&self) -> Properties<'_> {
        Properties { raw: &self.raw }
    }
}

/// The will message of a CONNECT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Will<'a> {
    /// Will topic (a topic name).
    pub topic: &'a str,
    /// Will payload.
    pub payload: &'a [u8],
    /// Will QoS.
    pub qos: QoS,
    /// Will retain.
    pub retain: bool,
    /// Will properties (MQTT 5).
    pub properties: Properties<'a>,
}

/// CONNECT (client → server).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Connect<'a> {
    /// The protocol level, which fixes the version for the connection.
    pub version: ProtocolVersion,
    /// Client identifier; may be empty (the server assigns one).
    pub client_id: &'a str,
    /// Clean Session (3.1.1) / Clean Start (5).
    pub clean_start: bool,
    /// Keep alive, in seconds; 0 turns it off.
    pub keep_alive: u16,
    /// The will, if any.
    pub will: Option<Will<'a>>,
    /// User name, if any.
    pub username: Option<&'a str>,
    /// Password, if any.
    pub password: Option<&'a [u8]>,
    /// CONNECT properties (MQTT 5).
    pub properties: Properties<'a>,
}

/// CONNACK (server → client).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnAck<'a> {
    /// Session present.
    pub session_present: bool,
    /// MQTT 5 reason code, or the 3.1.1 return code (0 to 5).
    pub code: u8,
    /// CONNACK properties (MQTT 5).
    pub properties: Properties<'a>,
}

/// PUBLISH (both directions).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Publish<'a> {
    /// DUP flag.
    pub dup: bool,
    /// QoS level.
    pub qos: QoS,
    /// RETAIN flag.
    pub retain: bool,
    /// Topic name; empty in MQTT 5 when a Topic Alias property stands for it.
    pub topic: &'a str,
    /// Packet identifier, present exactly when `qos` is above 0.
    pub packet_id: Option<u16>,
    /// PUBLISH properties (MQTT 5).
    pub properties: Properties<'a>,
    /// Application message.
    pub payload: &'a [u8],
}

/// PUBACK, PUBREC, PUBREL or PUBCOMP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ack<'a> {
    /// Packet identifier.
    pub packet_id: u16,
    /// Reason code (MQTT 5; 0 when absent and always in 3.1.1).
    pub reason: u8,
    /// Properties (MQTT 5).
    pub properties: Properties<'a>,
}

/// Subscription options of one SUBSCRIBE filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SubscriptionOptions {
    /// Maximum QoS asked for.
    pub qos: QoS,
    /// No Local (MQTT 5).
    pub no_local: bool,
    /// Retain As Published (MQTT 5).
    pub retain_as_published: bool,
    /// Retain Handling, 0 to 2 (MQTT 5).
    pub retain_handling: u8,
}

impl SubscriptionOptions {
    /// Options asking only for `qos`.
    pub fn qos(qos: QoS) -> Self {
        SubscriptionOptions { qos, no_local: false, retain_as_published: false, retain_handling: 0 }
    }
}

/// One topic filter of a SUBSCRIBE, not yet checked as a filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SubscribeFilter<'a> {
    /// The topic filter.
    pub filter: &'a str,
    /// Its options.
    pub options: SubscriptionOptions,
}

/// SUBSCRIBE (client → server); at least one filter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscribe<'a> {
    /// Packet identifier.
    pub packet_id: u16,
    /// Properties (MQTT 5).
    pub properties: Properties<'a>,
    /// The filters, in order.
    pub filters: Vec<SubscribeFilter<'a>>,
}

/// SUBACK (server → client).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SubAck<'a> {
    /// Packet identifier.
    pub packet_id: u16,
    /// Properties (MQTT 5).
    pub properties: Properties<'a>,
    /// One reason (return) code per filter.
    pub codes: &'a [u8],
}

/// UNSUBSCRIBE (client → server); at least one filter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unsubscribe<'a> {
    /// Packet identifier.
    pub packet_id: u16,
    /// Properties (MQTT 5).
    pub properties: Properties<'a>,
    /// The filters, in order.
    pub filters: Vec<&'a str>,
}

/// UNSUBACK (server → client).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnsubAck<'a> {
    /// Packet identifier.
    pub packet_id: u16,
    /// Properties (MQTT 5).
    pub properties: Properties<'a>,
    /// One reason code per filter (MQTT 5; empty in 3.1.1).
    pub codes: &'a [u8],
}

/// DISCONNECT (both directions in MQTT 5, client → server in 3.1.1), or AUTH.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Disconnect<'a> {
    /// Reason code (0 when absent and always in 3.1.1).
    pub reason: u8,
    /// Properties (MQTT 5).
    pub properties: Properties<'a>,
}

/// One MQTT control packet.
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(missing_docs)] // each variant is the packet of the same name
pub enum Packet<'a> {
    Connect(Connect<'a>),
    ConnAck(ConnAck<'a>),
    Publish(Publish<'a>),
    PubAck(Ack<'a>),
    /// Recognised so a broker without QoS 2 can refuse it.
    PubRec(Ack<'a>),
    /// Recognised so a broker without QoS 2 can refuse it.
    PubRel(Ack<'a>),
    /// Recognised so a broker without QoS 2 can refuse it.
    PubComp(Ack<'a>),
    Subscribe(Subscribe<'a>),
    SubAck(SubAck<'a>),
    Unsubscribe(Unsubscribe<'a>),
    UnsubAck(UnsubAck<'a>),
    PingReq,
    PingResp,
    Disconnect(Disconnect<'a>),
    /// MQTT 5 AUTH, recognised so a broker without enhanced
    /// authentication can refuse it.
    Auth(Disconnect<'a>),
}

impl Packet<'_> {
    /// The packet type, the high four bits of the first byte.
    pub fn packet_type(&self) -> u8 {
        match self {
            Packet::Connect(_) => 1,
            Packet::ConnAck(_) => 2,
            Packet::Publish(_) => 3,
            Packet::PubAck(_) => 4,
            Packet::PubRec(_) => 5,
            Packet::PubRel(_) => 6,
            Packet::PubComp(_) => 7,
            Packet::Subscribe(_) => 8,
            Packet::SubAck(_) => 9,
            Packet::Unsubscribe(_) => 10,
            Packet::UnsubAck(_) => 11,
            Packet::PingReq => 12,
            Packet::PingResp => 13,
            Packet::Disconnect(_) => 14,
            Packet::Auth(_) => 15,
        }
    }
}
