//! Keep-alive through the real binary, started with `--keep-alive 1`: a
//! connection silent for 1.5 s gets Disconnect 5; one that pings stays.

use std::time::{Duration, Instant};

use crate::support::{BrokerProcess, Next, RawClient};
use tinymq_core::{Frame, FrameType, ReasonCode};

/// The shortest silence before the close that we accept: the broker waits
/// 1.5 × 1 s; a broker closing at 1 × keep-alive or earlier is wrong.
const NOT_BEFORE: Duration = Duration::from_secs(1);
/// The longest: 1.5 s plus generous slack for a loaded machine.
const WITHIN: Duration = Duration::from_secs(5);

/// Waits for the keep-alive Disconnect; returns how long after `since` it
/// came.
fn disconnect_delay(client: &mut RawClient, since: Instant) -> Duration {
    client.expect_disconnect(ReasonCode::KeepAliveTimeout);
    since.elapsed()
}

#[test]
fn an_idle_connection_is_closed_after_one_and_a_half_keep_alives() {
    let broker = BrokerProcess::start(&["--keep-alive", "1"]);
    let mut idle = broker.connect("idle");
    // Nothing for 0.7 s, then a Ping: its last frame, from which the timer
    // must restart (closing 1.5 s after the ConnAck would be 0.8 s after it).
    idle.expect_silence(Duration::from_millis(700));
    let last_frame = Instant::now();
    idle.ping();
    let delay = disconnect_delay(&mut idle, last_frame);
    assert!(delay >= NOT_BEFORE, "closed {delay:?} after its last frame");
    assert!(delay <= WITHIN, "closed only {delay:?} after its last frame");
}

#[test]
fn a_pinging_connection_stays_up_while_a_silent_one_is_closed() {
    let broker = BrokerProcess::start(&["--keep-alive", "1"]);
    let mut silent = broker.connect("silent");
    let mut pinger = broker.connect("pinger");
    let mut talker = broker.connect("talker");
    talker.subscribe("chatter");
    let start = Instant::now();
    let mut pongs = 0;
    let mut silent_closed_after = None;
    // One Ping (and one Publish) every 0.5 s for 3.5 s.
    for tick in 1..=7u32 {
        pinger.ping();
        pongs += 1;
        talker.publish("chatter", &tick.to_be_bytes());
        assert_eq!(talker.recv_publish().payload, tick.to_be_bytes());
        // Wait out the half second on the silent connection: its Disconnect
        // arrives during one of these waits.
        let wake = start + Duration::from_millis(500) * tick;
        let window = wake.saturating_duration_since(Instant::now());
        if silent_closed_after.is_none() {
            match silent.next_within(window) {
                Next::Timeout => {}
                Next::Frame(frame) if frame.kind == FrameType::Disconnect => {
                    assert_eq!(frame.reason().map(|r| r.0), Some(ReasonCode::KeepAliveTimeout as u8), "{frame:?}");
                    silent.expect_closed();
                    silent_closed_after = Some(start.elapsed());
                }
                other => panic!("silent connection: {other:?}"),
            }
        }
        std::thread::sleep(wake.saturating_duration_since(Instant::now()));
    }
    assert_eq!(pongs, 7);
    let closed = silent_closed_after.expect("the silent connection was closed within 3.5 s");
    assert!(closed >= NOT_BEFORE, "silent connection closed after {closed:?}");
    // Both active connections outlived 1.5 × keep-alive twice over.
    assert!(start.elapsed() >= Duration::from_secs(3));
    pinger.ping();
    talker.ping();
}

#[test]
fn half_a_frame_or_no_connect_does_not_keep_a_connection_alive() {
    let broker = BrokerProcess::start(&["--keep-alive", "1"]);
    // Never sends anything, not even Connect.
    let mut mute = broker.open();
    let opened = Instant::now();
    // Connects, then starts a frame and never finishes it.
    let mut stalled = broker.connect("stalled");
    let frame = Frame::publish("a/topic", b"payload", "", false).to_vec();
    let last_byte = Instant::now();
    stalled.send_bytes(&frame[..frame.len() - 3]);

    let delay = disconnect_delay(&mut stalled, last_byte);
    assert!((NOT_BEFORE..=WITHIN).contains(&delay), "stalled: closed {delay:?} after its last byte");
    let delay = disconnect_delay(&mut mute, opened);
    assert!((NOT_BEFORE..=WITHIN).contains(&delay), "mute: closed {delay:?} after connecting");
}
