//! The config file: parsed, printed, refused, and read back.

use super::*;

fn parse(text: &str) -> Result<ConfigFile, ConfigError> {
    ConfigFile::parse(text)
}

fn settings(text: &str) -> BrokerConfig {
    parse(text).and_then(|f| f.broker_config()).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

#[test]
fn a_tls_section_makes_tcp_listeners_tls_and_allows_https() {
    let dir = std::env::temp_dir().join(format!("tinymq-config-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap().self_signed(&key).unwrap();
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    let tls = format!("[tls]\ncert = {:?}\nkey = {:?}\n", cert_path, key_path);
    let config = settings(&format!("[http]\nhttps = \"127.0.0.1:8443\"\n{tls}"));
    assert!(config.tls.is_some());
    assert!(config.listeners.contains(&ListenAddr::Tls("127.0.0.1:1883".parse().unwrap())), "{:?}", config.listeners);
    assert!(config.listeners.contains(&ListenAddr::Https("127.0.0.1:8443".parse().unwrap())));
    assert!(!config.listeners.iter().any(|l| matches!(l, ListenAddr::Tcp(_))));
    assert!(error("[http]\nhttps = \"127.0.0.1:8443\"").contains("http.https"));
    assert!(error(&format!("[tls]\ncert = {cert_path:?}")).contains("tls.key"));
    let missing = error("[tls]\ncert = \"/nonexistent/cert.pem\"\nkey = \"/nonexistent/key.pem\"");
    assert!(missing.contains("tls.cert") && missing.contains("/nonexistent/cert.pem"), "{missing}");
    std::fs::remove_dir_all(&dir).unwrap();
}

fn error(text: &str) -> String {
    match parse(text).and_then(|f| f.broker_config()) {
        Ok(config) => panic!("accepted: {config:?}\n{text}"),
        Err(error) => error.to_string(),
    }
}

#[test]
fn the_printed_file_reads_back_as_the_defaults() {
    let printed = default_file();
    let file = parse(&printed).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(format!("{:?}", file.broker_config().unwrap()), format!("{:?}", settings("")));
    assert_eq!(file.log_level(), Some(LogLevel::Info));
    // The commented-out keys are real keys too, once uncommented.
    let mut uncommented = printed.clone();
    for key in ["threads", "allow_anonymous", "allowed_peers"] {
        uncommented = uncommented.replace(&format!("# {key} = "), &format!("{key} = "));
    }
    let config = settings(&uncommented);
    assert_eq!(config.threads, 2);
    assert!(config.allow_anonymous);
    assert_eq!(config.allowed_peers.unwrap().to_string(), "127.0.0.1/32,::1/128,10.0.0.0/8");
}

#[test]
fn every_key_in_the_printed_file_has_a_comment() {
    let printed = default_file();
    let lines: Vec<&str> = printed.lines().collect();
    let key_of = |line: &str| {
        let (key, _) = line.trim_start_matches("# ").split_once(" = ")?;
        key.chars().all(|c| c.is_ascii_lowercase() || c == '_').then(|| key.to_owned())
    };
    let mut keys = 0;
    for (i, line) in lines.iter().enumerate() {
        let Some(key) = key_of(line) else { continue };
        keys += 1;
        // The TLS placeholders share one comment.
        if ["https", "cert", "key"].contains(&key.as_str()) {
            continue;
        }
        let above = lines[i - 1];
        assert!(above.starts_with('#') && key_of(above).is_none(), "line {}: {key} has no comment", i + 1);
    }
    assert_eq!(keys, 56, "every key counted:\n{printed}");
}

#[test]
fn keys_take_effect() {
    let config = settings(
        r#"
        [[listener]]
        address = "127.0.0.1:1999"
        [[listener]]
        network = "unix"
        address = "/tmp/t.sock"
        [http]
        address = "0.0.0.0:8080"
        queue_size = 5
        moustique_encoding = "legacy"
        [store]
        in_memory = true
        durability = "immediate"
        [access]
        allowed_peers = ["10.0.0.0/8"]
        peer_budget = 0
        [limits]
        threads = 3
        max_payload_bytes = 100
        "#,
    );
    assert_eq!(
        config.listeners,
        [
            ListenAddr::Tcp("127.0.0.1:1999".parse().unwrap()),
            ListenAddr::Unix("/tmp/t.sock".into()),
            ListenAddr::Http("0.0.0.0:8080".parse().unwrap())
        ]
    );
    assert_eq!(config.http.client_limits.queue_size, 5);
    assert_eq!(config.http.moustique_encoding, EncodingMode::Legacy);
    assert_eq!((config.data_dir, config.durability), (None, Durability::Immediate));
    assert!(!config.allow_anonymous, "listening beyond loopback: anonymous off by default");
    assert_eq!(config.peer_budget.burst, 0);
    assert_eq!((config.threads, config.session.frame_limits.max_payload_len), (3, 100));
    let none = settings("listener = []\n[http]\nenabled = false\n[store]\ndata = \"/var/lib/tinymq\"");
    assert!(none.listeners.is_empty() && none.allow_anonymous);
    assert_eq!(none.data_dir, Some(PathBuf::from("/var/lib/tinymq")));
}

#[test]
fn unknown_keys_and_bad_values_are_named() {
    let said = error("[http]\nqueue_size = 5\nqueu_size = 3\n");
    assert!(said.starts_with("config, line 3: http.queu_size: unknown field `queu_size`"), "{said}");
    let said = error("[http]\nqueue_size = \"big\"\n");
    assert!(said.starts_with("config, line 2: http.queue_size: invalid type: string \"big\""), "{said}");
    let said = error("[store]\ndurability = \"sometimes\"\n");
    assert!(said.contains("store.durability") && said.contains("sometimes"), "{said}");
    let said = error("[[listener]]\n[[listener]]\nnetwork = \"udp\"\n");
    assert!(said.starts_with("config, line 3: listener[2].network:"), "{said}");
    let said = error("[bogus]\nx = 1\n");
    assert!(said.contains("line 1: bogus:") && said.contains("unknown field `bogus`"), "{said}");
    assert_eq!(error("[http]\nqueue_size = 0\n"), "config: http.queue_size: must be at least 1");
    assert_eq!(
        error("[http]\nmoustique_encoding = \"rot13\"\n"),
        "config: http.moustique_encoding: must be \"auto\", \"current\" or \"legacy\""
    );
    assert_eq!(error("[limits]\nkeep_alive_secs = 0"), "config: limits.keep_alive_secs: must be at least 1 second");
    assert_eq!(error("[limits]\nmax_topic_bytes = 70000"), "config: limits.max_topic_bytes: must be at most 65535");
    let said = error("[access]\nallowed_peers = [\"10.0.0.0/8\", \"10.0.0.0/40\"]");
    assert!(said.starts_with("config: access.allowed_peers:") && said.contains("10.0.0.0/40"), "{said}");
    assert!(error("[http]\naddress = \"nowhere\"").starts_with("config: http.address: \"nowhere\""));
    let said = error("[[listener]]\nnetwork = \"unix\"");
    assert_eq!(said, "config: listener[1].address: a unix listener needs a socket path");
    assert!(error("not toml at all").starts_with("config, line 1"));
    assert!(!error("[http]\nqueue_size = [\n1,\n2]").contains('\n'), "one line");
}

#[test]
fn a_loaded_file_is_named_in_its_errors() {
    let dir = std::env::temp_dir().join(format!("tinymq-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("broker.toml");
    std::fs::write(&path, "[limits]\nthreads = 0\n").unwrap();
    let said = ConfigFile::load(&path).unwrap_err().to_string();
    assert_eq!(said, format!("config file {}: limits.threads: must be at least 1", path.display()));
    std::fs::write(&path, "[log]\nlevel = \"loud\"\n").unwrap();
    let said = ConfigFile::load(&path).unwrap_err().to_string();
    assert!(said.starts_with(&format!("config file {}, line 2: log.level:", path.display())), "{said}");
    let missing = dir.join("missing.toml");
    let said = ConfigFile::load(&missing).unwrap_err().to_string();
    assert!(said.starts_with(&format!("cannot read the config file {}", missing.display())), "{said}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bridge_tables_are_read_and_checked() {
    // The printed example, uncommented, is a bridge.
    let printed = default_file();
    let start = printed.find("# [[bridge]]").expect("the bridge example");
    let example: String = printed[start..]
        .lines()
        .filter(|line| !line.starts_with("# ") || line.starts_with("# [[") || line.contains(" = "))
        // A client certificate needs TLS, which the example leaves off.
        .filter(|line| !line.starts_with("# cert_file") && !line.starts_with("# key_file"))
        // An NKEY replaces the user name and password the example has.
        .filter(|line| !line.starts_with("# nkey_seed_file") && !line.starts_with("# creds_file"))
        .map(|line| line.trim_start_matches("# "))
        .collect::<Vec<_>>()
        .join("\n");
    let config = settings(&example);
    let bridge = &config.bridges[0];
    assert_eq!(bridge.servers, ["nats://127.0.0.1:4222", "nats://127.0.0.1:4223"]);
    assert_eq!(
        (bridge.out.as_slice(), bridge.inbound.as_slice()),
        (&["sensors/#".to_owned()][..], &["commands/#".to_owned()][..])
    );
    assert_eq!((bridge.prefix.as_str(), bridge.broker_id.as_str(), bridge.queue_limit), ("site1", "tinymq-1", 10_000));

    let both = settings(
        "[[bridge]]\nservers = [\"nats://h:1\"]\nboth = [\"a/#\"]\n[[bridge]]\nservers = [\"h:2\"]\nin = [\"b\"]",
    );
    assert_eq!(both.bridges.len(), 2);
    assert_eq!(
        (both.bridges[0].out.as_slice(), both.bridges[0].inbound.as_slice()),
        (&["a/#".to_owned()][..], &["a/#".to_owned()][..])
    );
    assert!(both.bridges[1].broker_id.starts_with("tinymq-"), "a default id: {:?}", both.bridges[1].broker_id);

    let no_server = error("[[bridge]]\nout = [\"a\"]");
    assert!(no_server.contains("bridge[1].servers"), "{no_server}");
    let bad_filter = error("[[bridge]]\nservers = [\"h:1\"]\nout = [\"a/#/b\"]");
    assert!(bad_filter.contains("bridge[1]") && bad_filter.contains("a/#/b"), "{bad_filter}");
    let no_filter = error("[[bridge]]\nservers = [\"h:1\"]");
    assert!(no_filter.contains("at least one filter"), "{no_filter}");
}

#[test]
fn mqtt_bridges_credentials_and_tls_keys_are_read_and_checked() {
    let mqtt = settings(
        "[[bridge]]\nservers = [\"mqtt://u:p@h:1883\"]\nout = [\"a/#\"]\nprefix = \"site/\"\nmqtt_version = \"3.1.1\"",
    );
    let bridge = &mqtt.bridges[0];
    assert_eq!(bridge.kind, crate::bridge::BridgeKind::Mqtt, "from the scheme");
    assert_eq!(bridge.mqtt_version, tinymq_core::mqtt::MqttVersion::V311);
    let checked = bridge.validate(&TopicLimits::default()).unwrap();
    assert_eq!(checked.servers, ["h:1883"]);
    assert_eq!(
        (checked.credentials.username.as_deref(), checked.credentials.password.as_deref()),
        (Some("u"), Some("p"))
    );
    assert!(!format!("{bridge:?}").contains(":p@"), "no password in {bridge:?}");
    let crate::bridge::Mapping::Mqtt(prefix) = &checked.mapping else { panic!("an MQTT mapping") };
    assert_eq!(prefix.to_remote("a/b"), "site/a/b");
    assert_eq!(prefix.to_local("site/a/b"), Some("a/b"));
    assert_eq!(prefix.to_local("other/a/b"), None);

    let explicit = settings("[[bridge]]\nkind = \"mqtt\"\nservers = [\"h:1\"]\nin = [\"a\"]\nusername = \"u\"");
    assert_eq!(explicit.bridges[0].kind, crate::bridge::BridgeKind::Mqtt);
    let token = settings("[[bridge]]\nservers = [\"nats://t0k@h:1\"]\nin = [\"a\"]");
    let checked = token.bridges[0].validate(&TopicLimits::default()).unwrap();
    assert_eq!(checked.credentials.token.as_deref(), Some("t0k"), "nats://TOKEN@ is a token");

    let bad_kind = error("[[bridge]]\nkind = \"amqp\"\nservers = [\"h:1\"]\nout = [\"a\"]");
    assert!(bad_kind.contains("bridge[1].kind"), "{bad_kind}");
    let bad_version = error("[[bridge]]\nkind = \"mqtt\"\nservers = [\"h:1\"]\nout = [\"a\"]\nmqtt_version = \"4\"");
    assert!(bad_version.contains("bridge[1].mqtt_version"), "{bad_version}");
    let wrong_scheme = error("[[bridge]]\nkind = \"nats\"\nservers = [\"mqtt://h:1\"]\nout = [\"a\"]");
    assert!(wrong_scheme.contains("not a Nats server URL"), "{wrong_scheme}");
    let no_ca = error("[[bridge]]\nservers = [\"tls://h:1\"]\nout = [\"a\"]");
    assert!(no_ca.contains("ca_file"), "{no_ca}");
    let missing_ca =
        error("[[bridge]]\nservers = [\"h:1\"]\nout = [\"a\"]\ntls = true\nca_file = \"/nonexistent.pem\"");
    assert!(missing_ca.contains("/nonexistent.pem"), "{missing_ca}");
    let wildcard_prefix = error("[[bridge]]\nservers = [\"mqtt://h:1\"]\nout = [\"a\"]\nprefix = \"a/+\"");
    assert!(wildcard_prefix.contains("wildcards"), "{wildcard_prefix}");
    let password_alone = error("[[bridge]]\nservers = [\"h:1\"]\nout = [\"a\"]\npassword = \"p\"");
    assert!(password_alone.contains("user name"), "{password_alone}");
    let cert_alone =
        error("[[bridge]]\nservers = [\"h:1\"]\nout = [\"a\"]\ncert_file = \"c.pem\"\nkey_file = \"k.pem\"");
    assert!(cert_alone.contains("needs TLS"), "{cert_alone}");
    let nkey_missing = error("[[bridge]]\nservers = [\"h:1\"]\nout = [\"a\"]\nnkey_seed_file = \"/nonexistent.nk\"");
    assert!(nkey_missing.contains("/nonexistent.nk"), "{nkey_missing}");
    let nkey_mqtt = error("[[bridge]]\nservers = [\"mqtt://h:1\"]\nout = [\"a\"]\nnkey_seed_file = \"/x.nk\"");
    assert!(nkey_mqtt.contains("NATS credentials"), "{nkey_mqtt}");
    let two = error("[[bridge]]\nservers = [\"h:1\"]\nout = [\"a\"]\ntoken = \"t\"\ncreds_file = \"/x.creds\"");
    assert!(two.contains("creds_file: replaces"), "{two}");
    let no_key = error("[[bridge]]\nservers = [\"tls://h:1\"]\nout = [\"a\"]\ncert_file = \"c.pem\"");
    assert!(no_key.contains("both cert_file and key_file"), "{no_key}");
}

#[test]
fn a_qos_1_bridge_is_mqtt_with_a_broker_id() {
    let qos1 = settings("[[bridge]]\nservers = [\"mqtt://h:1\"]\nboth = [\"a/#\"]\nqos = 1\nbroker_id = \"edge-1\"");
    assert_eq!((qos1.bridges[0].qos, qos1.bridges[0].broker_id.as_str()), (1, "edge-1"));
    assert_eq!(settings("[[bridge]]\nservers = [\"mqtt://h:1\"]\nout = [\"a\"]").bridges[0].qos, 0, "the default");
    let no_id = error("[[bridge]]\nservers = [\"mqtt://h:1\"]\nout = [\"a\"]\nqos = 1");
    assert!(no_id.contains("bridge[1].broker_id") && no_id.contains("session"), "{no_id}");
    let nats = error("[[bridge]]\nservers = [\"nats://h:1\"]\nout = [\"a\"]\nqos = 1\nbroker_id = \"x\"");
    assert!(nats.contains("only MQTT bridges take qos 1"), "{nats}");
    let qos2 = error("[[bridge]]\nservers = [\"mqtt://h:1\"]\nout = [\"a\"]\nqos = 2\nbroker_id = \"x\"");
    assert!(qos2.contains("QoS 2 is not bridged"), "{qos2}");
}
