//! The HTTP bridge (hyper 1.x). For now it serves what operators need to watch a running job:
//! `GET /metrics` (Prometheus text format) and `GET /health` (`{"status":"ok"}` or
//! `{"status":"degraded","reasons":[...]}`, both with status 200 so the page stays readable).
//! It binds where it is told; the CLI defaults to loopback.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus::{Encoder, Registry, TextEncoder};
use thiserror::Error;

/// What `/health` reports: reasons the job is degraded (empty: ok).
pub type HealthCheck = Arc<dyn Fn() -> Vec<String> + Send + Sync>;

#[derive(Debug, Error)]
pub enum BridgeError {
    #[error("binding the bridge to {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("starting the bridge runtime: {0}")]
    Runtime(std::io::Error),
}

/// Serves the bridge on `addr` from a background thread until the process ends. Returns the
/// bound address (useful with port 0).
pub fn serve(addr: SocketAddr, registry: Registry, health: HealthCheck) -> Result<SocketAddr, BridgeError> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(BridgeError::Runtime)?;
    let listener = runtime.block_on(tokio::net::TcpListener::bind(addr)).map_err(|source| BridgeError::Bind { addr, source })?;
    let bound = listener.local_addr().map_err(|source| BridgeError::Bind { addr, source })?;
    std::thread::Builder::new()
        .name("pitwall-bridge".into())
        .spawn(move || {
            runtime.block_on(async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else { continue };
                    let (registry, health) = (registry.clone(), health.clone());
                    tokio::spawn(async move {
                        let service = service_fn(move |request| respond(request, registry.clone(), health.clone()));
                        if let Err(error) = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await {
                            tracing::debug!(%error, "bridge connection ended with an error");
                        }
                    });
                }
            })
        })
        .map_err(BridgeError::Runtime)?;
    tracing::info!(%bound, "bridge serving /metrics and /health");
    Ok(bound)
}

fn text(status: StatusCode, content_type: &str, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(hyper::header::CONTENT_TYPE, content_type.parse().expect("valid content type"));
    response
}

async fn respond(request: Request<Incoming>, registry: Registry, health: HealthCheck) -> Result<Response<Full<Bytes>>, Infallible> {
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
            let status = if reasons.is_empty() { "ok" } else { "degraded" };
            let body = serde_json::json!({ "status": status, "reasons": reasons });
            text(StatusCode::OK, "application/json", body.to_string().into_bytes())
        }
        _ => text(StatusCode::NOT_FOUND, "text/plain", b"not found: the bridge serves GET /metrics and GET /health\n".to_vec()),
    })
}
