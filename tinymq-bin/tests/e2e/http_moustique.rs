//! The Moustique-compatible HTTP API through the real binary: the Python
//! and JavaScript clients' ways of calling it (run as real `python3` +
//! `requests` and `node` + `fetch` scripts from `tests/clients/`), each
//! endpoint's replies, and messages crossing between HTTP and the binary
//! protocol in both directions.

use std::time::Duration;

use crate::support::http::{
    Json, JsonExt, assert_message_object, call, client_script, dec, enc, encoded_form, eventually, form, moustique,
    moustique_json, pickup_until, post, python_with_requests, require_tool, run_checked, subscribe, triples, unix_now,
};
use crate::support::{BrokerProcess, QUIET, RawClient, WAIT};
use serde_json::json;

/// How long a client script may run.
const SCRIPT_DEADLINE: Duration = Duration::from_secs(60);

/// The name a client script printed as `CLIENT <name>`.
fn script_client_name(stdout: &str) -> String {
    stdout
        .lines()
        .find_map(|line| line.strip_prefix("CLIENT "))
        .unwrap_or_else(|| panic!("the script printed no CLIENT line:\n{stdout}"))
        .trim()
        .to_owned()
}

/// Binary deliveries until one on `last_topic`, as (topic, payload, from).
fn deliveries_until(watcher: &mut RawClient, last_topic: &str) -> Vec<(String, String, String)> {
    let mut got = Vec::new();
    loop {
        let message = watcher.recv_publish();
        let done = message.topic == last_topic;
        got.push((message.topic, String::from_utf8(message.payload).expect("a UTF-8 payload"), message.client_id));
        if done {
            return got;
        }
    }
}

/// What both client scripts must leave behind, seen from the binary side
/// (a watcher subscribed to `prefix/#` before the script ran) and from a
/// fresh GETVAL.
fn check_script_effects(
    broker: &BrokerProcess,
    watcher: &mut RawClient,
    prefix: &str,
    name: &str,
    temperature: (&str, &str),
    stored: (&str, &str),
) {
    let got = deliveries_until(watcher, &format!("{prefix}/resub/x"));
    let sensors: Vec<_> = got.iter().filter(|(topic, _, _)| topic.starts_with(&format!("{prefix}/sensors/"))).collect();
    assert_eq!(
        sensors.first().map(|(t, p, f)| (t.as_str(), p.as_str(), f.as_str())),
        Some((temperature.0, temperature.1, name)),
        "the script's first POST reached a binary subscriber with from = its client name: {got:?}"
    );
    assert!(
        got.iter().all(|(topic, _, _)| topic != stored.0),
        "the script's PUTVAL of {} must not be published: {got:?}",
        stored.0
    );
    assert!(got.iter().all(|(_, _, from)| from == name), "every delivery is from {name}: {got:?}");

    let value = moustique_json(broker.http_addr(), "GETVAL", &[("topic", stored.0)]);
    assert_message_object(&value, stored.0, stored.1, name);
}

/// Runs a client script (`command` names it and the broker) to the end and
/// returns its output, which must end the script's checks with `ALL OK`.
fn run_script(command: std::process::Command, what: &str) -> String {
    let output = run_checked(command, SCRIPT_DEADLINE, what);
    let stdout = String::from_utf8(output.stdout).expect("UTF-8 output");
    assert!(stdout.lines().any(|l| l == "ALL OK"), "{what} did not finish:\n{stdout}");
    stdout
}

#[test]
fn the_python_client_works_unchanged() {
    let broker = BrokerProcess::start_http(&[]);
    let mut watcher = broker.connect("py-watcher");
    watcher.subscribe("/py/#");

    let mut command = python_with_requests();
    command.arg(client_script("moustique_client.py")).arg("127.0.0.1").arg(broker.http_addr().port().to_string());
    let stdout = run_script(command, "tests/clients/moustique_client.py");

    let name = script_client_name(&stdout);
    check_script_effects(
        &broker,
        &mut watcher,
        "/py",
        &name,
        ("/py/sensors/kitchen/temperature", "21.5 °C, åäö"),
        ("/py/config/setpoint", "22"),
    );
}

#[test]
fn the_javascript_client_works_unchanged() {
    require_tool("node", "install Node.js 20 or later");
    // The script speaks the legacy order, as the JS client did before
    // December 2025; the broker's default (auto) reads it per request.
    let broker = BrokerProcess::start_http(&[]);
    let mut watcher = broker.connect("js-watcher");
    watcher.subscribe("/js/#");

    let mut command = std::process::Command::new("node");
    command.arg(client_script("moustique_client.mjs")).arg("127.0.0.1").arg(broker.http_addr().port().to_string());
    let stdout = run_script(command, "tests/clients/moustique_client.mjs");

    let name = script_client_name(&stdout);
    check_script_effects(
        &broker,
        &mut watcher,
        "/js",
        &name,
        ("/js/sensors/hall/temperature", "19.0"),
        ("/js/config/mode", "eco"),
    );
}

#[test]
fn an_http_post_reaches_a_binary_subscriber_with_its_from() {
    let broker = BrokerProcess::start_http(&[]);
    let http = broker.http_addr();
    let mut subscriber = broker.connect("bin-sub");
    subscriber.subscribe("sensors/#");

    post(http, "sensors/kitchen", "Hej, detta är ett testmeddelande!", "kitchen-app");
    let got = subscriber.recv_publish();
    assert_eq!(
        (got.type_byte, got.topic.as_str(), got.payload.as_slice(), got.client_id.as_str()),
        (0x02, "sensors/kitchen", "Hej, detta är ett testmeddelande!".as_bytes(), "kitchen-app"),
        "the decoded payload, live, from the POST's `from`"
    );

    // Without `from`: UNKNOWN.
    moustique(http, "POST", &[("topic", "sensors/hall"), ("message", "1")]).assert_empty_ok("POST without from");
    let got = subscriber.recv_publish();
    assert_eq!(
        (got.topic.as_str(), got.payload.as_slice(), got.client_id.as_str()),
        ("sensors/hall", &b"1"[..], "UNKNOWN")
    );

    // An empty message is an empty payload.
    post(http, "sensors/empty", "", "kitchen-app");
    let got = subscriber.recv_publish();
    assert_eq!((got.topic.as_str(), got.payload.as_slice()), ("sensors/empty", &b""[..]));

    // A POST is also stored: a binary subscriber arriving later gets it
    // as a retained value.
    let mut late = broker.connect("late");
    late.subscribe("sensors/kitchen");
    let retained = late.recv_publish();
    assert_eq!(
        (retained.type_byte, retained.payload.as_slice(), retained.client_id.as_str()),
        (0x82, "Hej, detta är ett testmeddelande!".as_bytes(), "kitchen-app"),
        "the POST is the topic's stored value"
    );
}

/// Each POST goes on a fresh connection, so successive ones are served by
/// different event loops; one acknowledged before the next is sent must
/// still reach a subscriber first.
#[test]
fn acknowledged_posts_reach_a_subscriber_in_order_whichever_loop_serves_them() {
    let broker = BrokerProcess::start_http(&["--threads", "3"]);
    let http = broker.http_addr();
    let mut subscriber = broker.connect("ordered");
    subscriber.subscribe("order/#");
    for n in 0..300 {
        post(http, &format!("order/{n}"), "x", "me");
    }
    let got: Vec<String> = (0..300).map(|_| subscriber.recv_publish().topic).collect();
    let want: Vec<String> = (0..300).map(|n| format!("order/{n}")).collect();
    assert_eq!(got, want);
}

#[test]
fn a_binary_publish_reaches_pickup_with_the_publisher_id() {
    let broker = BrokerProcess::start_http(&[]);
    let http = broker.http_addr();
    subscribe(http, "http-sub", "sensors/+");
    subscribe(http, "http-sub", "sensors/#");

    let mut thermometer = broker.connect("thermometer");
    let before = unix_now();
    thermometer.publish("sensors/attic", b"5.5");
    thermometer.publish("sensors/attic/raw", b"55");
    let picked = pickup_until(http, "http-sub", "sensors/attic/raw");
    let mut seen = triples(&picked);
    seen.sort();
    assert_eq!(
        seen,
        [
            ("sensors/#".into(), "sensors/attic".into(), "5.5".into()),
            ("sensors/#".into(), "sensors/attic/raw".into(), "55".into()),
            ("sensors/+".into(), "sensors/attic".into(), "5.5".into()),
        ],
        "grouped by filter, sensors/attic under both: {picked:?}"
    );
    for (_, message) in &picked {
        assert_eq!(message.field("from").str(), "thermometer", "from is the publisher's client id: {message}");
        let time = message.field("updated_time").num();
        assert!((before - 2.0..unix_now() + 2.0).contains(&time), "updated_time is the broker's clock: {message}");
    }
}

#[test]
fn a_binary_retained_publish_is_what_getval_returns() {
    let broker = BrokerProcess::start_http(&[]);
    let http = broker.http_addr();
    let mut publisher = broker.connect("boiler");
    publisher.publish_retained("home/boiler/state", b"on");
    publisher.publish_retained("home/boiler/state", b"off");
    // A live (not retained) binary publish is not stored.
    publisher.publish("home/boiler/pulse", b"1");
    publisher.ping();

    let value = eventually(WAIT, "GETVAL returns the retained value", || {
        let response = moustique(http, "GETVAL", &[("topic", "home/boiler/state")]);
        (response.status == 200).then(|| response.moustique_json("GETVAL"))
    });
    assert_eq!(value.field("message").str(), "off", "the newest retained value: {value}");
    assert_message_object(&value, "home/boiler/state", "off", "boiler");

    let pulse = moustique(http, "GETVAL", &[("topic", "home/boiler/pulse")]);
    pulse.assert_status(404, "GETVAL of a topic only published live");
}

#[test]
fn pickup_groups_by_filter_and_repeats_a_message_matching_two() {
    let broker = BrokerProcess::start_http(&[]);
    let http = broker.http_addr();
    for filter in ["a/+", "a/#", "b/c"] {
        subscribe(http, "grouper", filter);
    }
    // Subscribing twice to the same filter changes nothing.
    subscribe(http, "grouper", "b/c");
    for (topic, message) in [("a/x", "1"), ("a/x/y", "2"), ("b/c", "3"), ("c/d", "4"), ("a/z", "5")] {
        post(http, topic, message, "poster");
    }
    let picked = pickup_until(http, "grouper", "a/z");
    let reply_filters: Vec<&str> = picked.iter().map(|(f, _)| f.as_str()).collect();
    let by_filter = |filter: &str| -> Vec<(String, String)> {
        picked
            .iter()
            .filter(|(f, _)| f == filter)
            .map(|(_, m)| (m.field("topic").str().to_owned(), m.field("message").str().to_owned()))
            .collect()
    };
    let pairs = |list: &[(&str, &str)]| -> Vec<(String, String)> {
        list.iter().map(|(t, m)| ((*t).to_owned(), (*m).to_owned())).collect()
    };
    assert_eq!(by_filter("a/+"), pairs(&[("a/x", "1"), ("a/z", "5")]), "{reply_filters:?}");
    assert_eq!(by_filter("a/#"), pairs(&[("a/x", "1"), ("a/x/y", "2"), ("a/z", "5")]), "in order: {reply_filters:?}");
    assert_eq!(by_filter("b/c"), pairs(&[("b/c", "3")]), "once, though subscribed twice: {reply_filters:?}");
    assert_eq!(picked.len(), 6, "nothing else: {picked:?}");
    for (_, message) in &picked {
        assert_eq!(message.field("from").str(), "poster");
    }

    // Everything was removed: the next PICKUP is the encoded "{}".
    let response = moustique(http, "PICKUP", &[("client", "grouper")]);
    assert_eq!(response.moustique_json("an empty PICKUP"), json!({}));
}

#[test]
fn an_unknown_client_is_told_to_resubscribe() {
    let broker = BrokerProcess::start_http(&[]);
    let http = broker.http_addr();
    let reply = moustique_json(http, "PICKUP", &[("client", "never-subscribed")]);
    let members = reply.members();
    assert_eq!(members.len(), 1, "one key: {reply}");
    let (key, messages) = members.iter().next().unwrap();
    assert_eq!(key, "/server/action/resubscribe", "{reply}");
    let messages = messages.items();
    assert_eq!(messages.len(), 1, "{reply}");
    assert_eq!(messages[0].field("topic").str(), "/server/action/resubscribe", "{reply}");
    messages[0].field("message");

    // Once it subscribes it is known: an empty pickup.
    subscribe(http, "never-subscribed", "x/#");
    assert_eq!(moustique_json(http, "PICKUP", &[("client", "never-subscribed")]), json!({}));
}

#[test]
fn putval_stores_without_publishing() {
    let broker = BrokerProcess::start_http(&[]);
    let http = broker.http_addr();
    let mut binary = broker.connect("bin-watcher");
    binary.subscribe("cfg/#");
    subscribe(http, "http-watcher", "cfg/#");

    // As the JavaScript client sends it (PUT, val) and as a form POST with
    // `message` instead of `val`.
    let put = call(
        http,
        "PUT",
        "/PUTVAL",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        encoded_form(&[("valname", "cfg/mode"), ("val", "eco"), ("from", "js-app"), ("updated_time", "1700000000")])
            .as_bytes(),
    );
    put.assert_empty_ok("PUTVAL by PUT");
    moustique(http, "PUTVAL", &[("valname", "cfg/level"), ("message", "7"), ("from", "py-app")])
        .assert_empty_ok("PUTVAL by POST with message");

    post(http, "cfg/sentinel", "after", "poster");
    let first = binary.recv_publish();
    assert_eq!(first.topic, "cfg/sentinel", "a PUTVAL is not published to binary subscribers: {first:?}");
    let picked = pickup_until(http, "http-watcher", "cfg/sentinel");
    assert_eq!(triples(&picked), [("cfg/#".into(), "cfg/sentinel".into(), "after".into())], "nor to HTTP ones");

    let mode = moustique_json(http, "GETVAL", &[("topic", "cfg/mode")]);
    assert_message_object(&mode, "cfg/mode", "eco", "js-app");
    assert_eq!(mode.field("updated_time").num(), 1_700_000_000.0, "the client's updated_time: {mode}");
    let level = moustique_json(http, "GETVAL", &[("topic", "cfg/level")]);
    assert_message_object(&level, "cfg/level", "7", "py-app");

    // A stored value, so a new binary subscriber gets it as retained.
    let mut late = broker.connect("late");
    late.subscribe("cfg/mode");
    let retained = late.recv_publish();
    assert_eq!((retained.type_byte, retained.payload.as_slice()), (0x82, &b"eco"[..]));
}

#[test]
fn getval_of_a_topic_without_a_value_is_404() {
    let broker = BrokerProcess::start_http(&[]);
    let response = moustique(broker.http_addr(), "GETVAL", &[("topic", "no/such/value"), ("client", "me")]);
    response.assert_status(404, "GETVAL of nothing");
}

#[test]
fn getvalsbyregex_searches_unanchored_and_refuses_a_bad_expression() {
    let broker = BrokerProcess::start_http(&[]);
    let http = broker.http_addr();
    for (topic, message) in [("/house/temp", "20"), ("/garage/temperature", "8"), ("/house/humidity", "40")] {
        post(http, topic, message, "sensor");
    }
    let keys = |regex: &str| -> Vec<String> {
        let reply = moustique_json(http, "GETVALSBYREGEX", &[("topic", regex)]);
        for (topic, message) in reply.members() {
            assert_eq!(message.field("topic").str(), topic, "each key maps to its own message object: {reply}");
        }
        let mut keys: Vec<String> = reply.members().iter().map(|(k, _)| k.clone()).collect();
        keys.sort();
        keys
    };
    assert_eq!(keys("temp"), ["/garage/temperature", "/house/temp"], "unanchored");
    assert_eq!(keys("^/house/"), ["/house/humidity", "/house/temp"]);
    assert_eq!(keys("temp$"), ["/house/temp"]);
    assert_eq!(keys("nothing-matches"), Vec::<String>::new());
    let value = moustique_json(http, "GETVALSBYREGEX", &[("topic", "humidity")]);
    assert_message_object(value.field("/house/humidity"), "/house/humidity", "40", "sensor");

    for bad in ["(", "[a-", "a{2,1}"] {
        let response = moustique(http, "GETVALSBYREGEX", &[("topic", bad)]);
        response.assert_status(400, &format!("a malformed regex {bad:?}"));
        assert!(!response.body.is_empty(), "an error body says what was wrong");
    }
}

#[test]
fn server_queries_answer_in_moustique_shapes() {
    let broker = BrokerProcess::start_http(&[]);
    let http = broker.http_addr();
    let _binary = broker.connect("bin-session");
    subscribe(http, "web-client", "q/#");
    post(http, "q/one", "1", "poster-a");
    post(http, "q/two", "2", "poster-b");
    pickup_until(http, "web-client", "q/two");

    let version = moustique_json(http, "VERSION", &[]);
    assert!(!version.str().is_empty(), "VERSION is a non-empty JSON string: {version}");

    let stats = moustique_json(http, "STATS", &[]);
    for path in [
        "started",
        "subscription_count",
        "values",
        "clients.subscribers",
        "clients.posters",
        "requests.total",
        "requests.per_second",
        "requests.pickups.total",
        "requests.pickups.per_second",
        "requests.pickups.per_second_last_minute",
        "requests.processed.total",
        "requests.processed.per_second",
        "requests.processed.per_second_last_minute",
        "requests.getvals.total",
        "requests.getvals.per_second",
        "requests.getvals.per_second_last_minute",
    ] {
        assert!(stats.path(path).is_some(), "STATS has {path}: {stats}");
    }
    assert_eq!(stats.field("values").num(), 2.0, "two stored values: {stats}");
    assert!(stats.path("clients.subscribers").unwrap().num() >= 1.0, "{stats}");
    assert!(stats.path("clients.posters").unwrap().num() >= 2.0, "two posters: {stats}");
    assert!(stats.path("requests.total").unwrap().num() >= 5.0, "{stats}");
    assert!(stats.path("requests.pickups.total").unwrap().num() >= 1.0, "{stats}");

    let clients = moustique_json(http, "CLIENTS", &[]);
    let entry = |name: &str| {
        clients
            .items()
            .iter()
            .find(|c| c.get("Name") == Some(&Json::String(name.into())))
            .unwrap_or_else(|| panic!("CLIENTS lists {name}: {clients}"))
            .clone()
    };
    let web = entry("web-client");
    for key in [
        "Name",
        "FirstSeen",
        "FirstSeenNiceDatetime",
        "LatestPickup",
        "LatestPickupNiceDatetime",
        "RequestCounter",
        "IP",
    ] {
        web.field(key);
    }
    assert!(web.field("RequestCounter").num() >= 2.0, "a SUBSCRIBE and a PICKUP at least: {web}");
    assert_eq!(web.field("IP").str(), "127.0.0.1", "{web}");
    let binary = entry("bin-session");
    // The binary session is marked as such: some field tells it from an
    // HTTP client (its name is not fixed by the contract).
    let differs = binary.members().iter().any(|(key, value)| {
        !matches!(key.as_str(), "Name" | "IP" | "RequestCounter")
            && !key.contains("Seen")
            && !key.contains("Pickup")
            && web.get(key).is_some_and(|other| other != value)
    }) || binary.members().iter().any(|(key, _)| web.get(key).is_none());
    assert!(differs, "the binary session carries a field marking it: {binary} vs {web}");

    let topics = moustique_json(http, "TOPICS", &[]);
    let mut names: Vec<&str> = topics.items().iter().map(Json::str).collect();
    names.sort();
    assert_eq!(names, ["q/one", "q/two"], "TOPICS lists the stored topics");

    let posters = moustique_json(http, "POSTERS", &[]);
    let text = posters.to_string();
    assert!(text.contains("poster-a") && text.contains("poster-b"), "POSTERS names both posters: {posters}");

    let status = call(http, "GET", "/STATUS", &[], b"");
    status.assert_status(200, "STATUS");
    let content_type = status.header("content-type").unwrap_or_default();
    assert!(content_type.starts_with("text/html"), "STATUS is an HTML page: {content_type:?}");
    assert!(status.text().to_ascii_lowercase().contains("<html"), "{}", status.text());
}

#[test]
fn parameters_ride_in_a_query_string_or_a_body_without_content_type() {
    let broker = BrokerProcess::start_http(&[]);
    let http = broker.http_addr();
    let mut subscriber = broker.connect("bin-sub");
    subscriber.subscribe("p/#");

    // GET with the parameters in the query string, path with slashes around.
    let query = encoded_form(&[("topic", "p/get"), ("message", "via GET"), ("from", "getter")]);
    call(http, "GET", &format!("/POST/?{query}"), &[], b"").assert_empty_ok("GET /POST/?...");
    let got = subscriber.recv_publish();
    assert_eq!(
        (got.topic.as_str(), got.payload.as_slice(), got.client_id.as_str()),
        ("p/get", &b"via GET"[..], "getter")
    );

    // POST with a form body but no Content-Type (some clients omit it).
    let body = encoded_form(&[("topic", "p/bare"), ("message", "no content type")]);
    call(http, "POST", "//POST", &[], body.as_bytes()).assert_empty_ok("POST without Content-Type");
    let got = subscriber.recv_publish();
    assert_eq!((got.topic.as_str(), got.payload.as_slice()), ("p/bare", &b"no content type"[..]));

    // Values that are not Base64 after ROT13 are taken raw.
    let raw = form(&[("topic", "p/raw"), ("message", "23.5 degrees"), ("from", "curl-user")]);
    call(http, "POST", "/POST", &[("Content-Type", "application/x-www-form-urlencoded")], raw.as_bytes())
        .assert_empty_ok("raw values");
    let got = subscriber.recv_publish();
    assert_eq!(
        (got.topic.as_str(), got.payload.as_slice(), got.client_id.as_str()),
        ("p/raw", &b"23.5 degrees"[..], "curl-user")
    );

    // GETVAL by GET with a query string.
    let response = call(http, "GET", &format!("/GETVAL?topic={}", enc("p/get")), &[], b"");
    assert_message_object(&response.moustique_json("GETVAL by GET"), "p/get", "via GET", "getter");
    // The encoding of the reply is exactly the clients' enc of the JSON text.
    assert_eq!(enc(&dec(&response.text())), response.text().trim());
}

#[test]
fn missing_or_invalid_parameters_are_400() {
    let broker = BrokerProcess::start_http(&[]);
    let http = broker.http_addr();
    let mut subscriber = broker.connect("bin-sub");
    subscriber.subscribe("#");
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        ("POST", &[("topic", "a/+"), ("message", "x")], "a wildcard in a POST topic"),
        ("POST", &[("topic", "a/#"), ("message", "x")], "a # in a POST topic"),
        ("POST", &[("message", "x")], "POST without topic"),
        ("SUBSCRIBE", &[("topic", "a/#")], "SUBSCRIBE without client"),
        ("SUBSCRIBE", &[("client", "c")], "SUBSCRIBE without topic"),
        ("SUBSCRIBE", &[("topic", "a/#/b"), ("client", "c")], "an invalid filter"),
        ("PICKUP", &[], "PICKUP without client"),
        ("PUTVAL", &[("val", "1")], "PUTVAL without valname"),
        ("GETVAL", &[], "GETVAL without topic"),
    ];
    for (endpoint, params, what) in cases {
        let response = moustique(http, endpoint, params);
        response.assert_status(400, what);
        assert!(!response.body.is_empty(), "{what}: the 400 says what was wrong");
    }
    let bad_percent = call(http, "POST", "/POST", &[], b"topic=%zz&message=x");
    bad_percent.assert_status(400, "bad percent-encoding");
    // None of it was published.
    post(http, "sentinel", "s", "me");
    assert_eq!(subscriber.recv_publish().topic, "sentinel", "the refused POSTs published nothing");
    subscriber.expect_silence(QUIET);
}

#[test]
fn credentials_are_refused_until_users_exist() {
    let broker = BrokerProcess::start_http(&[]);
    let http = broker.http_addr();
    let mut subscriber = broker.connect("bin-sub");
    subscriber.subscribe("#");
    let response =
        moustique(http, "POST", &[("topic", "t"), ("message", "x"), ("username", "alice"), ("password", "secret")]);
    response.assert_status(401, "POST with username/password");
    moustique(http, "GETVAL", &[("topic", "t"), ("username", "alice"), ("password", "x")])
        .assert_status(401, "GETVAL with credentials");
    let basic = call(http, "GET", "/api/v1/value?topic=t", &[("Authorization", "Basic YWxpY2U6c2VjcmV0")], b"");
    basic.assert_status(401, "the plain API with Basic auth");
    post(http, "sentinel", "s", "me");
    assert_eq!(subscriber.recv_publish().topic, "sentinel", "the refused POST was not published as anonymous");
}

#[test]
fn a_message_object_without_a_client_time_gets_the_brokers() {
    let broker = BrokerProcess::start_http(&[]);
    let http = broker.http_addr();
    let before = unix_now();
    moustique(http, "POST", &[("topic", "clock/now"), ("message", "tick")]).assert_empty_ok("POST");
    let value = moustique_json(http, "GETVAL", &[("topic", "clock/now")]);
    assert_message_object(&value, "clock/now", "tick", "UNKNOWN");
    let time = value.field("updated_time").num();
    assert!((before - 2.0..unix_now() + 2.0).contains(&time), "the broker's clock: {value}");

    moustique(http, "POST", &[("topic", "clock/then"), ("message", "tock"), ("updated_time", "1234567890")])
        .assert_empty_ok("POST");
    let value = moustique_json(http, "GETVAL", &[("topic", "clock/then")]);
    assert_eq!(value.field("updated_time").num(), 1_234_567_890.0, "{value}");
}

#[test]
fn clients_lists_binary_sessions_with_the_same_fields() {
    let broker = BrokerProcess::start_http(&[]);
    let http = broker.http_addr();
    let mut binary = broker.connect("bin-session");
    binary.ping();
    subscribe(http, "web-client", "w/#");
    let clients = moustique_json(http, "CLIENTS", &[]);
    let session = clients
        .items()
        .iter()
        .find(|c| c.get("Name") == Some(&Json::String("bin-session".into())))
        .unwrap_or_else(|| panic!("CLIENTS lists the binary session: {clients}"));
    // Readers of CLIENTS (Moustique's admin pages) read these fields of
    // every entry.
    for key in ["FirstSeen", "FirstSeenNiceDatetime", "LatestPickup", "LatestPickupNiceDatetime", "RequestCounter"] {
        assert!(session.get(key).is_some(), "the binary session has {key}: {session}");
    }
    assert_eq!(session.get("IP"), Some(&Json::String("127.0.0.1".into())), "its peer address: {session}");
}

/// The helpers' own encoding, checked against values PyPI
/// moustique-client 0.1.1's `encode_rot13_base64` produces, so a failure
/// above is the broker's.
#[test]
fn the_test_helpers_encode_like_the_python_client() {
    for (plain, encoded) in [
        ("", ""),
        ("a", "bg=="),
        ("ab", "bm8="),
        ("abc", "bm9w"),
        ("Hej, detta är ett testmeddelande!", "VXJ3LCBxcmdnbiDDpGUgcmdnIGdyZmd6cnFxcnluYXFyIQ=="),
    ] {
        assert_eq!(enc(plain), encoded);
        assert_eq!(dec(encoded), plain);
    }
}

/// Both generations of Moustique's encoding on one broker: each request is
/// answered in the order it came in, short names included.
#[test]
fn each_request_is_answered_in_its_own_encoding_order() {
    use crate::support::http::{dec_legacy, enc_legacy, percent_encode};
    let broker = BrokerProcess::start_http(&[]);
    let addr = broker.http_addr();
    let legacy = |endpoint: &str, params: &[(&str, &str)]| {
        let body: Vec<String> = params.iter().map(|(n, v)| format!("{n}={}", percent_encode(&enc_legacy(v)))).collect();
        call(
            addr,
            "POST",
            &format!("/{endpoint}"),
            &[("Content-Type", "application/x-www-form-urlencoded")],
            body.join("&").as_bytes(),
        )
    };
    // Old and new clients subscribe to the same filter and both get a
    // message from a new client; each reads its answer in its own order.
    legacy("SUBSCRIBE", &[("topic", "/mix/#"), ("client", "old")]).assert_empty_ok("legacy SUBSCRIBE");
    subscribe(addr, "new", "/mix/#");
    post(addr, "/mix/a", "from a new client", "py");
    legacy("POST", &[("topic", "/mix/b"), ("message", "from an old client"), ("from", "sh")])
        .assert_empty_ok("legacy POST");
    let old: Json = serde_json::from_str(&dec_legacy(&legacy("PICKUP", &[("client", "old")]).text())).unwrap();
    let new = moustique_json(addr, "PICKUP", &[("client", "new")]);
    for picked in [&old, &new] {
        let messages: Vec<&str> = picked["/mix/#"].as_array().unwrap().iter().map(|m| m["message"].str()).collect();
        assert_eq!(messages, ["from a new client", "from an old client"], "{picked}");
    }
    // A one-letter topic in the legacy order is still read right: its
    // padding tells the order.
    legacy("PUTVAL", &[("valname", "v"), ("val", "1")]).assert_empty_ok("legacy PUTVAL");
    let value: Json = serde_json::from_str(&dec_legacy(&legacy("GETVAL", &[("topic", "v")]).text())).unwrap();
    assert_eq!(value["message"], "1", "{value}");
    assert_eq!(dec(&moustique(addr, "GETVAL", &[("topic", "v")]).text()), value.to_string());
}
