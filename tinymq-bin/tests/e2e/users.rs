//! Users through the real binary and real data directories: `tinymq user`,
//! credentials on both transports, each user's own namespace, admin rights,
//! and no clear-text password on disk.

use std::io::Write;
use std::path::Path;
use std::process::{Output, Stdio};

use crate::support::http::{
    CurlSse, HttpConn, Json, JsonExt, Response, assert_message_object, base64_encode, call, moustique,
    moustique_request, pickup,
};
use crate::support::{BrokerProcess, QUIET, ScratchDir, WAIT, add_user, tinymq, wait_child};
use serde_json::json;
use tinymq_core::{Frame, ReasonCode};

const ALICE: &str = "alice-pw-5f1c9e";
const BOB: &str = "bob-pw-8d2a47";
const ROOT: &str = "root-pw-33b0c1";

/// A data directory holding alice, bob (users) and root (admin).
fn data_with_users() -> ScratchDir {
    let data = ScratchDir::new();
    add_user(data.path(), "alice", ALICE, false);
    add_user(data.path(), "bob", BOB, false);
    add_user(data.path(), "root", ROOT, true);
    data
}

fn start(data: &ScratchDir, extra: &[&str]) -> BrokerProcess {
    let path = data.path().to_str().expect("a UTF-8 path");
    let mut flags = vec!["--data", path];
    flags.extend_from_slice(extra);
    BrokerProcess::start_http(&flags)
}

/// `tinymq user ARGS --data DIR`, with `stdin` fed to it.
fn user_command(data: &Path, args: &[&str], stdin: &str) -> Output {
    let mut child = tinymq()
        .arg("user")
        .args(args)
        .arg("--data")
        .arg(data)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tinymq user");
    child.stdin.take().expect("piped stdin").write_all(stdin.as_bytes()).expect("write stdin");
    if wait_child(&mut child, WAIT).is_none() {
        let _ = child.kill();
        panic!("tinymq user {args:?} still running after {WAIT:?}");
    }
    child.wait_with_output().expect("tinymq user output")
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("UTF-8 stdout")
}

/// Asserts a failure: the exit status and one line on stderr containing `says`.
fn assert_fails(output: &Output, status: i32, says: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(status), "stderr: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr:?}");
    assert!(stderr.contains(says), "{stderr:?} should say {says:?}");
}

/// The Moustique parameters of a user's credentials, after `params`.
fn with_user<'a>(params: &[(&'a str, &'a str)], user: &'a str, password: &'a str) -> Vec<(&'a str, &'a str)> {
    let mut all = params.to_vec();
    all.extend([("username", user), ("password", password)]);
    all
}

/// A plain-API GET with HTTP Basic credentials (none for `None`).
fn get_basic(broker: &BrokerProcess, target: &str, user: Option<(&str, &str)>) -> Response {
    let header =
        user.map(|(name, password)| format!("Basic {}", base64_encode(format!("{name}:{password}").as_bytes())));
    let headers: Vec<(&str, &str)> = header.iter().map(|h| ("Authorization", h.as_str())).collect();
    call(broker.http_addr(), "GET", target, &headers, b"")
}

/// The topics of a plain `/api/v1/values` reply.
fn value_topics(json: &Json) -> Vec<String> {
    json.items().iter().map(|m| m.field("topic").str().to_owned()).collect()
}

#[test]
fn user_commands_add_list_replace_and_remove() {
    let data = ScratchDir::new();
    let dir = data.path();
    assert_fails(&user_command(dir, &["list"], ""), 1, "no database at");

    let added = user_command(dir, &["add", "alice"], "from stdin\n");
    assert!(added.status.success(), "{added:?}");
    assert_eq!(stdout(&added), "added user alice (user)\n");
    let added = user_command(dir, &["add", "root", "--admin", "--password", "x"], "");
    assert_eq!(stdout(&added), "added user root (admin)\n");
    assert_eq!(stdout(&user_command(dir, &["list"], "")), "alice\tuser\nroot\tadmin\n");

    // Adding a name again replaces its password and role, and says so.
    let replaced = user_command(dir, &["add", "alice", "--admin"], "new\r\n");
    assert_eq!(stdout(&replaced), "replaced user alice: new password, role admin\n");
    assert_eq!(stdout(&user_command(dir, &["list"], "")), "alice\tadmin\nroot\tadmin\n");

    let removed = user_command(dir, &["remove", "root"], "");
    assert!(removed.status.success(), "{removed:?}");
    assert_eq!(stdout(&user_command(dir, &["list"], "")), "alice\tadmin\n");
    assert_fails(&user_command(dir, &["remove", "root"], ""), 1, "no user \"root\"");

    assert_fails(&user_command(dir, &["add", "a/b", "--password", "x"], ""), 2, "'/'");
    assert_fails(&user_command(dir, &["add", "a\u{1}b", "--password", "x"], ""), 2, "cannot contain");
    assert_fails(&user_command(dir, &["add", "carol", "--password", ""], ""), 2, "--password");
    assert_fails(&user_command(dir, &["add", "carol"], "\n"), 1, "password is empty");
    assert_fails(&user_command(dir, &["add", "carol"], &"x".repeat(2000)), 1, "over 1024 bytes");
    assert_fails(&user_command(dir, &["add"], ""), 2, "needs a NAME");
    assert_fails(&user_command(dir, &["list", "--admin"], ""), 2, "--admin");
    assert_fails(&user_command(dir, &["frobnicate"], ""), 2, "frobnicate");
    assert_eq!(stdout(&user_command(dir, &["list"], "")), "alice\tadmin\n", "failures changed nothing");
}

#[test]
fn user_commands_refuse_the_database_of_a_running_broker_naming_it() {
    let data = data_with_users();
    let broker = start(&data, &[]);
    for args in [&["list"][..], &["add", "dave", "--password", "x"], &["remove", "bob"]] {
        assert_fails(&user_command(data.path(), args, ""), 1, "tinymq.redb is in use");
    }
    drop(broker);
    assert_eq!(stdout(&user_command(data.path(), &["list"], "")), "alice\tuser\nbob\tuser\nroot\tadmin\n");
}

#[test]
fn the_right_password_connects_and_a_wrong_or_unknown_one_gets_disconnect_2() {
    let data = data_with_users();
    let broker = start(&data, &[]);
    for (user, password) in [("alice", "wrong"), ("alice", ""), ("alice", BOB), ("nobody", ALICE)] {
        let mut client = broker.open();
        client.send(&Frame::connect("c", format!("{user}\0{password}").as_bytes()));
        let text = client.expect_disconnect(ReasonCode::NotAuthorized);
        assert_eq!(text, "unknown user or wrong password", "{user}/{password}");
    }
    // The first check goes to a verifier; the second is remembered.
    for _ in 0..2 {
        broker.connect_as("alice-1", "alice", ALICE).ping();
    }
    // A wrong password after a right one is still wrong.
    let mut client = broker.open();
    client.send(&Frame::connect("c", format!("alice\0{ALICE}x").as_bytes()));
    client.expect_disconnect(ReasonCode::NotAuthorized);
    // Frames sent right behind Connect wait for its check, then are served.
    let mut eager = broker.open();
    let mut bytes = Frame::connect("eager", format!("bob\0{BOB}").as_bytes()).to_vec();
    bytes.extend(Frame::empty(tinymq_core::FrameType::Ping).to_vec());
    eager.send_bytes(&bytes);
    assert_eq!(eager.recv().kind, tinymq_core::FrameType::ConnAck);
    assert_eq!(eager.recv().kind, tinymq_core::FrameType::Pong);
}

#[test]
fn the_right_password_works_over_http_and_a_wrong_or_unknown_one_gets_401() {
    let data = data_with_users();
    // Immediate durability: a POST's answer waits for its password check,
    // then for its commit.
    let broker = start(&data, &["--durability", "immediate"]);
    let addr = broker.http_addr();
    let post = |user: &str, password: &str| {
        moustique(addr, "POST", &with_user(&[("topic", "/t"), ("message", "m")], user, password))
    };
    for (user, password) in [("alice", "wrong"), ("nobody", ALICE), ("alice", "")] {
        let response = post(user, password);
        response.assert_status(401, &format!("POST as {user}/{password}"));
        assert_eq!(response.text(), "unknown user or wrong password");
    }
    // Nothing of the refused POSTs landed anywhere, the public namespace
    // included: wrong credentials are not anonymous.
    moustique(addr, "GETVAL", &[("topic", "/t")]).assert_status(404, "anonymous GETVAL");
    moustique(addr, "GETVAL", &with_user(&[("topic", "/t")], "alice", ALICE)).assert_status(404, "alice's GETVAL");

    // Requests pipelined behind one whose password is being checked are
    // answered after it, in order.
    let mut conn = HttpConn::open(addr);
    let mut pipelined =
        moustique_request("POST", "POST", &with_user(&[("topic", "/t"), ("message", "m")], "alice", ALICE));
    pipelined.extend(moustique_request("POST", "GETVAL", &with_user(&[("topic", "/t")], "alice", ALICE)));
    pipelined.extend(moustique_request("POST", "GETVAL", &[("topic", "/t")]));
    conn.send(&pipelined);
    conn.response().assert_empty_ok("POST as alice");
    assert_eq!(conn.response().moustique_json("GETVAL").field("message").str(), "m");
    conn.response().assert_status(404, "anonymous GETVAL behind them");
    post("alice", ALICE).assert_empty_ok("POST as alice, remembered");
    let value = moustique(addr, "GETVAL", &with_user(&[("topic", "/t")], "alice", ALICE)).moustique_json("GETVAL");
    assert_eq!(value.field("message").str(), "m");

    // The plain API: HTTP Basic, or the same parameters in the query.
    let target = "/api/v1/value?topic=/t";
    assert_eq!(get_basic(&broker, target, Some(("alice", ALICE))).plain_json("value").field("message").str(), "m");
    get_basic(&broker, target, Some(("alice", BOB))).assert_status(401, "Basic, wrong password");
    get_basic(&broker, target, Some(("mallory", "x"))).assert_status(401, "Basic, unknown user");
    get_basic(&broker, target, None).assert_status(404, "anonymous: the public namespace has no /t");
    let query = format!("/api/v1/value?topic=/t&username=alice&password={ALICE}");
    assert_eq!(call(addr, "GET", &query, &[], b"").plain_json("value").field("message").str(), "m");
    let query = "/api/v1/value?topic=/t&username=alice&password=nope";
    call(addr, "GET", query, &[], b"").assert_status(401, "query credentials, wrong password");
}

#[test]
fn without_anonymous_access_missing_credentials_are_refused_on_both_transports() {
    let data = data_with_users();
    let broker = start(&data, &["--allow-anonymous", "false"]);
    let addr = broker.http_addr();

    let mut client = broker.open();
    client.send(&Frame::connect("anonymous", b""));
    assert_eq!(client.expect_disconnect(ReasonCode::NotAuthorized), "this broker needs credentials");
    broker.connect_as("alice-1", "alice", ALICE).ping();

    let response = moustique(addr, "POST", &[("topic", "/t"), ("message", "m")]);
    response.assert_status(401, "anonymous POST");
    assert_eq!(response.text(), "this broker needs credentials");
    get_basic(&broker, "/api/v1/value?topic=/t", None).assert_status(401, "anonymous plain GET");
    // Moustique serves VERSION to anyone; its clients ask without credentials.
    moustique(addr, "VERSION", &[]).assert_status(200, "VERSION stays open");
    get_basic(&broker, "/api/v1/health", None).assert_status(200, "health stays open");

    moustique(addr, "POST", &with_user(&[("topic", "/t"), ("message", "m")], "bob", BOB)).assert_empty_ok("bob");
    assert_eq!(
        get_basic(&broker, "/api/v1/value?topic=/t", Some(("bob", BOB))).plain_json("value").field("message").str(),
        "m"
    );
}

#[test]
fn users_do_not_see_each_others_messages_or_values_on_the_binary_protocol() {
    let data = data_with_users();
    let broker = start(&data, &[]);
    let mut alice = broker.connect_as("listener", "alice", ALICE);
    let mut bob = broker.connect_as("listener", "bob", BOB);
    let mut anonymous = broker.connect("listener");
    for client in [&mut alice, &mut bob, &mut anonymous] {
        client.subscribe("#");
    }
    // The same client id in three namespaces: nobody was taken over.
    for client in [&mut alice, &mut bob, &mut anonymous] {
        client.ping();
    }

    let mut publishers =
        [broker.connect_as("pub", "alice", ALICE), broker.connect_as("pub", "bob", BOB), broker.connect("pub")];
    for (publisher, text) in publishers.iter_mut().zip(["alice's", "bob's", "public"]) {
        publisher.publish_retained("shared/topic", text.as_bytes());
    }
    for (listener, text) in [(&mut alice, "alice's"), (&mut bob, "bob's"), (&mut anonymous, "public")] {
        let message = listener.recv_publish();
        assert_eq!((message.topic.as_str(), message.payload.as_slice()), ("shared/topic", text.as_bytes()));
        listener.expect_silence(QUIET);
        listener.ping();
    }

    // A new subscription gets its own namespace's stored value, no other.
    for (user, password, text) in [("alice", ALICE, "alice's"), ("bob", BOB, "bob's")] {
        let mut late = broker.connect_as("late", user, password);
        late.subscribe("shared/#");
        let retained = late.recv_publish();
        assert!(retained.retain(), "{retained:?}");
        assert_eq!(retained.payload, text.as_bytes());
        late.ping();
    }
    let mut late = broker.connect("late");
    late.subscribe("shared/#");
    assert_eq!(late.recv_publish().payload, b"public");
    late.ping();
}

#[test]
fn users_do_not_see_each_others_values_queues_or_clients_over_http() {
    let data = data_with_users();
    let broker = start(&data, &[]);
    let addr = broker.http_addr();
    let as_alice = |params: &[(&'static str, &'static str)]| with_user(params, "alice", ALICE);
    let as_bob = |params: &[(&'static str, &'static str)]| with_user(params, "bob", BOB);

    // Moustique clients of the same name in two namespaces, and one more.
    for params in [
        as_alice(&[("topic", "/t/#"), ("client", "c")]),
        as_alice(&[("topic", "/t/#"), ("client", "alice-only")]),
        as_bob(&[("topic", "/t/#"), ("client", "c")]),
    ] {
        moustique(addr, "SUBSCRIBE", &params).assert_empty_ok("SUBSCRIBE");
    }
    moustique(addr, "POST", &as_alice(&[("topic", "/t/secret"), ("message", "alice's")])).assert_empty_ok("POST");
    moustique(addr, "PUTVAL", &as_alice(&[("valname", "/v"), ("val", "1")])).assert_empty_ok("PUTVAL");

    let picked = pickup_until_as(addr, "c", "alice", ALICE, "/t/secret");
    assert_eq!(picked.len(), 1, "{picked:?}");
    let bobs = moustique(addr, "PICKUP", &as_bob(&[("client", "c")])).moustique_json("bob's PICKUP");
    assert_eq!(bobs, json!({}), "bob's c got nothing of alice's");

    for (who, params) in [("bob", as_bob(&[("topic", "/t/secret")])), ("anonymous", vec![("topic", "/t/secret")])] {
        moustique(addr, "GETVAL", &params).assert_status(404, &format!("{who}'s GETVAL of alice's topic"));
    }
    let regex = |params: Vec<(&str, &str)>| moustique(addr, "GETVALSBYREGEX", &params).moustique_json("REGEX");
    assert_eq!(regex(as_bob(&[("topic", "secret|v")])), json!({}));
    assert_eq!(regex(as_alice(&[("topic", "secret|v")])).members().len(), 2);
    let topics = moustique(addr, "TOPICS", &as_bob(&[])).moustique_json("bob's TOPICS");
    assert_eq!(topics, Json::Array(Vec::new()));
    let clients = moustique(addr, "CLIENTS", &as_bob(&[])).moustique_json("bob's CLIENTS");
    let names: Vec<&str> = clients.items().iter().map(|c| c.field("Name").str()).collect();
    assert_eq!(names, ["c"], "bob sees his own client only");

    // The plain API: values by filter, and an anonymous pickup client.
    let values = |user| get_basic(&broker, "/api/v1/values?match=%23", user).plain_json("values");
    assert_eq!(value_topics(&values(Some(("alice", ALICE)))), ["/t/secret", "/v"]);
    assert!(value_topics(&values(Some(("bob", BOB)))).is_empty());
    assert!(value_topics(&values(None)).is_empty());
    moustique(addr, "SUBSCRIBE", &[("topic", "/t/#"), ("client", "c")]).assert_empty_ok("anonymous SUBSCRIBE");
    moustique(addr, "POST", &as_bob(&[("topic", "/t/x"), ("message", "bob's")])).assert_empty_ok("bob's POST");
    let bobs = pickup_until_as(addr, "c", "bob", BOB, "/t/x");
    assert_eq!(bobs.len(), 1, "{bobs:?}");
    // Empty, not the resubscribe notice: registered, and sent nothing.
    assert!(pickup(addr, "c").is_empty(), "the public c got nothing of bob's");
}

#[test]
fn an_event_stream_of_a_user_gets_that_users_messages_only() {
    let data = data_with_users();
    let mut broker = start(&data, &[]);
    let post = |addr, user: Option<(&'static str, &'static str)>, topic: &'static str, message: &'static str| {
        let params = [("topic", topic), ("message", message), ("from", "w")];
        let params = match user {
            Some((name, password)) => with_user(&params, name, password),
            None => params.to_vec(),
        };
        moustique(addr, "POST", &params).assert_empty_ok(&format!("POST {message}"));
    };
    post(broker.http_addr(), Some(("bob", BOB)), "/e/old", "stored");
    broker.signal(libc::SIGTERM);
    assert!(broker.wait_exit(WAIT).success());

    // A fresh broker: the stream's request waits for bob's password check.
    let broker = start(&data, &[]);
    let addr = broker.http_addr();
    let url = format!("{}/api/v1/events?topic=%23&username=bob&password={BOB}", broker.http_url());
    let mut events = CurlSse::start(&url);
    assert!(events.head[0].contains("200"), "{:?}", events.head);
    assert_message_object(&events.next_message(), "/e/old", "stored", "w");
    post(addr, Some(("alice", ALICE)), "/e/1", "a");
    post(addr, None, "/e/1", "p");
    post(addr, Some(("bob", BOB)), "/e/1", "b");
    // Publishes are routed in order: had alice's or the public one reached
    // the stream, it would come before bob's.
    assert_message_object(&events.next_message(), "/e/1", "b", "w");
    let refused = call(addr, "GET", "/api/v1/events?topic=%23&username=bob&password=wrong", &[], b"");
    refused.assert_status(401, "a stream with a wrong password");
}

#[test]
fn a_users_namespace_spans_both_transports() {
    let data = data_with_users();
    let broker = start(&data, &[]);
    let addr = broker.http_addr();
    let mut alice = broker.connect_as("alice-bin", "alice", ALICE);
    alice.subscribe("/s/#");
    moustique(addr, "POST", &with_user(&[("topic", "/s/1"), ("message", "bob's")], "bob", BOB)).assert_empty_ok("bob");
    moustique(addr, "POST", &[("topic", "/s/1"), ("message", "public")]).assert_empty_ok("anonymous");
    let post = with_user(&[("topic", "/s/1"), ("message", "alice's"), ("from", "web")], "alice", ALICE);
    moustique(addr, "POST", &post).assert_empty_ok("alice");
    let message = alice.recv_publish();
    assert_eq!((message.payload.as_slice(), message.client_id.as_str()), (&b"alice's"[..], "web"));
    alice.expect_silence(QUIET);

    moustique(addr, "SUBSCRIBE", &with_user(&[("topic", "/b/#"), ("client", "q")], "alice", ALICE))
        .assert_empty_ok("SUBSCRIBE");
    alice.publish_retained("/b/kept", b"from the binary side");
    let picked = pickup_until_as(addr, "q", "alice", ALICE, "/b/kept");
    assert_eq!(picked[0].1.field("message").str(), "from the binary side");
    let value = moustique(addr, "GETVAL", &with_user(&[("topic", "/b/kept")], "alice", ALICE)).moustique_json("GETVAL");
    assert_eq!(value.field("message").str(), "from the binary side");
    moustique(addr, "GETVAL", &with_user(&[("topic", "/b/kept")], "bob", BOB)).assert_status(404, "bob's GETVAL");
}

#[test]
fn without_anonymous_access_statistics_need_an_admin() {
    let data = data_with_users();
    let broker = start(&data, &["--allow-anonymous", "false"]);
    let addr = broker.http_addr();
    for endpoint in ["STATS", "CLIENTS", "TOPICS", "POSTERS", "STATUS"] {
        moustique(addr, endpoint, &with_user(&[], "root", ROOT)).assert_status(200, &format!("{endpoint} as admin"));
        moustique(addr, endpoint, &with_user(&[], "alice", ALICE)).assert_status(403, &format!("{endpoint} as alice"));
        moustique(addr, endpoint, &[]).assert_status(401, &format!("{endpoint} anonymous"));
    }
    let stats = moustique(addr, "STATS", &with_user(&[], "root", ROOT)).moustique_json("STATS");
    assert!(stats.get("requests").is_some(), "{stats}");
    for target in ["/metrics", "/api/v1/stats", "/"] {
        get_basic(&broker, target, Some(("root", ROOT))).assert_status(200, &format!("{target} as admin"));
        get_basic(&broker, target, Some(("alice", ALICE))).assert_status(403, &format!("{target} as alice"));
        get_basic(&broker, target, None).assert_status(401, &format!("{target} anonymous"));
    }
    assert!(get_basic(&broker, "/metrics", Some(("root", ROOT))).text().contains("tinymq_uptime_seconds"));
    let page = get_basic(&broker, "/", None);
    assert_eq!(
        page.header("www-authenticate"),
        Some("Basic realm=\"tinymq\", charset=\"UTF-8\""),
        "a browser is asked"
    );
    get_basic(&broker, "/api/v1/health", None).assert_status(200, "health");

    // With anonymous access on, they stay open to everyone.
    let open = BrokerProcess::start_http(&[]);
    moustique(open.http_addr(), "STATS", &[]).moustique_json("anonymous STATS");
    get_basic(&open, "/metrics", None).assert_status(200, "anonymous /metrics");
}

#[test]
fn users_and_their_values_survive_a_restart_and_removal_deletes_the_values() {
    let data = data_with_users();
    let mut broker = start(&data, &[]);
    broker.connect_as("p", "alice", ALICE).publish_retained("kept", b"alice's value");
    // A Ping after the publish: once Pong is back the publish was handled.
    let mut bob = broker.connect_as("p", "bob", BOB);
    bob.publish_retained("kept", b"bob's value");
    bob.ping();
    broker.signal(libc::SIGTERM);
    assert!(broker.wait_exit(WAIT).success());

    let mut broker = start(&data, &[]);
    for (user, password, text) in [("alice", ALICE, "alice's value"), ("bob", BOB, "bob's value")] {
        let mut client = broker.connect_as("c", user, password);
        client.subscribe("#");
        assert_eq!(client.recv_publish().payload, text.as_bytes(), "{user} after a restart");
        client.ping();
    }
    let mut client = broker.open();
    client.send(&Frame::connect("c", format!("alice\0{BOB}").as_bytes()));
    client.expect_disconnect(ReasonCode::NotAuthorized);
    broker.signal(libc::SIGTERM);
    assert!(broker.wait_exit(WAIT).success());

    // Removing alice removes her values: a new alice starts empty.
    assert!(user_command(data.path(), &["remove", "alice"], "").status.success());
    add_user(data.path(), "alice", "another", false);
    let broker = start(&data, &[]);
    let mut client = broker.open();
    client.send(&Frame::connect("c", format!("alice\0{ALICE}").as_bytes()));
    client.expect_disconnect(ReasonCode::NotAuthorized);
    let mut alice = broker.connect_as("c", "alice", "another");
    alice.subscribe("#");
    alice.ping();
    let mut bob = broker.connect_as("c", "bob", BOB);
    bob.subscribe("#");
    assert_eq!(bob.recv_publish().payload, b"bob's value", "bob's value stays");
}

/// Every file under `dir`, recursively.
fn files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read the data directory") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn no_password_is_in_the_data_directory_in_clear_text() {
    let data = data_with_users();
    let mut broker = start(&data, &[]);
    // Use every password on both transports, so whatever the broker keeps
    // about a login had its chance to reach the disk.
    for (user, password) in [("alice", ALICE), ("bob", BOB), ("root", ROOT)] {
        let mut client = broker.connect_as("c", user, password);
        client.publish_retained("t", b"v");
        client.ping();
        moustique(broker.http_addr(), "PUTVAL", &with_user(&[("valname", "v"), ("val", "1")], user, password))
            .assert_empty_ok("PUTVAL");
    }
    broker.signal(libc::SIGTERM);
    assert!(broker.wait_exit(WAIT).success());

    let files = files(data.path());
    let database: u64 = files.iter().map(|f| std::fs::metadata(f).expect("metadata").len()).sum();
    assert!(database > 0, "the users are stored here: {files:?}");
    assert_eq!(
        stdout(&user_command(data.path(), &["list"], "")),
        "alice	user
bob	user
root	admin
"
    );
    for file in &files {
        let bytes = std::fs::read(file).expect("read a data file");
        for password in [ALICE, BOB, ROOT] {
            let found = bytes.windows(password.len()).any(|w| w == password.as_bytes());
            assert!(!found, "{password:?} in clear text in {}", file.display());
        }
    }
}

/// PICKUPs as a user until a message on `topic` arrives; what was picked.
fn pickup_until_as(
    addr: std::net::SocketAddr,
    client: &str,
    user: &str,
    password: &str,
    topic: &str,
) -> Vec<(String, Json)> {
    let deadline = std::time::Instant::now() + WAIT;
    let mut all = Vec::new();
    loop {
        let reply =
            moustique(addr, "PICKUP", &with_user(&[("client", client)], user, password)).moustique_json("PICKUP");
        for (filter, messages) in reply.members() {
            all.extend(messages.items().iter().map(|m| (filter.clone(), m.clone())));
        }
        if all.iter().any(|(_, m)| m.field("topic").str() == topic) {
            return all;
        }
        assert!(std::time::Instant::now() < deadline, "{user}'s {client}: no {topic} within {WAIT:?}: {all:?}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn an_embedded_broker_takes_users_from_its_builder() {
    use tinymq_net::{Address, Broker, ClientOptions};
    let broker = Broker::builder()
        .listen_tcp("127.0.0.1:0".parse().expect("an address"))
        .threads(1)
        .allow_anonymous(false)
        .user(tinymq_net::new_user("emma", "emma's password", false).expect("a user"))
        .start()
        .expect("start a broker");
    let address = broker.tcp_addr().expect("a TCP listener").to_string();
    let options = || ClientOptions::new(Address::tcp(address.clone())).connect_timeout(WAIT);
    let mut emma = options().credentials("emma", "emma's password").connect().expect("emma connects");
    emma.subscribe("t").expect("subscribe");
    emma.publish("t", b"to herself", false).expect("publish");
    let message = emma.recv_timeout(WAIT).expect("receive").expect("a message");
    assert_eq!(message.payload, b"to herself");

    let refused = options().credentials("emma", "wrong").connect().expect_err("a wrong password");
    assert_eq!(refused.reason_code(), Some(ReasonCode::NotAuthorized), "{refused}");
    let anonymous = options().connect().expect_err("no anonymous access");
    assert_eq!(anonymous.reason_code(), Some(ReasonCode::NotAuthorized), "{anonymous}");
    broker.shutdown();
}
