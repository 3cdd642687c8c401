//! The circuit breaker in front of external services, against a real HTTP server on loopback.

use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;

use server::config::CircuitConfig;
use server::outbound::{HttpError, OutboundClient, OutboundError};

#[derive(Clone, Default)]
struct Fake {
    /// The status the next request gets; 0 means "answer after 2 s".
    status: Arc<AtomicU16>,
    hits: Arc<AtomicUsize>,
}

async fn flaky(State(fake): State<Fake>) -> StatusCode {
    fake.hits.fetch_add(1, Ordering::SeqCst);
    match fake.status.load(Ordering::SeqCst) {
        0 => {
            tokio::time::sleep(Duration::from_secs(2)).await;
            StatusCode::OK
        }
        s => StatusCode::from_u16(s).unwrap(),
    }
}

async fn fake_service() -> (Fake, String) {
    let fake = Fake::default();
    let router = Router::new()
        .route("/v1/thing", get(flaky))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1/thing", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    (fake, url)
}

fn gauge(service: &str) -> String {
    let text = server::http::metrics::handle().render();
    let prefix = format!("circuit_breaker_state{{service=\"{service}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or("missing")
        .to_string()
}

#[tokio::test]
async fn circuit_opens_fails_fast_half_opens_and_closes() {
    server::http::metrics::handle();
    let (fake, url) = fake_service().await;
    let config = CircuitConfig {
        failures: 5,
        open_for: Duration::from_millis(300),
        timeout: Duration::from_secs(5),
    };
    let client = OutboundClient::new("fake-llm", config).unwrap();
    let call = || client.send(client.http().get(&url));

    // A healthy service answering 404 is not a failure of the service.
    fake.status.store(404, Ordering::SeqCst);
    for _ in 0..7 {
        let err = call().await.unwrap_err();
        assert!(matches!(
            err,
            OutboundError::Call(HttpError::Status { status: 404, .. })
        ));
    }
    assert_eq!(gauge("fake-llm"), "0");

    fake.status.store(503, Ordering::SeqCst);
    fake.hits.store(0, Ordering::SeqCst);
    for _ in 0..5 {
        let err = call().await.unwrap_err();
        assert!(matches!(
            err,
            OutboundError::Call(HttpError::Status { status: 503, .. })
        ));
    }
    assert_eq!(gauge("fake-llm"), "2", "open after 5 consecutive failures");
    let err = call().await.unwrap_err();
    assert!(matches!(err, OutboundError::Unavailable(_)), "{err}");
    assert_eq!(
        fake.hits.load(Ordering::SeqCst),
        5,
        "an open circuit calls nobody"
    );

    // After the open period one call may try; a failure opens it again at once.
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert!(call().await.is_err());
    assert_eq!(fake.hits.load(Ordering::SeqCst), 6);
    assert!(matches!(
        call().await.unwrap_err(),
        OutboundError::Unavailable(_)
    ));

    // A success while half-open closes it.
    tokio::time::sleep(Duration::from_millis(350)).await;
    fake.status.store(200, Ordering::SeqCst);
    assert_eq!(call().await.unwrap().status(), 200);
    assert_eq!(gauge("fake-llm"), "0");
    assert!(call().await.is_ok());
}

#[tokio::test]
async fn a_timeout_is_a_failure() {
    let (fake, url) = fake_service().await;
    fake.status.store(0, Ordering::SeqCst);
    let config = CircuitConfig {
        failures: 1,
        open_for: Duration::from_secs(60),
        timeout: Duration::from_millis(200),
    };
    let client = OutboundClient::new("slow-service", config).unwrap();
    let err = client.send(client.http().get(&url)).await.unwrap_err();
    assert!(
        matches!(err, OutboundError::Call(HttpError::Transport(_))),
        "{err}"
    );
    let err = client.send(client.http().get(&url)).await.unwrap_err();
    assert!(matches!(err, OutboundError::Unavailable(_)), "{err}");
}
