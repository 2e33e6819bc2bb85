//! TLS on the binary listener (`--tls-cert`, `--tls-key`) and HTTPS
//! (`--https`), through the real binary, with certificates made at test
//! time: the library client, `tinymq pub`/`sub --tls`, curl over HTTPS
//! (plain API, Moustique API, Server-Sent Events), and peers that do not
//! speak TLS, which are closed without harm to anyone else.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Stdio;
use std::time::Duration;

use crate::support::http::{CurlSse, Json, JsonExt, curl, curl_status, enc, eventually};
use crate::support::{BrokerProcess, TestPki, WAIT, tinymq};
use crate::support::{run_tinymq as run, sub_lines};
use rustls::{ClientConnection, StreamOwned};
use tinymq_core::Frame;
use tinymq_net::{Address, Broker, Client, ClientError, ClientOptions, ClientTls, HttpConnConfig, ServerTls};

fn free_address() -> String {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string()
}

/// A broker whose binary listener speaks TLS, plus `extra` flags.
fn tls_broker(pki: &TestPki, extra: &[&str]) -> BrokerProcess {
    let mut flags = vec!["--tls-cert", TestPki::arg(&pki.cert), "--tls-key", TestPki::arg(&pki.key)];
    flags.extend_from_slice(extra);
    BrokerProcess::start(&flags)
}

/// A library client over TLS, trusting the test CA, reconnecting off.
fn tls_client(pki: &TestPki, address: impl Into<Address>, client_id: &str) -> Client {
    ClientOptions::new(address)
        .tls(ClientTls::with_ca_file(&pki.ca).unwrap())
        .client_id(client_id)
        .reconnect(false)
        .connect_timeout(WAIT)
        .request_timeout(WAIT)
        .connect()
        .unwrap_or_else(|e| panic!("TLS client {client_id}: {e}"))
}

fn recv(client: &mut Client) -> (String, Vec<u8>) {
    let message = client.recv_timeout(WAIT).unwrap().expect("a message within WAIT");
    (message.topic, message.payload)
}

/// Sends `bytes` on a fresh TCP connection and reads until the broker
/// closes it (within [`WAIT`], or the test fails); returns what came.
fn closed_after(address: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.write_all(bytes).unwrap();
    let mut got = Vec::new();
    match stream.read_to_end(&mut got) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("the broker did not close the connection within {WAIT:?} ({e}); got {got:?}"),
    }
    got
}

/// What a TLS port may answer a non-TLS peer: nothing, or a TLS alert
/// record (content type 21), never plaintext.
fn assert_alert_or_nothing(got: &[u8], what: &str) {
    assert!(got.is_empty() || got[0] == 21, "{what}: answered with something that is not a TLS alert: {got:?}");
}

/// Bytes that are not TLS: a fixed pseudo-random sequence.
fn garbage(len: usize) -> Vec<u8> {
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut bytes: Vec<u8> = (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    bytes[0] = 0xde; // not a TLS content type
    bytes
}

fn stats(pki: &TestPki, https: SocketAddr) -> Json {
    let (status, body) = curl_status(&["--cacert", TestPki::arg(&pki.ca), &format!("https://{https}/api/v1/stats")]);
    assert_eq!(status, 200, "{body}");
    Json::must_parse(&body)
}

#[test]
fn library_clients_publish_and_subscribe_over_tls() {
    let pki = TestPki::generate();
    let broker = tls_broker(&pki, &[]);
    let port = broker.tcp_addr().port();
    // By host name (a DNS name in the certificate) and by IP address (an IP one).
    let mut subscriber = tls_client(&pki, Address::tcp(format!("localhost:{port}")), "sub");
    let mut publisher = tls_client(&pki, broker.tcp_addr(), "pub");
    subscriber.subscribe("sensors/#").unwrap();

    publisher.publish("sensors/temperature", b"22.5", true).unwrap();
    assert_eq!(recv(&mut subscriber), ("sensors/temperature".into(), b"22.5".to_vec()));
    // Larger than a TLS record and than rustls' 64 KiB write buffer, both ways.
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    publisher.publish("sensors/big", &big, false).unwrap();
    assert_eq!(recv(&mut subscriber), ("sensors/big".into(), big));
    // A burst, in order, none stuck in a buffer.
    for i in 0..2000 {
        publisher.publish("sensors/burst", format!("{i}").as_bytes(), false).unwrap();
    }
    for i in 0..2000 {
        assert_eq!(recv(&mut subscriber), ("sensors/burst".into(), format!("{i}").into_bytes()));
    }
    // A retained value reaches a late subscriber over TLS too.
    let mut late = tls_client(&pki, broker.tcp_addr(), "late");
    late.subscribe("sensors/temperature").unwrap();
    assert_eq!(recv(&mut late), ("sensors/temperature".into(), b"22.5".to_vec()));
    publisher.disconnect().unwrap();
    subscriber.disconnect().unwrap();
}

#[test]
fn pub_and_sub_commands_speak_tls_with_a_ca_or_insecure() {
    let pki = TestPki::generate();
    let broker = tls_broker(&pki, &[]);
    let address = format!("localhost:{}", broker.tcp_addr().port());
    let ca = TestPki::arg(&pki.ca);
    let sub = tinymq()
        .args(["sub", "--tls", "--ca", ca, "--address", &address, "--topic", "sensors/#", "--count", "2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Retained, so `sub` gets both whenever it subscribes.
    let with_ca =
        run(&["pub", "--tls", "--ca", ca, "--address", &address, "--topic", "sensors/a", "--message", "1", "--retain"]);
    assert!(with_ca.status.success(), "{with_ca:?}");
    let ip = broker.tcp_addr().to_string();
    let insecure =
        run(&["pub", "--tls", "--insecure", "--address", &ip, "--topic", "sensors/b", "--message", "2", "--retain"]);
    assert!(insecure.status.success(), "{insecure:?}");

    assert_eq!(sub_lines(sub), ["sensors/a 1", "sensors/b 2"]);
}

#[test]
fn a_certificate_from_another_ca_is_refused_with_a_clear_error() {
    let pki = TestPki::generate();
    let https = free_address();
    let broker = tls_broker(&pki, &["--https", &https]);

    let error = ClientOptions::new(broker.tcp_addr())
        .tls(ClientTls::with_ca_file(&pki.other_ca).unwrap())
        .connect()
        .expect_err("a certificate the client does not trust");
    assert!(matches!(error, ClientError::Tls(_)), "{error:?}");
    assert!(error.to_string().contains("invalid peer certificate"), "{error}");

    let address = broker.tcp_addr().to_string();
    let refused = run(&["sub", "--tls", "--ca", TestPki::arg(&pki.other_ca), "--address", &address, "--topic", "a"]);
    let stderr = String::from_utf8(refused.stderr).unwrap();
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr:?}");
    assert!(stderr.contains("TLS handshake failed: invalid peer certificate"), "{stderr}");

    // The broker counted both refusals (the clients' alerts).
    eventually(WAIT, "two failed handshakes counted", || {
        (stats(&pki, broker.https_addr()).field("tls_handshake_failures").num() == 2.0).then_some(())
    });

    // A TLS client at a plaintext port fails clearly too.
    let plain = BrokerProcess::start(&[]);
    let error = ClientOptions::new(plain.tcp_addr())
        .tls(ClientTls::with_ca_file(&pki.ca).unwrap())
        .connect()
        .expect_err("a broker that does not speak TLS");
    assert!(matches!(error, ClientError::Tls(_) | ClientError::Io(_)), "{error:?}");
}

#[test]
fn a_ca_file_that_is_not_pem_fails_naming_it() {
    let pki = TestPki::generate();
    let broker = tls_broker(&pki, &[]);
    let address = broker.tcp_addr().to_string();
    let not_pem = pki.dir().join("not.pem");
    std::fs::write(&not_pem, "hello").unwrap();
    let output = run(&["pub", "--tls", "--ca", TestPki::arg(&not_pem), "--address", &address, "--topic", "a"]);
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(TestPki::arg(&not_pem)) && stderr.contains("no certificate"), "{stderr}");
    let output = run(&["pub", "--tls", "--address", &address, "--topic", "a"]);
    assert_eq!(output.status.code(), Some(2), "--tls alone is a usage error: {output:?}");
}

#[test]
fn the_broker_refuses_bad_tls_flags_naming_the_flag_or_file() {
    let pki = TestPki::generate();
    let address = free_address();
    let cert = TestPki::arg(&pki.cert);
    let base = ["broker", "--address", &address, "--no-http", "--in-memory"];
    let with = |extra: &[&str]| run(&[&base[..], extra].concat());

    let output = with(&["--https", &free_address()]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("--https"), "{output:?}");
    let output = with(&["--tls-cert", cert]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("--tls-key"), "{output:?}");

    let missing = pki.dir().join("missing-key.pem");
    let output = with(&["--tls-cert", cert, "--tls-key", TestPki::arg(&missing)]);
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr:?}");
    assert!(stderr.contains(TestPki::arg(&missing)), "names the file: {stderr}");
    // A key that is not the certificate's.
    let output = with(&["--tls-cert", cert, "--tls-key", TestPki::arg(&pki.other_ca)]);
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(TestPki::arg(&pki.other_ca)), "names the file: {stderr}");
}

#[test]
fn https_serves_the_plain_and_moustique_apis_to_curl() {
    let pki = TestPki::generate();
    let https = free_address();
    let broker = tls_broker(&pki, &["--https", &https]);
    let base = format!("https://localhost:{}", broker.https_addr().port());
    let ca = TestPki::arg(&pki.ca);

    assert_eq!(curl(&["--cacert", ca, &format!("{base}/api/v1/health")]).trim(), "ok");
    // By IP address too, and with HTTP/1.1 forced or not.
    let (status, _) = curl_status(&["--cacert", ca, "--http1.1", &format!("https://{https}/api/v1/health")]);
    assert_eq!(status, 200);

    let mut subscriber = tls_client(&pki, broker.tcp_addr(), "sub");
    subscriber.subscribe("/sensors/#").unwrap();
    subscriber.subscribe("plain/#").unwrap();
    // A Moustique POST over HTTPS reaches the TLS binary subscriber.
    let (status, _) = curl_status(&[
        "--cacert",
        ca,
        &format!("{base}/POST"),
        "--data-urlencode",
        &format!("topic={}", enc("/sensors/kitchen")),
        "--data-urlencode",
        &format!("message={}", enc("21.5")),
        "--data-urlencode",
        &format!("from={}", enc("curl")),
    ]);
    assert_eq!(status, 200);
    assert_eq!(recv(&mut subscriber), ("/sensors/kitchen".into(), b"21.5".to_vec()));
    // So does a plain publish.
    let (status, _) =
        curl_status(&["--cacert", ca, "--data-binary", "over https", &format!("{base}/api/v1/publish?topic=plain/x")]);
    assert_eq!(status, 204);
    assert_eq!(recv(&mut subscriber), ("plain/x".into(), b"over https".to_vec()));
    // Keep-alive: two requests on one connection.
    let both = curl(&["--cacert", ca, &format!("{base}/api/v1/health"), &format!("{base}/api/v1/health")]);
    assert_eq!(both, "okok");

    let figures = stats(&pki, broker.https_addr());
    assert_eq!(figures.path("connections.tls").map(Json::num), Some(1.0), "{figures}");
    assert_eq!(figures.field("tls_handshake_failures").num(), 0.0, "{figures}");
}

#[test]
fn an_event_stream_over_https_receives_messages() {
    let pki = TestPki::generate();
    let https = free_address();
    let broker = tls_broker(&pki, &["--https", &https]);
    let ca = TestPki::arg(&pki.ca);
    let mut publisher = tls_client(&pki, broker.tcp_addr(), "pub");
    // curl shows the head once some body follows: a stored value does.
    publisher.publish("feed/stored", b"before", true).unwrap();
    publisher.subscribe("feed/stored").unwrap();
    publisher.recv_timeout(WAIT).unwrap().expect("the stored value is in");
    let url = format!("https://localhost:{}/api/v1/events?topic=feed/%23", broker.https_addr().port());
    let mut events = CurlSse::start_with(&["--cacert", ca], &url);
    assert!(events.head[0].contains(" 200"), "{:?}", events.head);
    let event = events.next_message();
    assert_eq!((event.field("topic").str(), event.field("message").str()), ("feed/stored", "before"), "{event}");

    publisher.publish("feed/one", b"first", false).unwrap();
    let event = events.next_message();
    assert_eq!((event.field("topic").str(), event.field("message").str()), ("feed/one", "first"), "{event}");
    let (status, _) = curl_status(&[
        "--cacert",
        ca,
        "--data-binary",
        "second",
        &format!("https://{https}/api/v1/publish?topic=feed/two"),
    ]);
    assert_eq!(status, 204);
    let event = events.next_message();
    assert_eq!((event.field("topic").str(), event.field("message").str()), ("feed/two", "second"), "{event}");
}

#[test]
fn plaintext_and_garbage_on_tls_ports_are_closed_without_harming_others() {
    let pki = TestPki::generate();
    let https = free_address();
    let broker = tls_broker(&pki, &["--https", &https]);
    let mut subscriber = tls_client(&pki, broker.tcp_addr(), "sub");
    subscriber.subscribe("alive/#").unwrap();
    let mut publisher = tls_client(&pki, broker.tcp_addr(), "pub");

    let got = closed_after(broker.tcp_addr(), &Frame::connect("plaintext", b"").to_vec());
    assert_alert_or_nothing(&got, "a plaintext Connect on the TLS port");
    let got = closed_after(broker.tcp_addr(), &garbage(4096));
    assert_alert_or_nothing(&got, "garbage on the TLS port");
    let got = closed_after(broker.https_addr(), b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_alert_or_nothing(&got, "plaintext HTTP on the HTTPS port");
    let got = closed_after(broker.https_addr(), &garbage(300));
    assert_alert_or_nothing(&got, "garbage on the HTTPS port");

    // The established TLS subscriber noticed nothing.
    for i in 0..3 {
        publisher.publish("alive/check", format!("{i}").as_bytes(), false).unwrap();
        assert_eq!(recv(&mut subscriber), ("alive/check".into(), format!("{i}").into_bytes()));
    }
    let figures = stats(&pki, broker.https_addr());
    assert_eq!(figures.field("tls_handshake_failures").num(), 4.0, "each counted once: {figures}");
    assert_eq!(figures.path("connections.tls").map(Json::num), Some(2.0), "{figures}");
    let metrics = curl(&["--cacert", TestPki::arg(&pki.ca), &format!("https://{https}/metrics")]);
    assert!(metrics.lines().any(|l| l == "tinymq_tls_handshake_failures_total 4"), "{metrics}");
}

#[test]
fn a_silent_or_stalled_handshake_is_cut_by_the_keep_alive() {
    let pki = TestPki::generate();
    let broker = tls_broker(&pki, &["--keep-alive", "1"]);
    // Connects and sends nothing.
    assert_eq!(closed_after(broker.tcp_addr(), b""), b"");
    // Starts a ClientHello (a record header announcing 512 bytes) and stalls.
    assert_eq!(closed_after(broker.tcp_addr(), &[22, 3, 1, 2, 0, 1, 0]), b"");
    // A TLS client is still served.
    let mut client = tls_client(&pki, broker.tcp_addr(), "after");
    client.subscribe("x").unwrap();
}

#[test]
fn an_embedded_broker_serves_https_and_cuts_a_silent_peer_at_the_idle_timeout() {
    let pki = TestPki::generate();
    let http_conn = HttpConnConfig { idle_timeout: Duration::from_secs(1), ..HttpConnConfig::default() };
    let broker = Broker::builder()
        .listen_tls("127.0.0.1:0".parse().unwrap())
        .listen_https("127.0.0.1:0".parse().unwrap())
        .tls(ServerTls::from_pem_files(&pki.cert, &pki.key).unwrap())
        .http_conn(http_conn)
        .threads(1)
        .start()
        .unwrap();
    let https = broker.https_addr().unwrap();
    assert_eq!(closed_after(https, b""), b"", "a peer that never says hello is cut when idle");
    let (status, body) = curl_status(&["--cacert", TestPki::arg(&pki.ca), &format!("https://{https}/api/v1/health")]);
    assert_eq!((status, body.as_str()), (200, "ok"));

    let mut client = tls_client(&pki, broker.tls_addr().unwrap(), "embedded");
    let local = broker.client("local").unwrap();
    local.subscribe("from/tls").unwrap();
    client.publish("from/tls", b"hi", false).unwrap();
    let message = local.recv_timeout(WAIT).unwrap().expect("a message");
    assert_eq!(message.payload(), b"hi");
    assert_eq!(broker.stats().tls_handshake_failures, 0);

    // A TLS listener without a certificate is an error naming it.
    let error = Broker::builder().listen_tls("127.0.0.1:0".parse().unwrap()).start().unwrap_err();
    assert!(error.to_string().contains("tls://127.0.0.1:0") && error.to_string().contains("certificate"), "{error}");
    broker.shutdown();
}

/// A blocking rustls client on `address`, trusting the test CA, for the
/// byte-level checks curl hides.
fn raw_tls(pki: &TestPki, address: SocketAddr) -> StreamOwned<ClientConnection, TcpStream> {
    let config = ClientTls::with_ca_file(&pki.ca).unwrap().config();
    let name = tinymq_net::ClientTls::server_name(&address.to_string()).unwrap();
    let socket = TcpStream::connect(address).unwrap();
    socket.set_read_timeout(Some(WAIT)).unwrap();
    StreamOwned::new(ClientConnection::new(config, name).unwrap(), socket)
}

#[test]
fn https_ends_with_close_notify_and_answers_a_half_closed_request() {
    let pki = TestPki::generate();
    let https = free_address();
    let broker = tls_broker(&pki, &["--https", &https]);

    // `Connection: close`: the answer, then the broker's close_notify. A
    // bare TCP close would read as a truncation (UnexpectedEof) here.
    let mut tls = raw_tls(&pki, broker.https_addr());
    tls.write_all(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut answer = String::new();
    tls.read_to_string(&mut answer).expect("a clean TLS end after the answer");
    assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with("\r\n\r\nok"), "{answer:?}");

    // The client's close_notify right after its request ends its input:
    // the request is still answered, then the connection ends cleanly.
    let mut tls = raw_tls(&pki, broker.https_addr());
    tls.write_all(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    tls.conn.send_close_notify();
    tls.flush().unwrap();
    let mut answer = String::new();
    tls.read_to_string(&mut answer).expect("a clean TLS end after the answer");
    assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with("\r\n\r\nok"), "{answer:?}");

    // A refused request with its body unread (413, decided from the head)
    // gets its answer before the close.
    let mut tls = raw_tls(&pki, broker.https_addr());
    tls.write_all(b"POST /api/v1/publish?topic=a HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n").unwrap();
    tls.write_all(&[b'x'; 20_000]).unwrap();
    let mut answer = Vec::new();
    let mut chunk = [0; 4096];
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tls.read(&mut chunk).expect("the 413 arrives");
        assert!(n > 0, "closed before the answer: {answer:?}");
        answer.extend_from_slice(&chunk[..n]);
    }
    assert!(answer.starts_with(b"HTTP/1.1 413"), "{:?}", String::from_utf8_lossy(&answer));
}
