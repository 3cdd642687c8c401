//! Downloading a document by URL for ingestion, safely.
//!
//! The URL comes from a user, so the fetch must not become a way into the platform's own
//! network (SSRF): only `http`/`https` URLs without credentials; the host is resolved here and
//! every address it resolves to must be public ([`is_public`]) unless the policy allows private
//! targets; the connection is then pinned to exactly those addresses (so DNS cannot answer
//! differently between the check and the connect), no proxy is used, and redirects are
//! followed by hand, each new URL checked the same way. The body is streamed and cut off past
//! [`FetchPolicy::max_bytes`]; the whole fetch, redirects included, is bounded by
//! [`FetchPolicy::timeout`].

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use futures::StreamExt;
use reqwest::header::{HeaderMap, CONTENT_DISPOSITION, CONTENT_TYPE, LOCATION};
use reqwest::Url;

use super::extract::Format;
use crate::outbound::guard::{is_public, literal_ip};

/// The User-Agent sent with every request.
pub const USER_AGENT: &str = "agent-platform-fetch/0.1";

#[derive(Clone, Debug)]
pub struct FetchPolicy {
    /// The largest body accepted, in bytes.
    pub max_bytes: usize,
    /// Whether private, loopback and other internal addresses may be fetched (development, or
    /// an intranet deployment).
    pub allow_private: bool,
    /// The time allowed for the whole fetch: resolution, redirects and body.
    pub timeout: Duration,
    /// How many redirects are followed.
    pub max_redirects: usize,
    /// Which content types are taken.
    pub accept: Accept,
}

/// What a fetch is for: a document to ingest, or a customer's voice message to transcribe.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Accept {
    /// The formats the extractor reads (`Format::from_content_type`).
    #[default]
    Documents,
    /// `audio/*` (and `video/ogg`, `video/webm`, which voice notes are often labelled).
    Audio,
}

impl Accept {
    fn takes(self, essence: &str) -> bool {
        essence == "application/octet-stream"
            || match self {
                Accept::Documents => Format::from_content_type(essence).is_some(),
                Accept::Audio => {
                    essence.starts_with("audio/") || matches!(essence, "video/ogg" | "video/webm")
                }
            }
    }
}

impl Default for FetchPolicy {
    fn default() -> Self {
        FetchPolicy {
            max_bytes: 20 * 1024 * 1024,
            allow_private: false,
            timeout: Duration::from_secs(30),
            max_redirects: 5,
            accept: Accept::Documents,
        }
    }
}

/// A downloaded document.
pub struct Fetched {
    pub bytes: Vec<u8>,
    /// The `Content-Type` header as sent, parameters included.
    pub content_type: Option<String>,
    /// The URL the body came from, after redirects.
    pub final_url: Url,
    /// A file name for format detection: the `Content-Disposition` file name if the server
    /// sent one, else the final URL's last path segment, else its host.
    pub filename: String,
}

impl std::fmt::Debug for Fetched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetched")
            .field("bytes", &format_args!("{} bytes", self.bytes.len()))
            .field("content_type", &self.content_type)
            .field("final_url", &self.final_url.as_str())
            .field("filename", &self.filename)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("not a valid http(s) URL: {0}")]
    BadUrl(String),
    #[error(
        "{0} is a private, loopback or otherwise internal address; fetching it is not allowed"
    )]
    Forbidden(String),
    #[error("the document is larger than {0} bytes")]
    TooLarge(usize),
    #[error("the server answered {0}")]
    Status(u16),
    #[error("content type {0} is not a supported document type")]
    ContentType(String),
    #[error("too many redirects")]
    TooManyRedirects,
    #[error("fetching failed: {0}")]
    Network(String),
}

impl FetchError {
    /// True for errors worth retrying later (network, 5xx, 429).
    pub fn is_transient(&self) -> bool {
        match self {
            FetchError::Network(_) => true,
            FetchError::Status(status) => *status >= 500 || *status == 429,
            _ => false,
        }
    }
}

/// Downloads the document at `url` under `policy`.
pub async fn fetch(url: &str, policy: &FetchPolicy) -> Result<Fetched, FetchError> {
    let url = parse_url(url)?;
    match tokio::time::timeout(policy.timeout, fetch_checked(url, policy)).await {
        Ok(result) => result,
        Err(_) => Err(FetchError::Network(format!(
            "timed out after {:?}",
            policy.timeout
        ))),
    }
}

/// Parses and checks a user-supplied URL.
fn parse_url(url: &str) -> Result<Url, FetchError> {
    let parsed =
        Url::parse(url.trim()).map_err(|e| FetchError::BadUrl(format!("{} ({e})", url.trim())))?;
    check_url(&parsed)?;
    Ok(parsed)
}

/// Only http(s), with a host, and no credentials.
fn check_url(url: &Url) -> Result<(), FetchError> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(FetchError::BadUrl(format!(
            "{url} (only http and https are supported)"
        )));
    }
    if !url.username().is_empty() || url.password().is_some() {
        let mut shown = url.clone();
        let _ = shown.set_username("");
        let _ = shown.set_password(None);
        return Err(FetchError::BadUrl(format!(
            "{shown} (a user name or password in the URL is not allowed)"
        )));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(FetchError::BadUrl(format!("{url} (no host)")));
    }
    Ok(())
}

/// Follows redirects by hand, checking every hop.
async fn fetch_checked(mut url: Url, policy: &FetchPolicy) -> Result<Fetched, FetchError> {
    let mut redirects = 0;
    loop {
        let addrs = resolve_checked(&url, policy.allow_private).await?;
        let client = client_for(&url, &addrs, policy)?;
        let response = client.get(url.clone()).send().await.map_err(network)?;
        let status = response.status();
        if matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308) {
            let location = response
                .headers()
                .get(LOCATION)
                .map(|value| String::from_utf8_lossy(value.as_bytes()).trim().to_string())
                .filter(|location| !location.is_empty())
                .ok_or(FetchError::Status(status.as_u16()))?;
            if redirects >= policy.max_redirects {
                return Err(FetchError::TooManyRedirects);
            }
            redirects += 1;
            let next = url
                .join(&location)
                .map_err(|e| FetchError::BadUrl(format!("redirect to {location} ({e})")))?;
            check_url(&next)?;
            tracing::debug!(from = %url, to = %next, "following redirect");
            url = next;
            continue;
        }
        if !status.is_success() {
            return Err(FetchError::Status(status.as_u16()));
        }
        return read_document(url, response, policy).await;
    }
}

/// Checks the content type and size, then streams the body up to the limit.
async fn read_document(
    url: Url,
    response: reqwest::Response,
    policy: &FetchPolicy,
) -> Result<Fetched, FetchError> {
    let headers = response.headers();
    let content_type = header_text(headers, CONTENT_TYPE.as_str()).filter(|ct| !ct.is_empty());
    if let Some(content_type) = &content_type {
        let essence = content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        if !policy.accept.takes(&essence) {
            return Err(FetchError::ContentType(essence));
        }
    }
    let filename = filename_for(
        &url,
        header_text(headers, CONTENT_DISPOSITION.as_str()).as_deref(),
    );
    let declared = response.content_length();
    if declared.is_some_and(|length| length > policy.max_bytes as u64) {
        return Err(FetchError::TooLarge(policy.max_bytes));
    }

    let capacity = declared.map_or(0, |length| length as usize);
    let mut bytes = Vec::with_capacity(capacity.min(policy.max_bytes));
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(network)?;
        if bytes.len() + chunk.len() > policy.max_bytes {
            return Err(FetchError::TooLarge(policy.max_bytes));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(Fetched {
        bytes,
        content_type,
        final_url: url,
        filename,
    })
}

fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .map(|value| String::from_utf8_lossy(value.as_bytes()).trim().to_string())
}

/// Resolves the URL's host and returns the addresses to connect to, refusing internal ones
/// unless they are allowed.
async fn resolve_checked(url: &Url, allow_private: bool) -> Result<Vec<SocketAddr>, FetchError> {
    let host = url
        .host_str()
        .ok_or_else(|| FetchError::BadUrl(format!("{url} (no host)")))?;
    let port = url
        .port_or_known_default()
        .ok_or_else(|| FetchError::BadUrl(format!("{url} (no port)")))?;
    let literal = literal_ip(host);
    let ips: Vec<IpAddr> = match literal {
        Some(ip) => vec![ip],
        None => tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| FetchError::Network(format!("cannot resolve {host}: {e}")))?
            .map(|addr| addr.ip())
            .collect(),
    };
    if ips.is_empty() {
        return Err(FetchError::Network(format!("{host} has no addresses")));
    }
    if !allow_private {
        if let Some(ip) = ips.iter().find(|ip| !is_public(**ip)) {
            // The resolved address stays in the log: it maps the operator's network.
            tracing::warn!(%host, %ip, "refused to fetch from an internal address");
            return Err(FetchError::Forbidden(host.to_string()));
        }
    }
    Ok(ips
        .into_iter()
        .map(|ip| SocketAddr::new(ip, port))
        .collect())
}

/// A client for one hop: connects only to `addrs` (the checked addresses), no proxy, no
/// automatic redirects, no decompression.
fn client_for(
    url: &Url,
    addrs: &[SocketAddr],
    policy: &FetchPolicy,
) -> Result<reqwest::Client, FetchError> {
    let mut builder = reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        // The body is counted as it arrives: no transparent decompression (zip bombs), even
        // if another dependency turns reqwest's compression features on.
        .no_gzip()
        .no_brotli()
        .no_deflate()
        .no_zstd()
        .timeout(policy.timeout);
    if let Some(domain) = url.domain() {
        builder = builder.resolve_to_addrs(domain, addrs);
    }
    builder.build().map_err(network)
}

/// A reqwest error as the tenant sees it: what kind of failure, not its cause chain, which can
/// name the addresses a host resolved to. The whole chain goes to the log.
fn network(error: reqwest::Error) -> FetchError {
    let mut chain = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        chain.push_str(": ");
        chain.push_str(&cause.to_string());
        source = cause.source();
    }
    tracing::warn!(error = %chain, "fetching a document failed");
    let kind = if error.is_timeout() {
        "the server did not answer in time"
    } else if error.is_connect() {
        "could not connect to the server"
    } else if error.is_body() || error.is_decode() {
        "the connection broke off while reading the document"
    } else {
        "the request failed"
    };
    FetchError::Network(kind.to_string())
}

/// The `Content-Disposition` file name, else the last non-empty path segment, else the host.
fn filename_for(url: &Url, content_disposition: Option<&str>) -> String {
    content_disposition
        .and_then(disposition_filename)
        .or_else(|| {
            url.path_segments()?
                .rev()
                .find(|segment| !segment.is_empty())
                .map(percent_decode)
                .map(|name| name.trim().to_string())
                .filter(|name| !name.is_empty())
        })
        .unwrap_or_else(|| url.host_str().unwrap_or("download").to_string())
}

/// `attachment; filename="a.pdf"; filename*=UTF-8''%C3%A9.pdf` -> the (extended) file name,
/// reduced to its last path component.
fn disposition_filename(header: &str) -> Option<String> {
    let mut plain = None;
    let mut extended = None;
    for part in header.split(';') {
        let Some((key, value)) = part.split_once('=') else {
            continue;
        };
        let value = value.trim();
        match key.trim().to_ascii_lowercase().as_str() {
            "filename*" => {
                let encoded = value.split_once("''").map_or(value, |(_, v)| v);
                extended = Some(percent_decode(encoded.trim_matches('"')));
            }
            "filename" => plain = Some(value.trim_matches('"').to_string()),
            _ => {}
        }
    }
    let name = extended.or(plain)?;
    let name = name.rsplit(['/', '\\']).next().unwrap_or_default().trim();
    (!name.is_empty()).then(|| name.to_string())
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(byte) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(byte);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use axum::body::{Body, Bytes};
    use axum::extract::Path;
    use axum::http::{header, StatusCode};
    use axum::response::IntoResponse;
    use axum::routing::get;
    use axum::Router;

    use super::*;

    fn policy(allow_private: bool) -> FetchPolicy {
        FetchPolicy {
            max_bytes: 10_000,
            allow_private,
            timeout: Duration::from_secs(10),
            max_redirects: 5,
            accept: Accept::Documents,
        }
    }

    async fn redirect(Path(n): Path<u32>) -> impl IntoResponse {
        // Alternate absolute-path and relative Locations, and the redirect status codes.
        let location = match n {
            0 => "/docs/guide.md".to_string(),
            n if n % 2 == 1 => (n - 1).to_string(),
            n => format!("/r/{}", n - 1),
        };
        let status = [
            StatusCode::FOUND,
            StatusCode::MOVED_PERMANENTLY,
            StatusCode::SEE_OTHER,
            StatusCode::TEMPORARY_REDIRECT,
            StatusCode::PERMANENT_REDIRECT,
        ][n as usize % 5];
        (status, [(header::LOCATION, location)])
    }

    /// A test server on 127.0.0.1 with an ephemeral port.
    async fn serve() -> SocketAddr {
        let router = Router::new()
            .route(
                "/docs/guide.md",
                get(|| async {
                    (
                        [(header::CONTENT_TYPE, "text/markdown; charset=utf-8")],
                        "# Guide\n\nHello.\n",
                    )
                }),
            )
            .route("/r/{n}", get(redirect))
            .route(
                "/big",
                get(|| async { ([(header::CONTENT_TYPE, "text/plain")], "a".repeat(20_000)) }),
            )
            .route(
                "/endless",
                get(|| async {
                    let chunk = Bytes::from(vec![b'x'; 1024]);
                    let stream = futures::stream::repeat_with(move || {
                        Ok::<_, std::io::Error>(chunk.clone())
                    });
                    (
                        [(header::CONTENT_TYPE, "text/plain")],
                        Body::from_stream(stream),
                    )
                }),
            )
            .route(
                "/small-stream",
                get(|| async {
                    let chunks =
                        (0..5).map(|_| Ok::<_, std::io::Error>(Bytes::from_static(b"abc")));
                    Body::from_stream(futures::stream::iter(chunks))
                }),
            )
            .route("/missing", get(|| async { StatusCode::NOT_FOUND }))
            .route("/down", get(|| async { StatusCode::SERVICE_UNAVAILABLE }))
            .route("/busy", get(|| async { StatusCode::TOO_MANY_REQUESTS }))
            .route(
                "/image.png",
                get(|| async { ([(header::CONTENT_TYPE, "image/png")], vec![0x89u8, b'P']) }),
            )
            .route(
                "/download",
                get(|| async {
                    (
                        [
                            (header::CONTENT_TYPE, "application/octet-stream"),
                            (
                                header::CONTENT_DISPOSITION,
                                "attachment; filename=\"../report.pdf\"",
                            ),
                        ],
                        "%PDF-1.4",
                    )
                }),
            )
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    "late"
                }),
            )
            .route(
                "/ua",
                get(|headers: axum::http::HeaderMap| async move {
                    let ua = headers
                        .get(header::USER_AGENT)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_string();
                    ([(header::CONTENT_TYPE, "text/plain")], ua)
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        addr
    }

    #[tokio::test]
    async fn loopback_is_refused_unless_private_targets_are_allowed() {
        let addr = serve().await;
        for url in [
            format!("http://{addr}/docs/guide.md"),
            format!("http://localhost:{}/docs/guide.md", addr.port()),
        ] {
            let err = fetch(&url, &policy(false)).await.unwrap_err();
            assert!(matches!(err, FetchError::Forbidden(_)), "{url}: {err:?}");
            assert!(!err.is_transient());
            // The tenant learns nothing of the addresses the name resolved to.
            let shown = err.to_string();
            if url.contains("localhost") {
                assert!(
                    !shown.contains("127.0.0.1") && !shown.contains("::1"),
                    "{shown}"
                );
            }
        }
    }

    #[tokio::test]
    async fn internal_literal_addresses_are_refused_without_connecting() {
        for url in [
            "http://169.254.169.254/latest/meta-data/",
            "http://[::1]:8080/",
            "http://[::ffff:127.0.0.1]/",
            "http://0x7f.1/",
            "http://2130706433/",
            "https://10.1.2.3/doc.pdf",
            "http://0.0.0.0/",
        ] {
            let err = fetch(url, &policy(false)).await.unwrap_err();
            assert!(matches!(err, FetchError::Forbidden(_)), "{url}: {err:?}");
        }
    }

    #[tokio::test]
    async fn allowed_private_fetch_returns_body_type_and_name() {
        let addr = serve().await;
        // By IP literal and by name (resolved here, then pinned).
        for url in [
            format!("http://{addr}/docs/guide.md"),
            format!("http://localhost:{}/docs/guide.md", addr.port()),
        ] {
            let got = fetch(&url, &policy(true)).await.unwrap();
            assert_eq!(got.bytes, b"# Guide\n\nHello.\n");
            assert_eq!(
                got.content_type.as_deref(),
                Some("text/markdown; charset=utf-8")
            );
            assert_eq!(got.filename, "guide.md");
            assert_eq!(got.final_url.as_str(), url);
        }
    }

    #[tokio::test]
    async fn sends_the_user_agent_and_names_by_host_or_disposition() {
        let addr = serve().await;
        let got = fetch(&format!("http://{addr}/ua"), &policy(true))
            .await
            .unwrap();
        assert_eq!(got.bytes, USER_AGENT.as_bytes());
        assert_eq!(got.filename, "ua");

        let got = fetch(&format!("http://{addr}/download"), &policy(true))
            .await
            .unwrap();
        assert_eq!(got.filename, "report.pdf");
        assert_eq!(
            got.content_type.as_deref(),
            Some("application/octet-stream")
        );

        // No path segment: the host names it (the 404 is irrelevant to the name).
        let url = Url::from_str(&format!("http://{addr}/")).unwrap();
        assert_eq!(filename_for(&url, None), "127.0.0.1");
    }

    #[tokio::test]
    async fn redirect_chain_is_followed() {
        let addr = serve().await;
        let got = fetch(&format!("http://{addr}/r/4"), &policy(true))
            .await
            .unwrap();
        assert_eq!(got.bytes, b"# Guide\n\nHello.\n");
        assert_eq!(got.final_url.path(), "/docs/guide.md");
        assert_eq!(got.filename, "guide.md");
    }

    #[tokio::test]
    async fn too_many_redirects() {
        let addr = serve().await;
        let strict = FetchPolicy {
            max_redirects: 2,
            ..policy(true)
        };
        let err = fetch(&format!("http://{addr}/r/4"), &strict)
            .await
            .unwrap_err();
        assert!(matches!(err, FetchError::TooManyRedirects), "{err:?}");
        // Exactly enough redirects is fine: /r/1 -> /r/0 -> /docs/guide.md.
        assert!(fetch(&format!("http://{addr}/r/1"), &strict).await.is_ok());
    }

    #[tokio::test]
    async fn oversize_bodies_are_refused() {
        let addr = serve().await;
        // Declared by Content-Length.
        let err = fetch(&format!("http://{addr}/big"), &policy(true))
            .await
            .unwrap_err();
        assert!(matches!(err, FetchError::TooLarge(10_000)), "{err:?}");
        // Chunked without a length, and endless: the stream is cut off.
        let err = fetch(&format!("http://{addr}/endless"), &policy(true))
            .await
            .unwrap_err();
        assert!(matches!(err, FetchError::TooLarge(10_000)), "{err:?}");
        assert!(!err.is_transient());
        // A chunked body under the limit is read whole.
        let got = fetch(&format!("http://{addr}/small-stream"), &policy(true))
            .await
            .unwrap();
        assert_eq!(got.bytes, b"abcabcabcabcabc");
    }

    #[tokio::test]
    async fn error_statuses() {
        let addr = serve().await;
        let err = fetch(&format!("http://{addr}/missing"), &policy(true))
            .await
            .unwrap_err();
        assert!(matches!(err, FetchError::Status(404)), "{err:?}");
        assert!(!err.is_transient());
        let err = fetch(&format!("http://{addr}/down"), &policy(true))
            .await
            .unwrap_err();
        assert!(matches!(err, FetchError::Status(503)), "{err:?}");
        assert!(err.is_transient());
        let err = fetch(&format!("http://{addr}/busy"), &policy(true))
            .await
            .unwrap_err();
        assert!(matches!(err, FetchError::Status(429)) && err.is_transient());
    }

    #[tokio::test]
    async fn unsupported_content_type_is_refused() {
        let addr = serve().await;
        let err = fetch(&format!("http://{addr}/image.png"), &policy(true))
            .await
            .unwrap_err();
        match err {
            FetchError::ContentType(ct) => assert_eq!(ct, "image/png"),
            other => panic!("expected ContentType, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn slow_servers_time_out_transiently() {
        let addr = serve().await;
        let quick = FetchPolicy {
            timeout: Duration::from_millis(300),
            ..policy(true)
        };
        let err = fetch(&format!("http://{addr}/slow"), &quick)
            .await
            .unwrap_err();
        assert!(matches!(err, FetchError::Network(_)), "{err:?}");
        assert!(err.is_transient());
    }

    #[tokio::test]
    async fn connection_errors_do_not_name_addresses() {
        // Nothing listens on port 9 of loopback: refused, with the address in the cause chain.
        let err = fetch("http://127.0.0.1:9/doc.md", &policy(true))
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "fetching failed: could not connect to the server"
        );
    }

    #[tokio::test]
    async fn connection_refused_is_transient() {
        // Bind and drop to find a port nothing listens on.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let err = fetch(&format!("http://{addr}/"), &policy(true))
            .await
            .unwrap_err();
        assert!(matches!(err, FetchError::Network(_)), "{err:?}");
        assert!(err.is_transient());
    }

    #[tokio::test]
    async fn bad_urls() {
        for url in [
            "ftp://x",
            "file:///etc/passwd",
            "http://user:pw@host/",
            "https://user@host/",
            "not a url",
            "http://",
            "javascript:alert(1)",
        ] {
            let err = fetch(url, &policy(true)).await.unwrap_err();
            assert!(matches!(err, FetchError::BadUrl(_)), "{url}: {err:?}");
            assert!(!err.is_transient());
            assert!(
                !err.to_string().contains("pw@"),
                "credentials echoed: {err}"
            );
        }
    }

    #[test]
    fn file_names() {
        let url = Url::parse("https://example.com/files/My%20Report.pdf?x=1").unwrap();
        assert_eq!(filename_for(&url, None), "My Report.pdf");
        let url = Url::parse("https://example.com/dir/").unwrap();
        assert_eq!(filename_for(&url, None), "dir");
        let url = Url::parse("https://example.com").unwrap();
        assert_eq!(filename_for(&url, None), "example.com");
        assert_eq!(
            filename_for(
                &url,
                Some("attachment; filename=\"plain.txt\"; filename*=UTF-8''r%C3%A9sum%C3%A9.docx")
            ),
            "résumé.docx"
        );
        assert_eq!(filename_for(&url, Some("inline")), "example.com");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }
}
