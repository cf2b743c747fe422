//! Grafana's JSON datasource protocol (the SimpleJSON / "JSON API" shape) under `/grafana`:
//! `GET /grafana/` (health), `POST /grafana/search` (the target list; `POST /grafana/metrics`
//! gives it in the JSON API plugin's `{label, value}` shape), `POST /grafana/query`
//! (time series and tables over `range`, down-sampled to `maxDataPoints`) and
//! `POST /grafana/annotations` (alerts). Requests are parsed here; the answers come from the
//! dataflow's [`LiveStore`]. A bad request is a 4xx with a one-line JSON message, never a panic.

use chrono::DateTime;
use pitwall_dataflows::live::{LiveError, LiveStore, TABLES};
use serde::Deserialize;
use serde_json::{json, Value};

/// The largest request body accepted.
pub const MAX_BODY: usize = 1 << 20;
/// Rows a table answer holds at most.
const TABLE_ROWS: usize = 10_000;

/// An answer: status code and JSON body.
pub type Answer = (u16, Value);

fn bad(message: impl std::fmt::Display) -> Answer {
    (400, json!({ "error": message.to_string() }))
}

#[derive(Deserialize)]
struct Range {
    from: String,
    to: String,
}

impl Range {
    fn millis(&self) -> Result<(i64, i64), Answer> {
        let parse = |which: &str, text: &str| {
            DateTime::parse_from_rfc3339(text)
                .map(|t| t.timestamp_millis())
                .map_err(|e| bad(format!("range.{which} `{text}` is not an RFC 3339 time: {e}")))
        };
        Ok((parse("from", &self.from)?, parse("to", &self.to)?))
    }
}

#[derive(Deserialize)]
struct Target {
    target: Option<String>,
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(rename = "refId", default)]
    ref_id: Option<String>,
    #[serde(default)]
    hide: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct QueryRequest {
    range: Range,
    max_data_points: Option<u64>,
    targets: Vec<Target>,
}

#[derive(Deserialize, Default)]
struct SearchRequest {
    target: Option<String>,
}

#[derive(Deserialize)]
struct AnnotationRequest {
    range: Range,
    #[serde(default)]
    annotation: Value,
}

fn parse<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, Answer> {
    serde_json::from_slice(body).map_err(|e| bad(format!("invalid request JSON: {e}")))
}

fn live_error(error: LiveError) -> Answer {
    bad(error)
}

/// Routes one `/grafana...` request.
pub fn answer(store: &LiveStore, method: &str, path: &str, body: &[u8]) -> Answer {
    let result = match (method, path.trim_end_matches('/')) {
        ("GET", "/grafana") => Ok((200, json!({ "status": "ok", "datasource": "pitwall" }))),
        ("POST", "/grafana/search") => search(store, body),
        ("POST", "/grafana/metrics") => metrics(store, body),
        ("POST", "/grafana/query") => query(store, body),
        ("POST", "/grafana/annotations") => annotations(store, body),
        (_, "/grafana" | "/grafana/search" | "/grafana/metrics" | "/grafana/query" | "/grafana/annotations") => {
            Err((405, json!({ "error": format!("{method} is not allowed on {path}") })))
        }
        _ => Err((404, json!({ "error": format!("no such endpoint {path}: /grafana/, /grafana/search, /grafana/query, /grafana/annotations") }))),
    };
    result.unwrap_or_else(|answer| answer)
}

fn search(store: &LiveStore, body: &[u8]) -> Result<Answer, Answer> {
    let request: SearchRequest = if body.iter().all(u8::is_ascii_whitespace) { SearchRequest::default() } else { parse(body)? };
    Ok((200, json!(store.targets(request.target.as_deref().unwrap_or("")))))
}

/// The JSON API plugin's (simpod-json-datasource) metric list: `[{"label", "value"}]`.
fn metrics(store: &LiveStore, body: &[u8]) -> Result<Answer, Answer> {
    #[derive(Deserialize, Default)]
    struct MetricsRequest {
        metric: Option<String>,
    }
    let request: MetricsRequest = if body.iter().all(u8::is_ascii_whitespace) { MetricsRequest::default() } else { parse(body)? };
    let list: Vec<Value> = store.targets(request.metric.as_deref().unwrap_or("")).into_iter().map(|t| json!({ "label": t, "value": t })).collect();
    Ok((200, Value::Array(list)))
}

fn query(store: &LiveStore, body: &[u8]) -> Result<Answer, Answer> {
    let request: QueryRequest = parse(body)?;
    let (from, to) = request.range.millis()?;
    let max_points = request.max_data_points.unwrap_or(1_000);
    let mut out = Vec::new();
    for target in request.targets.iter().filter(|t| !t.hide) {
        let name = target
            .target
            .as_deref()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| bad(format!("target {} names no metric", target.ref_id.as_deref().unwrap_or("?"))))?;
        if target.kind.as_deref() == Some("table") || TABLES.contains(&name) {
            let table = store.table(name, from, to, TABLE_ROWS).map_err(live_error)?;
            let mut value = serde_json::to_value(table).expect("tables serialise");
            value["refId"] = json!(target.ref_id);
            out.push(value);
        } else {
            let points = store.series(name, from, to, max_points).map_err(live_error)?;
            out.push(json!({ "target": name, "refId": target.ref_id, "datapoints": points }));
        }
    }
    Ok((200, Value::Array(out)))
}

fn annotations(store: &LiveStore, body: &[u8]) -> Result<Answer, Answer> {
    let request: AnnotationRequest = parse(body)?;
    let (from, to) = request.range.millis()?;
    let query = request.annotation.get("query").and_then(Value::as_str).unwrap_or("");
    let alerts = store.alerts(from, to, query).map_err(live_error)?;
    let events: Vec<Value> = alerts
        .into_iter()
        .map(|(time, alert)| {
            let severity = format!("{:?}", alert.severity).to_lowercase();
            json!({
                "annotation": request.annotation,
                "time": time,
                "timeEnd": time,
                "title": format!("{} {} ({severity})", alert.driver, alert.kind.name()),
                "text": alert.message,
                "tags": [alert.driver, alert.kind.name(), severity],
            })
        })
        .collect();
    Ok((200, Value::Array(events)))
}
