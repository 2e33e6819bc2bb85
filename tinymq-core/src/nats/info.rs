//! The JSON of `INFO` (server → client) and `CONNECT` (client → server).

use serde_json::{Map, Value, json};

use super::nkey::{NkeySeed, UserCreds};

/// At most this many `connect_urls` are taken from one INFO, so that a
/// server cannot grow the client's server list without bound.
pub const MAX_CONNECT_URLS: usize = 64;

/// What the client uses of the server's INFO. Unknown fields are ignored.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerInfo {
    /// The server's unique id.
    pub server_id: String,
    /// The server's configured name (may be empty).
    pub server_name: String,
    /// The server's version.
    pub version: String,
    /// Largest message the server accepts, headers included; 0 if not said.
    pub max_payload: usize,
    /// Whether the server supports `HPUB`/`HMSG`.
    pub headers: bool,
    /// Whether CONNECT must carry credentials.
    pub auth_required: bool,
    /// Whether the server insists on TLS (see [`super::NatsConfig::tls`]).
    pub tls_required: bool,
    /// Other servers of the cluster clients may connect to (`host:port`).
    pub connect_urls: Vec<String>,
    /// The server is in lame duck mode: it will close soon, so the client
    /// should move to another server.
    pub lame_duck: bool,
    /// What an NKEY user signs in CONNECT (empty if the server sent none).
    pub nonce: String,
}

/// INFO JSON that cannot be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("INFO is not a JSON object: {0}")]
pub struct InfoError(pub String);

impl ServerInfo {
    /// Reads INFO's JSON text.
    pub fn from_json(text: &str) -> Result<Self, InfoError> {
        let value: Value = serde_json::from_str(text).map_err(|e| InfoError(e.to_string()))?;
        let Value::Object(map) = value else { return Err(InfoError("not an object".into())) };
        let text = |key: &str| map.get(key).and_then(Value::as_str).unwrap_or_default().to_owned();
        let flag = |key: &str| map.get(key).and_then(Value::as_bool).unwrap_or(false);
        let connect_urls = map
            .get("connect_urls")
            .and_then(Value::as_array)
            .map(|urls| urls.iter().filter_map(Value::as_str).take(MAX_CONNECT_URLS).map(str::to_owned).collect())
            .unwrap_or_default();
        let max_payload = map.get("max_payload").and_then(Value::as_u64).unwrap_or(0);
        Ok(ServerInfo {
            server_id: text("server_id"),
            server_name: text("server_name"),
            version: text("version"),
            max_payload: usize::try_from(max_payload).unwrap_or(usize::MAX),
            headers: flag("headers"),
            auth_required: flag("auth_required"),
            tls_required: flag("tls_required"),
            connect_urls,
            lame_duck: flag("ldm"),
            nonce: text("nonce"),
        })
    }
}

/// How to authenticate in CONNECT.
#[derive(Clone, PartialEq, Eq, Default)]
pub enum Credentials {
    /// None.
    #[default]
    None,
    /// `user` and `pass`.
    UserPassword {
        /// The user name.
        user: String,
        /// The password.
        password: String,
    },
    /// `auth_token`.
    Token(String),
    /// `nkey`, and `sig`: the seed's signature of the server's nonce.
    Nkey(NkeySeed),
    /// `jwt`, and `sig` (signed with the user's seed): a `.creds` file,
    /// for a server in operator mode.
    Jwt(UserCreds),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Secrets stay out of logs.
        match self {
            Credentials::None => f.write_str("None"),
            Credentials::UserPassword { user, .. } => write!(f, "UserPassword({user:?}, <password>)"),
            Credentials::Token(_) => f.write_str("Token(<token>)"),
            Credentials::Nkey(seed) => write!(f, "Nkey({})", seed.public_key()),
            Credentials::Jwt(creds) => write!(f, "Jwt({})", creds.seed.public_key()),
        }
    }
}

/// What the client says in CONNECT.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectOptions {
    /// The connection's name, shown by the server's monitoring.
    pub name: String,
    /// Credentials.
    pub credentials: Credentials,
    /// Ask for a 503 status message when a request has no responders
    /// (needs headers).
    pub no_responders: bool,
    /// Whether the server may deliver our own publishes back to our own
    /// subscriptions. The bridge turns this off: what it publishes must not
    /// come back through the same connection.
    pub echo: bool,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions { name: "tinymq".into(), credentials: Credentials::None, no_responders: false, echo: false }
    }
}

impl ConnectOptions {
    /// The CONNECT JSON. `verbose` is off (no `+OK` per operation),
    /// `pedantic` off, `headers` on, and `protocol` 1 so that the server
    /// sends INFO again when the cluster changes (new `connect_urls`).
    /// `nonce` is the INFO's, which NKEY credentials sign.
    pub fn to_json(&self, nonce: &str) -> String {
        let mut map = Map::new();
        map.insert("verbose".into(), json!(false));
        map.insert("pedantic".into(), json!(false));
        map.insert("tls_required".into(), json!(false));
        map.insert("name".into(), json!(self.name));
        map.insert("lang".into(), json!("rust-tinymq"));
        map.insert("version".into(), json!(env!("CARGO_PKG_VERSION")));
        map.insert("protocol".into(), json!(1));
        map.insert("echo".into(), json!(self.echo));
        map.insert("headers".into(), json!(true));
        map.insert("no_responders".into(), json!(self.no_responders));
        match &self.credentials {
            Credentials::None => {}
            Credentials::UserPassword { user, password } => {
                map.insert("user".into(), json!(user));
                map.insert("pass".into(), json!(password));
            }
            Credentials::Token(token) => {
                map.insert("auth_token".into(), json!(token));
            }
            Credentials::Nkey(seed) => {
                map.insert("nkey".into(), json!(seed.public_key()));
                if !nonce.is_empty() {
                    map.insert("sig".into(), json!(seed.sign(nonce.as_bytes())));
                }
            }
            Credentials::Jwt(creds) => {
                map.insert("jwt".into(), json!(creds.jwt));
                if !nonce.is_empty() {
                    map.insert("sig".into(), json!(creds.seed.sign(nonce.as_bytes())));
                }
            }
        }
        Value::Object(map).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_from_a_real_server() {
        // As nats-server 2.10 sends it, cut down.
        let text = r#"{"server_id":"NBQ5","server_name":"n1","version":"2.10.18","proto":1,"go":"go1.22",
            "host":"0.0.0.0","port":4222,"headers":true,"max_payload":1048576,"client_id":5,
            "client_ip":"127.0.0.1","connect_urls":["10.0.0.1:4222","10.0.0.2:4222"],"ldm":false}"#;
        let info = ServerInfo::from_json(text).unwrap();
        assert_eq!(info.server_id, "NBQ5");
        assert_eq!(info.max_payload, 1 << 20);
        assert!(info.headers && !info.auth_required && !info.lame_duck);
        assert_eq!(info.connect_urls, ["10.0.0.1:4222", "10.0.0.2:4222"]);
        assert!(ServerInfo::from_json("[1]").is_err());
        assert!(ServerInfo::from_json("{").is_err());
        assert_eq!(ServerInfo::from_json("{}").unwrap(), ServerInfo::default());
    }

    #[test]
    fn connect_json() {
        let options = ConnectOptions {
            credentials: Credentials::UserPassword { user: "u".into(), password: "p\"w".into() },
            ..ConnectOptions::default()
        };
        let value: Value = serde_json::from_str(&options.to_json("")).unwrap();
        assert_eq!(value["verbose"], json!(false));
        assert_eq!(value["pedantic"], json!(false));
        assert_eq!(value["headers"], json!(true));
        assert_eq!(value["echo"], json!(false));
        assert_eq!(value["protocol"], json!(1));
        assert_eq!(value["user"], json!("u"));
        assert_eq!(value["pass"], json!("p\"w"));
        assert!(value.get("auth_token").is_none());
        let token = ConnectOptions { credentials: Credentials::Token("t".into()), ..ConnectOptions::default() };
        assert!(token.to_json("").contains(r#""auth_token":"t""#));
        assert!(!format!("{:?}", options).contains("p\\\"w"));
    }

    #[test]
    fn nkey_credentials_sign_the_nonce_of_the_info() {
        let info = ServerInfo::from_json(r#"{"server_id":"N","headers":true,"nonce":"p0ajk8hJqkvQ_2Q"}"#).unwrap();
        assert_eq!(info.nonce, "p0ajk8hJqkvQ_2Q");
        let seed = NkeySeed::from_ed25519_seed([9; 32]);
        let options = ConnectOptions { credentials: Credentials::Nkey(seed.clone()), ..ConnectOptions::default() };
        let value: Value = serde_json::from_str(&options.to_json(&info.nonce)).unwrap();
        assert_eq!(value["nkey"], json!(seed.public_key()));
        assert_eq!(value["sig"], json!(seed.sign(info.nonce.as_bytes())));
        assert!(!options.to_json(&info.nonce).contains(&seed.to_text()), "the seed in CONNECT");
        assert!(!format!("{options:?}").contains(&seed.to_text()), "the seed in Debug");
        let creds = UserCreds { jwt: "a.b.c".into(), seed: seed.clone() };
        let jwt = ConnectOptions { credentials: Credentials::Jwt(creds), ..ConnectOptions::default() };
        let value: Value = serde_json::from_str(&jwt.to_json(&info.nonce)).unwrap();
        assert_eq!((&value["jwt"], &value["sig"]), (&json!("a.b.c"), &json!(seed.sign(info.nonce.as_bytes()))));
        assert!(!format!("{jwt:?}").contains(&seed.to_text()), "the seed in Debug");
        // No nonce, nothing to sign: the key alone.
        let unsigned: Value = serde_json::from_str(&options.to_json("")).unwrap();
        assert!(unsigned.get("sig").is_none() && unsigned["nkey"] == json!(seed.public_key()));
    }
}
