//! Arbitrary bytes into the HTTP side of the core, fed in arbitrary splits
//! as a connection would: the request-head parser, Moustique form and value
//! decoding, and whole connections (`HttpConn`) whose requests are served
//! by `service::handle` against a real router, event streams included.
//! Nothing may panic; a head that parses whole must parse the same when it
//! arrived in pieces; an encoded value must decode back; every answer is
//! an HTTP/1.1 response; a connection refused on its head stays closed.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use tinymq_core::http::clients::{HttpClientId, HttpClientLimits};
use tinymq_core::http::conn::{HttpConn, HttpConnConfig, HttpStep};
use tinymq_core::http::encoding::{Encoding, EncodingMode, decode_params, decode_value, encode_value, parse_form};
use tinymq_core::http::request::{HttpLimits, Parsed, parse_head};
use tinymq_core::http::service::{self, Context, HttpConfig, HttpState, Reply, SinkKind};
use tinymq_core::metrics::Figures;
use tinymq_core::{NamespaceId, Router};

#[derive(Clone, Debug, PartialEq)]
enum Sink {
    Stream,
    Client(HttpClientId),
}

impl SinkKind for Sink {
    fn http_client(&self) -> Option<HttpClientId> {
        match self {
            Sink::Client(id) => Some(*id),
            Sink::Stream => None,
        }
    }

    fn transport(&self) -> &'static str {
        "fuzz"
    }
}

fn check_head(input: &[u8], split: usize, limits: &HttpLimits) {
    let whole = parse_head(input, limits);
    // Partial answers while the bytes arrive never contradict the whole.
    let cut = split.min(input.len());
    if let Ok(Parsed::Complete { head_len, .. }) = &whole {
        if cut < *head_len {
            assert_eq!(parse_head(&input[..cut], limits), Ok(Parsed::Partial));
        }
        if let Ok(pairs) = parse_form(&input[*head_len..]) {
            let mut pairs = pairs;
            let _ = decode_params(&mut pairs, EncodingMode::Auto);
        }
    }
    let _ = parse_form(input);
    // Text without control characters (what the clients encode) decodes
    // back in both orders.
    if let Ok(text) = std::str::from_utf8(input)
        && !text.chars().any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
    {
        for encoding in [Encoding::Current, Encoding::Legacy] {
            assert_eq!(decode_value(encode_value(text.as_bytes(), encoding).as_bytes(), encoding), text.as_bytes());
        }
    }
}

/// Serves `input`, arriving in two pieces, on one connection.
fn serve(input: &[u8], split: usize, limits: HttpLimits, epoch: Instant) {
    let config = HttpConnConfig { limits, outbound_limit: 4096, ..Default::default() };
    let http_config = HttpConfig {
        client_limits: HttpClientLimits { queue_size: 4, max_clients: 8, ..Default::default() },
        regex_size_limit: 100_000,
        max_regex_len: 64,
        ..Default::default()
    };
    let mut router: Router<Sink> = Router::new();
    let mut state = HttpState::new(&http_config, 0);
    let mut conn = HttpConn::new(epoch, &config);
    let cut = split.min(input.len());
    let mut pending: Vec<u8> = input[..cut].to_vec();
    let mut refused = false;
    for (round, more) in [&input[cut..], &[][..]].into_iter().enumerate() {
        let now = epoch + Duration::from_millis(round as u64);
        loop {
            let step = conn.handle_input(now, &pending);
            let consumed = match step {
                HttpStep::Incomplete => break,
                HttpStep::Discarded { consumed } => consumed,
                HttpStep::Refused { consumed, status } => {
                    assert!(matches!(status, 400 | 405 | 411 | 413 | 431), "{status}");
                    refused = true;
                    consumed
                }
                HttpStep::Request { consumed, head, body } => {
                    assert_eq!(body.len(), head.content_length);
                    let context = Context { now, unix_time: 1_700_000_000, ip: None, encoding: Encoding::Current };
                    let effects = service::handle(
                        &mut router,
                        &mut state,
                        &http_config,
                        &head,
                        body,
                        context,
                        Sink::Stream,
                        Sink::Client,
                        Figures::default,
                    );
                    match effects.reply {
                        Reply::Response(response) => conn.respond(now, &response),
                        Reply::Preflight => conn.respond_preflight(now),
                        Reply::Events { retained, .. } => conn.start_events(now, retained.iter().map(|d| d.message())),
                    }
                    if let Some(delivery) = effects.delivery {
                        for sink in effects.receivers {
                            assert_eq!(sink, Sink::Stream, "Moustique clients are queued by the service");
                            let _ = conn.deliver(delivery.message());
                        }
                    }
                    consumed
                }
            };
            assert!(consumed <= pending.len());
            pending.drain(..consumed);
            if consumed == 0 {
                break;
            }
        }
        pending.extend_from_slice(more);
    }
    if refused {
        assert!(conn.is_closed(), "a refused connection stays closed");
    }
    // Every answer is a response, or the event stream that follows one.
    let mut slices = [&[][..]; 64];
    let n = conn.outbound().front_slices(&mut slices);
    let out: Vec<u8> = slices[..n].concat();
    assert!(out.is_empty() || out.starts_with(b"HTTP/1.1 "), "{:?}", String::from_utf8_lossy(&out));
    // Timers only ever close or heartbeat.
    if let Some(deadline) = conn.poll_timeout() {
        let _ = conn.handle_timeout(deadline);
    }
    let _ = router.values(NamespaceId::PUBLIC).count();
}

fuzz_target!(|data: &[u8]| {
    let Some((&split, input)) = data.split_first() else { return };
    let limits = HttpLimits { max_head_bytes: 512, max_headers: 8, max_body_bytes: 1024 };
    check_head(input, usize::from(split), &limits);
    #[allow(clippy::disallowed_methods)]
    let epoch = Instant::now();
    serve(input, usize::from(split), limits, epoch);
});
