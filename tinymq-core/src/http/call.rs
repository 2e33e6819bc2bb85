//! What a request asks for: the path and parameters of a parsed request
//! turned into a [`Call`], or the error the peer gets. Pure: no broker
//! state, so it can be tested and fuzzed alone.

use std::borrow::Cow;

use super::encoding::{Encoding, EncodingMode, decode_params, parse_form};
use super::request::{Method, RequestHead};
use super::ui::UiFile;
use crate::auth::Fault;
use crate::topic::{Filter, TopicLimits, TopicName};

/// Filters one event stream may name.
pub const MAX_STREAM_FILTERS: usize = 16;

/// One request's meaning.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Call {
    /// Moustique `/POST`: publish and store as the topic's value.
    Post {
        /// The topic name.
        topic: String,
        /// The payload.
        message: Vec<u8>,
        /// The sender's name.
        from: Option<String>,
        /// The sender's timestamp, Unix seconds.
        updated_time: Option<u64>,
    },
    /// Moustique `/SUBSCRIBE`.
    Subscribe {
        /// The filter.
        filter: Filter,
        /// The client's name.
        client: String,
    },
    /// Moustique `/PICKUP`.
    Pickup {
        /// The client's name.
        client: String,
    },
    /// Moustique `/PUTVAL`: store without publishing.
    PutVal {
        /// The value's name.
        name: String,
        /// The value.
        value: Vec<u8>,
        /// The sender's name.
        from: Option<String>,
        /// The sender's timestamp.
        updated_time: Option<u64>,
    },
    /// Moustique `/GETVAL`.
    GetVal {
        /// The topic or value name.
        topic: String,
    },
    /// Moustique `/GETVALSBYREGEX`.
    GetValsByRegex {
        /// The regular expression, compiled later under a size limit.
        pattern: String,
    },
    /// Moustique `/VERSION`.
    Version,
    /// Moustique `/STATS`, or the plain API's `/api/v1/stats` (`plain`).
    Stats {
        /// JSON as it is, not Moustique-encoded.
        plain: bool,
    },
    /// Moustique `/CLIENTS`, or the plain API's `/api/v1/clients` (`plain`).
    Clients {
        /// JSON as it is, not Moustique-encoded.
        plain: bool,
    },
    /// Moustique `/TOPICS`.
    Topics,
    /// Moustique `/POSTERS`.
    Posters,
    /// Moustique `/CROOKS`: the peers throttled for bad requests.
    Crooks,
    /// `/PEERHOSTS` (the Moustique clients' `getpeerhosts`): the addresses
    /// that made requests lately.
    PeerHosts,
    /// Moustique `/LOG`: the namespace's recent requests.
    Log,
    /// Moustique `/STATUS`: an HTML page.
    Status,
    /// `/`: the web UI's page.
    Index,
    /// `GET /ui/...`: a file the page loads.
    UiFile(UiFile),
    /// `POST /api/v1/publish`.
    Publish {
        /// The topic name.
        topic: String,
        /// The raw body.
        payload: Vec<u8>,
        /// Also store it as the topic's value.
        retain: bool,
        /// The sender's name (`from` in the query).
        from: Option<String>,
    },
    /// `GET /api/v1/events`: a Server-Sent Events stream.
    Events {
        /// The filters, at least one.
        filters: Vec<Filter>,
    },
    /// `GET /api/v1/value`.
    Value {
        /// The topic.
        topic: String,
    },
    /// `GET /api/v1/values`.
    Values {
        /// The filter the topics must match.
        filter: Filter,
    },
    /// `GET /api/v1/health`.
    Health,
    /// `GET /metrics`.
    Metrics,
    /// `OPTIONS` on any path: a CORS preflight.
    Preflight,
}

impl Call {
    /// Whether this is a call of the Moustique API (upper-case paths).
    pub fn is_moustique(&self) -> bool {
        matches!(
            self,
            Call::Post { .. }
                | Call::Subscribe { .. }
                | Call::Pickup { .. }
                | Call::PutVal { .. }
                | Call::GetVal { .. }
                | Call::GetValsByRegex { .. }
                | Call::Version
                | Call::Stats { plain: false }
                | Call::Clients { plain: false }
                | Call::Topics
                | Call::Posters
                | Call::Crooks
                | Call::PeerHosts
                | Call::Log
                | Call::Status
        )
    }

    /// The call as `/LOG` shows it: its path and what it names (topic,
    /// client, value), never a payload or a password.
    pub fn log_text(&self) -> String {
        let (path, subject) = match self {
            Call::Post { topic, from, .. } => {
                ("/POST", format!("{topic} from {}", from.as_deref().unwrap_or("UNKNOWN")))
            }
            Call::Subscribe { filter, client } => ("/SUBSCRIBE", format!("{} by {client}", filter.as_str())),
            Call::Pickup { client } => ("/PICKUP", client.clone()),
            Call::PutVal { name, .. } => ("/PUTVAL", name.clone()),
            Call::GetVal { topic } => ("/GETVAL", topic.clone()),
            Call::GetValsByRegex { pattern } => ("/GETVALSBYREGEX", pattern.clone()),
            Call::Version => ("/VERSION", String::new()),
            Call::Stats { .. } => ("/STATS", String::new()),
            Call::Clients { .. } => ("/CLIENTS", String::new()),
            Call::Topics => ("/TOPICS", String::new()),
            Call::Posters => ("/POSTERS", String::new()),
            Call::Crooks => ("/CROOKS", String::new()),
            Call::PeerHosts => ("/PEERHOSTS", String::new()),
            Call::Log => ("/LOG", String::new()),
            Call::Status => ("/STATUS", String::new()),
            _ => ("/api", String::new()),
        };
        if subject.is_empty() { path.to_owned() } else { format!("{path} {subject}") }
    }
}

/// A call and the credentials that came with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiRequest {
    /// What is asked.
    pub call: Call,
    /// `username` and `password` parameters, or HTTP Basic.
    pub credentials: Option<(String, String)>,
    /// The order the request's Moustique parameters came in, which its
    /// answer uses too ([`Encoding::Current`] for the other calls).
    pub encoding: Encoding,
}

/// Why a request cannot be served; [`ApiError::status`] is the reply.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// No such path.
    #[error("no such path: {0}")]
    NotFound(String),
    /// The path exists but not with this method.
    #[error("method not allowed on this path")]
    MethodNotAllowed,
    /// A parameter is missing or malformed.
    #[error("{0}")]
    BadRequest(Cow<'static, str>),
}

impl ApiError {
    /// The bad request this refusal charges to the peer's budget: a path
    /// the broker does not serve, what scanners probe for. A parameter
    /// missing or malformed in a request that parsed is a client's mistake,
    /// and clients retry their mistakes (Moustique's Perl client five
    /// times): it is answered 400 and costs nothing.
    pub fn fault(&self) -> Option<Fault> {
        match self {
            ApiError::NotFound(_) => Some(Fault::UnknownPath),
            ApiError::MethodNotAllowed | ApiError::BadRequest(_) => None,
        }
    }

    /// The HTTP status code.
    pub fn status(&self) -> u16 {
        match self {
            ApiError::NotFound(_) => 404,
            ApiError::MethodNotAllowed => 405,
            ApiError::BadRequest(_) => 400,
        }
    }
}

fn bad(text: impl Into<Cow<'static, str>>) -> ApiError {
    ApiError::BadRequest(text.into())
}

/// Request parameters, decoded once.
struct Params {
    pairs: Vec<(String, Vec<u8>)>,
}

impl Params {
    fn get(&self, name: &str) -> Option<&[u8]> {
        self.pairs.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_slice())
    }

    fn text(&self, name: &'static str) -> Result<Option<String>, ApiError> {
        self.get(name)
            .map(|v| String::from_utf8(v.to_vec()).map_err(|_| bad(format!("parameter {name} is not UTF-8 text"))))
            .transpose()
    }

    fn required(&self, name: &'static str) -> Result<String, ApiError> {
        match self.text(name)? {
            Some(value) if !value.is_empty() => Ok(value),
            _ => Err(bad(format!("missing parameter {name}"))),
        }
    }

    /// An optional Unix time. One that is missing or does not parse is
    /// `None` (the server's clock), as Moustique has it: never a 400.
    fn time(&self, name: &'static str) -> Option<u64> {
        let value = std::str::from_utf8(self.get(name)?).ok()?.trim();
        // Clients in other languages send floats ("1763802000.25").
        let whole = value.split_once('.').map_or(value, |(whole, _)| whole);
        whole.parse().ok()
    }

    fn credentials(&self) -> Result<Option<(String, String)>, ApiError> {
        match (self.text("username")?, self.text("password")?) {
            (None, None) => Ok(None),
            (user, password) => Ok(Some((user.unwrap_or_default(), password.unwrap_or_default()))),
        }
    }
}

fn form(input: &[u8]) -> Result<Vec<(String, Vec<u8>)>, ApiError> {
    parse_form(input).map_err(|e| bad(e.to_string()))
}

/// Moustique parameters: the query string and, for POST and PUT, the form
/// body, each value decoded in the request's order (or raw), and that order.
fn moustique_params(head: &RequestHead, body: &[u8], mode: EncodingMode) -> Result<(Params, Encoding), ApiError> {
    let mut pairs = form(head.query.as_bytes())?;
    if matches!(head.method, Method::Post | Method::Put) {
        pairs.extend(form(body)?);
    }
    let encoding = decode_params(&mut pairs, mode);
    Ok((Params { pairs }, encoding))
}

fn topic_name(topic: String, limits: &TopicLimits) -> Result<String, ApiError> {
    TopicName::new(&topic, limits).map_err(|e| bad(format!("topic {topic:?}: {e}")))?;
    // `$` topics are the broker's own (`$SYS/...`), read-only to clients.
    if topic.starts_with('$') {
        return Err(bad(format!("topic {topic:?}: topics beginning with $ are the broker's")));
    }
    Ok(topic)
}

fn filter(text: &str, limits: &TopicLimits) -> Result<Filter, ApiError> {
    Filter::new(text, limits).map_err(|e| bad(format!("filter {text:?}: {e}")))
}

/// Reads the call from a parsed head and its whole body; Moustique
/// parameters are decoded as `mode` says.
pub fn parse_call(
    head: &RequestHead,
    body: &[u8],
    limits: &TopicLimits,
    mode: EncodingMode,
) -> Result<ApiRequest, ApiError> {
    let plain = |call, credentials| ApiRequest { call, credentials, encoding: Encoding::Current };
    if head.method == Method::Options {
        return Ok(plain(Call::Preflight, None));
    }
    let path = head.path.trim_matches('/');
    if let Some(rest) = path.strip_prefix("api/v1/") {
        return parse_plain(rest, head, body, limits);
    }
    if let Some(file) = UiFile::at(path) {
        require(head, Method::Get)?;
        return Ok(plain(Call::UiFile(file), basic(head)));
    }
    if path == "metrics" {
        require(head, Method::Get)?;
        return Ok(plain(Call::Metrics, basic(head)));
    }
    let (params, encoding) = moustique_params(head, body, mode)?;
    let call = match path {
        "POST" => Call::Post {
            topic: topic_name(params.required("topic")?, limits)?,
            message: params.get("message").ok_or_else(|| bad("missing parameter message"))?.to_vec(),
            from: params.text("from")?.filter(|f| !f.is_empty()),
            updated_time: params.time("updated_time"),
        },
        "SUBSCRIBE" => {
            Call::Subscribe { filter: filter(&params.required("topic")?, limits)?, client: params.required("client")? }
        }
        "PICKUP" => Call::Pickup { client: params.required("client")? },
        "PUTVAL" => {
            let value = params.get("val").or_else(|| params.get("message"));
            Call::PutVal {
                name: params.required("valname")?,
                value: value.ok_or_else(|| bad("missing parameter val"))?.to_vec(),
                from: params.text("from")?.filter(|f| !f.is_empty()),
                updated_time: params.time("updated_time"),
            }
        }
        "GETVAL" => Call::GetVal { topic: params.required("topic")? },
        "GETVALSBYREGEX" => Call::GetValsByRegex { pattern: params.required("topic")? },
        "VERSION" => Call::Version,
        "STATS" => Call::Stats { plain: false },
        "CLIENTS" => Call::Clients { plain: false },
        "TOPICS" => Call::Topics,
        "POSTERS" => Call::Posters,
        "CROOKS" => Call::Crooks,
        "PEERHOSTS" => Call::PeerHosts,
        "LOG" => Call::Log,
        "STATUS" => Call::Status,
        "" => Call::Index,
        _ => return Err(ApiError::NotFound(head.path.clone())),
    };
    // Parameters, as the Moustique clients send them; else HTTP Basic, as
    // a browser opening the page does.
    let credentials = match params.credentials()? {
        Some(credentials) => Some(credentials),
        None => basic(head),
    };
    Ok(ApiRequest { call, credentials, encoding })
}

fn require(head: &RequestHead, method: Method) -> Result<(), ApiError> {
    if head.method == method { Ok(()) } else { Err(ApiError::MethodNotAllowed) }
}

fn basic(head: &RequestHead) -> Option<(String, String)> {
    head.basic_auth.clone()
}

/// The plain API: parameters in the query string, not encoded.
fn parse_plain(rest: &str, head: &RequestHead, body: &[u8], limits: &TopicLimits) -> Result<ApiRequest, ApiError> {
    let params = Params { pairs: form(head.query.as_bytes())? };
    let call = match rest {
        "publish" => {
            require(head, Method::Post).or_else(|_| require(head, Method::Put))?;
            let retain = match params.text("retain")?.as_deref() {
                None | Some("0" | "false" | "") => false,
                Some("1" | "true") => true,
                Some(_) => return Err(bad("retain must be 0, 1, true or false")),
            };
            Call::Publish {
                topic: topic_name(params.required("topic")?, limits)?,
                payload: body.to_vec(),
                retain,
                from: params.text("from")?.filter(|f| !f.is_empty()),
            }
        }
        "events" => {
            require(head, Method::Get)?;
            let filters = params
                .pairs
                .iter()
                .filter(|(name, _)| name == "topic")
                .map(|(_, value)| {
                    let text = std::str::from_utf8(value).map_err(|_| bad("parameter topic is not UTF-8 text"))?;
                    filter(text, limits)
                })
                .collect::<Result<Vec<_>, _>>()?;
            if filters.is_empty() {
                return Err(bad("missing parameter topic"));
            }
            if filters.len() > MAX_STREAM_FILTERS {
                return Err(bad(format!("at most {MAX_STREAM_FILTERS} topic filters per stream")));
            }
            Call::Events { filters }
        }
        "value" => {
            require(head, Method::Get)?;
            Call::Value { topic: params.required("topic")? }
        }
        "values" => {
            require(head, Method::Get)?;
            Call::Values { filter: filter(&params.required("match")?, limits)? }
        }
        "stats" => {
            require(head, Method::Get)?;
            Call::Stats { plain: true }
        }
        "clients" => {
            require(head, Method::Get)?;
            Call::Clients { plain: true }
        }
        "health" => {
            require(head, Method::Get)?;
            Call::Health
        }
        _ => return Err(ApiError::NotFound(head.path.clone())),
    };
    // Basic first; the parameters serve clients that cannot set headers
    // (a browser's EventSource).
    let credentials = match basic(head) {
        Some(credentials) => Some(credentials),
        None => params.credentials()?,
    };
    Ok(ApiRequest { call, credentials, encoding: Encoding::Current })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::encoding::{Encoding, encode_value};

    fn head(method: Method, target: &str) -> RequestHead {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        RequestHead {
            method,
            path: path.into(),
            query: query.into(),
            keep_alive: true,
            content_length: 0,
            content_type: None,
            basic_auth: None,
            upgrade: Vec::new(),
        }
    }

    fn call(method: Method, target: &str, body: &str) -> Result<Call, ApiError> {
        parse_call(&head(method, target), body.as_bytes(), &TopicLimits::default(), EncodingMode::Auto).map(|r| r.call)
    }

    fn enc(text: &str) -> String {
        // Base64 uses + and / and =, which a form must percent-encode.
        encode_value(text.as_bytes(), Encoding::Current).replace('+', "%2B").replace('/', "%2F").replace('=', "%3D")
    }

    #[test]
    fn a_moustique_post_decodes_every_parameter() {
        let body = format!(
            "topic={}&message={}&from={}&updated_time={}",
            enc("/sensors/kitchen/t"),
            enc("23.1"),
            enc("app"),
            enc("1763802000")
        );
        assert_eq!(
            call(Method::Post, "/POST/", &body),
            Ok(Call::Post {
                topic: "/sensors/kitchen/t".into(),
                message: b"23.1".to_vec(),
                from: Some("app".into()),
                updated_time: Some(1_763_802_000),
            })
        );
        // The same as a GET with a query string, and with raw values.
        assert!(
            matches!(call(Method::Get, "POST?topic=a/b&message=x", ""), Ok(Call::Post { topic, .. }) if topic == "a/b")
        );
    }

    #[test]
    fn bad_parameters_are_400_and_unknown_paths_404() {
        let status = |method, target: &str, body: &str| call(method, target, body).unwrap_err().status();
        assert_eq!(status(Method::Post, "/POST", "message=x"), 400, "no topic");
        assert_eq!(status(Method::Post, "/POST", "topic=a/%2B&message=x"), 400, "a wildcard in a topic name");
        assert_eq!(status(Method::Post, "/POST", "topic=a&message=%zz"), 400, "bad percent-encoding");
        assert_eq!(status(Method::Post, "/SUBSCRIBE", "topic=a/%23/b&client=c"), 400, "# not last");
        assert_eq!(status(Method::Post, "/SUBSCRIBE", "topic=a"), 400, "no client");
        assert_eq!(status(Method::Get, "/NOPE", ""), 404);
        assert_eq!(status(Method::Get, "/api/v1/publish?topic=a", ""), 405);
        assert_eq!(status(Method::Get, "/api/v1/events", ""), 400);
    }

    #[test]
    fn an_updated_time_that_does_not_parse_is_the_servers_clock() {
        let time = |value: &str| match call(Method::Post, "/POST", &format!("topic=a&message=x&updated_time={value}")) {
            Ok(Call::Post { updated_time, .. }) => updated_time,
            other => panic!("{other:?}"),
        };
        assert_eq!(time("soon"), None);
        assert_eq!(time(""), None);
        assert_eq!(time("-5"), None);
        assert_eq!(time("1763802000"), Some(1_763_802_000));
        assert_eq!(time("1763802000.75"), Some(1_763_802_000), "a float from a client's clock");
        assert_eq!(time(&enc("1763802000")), Some(1_763_802_000));
    }

    #[test]
    fn the_answer_uses_the_order_the_request_came_in() {
        let legacy = |text: &str| {
            encode_value(text.as_bytes(), Encoding::Legacy).replace('+', "%2B").replace('/', "%2F").replace('=', "%3D")
        };
        let parse = |body: String, mode| {
            parse_call(&head(Method::Post, "/POST"), body.as_bytes(), &TopicLimits::default(), mode).unwrap()
        };
        let current = parse(format!("topic={}&message={}", enc("/a/b"), enc("1")), EncodingMode::Auto);
        assert_eq!(current.encoding, Encoding::Current);
        let old = parse(format!("topic={}&message={}", legacy("/a/b"), legacy("1")), EncodingMode::Auto);
        assert_eq!(old.encoding, Encoding::Legacy);
        assert!(matches!(old.call, Call::Post { ref topic, ref message, .. } if topic == "/a/b" && message == b"1"));
        // Pinned: a legacy request read as current keeps its raw values.
        let pinned = parse(format!("topic={}&message={}", legacy("/a/b"), legacy("1")), EncodingMode::Current);
        assert_eq!(pinned.encoding, Encoding::Current);
        assert!(matches!(pinned.call, Call::Post { ref topic, .. } if topic != "/a/b"));
        let version = parse_call(&head(Method::Get, "/VERSION"), b"", &TopicLimits::default(), EncodingMode::Auto);
        assert_eq!(version.unwrap().encoding, Encoding::Current, "no parameters: the current order");
    }

    #[test]
    fn only_unknown_paths_are_charged_to_the_peers_budget() {
        let fault = |method, target: &str, body: &str| call(method, target, body).unwrap_err().fault();
        assert_eq!(fault(Method::Get, "/NOPE", ""), Some(Fault::UnknownPath));
        assert_eq!(fault(Method::Post, "/POST", "message=x"), None, "a missing parameter is a mistake");
        assert_eq!(fault(Method::Post, "/SUBSCRIBE", "topic=a/%23/b&client=c"), None, "so is a bad filter");
        assert_eq!(fault(Method::Get, "/api/v1/publish?topic=a", ""), None, "and a wrong method");
    }

    #[test]
    fn putval_takes_val_or_message() {
        let putval = |body: &str| match call(Method::Put, "/PUTVAL", body) {
            Ok(Call::PutVal { value, .. }) => value,
            other => panic!("{other:?}"),
        };
        assert_eq!(putval(&format!("valname=v&val={}", enc("42"))), b"42");
        assert_eq!(putval("valname=v&message=7"), b"7");
    }

    #[test]
    fn the_plain_api_reads_its_query() {
        assert_eq!(
            call(Method::Post, "/api/v1/publish?topic=a%2Fb&retain=1", "raw bytes"),
            Ok(Call::Publish { topic: "a/b".into(), payload: b"raw bytes".to_vec(), retain: true, from: None })
        );
        match call(Method::Get, "/api/v1/events?topic=a/%2B&topic=%23", "") {
            Ok(Call::Events { filters }) => {
                assert_eq!(filters.iter().map(Filter::as_str).collect::<Vec<_>>(), ["a/+", "#"]);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(call(Method::Get, "/api/v1/clients", ""), Ok(Call::Clients { plain: true }));
        assert_eq!(call(Method::Get, "/ui/app.js", ""), Ok(Call::UiFile(UiFile::Script)));
        assert_eq!(call(Method::Post, "/ui/app.js", "").unwrap_err().status(), 405);
        assert_eq!(call(Method::Get, "/ui/other.js", "").unwrap_err().status(), 404);
        let many = (0..=MAX_STREAM_FILTERS).map(|i| format!("topic=t{i}")).collect::<Vec<_>>().join("&");
        assert_eq!(call(Method::Get, &format!("/api/v1/events?{many}"), "").unwrap_err().status(), 400);
    }

    #[test]
    fn credentials_come_as_parameters_or_basic_auth() {
        let request = parse_call(
            &head(Method::Post, "/PICKUP"),
            b"client=c&username=u&password=p",
            &TopicLimits::default(),
            EncodingMode::Auto,
        )
        .unwrap();
        assert_eq!(request.credentials, Some(("u".into(), "p".into())));
        let mut plain = head(Method::Get, "/api/v1/health");
        plain.basic_auth = Some(("u".into(), "p".into()));
        assert_eq!(
            parse_call(&plain, b"", &TopicLimits::default(), EncodingMode::Auto).unwrap().credentials,
            Some(("u".into(), "p".into()))
        );
        let query = head(Method::Get, "/api/v1/events?topic=a&username=u&password=p%3Aq");
        assert_eq!(
            parse_call(&query, b"", &TopicLimits::default(), EncodingMode::Auto).unwrap().credentials,
            Some(("u".into(), "p:q".into())),
            "the plain API takes the parameters too, not encoded"
        );
    }
}
