//! Live queries over the HTTP bridge: `POST /v1/queries` registers a query (JSON spec, see
//! `pitwall_dataflows::queries::QuerySpec`), `GET /v1/queries` lists them, `GET
//! /v1/queries/{id}` answers its current rows, `GET /v1/queries/{id}/stream` pushes its changes
//! (server-sent events: first the current rows, then `+1`/`-1` rows with their event times),
//! `DELETE /v1/queries/{id}` removes it. The dataflow maintains the results; this only routes.

use std::convert::Infallible;
use std::time::Duration;

use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Bytes, Frame};
use hyper::{Response, StatusCode};
use pitwall_dataflows::queries::{QueryHub, QuerySpec};
use serde_json::{json, Value};

use super::{text, Body};

fn answer(status: StatusCode, value: Value) -> Response<Body> {
    text(status, "application/json", value.to_string().into_bytes())
}

fn not_found(id: u64) -> Response<Body> {
    answer(StatusCode::NOT_FOUND, json!({ "error": format!("no query {id}") }))
}

fn current(hub: &QueryHub, id: u64) -> Option<Value> {
    let (spec, rows, time) = hub.result(id)?;
    let rows: Vec<Value> = rows.into_iter().map(|(driver, value)| json!({ "driver": driver, "value": value })).collect();
    Some(json!({ "id": id, "query": spec, "rows": rows, "time": time }))
}

/// Routes one `/v1/queries...` request.
pub fn route(hub: &QueryHub, method: &str, path: &str, body: &[u8]) -> Response<Body> {
    let rest = path.trim_end_matches('/').strip_prefix("/v1/queries").unwrap_or("");
    let mut parts = rest.trim_start_matches('/').splitn(2, '/');
    let (id, tail) = (parts.next().filter(|p| !p.is_empty()), parts.next());
    match (method, id, tail) {
        ("POST", None, None) => match serde_json::from_slice::<QuerySpec>(body) {
            Err(e) => answer(StatusCode::BAD_REQUEST, json!({ "error": format!("invalid query spec: {e}") })),
            Ok(spec) => match hub.register(spec.clone()) {
                Ok(id) => answer(StatusCode::CREATED, json!({ "id": id, "query": spec })),
                Err(e) => answer(StatusCode::BAD_REQUEST, json!({ "error": e.to_string() })),
            },
        },
        ("GET", None, None) => {
            let list: Vec<Value> = hub.list().into_iter().map(|(id, spec)| json!({ "id": id, "query": spec })).collect();
            answer(StatusCode::OK, Value::Array(list))
        }
        (_, Some(id), tail) => {
            let Ok(id) = id.parse::<u64>() else {
                return answer(StatusCode::BAD_REQUEST, json!({ "error": format!("`{id}` is not a query id") }));
            };
            match (method, tail) {
                ("GET", None) => current(hub, id).map(|v| answer(StatusCode::OK, v)).unwrap_or_else(|| not_found(id)),
                ("DELETE", None) => {
                    if hub.remove(id) {
                        text(StatusCode::NO_CONTENT, "application/json", Vec::new())
                    } else {
                        not_found(id)
                    }
                }
                ("GET", Some("stream")) => match current(hub, id) {
                    None => not_found(id),
                    Some(first) => stream(hub.clone(), id, first),
                },
                _ => answer(StatusCode::METHOD_NOT_ALLOWED, json!({ "error": format!("{method} {path} is not supported") })),
            }
        }
        _ => answer(StatusCode::METHOD_NOT_ALLOWED, json!({ "error": format!("{method} {path} is not supported") })),
    }
}

/// The current rows, then every change as it is applied (checked every 100 ms), until the
/// query is removed.
fn stream(hub: QueryHub, id: u64, first: Value) -> Response<Body> {
    let seq = hub.changes_since(id, 0).and_then(|c| c.last().map(|c| c.seq)).unwrap_or(0);
    let state = (hub, Some(first), seq, tokio::time::interval(Duration::from_millis(100)));
    let events = futures_util::stream::unfold(state, move |(hub, first, seq, mut ticks)| async move {
        if let Some(first) = first {
            let event = format!("event: snapshot\ndata: {first}\n\n");
            return Some((Ok::<_, Infallible>(Frame::data(Bytes::from(event))), (hub, None, seq, ticks)));
        }
        loop {
            ticks.tick().await;
            let changes = hub.changes_since(id, seq)?;
            if let Some(last) = changes.last().map(|c| c.seq) {
                let event = format!("event: changes\ndata: {}\n\n", json!({ "id": id, "changes": changes }));
                return Some((Ok(Frame::data(Bytes::from(event))), (hub, None, last, ticks)));
            }
        }
    });
    let mut response = Response::new(StreamBody::new(events).boxed());
    response.headers_mut().insert(hyper::header::CONTENT_TYPE, "text/event-stream".parse().expect("valid header"));
    response.headers_mut().insert(hyper::header::CACHE_CONTROL, "no-cache".parse().expect("valid header"));
    response
}
