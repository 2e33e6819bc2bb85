//! The broker's HTTP rules: charging bad requests, serving a call, and
//! when a write is answered.

use std::net::IpAddr;
use std::time::Instant;

use super::{Broker, Charged, fill_figures};
use crate::auth::{AuthError, Fault, Identity, THROTTLED_TEXT};
use crate::http::call::{ApiError, Call};
use crate::http::clients::HttpClientId;
use crate::http::response::Response;
use crate::http::service::{self, Context, HttpEffects, SinkKind};
use crate::metrics::Figures;

/// An HTTP request to answer, as the shell read it.
#[derive(Debug)]
pub enum HttpInput {
    /// A request that parsed as HTTP but not as a call.
    Refused(ApiError),
    /// A call, and who makes it: the identity its credentials proved, or
    /// why they failed.
    Call(Call, Result<Identity, AuthError>),
}

/// What the store promises about a write, which decides when an HTTP
/// write is answered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StoreAcks {
    /// No store: nothing outlives the process, writes are answered at once.
    #[default]
    None,
    /// Writes are committed in the background: answered at once, unless
    /// the store is failing (then 503: the write may not be stored).
    Batched,
    /// A write is answered once its commit is done (503 if it failed).
    Immediate,
}

/// When a served write gets its answer, from [`Broker::answer_write`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
pub enum WriteAnswer {
    /// Send the reply now.
    Now,
    /// Hold the reply (and the requests behind it) until the write is
    /// committed, then send [`commit_answer`]'s.
    AfterCommit,
    /// The store is failing: send this 503 instead of the reply.
    Unavailable(Response),
}

/// The answer a held write gets once its commit is done: its reply, or a
/// 503 naming why the commit failed.
pub fn commit_answer(result: Result<Response, String>) -> Response {
    result.unwrap_or_else(|error| Response::text(503, format!("the store could not commit the write: {error}")))
}

impl<S: Clone + SinkKind> Broker<S> {
    /// Serves one HTTP request: a bad one (a refusal, wrong credentials) is
    /// charged to the peer in `context` first, and answered 429 if the
    /// peer had no budget left ([`HttpEffects::throttled`]). `own_sink` is
    /// the connection's sink (an event stream receives through it),
    /// `client_sink` makes the sink of a new Moustique client, `figures`
    /// reads the shell's counters for a statistics call. The reply is
    /// counted in the HTTP figures.
    pub fn handle_http(
        &mut self,
        input: HttpInput,
        context: Context,
        own_sink: S,
        client_sink: impl Fn(HttpClientId) -> S,
        figures: impl FnOnce() -> Figures,
    ) -> HttpEffects<S> {
        let unix_time = context.unix_time;
        match input {
            HttpInput::Refused(error) => match error.fault().map(|f| self.charge(context.ip, context.now, f)) {
                Some(Charged::Throttled(throttled)) => {
                    let response = Response::too_many_requests(THROTTLED_TEXT, throttled.retry_after_secs());
                    HttpEffects { throttled: true, ..service::respond(&mut self.http, response, unix_time) }
                }
                _ => service::refuse(&mut self.http, &error, unix_time),
            },
            HttpInput::Call(call, caller) => {
                let caller = self.charged_caller(caller, context.ip, context.now);
                let throttled = matches!(caller, Err(AuthError::Throttled { .. }));
                let Broker { router, http, budgets, rules, throttled_requests, sessions, .. } = self;
                let figures = || {
                    let mut figures = figures();
                    fill_figures(budgets, *throttled_requests, sessions, &mut figures, context.now);
                    figures
                };
                let effects =
                    service::serve(router, http, &rules.http, call, caller, context, own_sink, client_sink, figures);
                HttpEffects { throttled, ..effects }
            }
        }
    }

    /// A request the shell could not even read as HTTP was answered with
    /// `status` (and the connection closes): counted, and charged to the
    /// peer when it is a fault.
    pub fn handle_http_refused(&mut self, status: u16, peer: Option<IpAddr>, now: Instant, unix_time: u64) {
        self.http.count_status(status, unix_time);
        if let Some(fault) = Fault::of_refused_request(status) {
            // Answered and closing either way.
            let _ = self.charge(peer, now, fault);
        }
    }

    /// When the reply to a served request goes out: a successful write
    /// (`wrote`: it handed the store a write) waits for its commit under
    /// [`StoreAcks::Immediate`], and gets a 503 under
    /// [`StoreAcks::Batched`] while the store is failing (`failing`: its
    /// error), since the write is not durable yet. Anything else goes out
    /// now.
    pub fn answer_write(&self, status: u16, wrote: bool, failing: Option<&str>) -> WriteAnswer {
        if !wrote || status >= 300 {
            return WriteAnswer::Now;
        }
        match (self.rules.store, failing) {
            (StoreAcks::Immediate, _) => WriteAnswer::AfterCommit,
            (StoreAcks::Batched, Some(error)) => WriteAnswer::Unavailable(Response::text(
                503,
                format!("the store is failing, so the write may not be stored: {error}"),
            )),
            (StoreAcks::Batched | StoreAcks::None, _) => WriteAnswer::Now,
        }
    }

    /// When the reply to a PICKUP that took `picked_up` messages (and so
    /// deleted them from the store) goes out: after the delete's commit
    /// under [`StoreAcks::Immediate`], so a message answered is never
    /// handed out again after a crash; now otherwise. Its reply goes out
    /// whatever the commit did: the messages have left the queue, and a
    /// delete that failed only means they may come again after a restart.
    pub fn answer_pickup(&self, picked_up: usize) -> WriteAnswer {
        match self.rules.store {
            StoreAcks::Immediate if picked_up > 0 => WriteAnswer::AfterCommit,
            _ => WriteAnswer::Now,
        }
    }
}
