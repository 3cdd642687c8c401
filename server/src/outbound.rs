//! Calls to services on the internet (LLM providers, Google, Chatwoot, SMTP relays) go through
//! a [`Breaker`]: after `CIRCUIT_FAILURES` consecutive failures the circuit opens and calls fail
//! at once, without waiting on a service that is down; after `CIRCUIT_OPEN_SECS` it half-opens
//! and the next call decides whether it closes again. Built on failsafe's state machine; the
//! state of every circuit is exported as `circuit_breaker_state{service}` (0 closed,
//! 1 half-open, 2 open) with `circuit_breaker_rejections_total{service}`.
//!
//! [`OutboundClient`] pairs a breaker with an HTTP client for services spoken to over plain
//! HTTP; SDK clients (async-openai) wrap their futures in [`Breaker::call`] directly.

pub mod guard;

use std::future::Future;
use std::time::Duration;

use failsafe::backoff::{self, Constant};
use failsafe::failure_policy::{self, ConsecutiveFailures};
use failsafe::futures::CircuitBreaker as _;
use failsafe::{Config, Instrument, StateMachine};

use crate::config::CircuitConfig;

pub const STATE: &str = "circuit_breaker_state";
pub const REJECTIONS: &str = "circuit_breaker_rejections_total";

/// Publishes state changes as metrics.
struct Metrics {
    service: String,
}

impl Metrics {
    fn set(&self, state: f64) {
        metrics::gauge!(STATE, "service" => self.service.clone()).set(state);
    }
}

impl Instrument for Metrics {
    fn on_call_rejected(&self) {
        metrics::counter!(REJECTIONS, "service" => self.service.clone()).increment(1);
    }

    fn on_open(&self) {
        tracing::warn!(service = %self.service, "circuit opened: calls fail fast");
        self.set(2.0);
    }

    fn on_half_open(&self) {
        tracing::info!(service = %self.service, "circuit half-open: trying the service again");
        self.set(1.0);
    }

    fn on_closed(&self) {
        tracing::info!(service = %self.service, "circuit closed");
        self.set(0.0);
    }
}

/// Why an outbound call failed.
#[derive(Debug, thiserror::Error)]
pub enum OutboundError<E> {
    /// The circuit is open; the service was not called.
    #[error("{0} is unavailable (circuit open)")]
    Unavailable(String),
    #[error(transparent)]
    Call(E),
}

/// One circuit per external service (and per tenant credential where failures are tenant-specific).
#[derive(Clone)]
pub struct Breaker {
    service: String,
    machine: StateMachine<ConsecutiveFailures<Constant>, Metrics>,
}

impl Breaker {
    pub fn new(service: &str, config: CircuitConfig) -> Breaker {
        let backoff: Constant = backoff::constant(config.open_for);
        let machine = Config::new()
            .failure_policy(failure_policy::consecutive_failures(
                config.failures,
                backoff,
            ))
            .instrument(Metrics {
                service: service.to_string(),
            })
            .build();
        metrics::gauge!(STATE, "service" => service.to_string()).set(0.0);
        Breaker {
            service: service.to_string(),
            machine,
        }
    }

    pub fn service(&self) -> &str {
        &self.service
    }

    /// Runs `call` unless the circuit is open; every error counts as a failure.
    pub async fn call<T, E, F>(&self, call: F) -> Result<T, OutboundError<E>>
    where
        F: Future<Output = Result<T, E>>,
    {
        self.call_with(|_| true, call).await
    }

    /// Runs `call` unless the circuit is open; errors for which `is_failure` is false (say,
    /// a 404 from a healthy service) leave the circuit as it is.
    pub async fn call_with<T, E, F, P>(&self, is_failure: P, call: F) -> Result<T, OutboundError<E>>
    where
        F: Future<Output = Result<T, E>>,
        P: Fn(&E) -> bool,
    {
        match self.machine.call_with(is_failure, call).await {
            Ok(v) => Ok(v),
            Err(failsafe::Error::Rejected) => Err(OutboundError::Unavailable(self.service.clone())),
            Err(failsafe::Error::Inner(e)) => Err(OutboundError::Call(e)),
        }
    }

    /// Whether a call would be let through now (moves an expired open circuit to half-open).
    pub fn is_call_permitted(&self) -> bool {
        self.machine.is_call_permitted()
    }
}

/// What went wrong in an HTTP call to an external service.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("no answer: {0}")]
    Transport(#[from] reqwest::Error),
    #[error("answered {status}: {body}")]
    Status { status: u16, body: String },
}

impl HttpError {
    /// Failures that say the service is unhealthy: no answer, 429 and 5xx. Other 4xx mean the
    /// service is up and the request was wrong.
    pub fn is_service_failure(&self) -> bool {
        match self {
            HttpError::Transport(_) => true,
            HttpError::Status { status, .. } => *status == 429 || *status >= 500,
        }
    }
}

/// What kind of transport failure `e` is, without its URL (which may name a tenant's host or
/// carry a key): the kind is what helps.
pub fn describe(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "no answer in time"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "the request failed"
    }
}

/// An HTTP client for one external service: timeouts, and a circuit breaker.
#[derive(Clone)]
pub struct OutboundClient {
    http: reqwest::Client,
    breaker: Breaker,
}

impl OutboundClient {
    pub fn new(service: &str, config: CircuitConfig) -> Result<OutboundClient, reqwest::Error> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(config.timeout)
            .user_agent(concat!("agent-platform/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(OutboundClient {
            http,
            breaker: Breaker::new(service, config),
        })
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    pub fn breaker(&self) -> &Breaker {
        &self.breaker
    }

    /// Sends the request; a non-2xx answer is an error carrying the status and (the start of)
    /// the body.
    pub async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, OutboundError<HttpError>> {
        self.breaker
            .call_with(HttpError::is_service_failure, async move {
                let response = request.send().await?;
                let status = response.status();
                if status.is_success() {
                    return Ok(response);
                }
                let mut body = response.text().await.unwrap_or_default();
                body.truncate(body.floor_char_boundary(500));
                Err(HttpError::Status {
                    status: status.as_u16(),
                    body,
                })
            })
            .await
    }
}
