//! Bridge connection setup: servers given by host name (resolved off the
//! event loop), client certificates (mutual TLS) and NATS NKEYs, against
//! a real `nats-server` and `mosquitto`. The NKEY tests make their keys
//! with tinymq's own NKEY code: nats-server checking them checks it.

use std::path::PathBuf;
use std::process::Command;

use crate::bridge::{bridge_stats, wait_connected};
use crate::bridge_secure::{assert_delivery, bridged, wait_refused};
use crate::support::http::{Json, JsonExt};
use crate::support::mosquitto::{Mosquitto, SubMessage};
use crate::support::nats::NatsServer;
use crate::support::tools::require_tool;
use crate::support::{BrokerProcess, ScratchDir, TestPki, free_address, run_tinymq};
use tinymq_core::nats::{NkeyKind, NkeySeed, UserCreds};

#[test]
fn a_nats_server_given_by_host_name_is_resolved_and_carries_messages() {
    let nats = NatsServer::start();
    let by_name = nats.url().replace("127.0.0.1", "localhost");
    assert!(by_name.contains("localhost"), "{by_name}");
    let a = bridged(&by_name, "A", &["--bridge-out", "s/#"]);
    let b = bridged(&by_name, "B", &["--bridge-in", "s/#"]);
    assert_delivery(&a, &b);
    let stats = bridge_stats(&a);
    assert_eq!(stats.field("server").as_str(), Some(by_name.trim_start_matches("nats://")), "{stats}");
}

#[test]
fn a_name_that_does_not_resolve_leaves_the_bridge_down_and_the_broker_serving() {
    let broker = bridged("nats://no-such-host.invalid:4222", "A", &["--bridge-out", "s/#"]);
    let stats = wait_refused(&broker, "cannot resolve no-such-host.invalid:4222");
    assert_eq!(stats.field("connected"), &Json::Bool(false), "{stats}");
    // The loop that runs the bridge serves clients meanwhile, and keeps
    // trying (a second failure comes after the backoff).
    let mut subscriber = broker.connect("sub");
    subscriber.subscribe("s/#");
    broker.connect("pub").publish("s/t", b"still here");
    let got = subscriber.recv_publish();
    assert_eq!((got.topic.as_str(), got.payload.as_slice()), ("s/t", &b"still here"[..]));
    crate::support::http::eventually(crate::support::WAIT * 2, "a second attempt", || {
        broker.log().iter().filter(|line| line.contains("cannot resolve")).nth(1).map(|_| ())
    });
}

/// Runs `openssl` with `args`, which must succeed.
fn openssl(args: &[&str]) {
    let openssl = require_tool("openssl", "apt-get install openssl");
    let output = Command::new(openssl).args(args).output().expect("run openssl");
    assert!(output.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&output.stderr));
}

/// The client key in SEC1 form (`EC PRIVATE KEY`), beside the PKCS#8 one.
fn sec1_client_key(pki: &TestPki) -> PathBuf {
    let sec1 = pki.dir().join("client-key-sec1.pem");
    openssl(&["ec", "-in", TestPki::arg(&pki.client_key), "-out", TestPki::arg(&sec1)]);
    assert!(std::fs::read_to_string(&sec1).unwrap().contains("BEGIN EC PRIVATE KEY"), "not SEC1");
    sec1
}

/// An RSA client certificate the test CA issues, made with `openssl`, and
/// its key in PKCS#1 form (`RSA PRIVATE KEY`).
fn rsa_client_cert(pki: &TestPki) -> (PathBuf, PathBuf) {
    let path = |name: &str| pki.dir().join(name);
    let arg = |name: &str| path(name).to_str().unwrap().to_owned();
    std::fs::write(path("client.ext"), "extendedKeyUsage = clientAuth\n").unwrap();
    openssl(&[
        "req",
        "-new",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=tinymq rsa bridge",
        "-keyout",
        &arg("rsa-key8.pem"),
        "-out",
        &arg("rsa.csr"),
    ]);
    openssl(&[
        "x509",
        "-req",
        "-in",
        &arg("rsa.csr"),
        "-CA",
        TestPki::arg(&pki.ca),
        "-CAkey",
        TestPki::arg(&pki.ca_key),
        "-set_serial",
        "7",
        "-days",
        "2",
        "-extfile",
        &arg("client.ext"),
        "-out",
        &arg("rsa.pem"),
    ]);
    openssl(&["rsa", "-in", &arg("rsa-key8.pem"), "-traditional", "-out", &arg("rsa-key1.pem")]);
    assert!(std::fs::read_to_string(path("rsa-key1.pem")).unwrap().contains("BEGIN RSA PRIVATE KEY"), "not PKCS#1");
    (path("rsa.pem"), path("rsa-key1.pem"))
}

#[test]
fn client_certificates_reach_a_nats_server_that_verifies_them() {
    let pki = TestPki::generate();
    let arg = TestPki::arg;
    let nats = NatsServer::start_with(&[
        "--tlsverify",
        "--tlscert",
        arg(&pki.cert),
        "--tlskey",
        arg(&pki.key),
        "--tlscacert",
        arg(&pki.ca),
    ]);
    let url = nats.url().replace("nats://", "tls://");
    let ca = arg(&pki.ca);
    // PKCS#8 (EC) on one side, PKCS#1 (RSA) on the other.
    let cert = ["--bridge-ca", ca, "--bridge-cert", arg(&pki.client_cert), "--bridge-key", arg(&pki.client_key)];
    let a = bridged(&url, "A", &[&["--bridge-out", "s/#"][..], &cert].concat());
    let (rsa, rsa_key) = rsa_client_cert(&pki);
    let b = bridged(
        &url,
        "B",
        &["--bridge-in", "s/#", "--bridge-ca", ca, "--bridge-cert", arg(&rsa), "--bridge-key", arg(&rsa_key)],
    );
    assert_delivery(&a, &b);

    // Without a client certificate: refused, and the broker serves on.
    let without = bridged(&url, "C", &["--bridge-out", "s/#", "--bridge-ca", ca]);
    let stats = wait_refused(&without, "certificate");
    assert_eq!(stats.field("connected"), &Json::Bool(false), "{stats}");
    let mut subscriber = without.connect("sub");
    subscriber.subscribe("s/#");
    without.connect("pub").publish("s/t", b"served");
    assert_eq!(subscriber.recv_publish().payload, b"served");
}

#[test]
fn client_certificates_reach_a_mosquitto_that_requires_them() {
    let pki = TestPki::generate();
    let tls = free_address();
    let extra = format!(
        "listener {} {}\ncafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate true\n",
        tls.port(),
        tls.ip(),
        pki.ca.display(),
        pki.cert.display(),
        pki.key.display()
    );
    let mosquitto = Mosquitto::start_with(free_address(), &extra);
    let url = format!("mqtts://{tls}");
    let ca = TestPki::arg(&pki.ca);
    let sec1 = sec1_client_key(&pki);
    let cert =
        ["--bridge-ca", ca, "--bridge-cert", TestPki::arg(&pki.client_cert), "--bridge-key", TestPki::arg(&sec1)];
    let a = bridged(&url, "A", &[&["--bridge-out", "s/#"][..], &cert].concat());
    wait_connected(&a);
    let mut far = mosquitto.subscribe("far", "s/#");
    a.connect("pub").publish("s/t", b"mutual");
    assert_eq!(far.recv(), SubMessage { topic: "s/t".into(), retain: false, payload: b"mutual".to_vec() });

    let without = bridged(&url, "B", &["--bridge-out", "s/#", "--bridge-ca", ca]);
    let stats = wait_refused(&without, "certificate");
    assert_eq!(stats.field("connected"), &Json::Bool(false), "{stats}");
}

#[test]
fn client_certificate_files_that_cannot_be_used_stop_the_start() {
    let pki = TestPki::generate();
    let ca = TestPki::arg(&pki.ca);
    let data = ScratchDir::new();
    let start = |cert: &str, key: &str| {
        let output = run_tinymq(&[
            "broker",
            "--data",
            data.path().to_str().unwrap(),
            "--address",
            "127.0.0.1:0",
            "--bridge",
            "tls://127.0.0.1:1",
            "--bridge-out",
            "s/#",
            "--bridge-ca",
            ca,
            "--bridge-cert",
            cert,
            "--bridge-key",
            key,
        ]);
        assert!(!output.status.success(), "started with {cert} and {key}");
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let missing = start("/nonexistent/client.pem", TestPki::arg(&pki.client_key));
    assert!(missing.contains("/nonexistent/client.pem"), "{missing}");
    // A certificate where the key should be.
    let not_a_key = start(TestPki::arg(&pki.client_cert), TestPki::arg(&pki.client_cert));
    assert!(not_a_key.contains("no private key"), "{not_a_key}");
}

/// A new NATS user: its seed made by tinymq's own NKEY code from 32
/// random bytes, written to `dir/NAME.nk`.
fn new_nkey_user(dir: &ScratchDir, name: &str) -> (NkeySeed, PathBuf) {
    let mut bytes = [0u8; 32];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom").unwrap(), &mut bytes).unwrap();
    let seed = NkeySeed::from_ed25519_seed(bytes);
    let path = dir.path().join(format!("{name}.nk"));
    std::fs::write(&path, format!("{}\n", seed.to_text())).unwrap();
    (seed, path)
}

#[test]
fn an_nkey_user_is_let_in_by_nats_server_and_a_wrong_key_is_refused() {
    let dir = ScratchDir::new();
    let (seed, seed_file) = new_nkey_user(&dir, "bridge");
    let (stranger, stranger_file) = new_nkey_user(&dir, "stranger");
    let config = dir.path().join("nats.conf");
    // nats-server decodes the public key (base32, prefix, CRC) and checks
    // the signature of its nonce against it: our encoding and signing both.
    std::fs::write(&config, format!("authorization {{\n  users = [ {{ nkey: {} }} ]\n}}\n", seed.public_key()))
        .unwrap();
    let nats = NatsServer::start_with(&["-c", config.to_str().unwrap()]);
    let nkey = |file: &PathBuf| file.to_str().unwrap().to_owned();
    let a = bridged(&nats.url(), "A", &["--bridge-out", "s/#", "--bridge-nkey", &nkey(&seed_file)]);
    // The config file's key, for the other side.
    let table = format!(
        "[[bridge]]\nservers = [\"{}\"]\nin = [\"s/#\"]\nbroker_id = \"B\"\nnkey_seed_file = \"{}\"\n",
        nats.url(),
        seed_file.display()
    );
    std::fs::write(dir.path().join("b.toml"), table).unwrap();
    let b =
        BrokerProcess::start_http(&["--config", dir.path().join("b.toml").to_str().unwrap(), "--sys-interval", "0"]);
    assert_delivery(&a, &b);
    for broker in [&a, &b] {
        assert!(!broker.log().iter().any(|line| line.contains(&seed.to_text())), "the seed in the log");
        let stats = bridge_stats(broker).to_string();
        assert!(!stats.contains(&seed.to_text()), "the seed in STATS: {stats}");
    }

    let wrong = bridged(&nats.url(), "C", &["--bridge-out", "s/#", "--bridge-nkey", &nkey(&stranger_file)]);
    let stats = wait_refused(&wrong, "authorization violation");
    assert_eq!(stats.field("connected"), &Json::Bool(false), "{stats}");
    assert!(!wrong.log().iter().any(|line| line.contains(&stranger.to_text())), "the seed in the log");
    // Without credentials: refused as well.
    let none = bridged(&nats.url(), "D", &["--bridge-out", "s/#"]);
    wait_refused(&none, "authorization violation");
}

#[test]
fn a_seed_file_that_is_not_a_user_seed_stops_the_start() {
    let dir = ScratchDir::new();
    let bad = dir.path().join("bad.nk");
    std::fs::write(&bad, "SUAKYRHVIOREXV7EUZTBHUHL7NUMHPMAS7QMDU3GTIUWEI5LDNOXD43AZY\n").unwrap();
    let output = run_tinymq(&[
        "broker",
        "--data",
        dir.path().to_str().unwrap(),
        "--address",
        "127.0.0.1:0",
        "--bridge",
        "nats://127.0.0.1:1",
        "--bridge-out",
        "s/#",
        "--bridge-nkey",
        bad.to_str().unwrap(),
    ]);
    assert!(!output.status.success(), "started with a bad seed");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("bad.nk") && stderr.contains("checksum"), "{stderr}");
    assert!(!stderr.contains("SUAKYRHV"), "the seed in the error: {stderr}");
}

/// A key of `kind` from 32 random bytes.
fn random_key(kind: NkeyKind) -> NkeySeed {
    let mut bytes = [0u8; 32];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom").unwrap(), &mut bytes).unwrap();
    NkeySeed::new(kind, bytes)
}

/// A NATS JWT (v2) with `claims`, issued and signed by `issuer` for
/// `subject`: header and claims base64url, then the Ed25519 signature of
/// both (the `base64` crate and ring's, not only the broker's code).
fn nats_jwt(issuer: &NkeySeed, subject: &str, name: &str, nats: serde_json::Value) -> String {
    use base64::Engine as _;
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let header = b64(br#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let claims = serde_json::json!({
        "jti": format!("{name}{now}"), "iat": now, "iss": issuer.public_key(), "sub": subject, "name": name,
        "nats": nats,
    });
    let payload = b64(claims.to_string().as_bytes());
    let signed = format!("{header}.{payload}");
    let sig = issuer.sign(signed.as_bytes());
    format!("{signed}.{sig}")
}

#[test]
fn a_creds_file_connects_to_nats_server_in_operator_mode() {
    let dir = ScratchDir::new();
    let operator = random_key(NkeyKind::Operator);
    let account = random_key(NkeyKind::Account);
    let unlimited = serde_json::json!({
        "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1, "wildcards": true, "conn": -1, "leaf": -1
    });
    let operator_jwt =
        nats_jwt(&operator, &operator.public_key(), "op", serde_json::json!({"type": "operator", "version": 2}));
    let account_jwt = nats_jwt(
        &operator,
        &account.public_key(),
        "acc",
        serde_json::json!({"limits": unlimited, "type": "account", "version": 2}),
    );
    let user_creds = |signer: &NkeySeed, name: &str| {
        let user = random_key(NkeyKind::User);
        let jwt = nats_jwt(
            signer,
            &user.public_key(),
            name,
            serde_json::json!({
                "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1, "type": "user", "version": 2
            }),
        );
        let path = dir.path().join(format!("{name}.creds"));
        std::fs::write(&path, UserCreds { jwt, seed: user }.to_text()).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let operator_file = dir.path().join("operator.jwt");
    std::fs::write(&operator_file, &operator_jwt).unwrap();
    let config = dir.path().join("nats.conf");
    std::fs::write(
        &config,
        format!(
            "operator: {}\nresolver: MEMORY\nresolver_preload: {{\n  {}: \"{}\"\n}}\n",
            operator_file.display(),
            account.public_key(),
            account_jwt
        ),
    )
    .unwrap();
    let nats = NatsServer::start_with(&["-c", config.to_str().unwrap()]);
    let a = bridged(&nats.url(), "A", &["--bridge-out", "s/#", "--bridge-creds", &user_creds(&account, "a")]);
    let b = bridged(&nats.url(), "B", &["--bridge-in", "s/#", "--bridge-creds", &user_creds(&account, "b")]);
    assert_delivery(&a, &b);

    // A user JWT signed by an account the server does not know.
    let stranger = random_key(NkeyKind::Account);
    let wrong = bridged(&nats.url(), "C", &["--bridge-out", "s/#", "--bridge-creds", &user_creds(&stranger, "c")]);
    let stats = wait_refused(&wrong, "authorization violation");
    assert_eq!(stats.field("connected"), &Json::Bool(false), "{stats}");
}
