//! MQTT conformance against real clients: `mosquitto_pub`/`mosquitto_sub`
//! and paho-mqtt 2, each scenario run against tinymq's `--mqtt` listener
//! and against a real Debian `mosquitto` in the same test, so any
//! difference shows as a failure naming the broker. Then the one topic
//! space: MQTT to and from the binary protocol, Moustique PICKUP, SSE and
//! `$SYS`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::support::http::{CurlSse, Json, JsonExt, call, eventually, moustique_json, pickup_until, post, subscribe};
use crate::support::mqtt::{MqttBroker, USER};
use crate::support::tools::{self, client_script, python_with_requests};
use crate::support::{BrokerProcess, Endpoint, ScratchDir, TestPki, WAIT, free_address, run_tinymq, wait_child};

#[test]
fn qos_0_and_1_reach_subscribers_of_both_versions_at_their_granted_qos() {
    for broker in MqttBroker::both() {
        let kind = broker.kind;
        let mut v311 = broker.subscribe(&["t/#"], &["-q", "1"]);
        let mut v5 = broker.subscribe(&["t/#"], &["-q", "0", "-V", "mqttv5"]);
        broker.publish_ok(&["-t", "t/a", "-m", "zero", "-q", "0"]);
        broker.publish_ok(&["-t", "t/b", "-m", "one", "-q", "1", "-V", "mqttv5"]);
        assert_eq!([v311.line(), v311.line()], ["t/a|0|0|zero", "t/b|1|0|one"], "{kind:?}, 3.1.1 at QoS 1");
        assert_eq!([v5.line(), v5.line()], ["t/a|0|0|zero", "t/b|0|0|one"], "{kind:?}, 5 at QoS 0");
    }
}

#[test]
fn mqtt_5_user_properties_reach_mqtt_5_subscribers() {
    for broker in MqttBroker::both() {
        let kind = broker.kind;
        // %P: the user properties, as mosquitto_sub prints them.
        let mut v5 = broker.subscribe(&["u/#"], &["-V", "mqttv5", "-F", "%t|%P|%p"]);
        let mut v311 = broker.subscribe(&["u/#"], &["-F", "%t|%P|%p"]);
        let property = ["-D", "publish", "user-property", "origin", "e2e"];
        broker.publish_ok(&[&["-V", "mqttv5", "-t", "u/x", "-m", "props"][..], &property].concat());
        assert_eq!(v5.line(), "u/x|origin:e2e|props", "{kind:?}");
        assert_eq!(v311.line(), "u/x||props", "{kind:?}: 3.1.1 has none");
    }
}

#[test]
fn retained_values_are_stored_sent_marked_and_cleared() {
    for broker in MqttBroker::both() {
        let kind = broker.kind;
        broker.publish_ok(&["-t", "r/x", "-m", "kept", "-q", "1", "-r"]);
        let mut late = broker.subscribe(&["r/#"], &["-q", "1"]);
        assert_eq!(late.line(), "r/x|1|1|kept", "{kind:?}: the stored value, marked retained");
        // Live traffic on the same topic is not marked retained.
        broker.publish_ok(&["-t", "r/x", "-m", "live", "-q", "1"]);
        assert_eq!(late.line(), "r/x|1|0|live", "{kind:?}");
        // An empty retained publish deletes the value.
        broker.publish_ok(&["-t", "r/x", "-n", "-r"]);
        assert_eq!(late.line(), "r/x|0|0|", "{kind:?}: the deletion is delivered");
        let mut later = broker.subscribe(&["r/#"], &["-q", "1"]);
        broker.publish_ok(&["-t", "r/y", "-m", "after"]);
        assert_eq!(later.line(), "r/y|0|0|after", "{kind:?}: nothing stored is left");
    }
}

#[test]
fn a_killed_client_s_will_is_published_and_a_clean_one_s_is_not() {
    for broker in MqttBroker::both() {
        let kind = broker.kind;
        let mut watcher = broker.subscribe(&["w/#"], &["-q", "1"]);
        // A clean DISCONNECT drops the will.
        broker.publish_ok(&["-t", "w/other", "-m", "clean", "--will-topic", "w/clean", "--will-payload", "no"]);
        assert_eq!(watcher.line(), "w/other|0|0|clean", "{kind:?}");
        for version in ["mqttv311", "mqttv5"] {
            let will = ["--will-topic", "w/gone", "--will-payload", version, "--will-qos", "1", "-V", version];
            let mut holder = broker.subscribe(&["unused"], &will);
            holder.kill();
            assert_eq!(watcher.line(), format!("w/gone|1|0|{version}"), "{kind:?}: SIGKILL publishes the will");
        }
    }
}

#[test]
fn credentials_are_checked_against_the_brokers_users() {
    for broker in [MqttBroker::tinymq_with_user(), MqttBroker::mosquitto_with_user()] {
        let kind = broker.kind;
        let user = ["-u", USER.0, "-P", USER.1];
        let mut sub = broker.subscribe(&["c/#"], &user);
        for (what, args) in [
            ("anonymous", vec!["-t", "c/x", "-m", "no"]),
            ("a wrong password", vec!["-t", "c/x", "-m", "no", "-u", USER.0, "-P", "guess"]),
            ("an unknown user", vec!["-t", "c/x", "-m", "no", "-u", "bob", "-P", "guess", "-V", "mqttv5"]),
        ] {
            let output = broker.publish(&args);
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(!output.status.success(), "{kind:?}: {what} is refused");
            assert!(stderr.contains("Connection"), "{kind:?}: {what}: {stderr}");
        }
        broker.publish_ok(&["-t", "c/x", "-m", "yes", "-u", USER.0, "-P", USER.1, "-V", "mqttv5"]);
        assert_eq!(sub.line(), "c/x|0|0|yes", "{kind:?}: only the logged-in publish arrives");
    }
}

#[test]
fn mqtts_serves_the_same_certificate_and_topics() {
    let pki = TestPki::generate();
    let broker = MqttBroker::tinymq_tls(&pki);
    let mut sub = broker.subscribe(&["s/#"], &["-q", "1", "-V", "mqttv5"]);
    broker.publish_ok(&["-t", "s/tls", "-m", "encrypted", "-q", "1"]);
    assert_eq!(sub.line(), "s/tls|1|0|encrypted");
    // A client that trusts another CA is refused by its own TLS check.
    let output = broker.publish(&["-t", "s/tls", "-m", "x", "--cafile", TestPki::arg(&pki.other_ca)]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success() && stderr.contains("TLS error"), "{stderr}");
}

/// Runs `tests/clients/paho_client.py` against `port` in MQTT `version`
/// over `transport` and asserts it passed every step (`what` names the run).
fn run_paho(port: u16, version: &str, transport: &str, what: &str) {
    let output = python_with_requests()
        .arg(client_script("paho_client.py"))
        .args(["127.0.0.1", &port.to_string(), version, transport, transport])
        .output()
        .expect("run paho_client.py");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{what}, MQTT {version} over {transport}: {stdout}{stderr}");
    assert!(stdout.contains("ok unsubscribed"), "{stdout}");
}

#[test]
fn paho_mqtt_2_passes_the_same_scenario_on_both_brokers() {
    for broker in MqttBroker::both() {
        for version in ["311", "5"] {
            run_paho(broker.address.port(), version, "tcp", &format!("{:?}", broker.kind));
        }
    }
}

/// Debian's mosquitto 2.0.11 is not run here: its websockets listener
/// (libwebsockets) fails to open any socket in this test environment
/// ("Unable to start any listening sockets").
#[test]
fn paho_mqtt_2_speaks_mqtt_over_websocket_on_the_http_listener() {
    let broker = MqttBroker::tinymq(&[]);
    let tinymq = broker.tinymq.as_ref().unwrap();
    for version in ["311", "5"] {
        let mut binary = tinymq.connect("bin-sub");
        binary.subscribe(&format!("websockets/v{version}/q1/a"));
        run_paho(tinymq.http_addr().port(), version, "websockets", "tinymq");
        // Its publishes reached the binary face too.
        let got = binary.recv_publish();
        assert_eq!(got.topic, format!("websockets/v{version}/q1/a"));
    }
    // /mqtt without an upgrade is refused; the rest of HTTP is untouched.
    let response = call(tinymq.http_addr(), "GET", "/mqtt", &[], b"");
    response.assert_status(426, "GET /mqtt without an upgrade");
    call(tinymq.http_addr(), "GET", "/api/v1/health", &[], b"").assert_status(200, "health");
}

#[test]
fn a_malformed_packet_closes_only_its_own_connection() {
    for broker in MqttBroker::both() {
        let kind = broker.kind;
        let mut sub = broker.subscribe(&["m/#"], &["-V", "mqttv5"]);
        let mut bad = TcpStream::connect(broker.address).unwrap();
        bad.set_read_timeout(Some(WAIT)).unwrap();
        // CONNECT (3.1.1, client id "bad"), then a PUBLISH whose topic
        // length runs past its body.
        bad.write_all(&[0x10, 0x0f, 0, 4, b'M', b'Q', b'T', b'T', 4, 2, 0, 60, 0, 3, b'b', b'a', b'd']).unwrap();
        let mut connack = [0u8; 4];
        bad.read_exact(&mut connack).unwrap();
        assert_eq!(connack, [0x20, 2, 0, 0], "{kind:?}");
        bad.write_all(&[0x30, 0x03, 0x00, 0x09, b'a']).unwrap();
        let mut rest = Vec::new();
        let _ = bad.read_to_end(&mut rest);
        assert!(rest.is_empty(), "{kind:?}: 3.1.1 closes without a word: {rest:02x?}");
        broker.publish_ok(&["-t", "m/ok", "-m", "still here"]);
        assert_eq!(sub.line(), "m/ok|0|0|still here", "{kind:?}");
    }
}

#[test]
fn mqtt_publishes_reach_binary_moustique_and_sse_subscribers() {
    let broker = MqttBroker::tinymq(&["--sys-interval", "0"]);
    let tinymq = broker.tinymq.as_ref().unwrap();
    let mut binary = tinymq.connect("bin-sub");
    binary.subscribe("x/#");
    subscribe(tinymq.http_addr(), "moustique", "x/#");
    // An event stream starts with the stored values it matches: one, so
    // the test knows the stream is open.
    broker.publish_ok(&["-t", "x/sync", "-m", "ready", "-r"]);
    assert_eq!(binary.recv_publish().topic, "x/sync");
    let mut events = CurlSse::start(&format!("{}/api/v1/events?topic=x/%23", tinymq.http_url()));
    assert_eq!(events.next_message().field("topic").str(), "x/sync");
    broker.publish_ok(&["-t", "x/mqtt", "-m", "from mqtt", "-q", "1", "-i", "mqtt-pub"]);
    let got = binary.recv_publish();
    assert_eq!(
        (got.topic.as_str(), got.payload.as_slice(), got.client_id.as_str()),
        ("x/mqtt", &b"from mqtt"[..], "mqtt-pub"),
        "stamped with the MQTT client id"
    );
    let picked = pickup_until(tinymq.http_addr(), "moustique", "x/mqtt");
    assert_eq!(picked.last().unwrap().1.field("message").str(), "from mqtt");
    let event = events.next_message();
    assert_eq!((event.field("topic").str(), event.field("message").str()), ("x/mqtt", "from mqtt"));
    // A retained MQTT publish is the binary protocol's stored value too.
    broker.publish_ok(&["-t", "x/kept", "-m", "stored", "-r"]);
    let mut late = tinymq.connect("late");
    late.subscribe("x/kept");
    let got = late.recv_publish();
    assert!(got.retain() && got.payload == b"stored", "{got:?}");
}

#[test]
fn every_other_face_reaches_mqtt_subscribers() {
    let broker = MqttBroker::tinymq(&["--sys-interval", "1"]);
    let tinymq = broker.tinymq.as_ref().unwrap();
    let mut stored = tinymq.connect("bin-pub");
    stored.publish_retained("y/stored", b"binary value");
    stored.ping();
    let mut sub = broker.subscribe(&["y/#"], &["-q", "1", "-V", "mqttv5"]);
    assert_eq!(sub.line(), "y/stored|0|1|binary value", "a binary retained value, marked retained");
    stored.publish("y/binary", b"over tcp");
    assert_eq!(sub.line(), "y/binary|0|0|over tcp");
    post(tinymq.http_addr(), "y/moustique", "over http", "poster");
    assert_eq!(sub.line(), "y/moustique|0|0|over http");
    // $SYS is shared too (and kept from the # above).
    let mut sys = broker.subscribe(&["$SYS/broker/uptime"], &[]);
    assert!(sys.line().starts_with("$SYS/broker/uptime|0|"), "the broker's own figures");
    broker.publish_ok(&["-t", "$SYS/broker/uptime", "-m", "forged", "-q", "1"]);
    assert!(!sys.line().ends_with("forged"), "clients do not publish to $SYS");
    // Connections are counted by transport: the two subscribers.
    eventually(WAIT, "2 mqtt connections in STATS", || {
        let stats = moustique_json(tinymq.http_addr(), "STATS", &[]);
        (stats.path("connections.mqtt").map(Json::num) == Some(2.0)).then_some(())
    });
}

/// The `mqtt` package from npm in headless Chromium, over WebSocket
/// (`tests/browser/mqtt.test.mjs`), in both versions; its messages meet
/// a binary client here, both ways.
#[test]
fn a_browser_speaks_mqtt_over_websocket_with_the_npm_mqtt_package() {
    let chromium = tools::chromium();
    let node = tools::require_tool("node", "apt-get install nodejs");
    tools::require_browser_packages();
    let bundle = tools::browser_dir().join("node_modules/mqtt/dist/mqtt.min.js");
    assert!(
        bundle.is_file(),
        "{} is missing: run `bash tests/run.sh` (npm ci --prefix tests/browser)",
        bundle.display()
    );
    let broker = BrokerProcess::start_http(&[]);
    let run = std::process::id().to_string();
    let mut binary = broker.connect("bin-browser");
    binary.subscribe(&format!("browser/{run}/#"));
    let mut child = std::process::Command::new(node)
        .arg(tools::browser_dir().join("mqtt.test.mjs"))
        .args(["--http", &broker.http_url(), "--run", &run, "--chromium"])
        .arg(&chromium)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("run node tests/browser/mqtt.test.mjs");
    // Chromium's start under a loaded machine takes its time: the page's
    // first hello is awaited for as long as the script may run.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    for version in [5, 4] {
        // The page's hello, then the answer it waits for.
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let got = match binary.next_within(left) {
                crate::support::Next::Frame(frame) if frame.kind == tinymq_core::FrameType::Publish => frame,
                crate::support::Next::Frame(_) => continue,
                other => panic!("no hello from the browser's MQTT v{version} client within 60 s: {other:?}"),
            };
            if got.topic == format!("browser/{run}/v{version}/hello") {
                assert_eq!(got.payload, b"from the browser");
                break;
            }
        }
        binary.publish(&format!("browser/{run}/v{version}/from-rust"), b"from rust");
    }
    let status = wait_child(&mut child, Duration::from_secs(60));
    if status.is_none() {
        let _ = child.kill();
    }
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(status.is_some_and(|s| s.success()), "{status:?}: {stdout}");
    assert_eq!(stdout.matches("ok mqtt").count(), 2, "{stdout}");
}

/// `tinymq config` prints the `[mqtt]` table; a file naming an address
/// starts the listener, and `--mqtt` moves it.
#[test]
fn the_config_file_s_mqtt_table_starts_the_listener_and_the_flag_moves_it() {
    let printed = run_tinymq(&["config"]);
    let printed = String::from_utf8(printed.stdout).unwrap();
    assert!(printed.contains("[mqtt]") && printed.contains("# address = \"127.0.0.1:1884\""), "{printed}");
    let dir = ScratchDir::new();
    let (from_file, from_flag) = (free_address(), free_address());
    let file = dir.path().join("mqtt.toml");
    std::fs::write(
        &file,
        format!(
            "[store]\nin_memory = true\n[http]\nenabled = false\n[mqtt]\naddress = \"{from_file}\"\nmax_inflight = 8\n"
        ),
    )
    .unwrap();
    let binary = free_address();
    let endpoint = Endpoint::Tcp(binary);
    let file_arg = file.to_str().unwrap();
    let address = binary.to_string();
    let broker = BrokerProcess::start_exact(&["--config", file_arg, "--address", &address], endpoint.clone(), None)
        .unwrap_or_else(|e| panic!("{e}"));
    eventually(WAIT, "the file's MQTT listener", || TcpStream::connect(from_file).ok());
    drop(broker);
    let flag = from_flag.to_string();
    let _broker =
        BrokerProcess::start_exact(&["--config", file_arg, "--address", &address, "--mqtt", &flag], endpoint, None)
            .unwrap_or_else(|e| panic!("{e}"));
    eventually(WAIT, "the flag's MQTT listener", || TcpStream::connect(from_flag).ok());
    assert!(TcpStream::connect(from_file).is_err(), "--mqtt replaces the file's listener");
}

/// An MQTT subscriber that never reads is cut at `--max-queue-bytes`; a
/// reading subscriber of the same messages gets every one.
#[test]
fn an_mqtt_subscriber_that_never_reads_is_cut_and_harms_no_one() {
    const MESSAGE: usize = 256 << 10;
    const MESSAGES: usize = 64;
    let broker = MqttBroker::tinymq(&["--max-queue-bytes", "1048576", "--sys-interval", "0"]);
    let tinymq = broker.tinymq.as_ref().unwrap();
    let mut stuck = TcpStream::connect(broker.address).unwrap();
    // CONNECT (3.1.1, id "stuck"), SUBSCRIBE flood at QoS 1; then it reads
    // only its CONNACK and SUBACK.
    stuck
        .write_all(&[0x10, 0x11, 0, 4, b'M', b'Q', b'T', b'T', 4, 2, 0, 0, 0, 5, b's', b't', b'u', b'c', b'k'])
        .unwrap();
    stuck.write_all(&[0x82, 0x0a, 0, 1, 0, 5, b'f', b'l', b'o', b'o', b'd', 1]).unwrap();
    let mut acks = [0u8; 9];
    stuck.set_read_timeout(Some(WAIT)).unwrap();
    stuck.read_exact(&mut acks).unwrap();
    assert_eq!(acks, [0x20, 2, 0, 0, 0x90, 3, 0, 1, 1]);
    let mut reader = broker.subscribe(&["flood"], &["-q", "1"]);
    let mut publisher = tinymq.connect("flooder");
    let payload = vec![b'z'; MESSAGE];
    for i in 0..MESSAGES {
        publisher.publish("flood", &payload);
        let line = reader.line();
        assert!(line.starts_with("flood|0|0|zzz") && line.len() == "flood|0|0|".len() + MESSAGE, "message {i}");
    }
    eventually(WAIT, "one slow consumer cut", || {
        let stats = moustique_json(tinymq.http_addr(), "STATS", &[]);
        (stats.path("dropped.slow_consumer").map(Json::num) == Some(1.0)).then_some(())
    });
    // The stuck client finds its connection closed once it reads.
    let mut rest = Vec::new();
    let _ = stuck.read_to_end(&mut rest);
    assert!(rest.len() < MESSAGES * MESSAGE, "cut before it got everything: {} bytes", rest.len());
}
