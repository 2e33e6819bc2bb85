//! GETVALSBYREGEX with expressions built to be slow or huge, against many
//! long stored values, on a broker with one event loop (a slow request
//! would hold up everyone on it), while the witness (`support::hostile`)
//! keeps exchanging messages within 2 s.

use std::time::{Duration, Instant};

use crate::support::BrokerProcess;
use crate::support::hostile::Witness;
use crate::support::http::{HttpConn, moustique_request};

/// Stored values, and the length of each topic: 4 MB of topics to search.
const VALUES: usize = 1000;
const TOPIC_LEN: usize = 4000;

#[test]
fn getvalsbyregex_with_slow_or_huge_expressions_answers_in_bounded_time() {
    let broker = BrokerProcess::start_http(&["--threads", "1", "--peer-budget", "0"]);
    let witness = Witness::start(broker.endpoint());
    let mut conn = HttpConn::open(broker.http_addr());
    // Long topics of one letter repeated, the haystack backtracking
    // engines choke on, pipelined in batches.
    for chunk in (0..VALUES).collect::<Vec<_>>().chunks(100) {
        let mut batch = Vec::new();
        for i in chunk {
            let topic = format!("{}/{i}", "a".repeat(TOPIC_LEN - 6));
            batch.extend(moustique_request("PUT", "PUTVAL", &[("valname", &topic), ("val", "1")]));
        }
        conn.send(&batch);
        for _ in chunk {
            conn.response().assert_empty_ok("PUTVAL");
        }
    }

    let alternation = (0..200).map(|i| format!("{i:03}")).collect::<Vec<_>>().join("|");
    let cases: Vec<(&str, String, u16)> = vec![
        ("nested quantifiers", "(a+)+$".into(), 200),
        ("nested stars, no match", "(?:a*)*b".into(), 200),
        ("overlapping alternation", "(a|aa)+b".into(), 200),
        ("a tenth of the topics match", "^a+/[0-9]*7$".into(), 200),
        // regex::Regex took 41 s over these topics in a release build (its
        // PikeVM fallback); now the bounded search gives up.
        ("counted repetition", "(?:a{1,30}){1,30}b".into(), 400),
        ("a smaller counted repetition", "(?:a{1,10}){1,10}b".into(), 200),
        ("a wide Unicode class", r"[\p{L}\p{N}]{5}x".into(), 200),
        ("a wide Unicode class, repeated", r"[\p{L}\p{N}]{50}x".into(), 400),
        ("a long alternation", format!("(?:{alternation})x"), 200),
        ("exactly the length limit", format!("{}bc", "a?".repeat(511)), 200),
        ("one byte over the length limit", "a".repeat(1025), 400),
        ("a huge automaton", r"\w{1000}{1000}".into(), 400),
        ("a huge counted class", r"[\p{L}]{10000}".into(), 400),
        ("nested counted repetition", "((a{100}){100}){100}".into(), 400),
        ("malformed", "(a".into(), 400),
    ];
    let mut slowest = Duration::ZERO;
    for (what, pattern, status) in &cases {
        let started = Instant::now();
        let response = conn.moustique("GETVALSBYREGEX", &[("topic", pattern)]);
        let took = started.elapsed();
        slowest = slowest.max(took);
        eprintln!("{what} ({} bytes): {} in {took:?}, {} bytes", pattern.len(), response.status, response.body.len());
        response.assert_status(*status, what);
        assert!(took < Duration::from_secs(2), "{what}: took {took:?}");
        witness.check();
    }
    eprintln!("slowest GETVALSBYREGEX: {slowest:?}");
    witness.finish();
}
