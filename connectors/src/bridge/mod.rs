//! The HTTP bridge (hyper 1.x): `GET /metrics` (Prometheus text format), `GET /health`
//! (`{"status":"ok"}`, `{"status":"degraded","reasons":[...]}`, or `"rebalancing"` while a group's partitions move; all with status 200 so the
//! page stays readable), and Grafana's JSON datasource under `/grafana` (`grafana.rs`), answered
//! from the dataflow's live view. Request bodies over 1 MiB are refused (413).
//! It binds where it is told; the CLI defaults to loopback. With a token, every endpoint but
//! `/health` wants `Authorization: Bearer <token>`, compared in constant time; anything else is
//! 401 without a hint of the token. CORS is off unless origins are allowed ([`Access`]): then a
//! listed `Origin` gets `Access-Control-Allow-Origin` (Grafana's browser access mode) and its
//! preflight `OPTIONS` is answered without the token (browsers send none there).

pub mod grafana;
pub mod queries;

mod dashboard;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use pitwall_dataflows::live::LiveStore;
use pitwall_dataflows::queries::QueryHub;
use prometheus::{Encoder, Registry, TextEncoder};
use thiserror::Error;

/// The `/health` status while the only reasons are partitions moving between a group's
/// instances (each such reason starts with it).
pub const REBALANCING: &str = "rebalancing";

/// What `/health` reports: reasons the job is degraded (empty: ok).
pub type HealthCheck = Arc<dyn Fn() -> Vec<String> + Send + Sync>;

/// A bearer token. Its `Debug` never shows the value, so it cannot leak through logs or errors.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    pub fn new(token: impl Into<String>) -> Token {
        Token(token.into())
    }

    /// Whether an `Authorization` header value carries this token. Constant time in the
    /// token's contents (only the length can be told apart).
    pub fn admits(&self, authorization: Option<&[u8]>) -> bool {
        use subtle::ConstantTimeEq;
        let presented = authorization.and_then(|h| h.strip_prefix(b"Bearer ")).unwrap_or_default();
        bool::from(presented.ct_eq(self.0.as_bytes()))
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token([redacted])")
    }
}

impl std::str::FromStr for Token {
    type Err = String;
    fn from_str(text: &str) -> Result<Token, String> {
        match text.trim() {
            "" => Err("the bridge token must not be empty".into()),
            token => Ok(Token(token.to_string())),
        }
    }
}

/// Who may call the bridge: the bearer token, and the browser origins allowed cross-origin
/// calls (`*` allows any; empty: no CORS headers at all, the safe default).
#[derive(Clone, Debug, Default)]
pub struct Access {
    pub token: Option<Token>,
    pub cors_origins: Vec<String>,
}

impl Access {
    /// The origin to echo in `Access-Control-Allow-Origin`, when this request's is allowed.
    fn allowed_origin(&self, origin: Option<&[u8]>) -> Option<String> {
        let origin = std::str::from_utf8(origin?).ok()?.trim();
        self.cors_origins.iter().any(|allowed| allowed == "*" || allowed.trim_end_matches('/') == origin).then(|| origin.to_string())
    }
}

#[derive(Debug, Error)]
pub enum BridgeError {
    #[error("binding the bridge to {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("starting the bridge runtime: {0}")]
    Runtime(std::io::Error),
}

/// Serves the bridge on `addr` from a background thread until the process ends. Returns the
/// bound address (useful with port 0).
pub fn serve(
    addr: SocketAddr,
    registry: Registry,
    health: HealthCheck,
    access: Access,
    live: Option<LiveStore>,
    queries: Option<QueryHub>,
) -> Result<SocketAddr, BridgeError> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(BridgeError::Runtime)?;
    let listener = runtime.block_on(tokio::net::TcpListener::bind(addr)).map_err(|source| BridgeError::Bind { addr, source })?;
    let bound = listener.local_addr().map_err(|source| BridgeError::Bind { addr, source })?;
    std::thread::Builder::new()
        .name("pitwall-bridge".into())
        .spawn(move || {
            runtime.block_on(async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else { continue };
                    let (registry, health, access, live, queries) = (registry.clone(), health.clone(), access.clone(), live.clone(), queries.clone());
                    tokio::spawn(async move {
                        let service = service_fn(move |request| {
                            let origin = access.allowed_origin(request.headers().get(hyper::header::ORIGIN).map(|v| v.as_bytes()));
                            let answer = respond(request, registry.clone(), health.clone(), access.token.clone(), live.clone(), queries.clone());
                            async move { answer.await.map(|response| with_cors(response, origin)) }
                        });
                        if let Err(error) = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await {
                            tracing::debug!(%error, "bridge connection ended with an error");
                        }
                    });
                }
            })
        })
        .map_err(BridgeError::Runtime)?;
    tracing::info!(%bound, "bridge serving /metrics, /health and /grafana");
    Ok(bound)
}

/// Every answer's body: a whole one, or the dashboard's event stream.
pub(crate) type Body = BoxBody<Bytes, Infallible>;

pub(crate) fn text(status: StatusCode, content_type: &str, body: Vec<u8>) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(body)).boxed());
    *response.status_mut() = status;
    response.headers_mut().insert(hyper::header::CONTENT_TYPE, content_type.parse().expect("valid content type"));
    response
}

/// Adds the CORS headers for an allowed origin.
fn with_cors(mut response: Response<Body>, origin: Option<String>) -> Response<Body> {
    if let Some(origin) = origin.and_then(|o| o.parse().ok()) {
        let headers = response.headers_mut();
        headers.insert(hyper::header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        headers.insert(hyper::header::VARY, hyper::header::HeaderValue::from_static("Origin"));
        headers.insert(hyper::header::ACCESS_CONTROL_ALLOW_METHODS, hyper::header::HeaderValue::from_static("GET, POST, DELETE, OPTIONS"));
        headers.insert(hyper::header::ACCESS_CONTROL_ALLOW_HEADERS, hyper::header::HeaderValue::from_static("authorization, content-type"));
        headers.insert(hyper::header::ACCESS_CONTROL_MAX_AGE, hyper::header::HeaderValue::from_static("600"));
    }
    response
}

async fn respond(
    request: Request<Incoming>,
    registry: Registry,
    health: HealthCheck,
    token: Option<Token>,
    live: Option<LiveStore>,
    queries: Option<QueryHub>,
) -> Result<Response<Body>, Infallible> {
    // The health check and the dashboard page itself (which holds no data) are open; the page
    // passes `?access_token=` on to its API calls, since a browser's EventSource cannot send headers.
    // A CORS preflight carries no credentials: it is answered (204) before the token check, and
    // gets its Access-Control-* headers only when the origin is allowed (see `with_cors`).
    if request.method() == Method::OPTIONS {
        return Ok(text(StatusCode::NO_CONTENT, "text/plain", Vec::new()));
    }
    let open = matches!(request.uri().path(), "/health" | "/");
    if let Some(token) = token.filter(|_| !open) {
        let from_query = request
            .uri()
            .query()
            .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("access_token=")))
            .map(|t| format!("Bearer {}", percent_decode(t)).into_bytes());
        let presented = request.headers().get(hyper::header::AUTHORIZATION).map(|v| v.as_bytes().to_vec()).or(from_query);
        if !token.admits(presented.as_deref()) {
            let mut response = text(StatusCode::UNAUTHORIZED, "text/plain", b"unauthorized: send Authorization: Bearer <token>\n".to_vec());
            response.headers_mut().insert(hyper::header::WWW_AUTHENTICATE, "Bearer".parse().expect("valid header"));
            return Ok(response);
        }
    }
    if request.uri().path().starts_with("/v1/queries") {
        let Some(hub) = queries else {
            let message =
                br#"{"error":"live queries are served by the process that hosts worker 0 (process 0), with --bridge and the telemetry pipeline"}"#;
            return Ok(text(StatusCode::NOT_FOUND, "application/json", message.to_vec()));
        };
        let (method, path) = (request.method().to_string(), request.uri().path().to_string());
        return Ok(match read_body(request.into_body()).await {
            Ok(body) => queries::route(&hub, &method, &path, &body),
            Err(refused) => refused,
        });
    }
    if request.uri().path().starts_with("/grafana") {
        let Some(live) = live else {
            return Ok(text(StatusCode::NOT_FOUND, "application/json", br#"{"error":"this job keeps no live view"}"#.to_vec()));
        };
        let (method, path) = (request.method().to_string(), request.uri().path().to_string());
        let body = match read_body(request.into_body()).await {
            Ok(body) => body,
            Err(refused) => return Ok(refused),
        };
        // Computed on the runtime's blocking pool, not on its one thread: a heavy query never
        // holds up /health, /metrics or another request.
        let answered = tokio::task::spawn_blocking(move || grafana::answer(&live, &method, &path, &body)).await;
        let (status, value) = answered.unwrap_or_else(|e| (500, serde_json::json!({ "error": format!("answering the query failed: {e}") })));
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return Ok(text(status, "application/json", value.to_string().into_bytes()));
    }
    if let (Some(live), &Method::GET) = (&live, request.method()) {
        if let Some(response) = dashboard::dashboard(live, request.uri().path()) {
            return Ok(response);
        }
    }
    Ok(match (request.method(), request.uri().path()) {
        (&Method::GET, "/metrics") => {
            let mut body = Vec::new();
            let encoder = TextEncoder::new();
            match encoder.encode(&registry.gather(), &mut body) {
                Ok(()) => text(StatusCode::OK, encoder.format_type(), body),
                Err(error) => text(StatusCode::INTERNAL_SERVER_ERROR, "text/plain", error.to_string().into_bytes()),
            }
        }
        (&Method::GET, "/health") => {
            let reasons = health();
            let status = match () {
                _ if reasons.is_empty() => "ok",
                _ if reasons.iter().all(|r| r.starts_with(REBALANCING)) => REBALANCING,
                _ => "degraded",
            };
            let body = serde_json::json!({ "status": status, "reasons": reasons });
            text(StatusCode::OK, "application/json", body.to_string().into_bytes())
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "text/plain",
            b"not found: the bridge serves GET /, /metrics, /health, /api/snapshot, /api/events and /grafana/\n".to_vec(),
        ),
    })
}

/// A request body of at most [`grafana::MAX_BODY`] bytes, or the answer refusing it: 413 when
/// it is larger, 400 when it cannot be read.
async fn read_body(body: Incoming) -> Result<Bytes, Response<Body>> {
    match Limited::new(body, grafana::MAX_BODY).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
            let message = format!(r#"{{"error":"request body over {} bytes"}}"#, grafana::MAX_BODY);
            Err(text(StatusCode::PAYLOAD_TOO_LARGE, "application/json", message.into_bytes()))
        }
        Err(error) => {
            Err(text(StatusCode::BAD_REQUEST, "application/json", serde_json::json!({ "error": error.to_string() }).to_string().into_bytes()))
        }
    }
}

/// `%XX` escapes of a URL path or query part decoded (invalid escapes are kept as they are).
pub(crate) fn percent_decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text).decode_utf8_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::{Access, Token};

    #[test]
    fn cors_is_off_by_default_and_echoes_only_listed_origins() {
        let origin = Some(&b"https://grafana.example.com"[..]);
        assert_eq!(Access::default().allowed_origin(origin), None);
        let listed = Access { token: None, cors_origins: vec!["https://grafana.example.com/".into()] };
        assert_eq!(listed.allowed_origin(origin).as_deref(), Some("https://grafana.example.com"));
        assert_eq!(listed.allowed_origin(Some(b"https://evil.example.com")), None);
        assert_eq!(listed.allowed_origin(None), None);
        let any = Access { token: None, cors_origins: vec!["*".into()] };
        assert_eq!(any.allowed_origin(Some(b"http://localhost:3000")).as_deref(), Some("http://localhost:3000"));
    }

    #[test]
    fn paths_are_percent_decoded_and_bad_escapes_kept() {
        assert_eq!(super::percent_decode("cam%2D1%20a"), "cam-1 a");
        assert_eq!(super::percent_decode("100%zz%4"), "100%zz%4");
        assert_eq!(super::percent_decode("a+b"), "a+b");
    }

    #[test]
    fn only_the_exact_bearer_token_is_admitted_and_debug_hides_it() {
        let token: Token = "s3cr3t-Token".parse().unwrap();
        assert!(token.admits(Some(b"Bearer s3cr3t-Token")));
        for wrong in [&b"Bearer s3cr3t-token"[..], b"Bearer s3cr3t-Token ", b"s3cr3t-Token", b"Basic s3cr3t-Token", b"Bearer ", b""] {
            assert!(!token.admits(Some(wrong)), "{}", String::from_utf8_lossy(wrong));
        }
        assert!(!token.admits(None));
        assert!(!format!("{token:?}").contains("s3cr3t"));
        assert!(" ".parse::<Token>().is_err());
    }
}
