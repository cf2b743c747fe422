//! Grafana's JSON datasource protocol under `/grafana`, for both plugins people install: the
//! current "JSON" plugin (`simpod-json-datasource`) and the legacy SimpleJSON one.
//!
//! - `GET /grafana` and `GET /grafana/`: test connection (200).
//! - `POST /grafana/search` (legacy) and `POST /grafana/metrics` (current: `{label, value,
//!   payloads}`): the target list. `POST /grafana/metric-payload-options`: pitwall's metrics take
//!   no payloads, so always `[]`. `POST /grafana/variable`: template-variable values
//!   (`drivers`, `videos`, `kinds`, `severities`, or a filter over the targets) as
//!   `[{__text, __value}]`.
//! - `POST /grafana/query`: time series (`[[value, epoch_ms], ...]`, ascending, never NaN, never
//!   more than `maxDataPoints` points, and no finer than `intervalMs`; a series target asked for
//!   with `"type": "table"` answers the same points as rows of time and value), tables (columns + rows),
//!   and the `annotations` target, which the current plugin's annotation queries send here (a
//!   table with time, timeEnd, title, text, tags). `adhocFilters` on driver/kind/severity apply.
//! - `POST /grafana/annotations` (legacy annotations), `POST /grafana/tag-keys` and
//!   `POST /grafana/tag-values` (ad hoc filters).
//!
//! Requests are parsed here; the answers come from the dataflow's [`LiveStore`]. A bad request is
//! a 4xx with a one-line JSON message, never a panic.

use chrono::DateTime;
use pitwall_dataflows::live::{LiveError, LiveStore, TABLES};
use serde::Deserialize;
use serde_json::{json, Value};

/// The largest request body accepted.
pub const MAX_BODY: usize = 1 << 20;
/// Rows a table answer holds at most.
const TABLE_ROWS: usize = 10_000;
/// Most visible targets one `/query` may name: a panel has a handful; thousands are a mistake
/// or an attack, and are refused before any is computed.
pub const MAX_TARGETS: usize = 100;
/// Most points one `/query` may ask for in all (targets x maxDataPoints): bounds the work and
/// the answer of one request (a point is ~30 bytes of JSON, so ~60 MB at the limit).
pub const MAX_POINTS_PER_QUERY: u64 = 2_000_000;

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
    interval_ms: Option<f64>,
    targets: Vec<Target>,
    #[serde(default)]
    adhoc_filters: Vec<AdhocFilter>,
}

/// An ad hoc filter (`key` driver, kind or severity; operator `=` or `!=`).
#[derive(Deserialize)]
struct AdhocFilter {
    key: String,
    #[serde(default)]
    operator: String,
    value: String,
}

impl AdhocFilter {
    /// Whether a row with these tags passes. Keys pitwall does not tag by are refused earlier.
    fn admits(&self, driver: &str, kind: &str, severity: &str) -> bool {
        let value = match self.key.as_str() {
            "driver" => driver,
            "kind" => kind,
            "severity" => severity,
            _ => return true,
        };
        (value == self.value) != (self.operator == "!=")
    }
}

fn check_filters(filters: &[AdhocFilter]) -> Result<(), Answer> {
    for filter in filters {
        if !TAG_KEYS.contains(&filter.key.as_str()) {
            return Err(bad(format!("ad hoc filter key `{}` is not one of {TAG_KEYS:?}", filter.key)));
        }
        if !matches!(filter.operator.as_str(), "" | "=" | "!=") {
            return Err(bad(format!("ad hoc filter operator `{}` is not supported (use = or !=)", filter.operator)));
        }
    }
    Ok(())
}

/// What ad hoc filters can key on.
const TAG_KEYS: [&str; 3] = ["driver", "kind", "severity"];

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
    match error {
        LiveError::UnknownTarget(_) => bad(format!("{error}: POST /grafana/search lists the targets")),
        other => bad(other),
    }
}

/// A table: Grafana's `{"columns": [{"text", "type"}], "rows": [[...]], "type": "table"}`.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Table {
    pub columns: Vec<Column>,
    pub rows: Vec<Vec<Value>>,
    #[serde(rename = "type")]
    pub kind: &'static str,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Column {
    pub text: &'static str,
    #[serde(rename = "type")]
    pub kind: &'static str,
}

/// A table target (`alerts`, `video_completions`) within `[from, to]`, newest first, at most
/// `limit` rows.
pub fn table(store: &LiveStore, target: &str, from: i64, to: i64, limit: usize) -> Result<Table, LiveError> {
    let columns = |names: &[(&'static str, &'static str)]| names.iter().map(|&(text, kind)| Column { text, kind }).collect();
    match target {
        "alerts" => Ok(Table {
            columns: columns(&[("time", "time"), ("driver", "string"), ("kind", "string"), ("severity", "string"), ("message", "string")]),
            rows: store
                .alerts(from, to, "")?
                .into_iter()
                .rev()
                .take(limit)
                .map(|(t, a)| vec![t.into(), a.driver.into(), a.kind.name().into(), a.severity.name().into(), a.message.into()])
                .collect(),
            kind: "table",
        }),
        "video_completions" => Ok(Table {
            columns: columns(&[
                ("time", "time"),
                ("video", "string"),
                ("frames", "number"),
                ("fire_frames", "number"),
                ("max_score", "number"),
                ("location", "string"),
            ]),
            rows: store
                .completions(from, to)?
                .into_iter()
                .rev()
                .take(limit)
                .map(|(t, c)| {
                    vec![
                        t.into(),
                        c.video_id.into(),
                        c.frames.into(),
                        c.fire_frames.into(),
                        f64::from(c.max_score).into(),
                        c.location.unwrap_or_default().into(),
                    ]
                })
                .collect(),
            kind: "table",
        }),
        other => Err(LiveError::UnknownTarget(other.into())),
    }
}

const ENDPOINTS: [&str; 9] = [
    "/grafana",
    "/grafana/search",
    "/grafana/metrics",
    "/grafana/metric-payload-options",
    "/grafana/variable",
    "/grafana/query",
    "/grafana/annotations",
    "/grafana/tag-keys",
    "/grafana/tag-values",
];

/// Routes one `/grafana...` request.
pub fn answer(store: &LiveStore, method: &str, path: &str, body: &[u8]) -> Answer {
    let result = match (method, path.trim_end_matches('/')) {
        ("GET", "/grafana") => Ok((200, json!({ "status": "ok", "datasource": "pitwall" }))),
        ("POST", "/grafana/search") => search(store, body),
        ("POST", "/grafana/metrics") => metrics(store, body),
        ("POST", "/grafana/query") => query(store, body),
        ("POST", "/grafana/annotations") => annotations(store, body),
        ("POST", "/grafana/metric-payload-options") => Ok((200, json!([]))),
        ("POST", "/grafana/variable") => variable(store, body),
        ("POST", "/grafana/tag-keys") => Ok((200, json!(TAG_KEYS.iter().map(|k| json!({ "type": "string", "text": k })).collect::<Vec<_>>()))),
        ("POST", "/grafana/tag-values") => tag_values(store, body),
        (_, p) if ENDPOINTS.contains(&p) => Err((405, json!({ "error": format!("{method} is not allowed on {path}") }))),
        _ => Err((404, json!({ "error": format!("no such endpoint {path}: {}", ENDPOINTS.join(", ")) }))),
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
    let list: Vec<Value> =
        store.targets(request.metric.as_deref().unwrap_or("")).into_iter().map(|t| json!({ "label": t, "value": t, "payloads": [] })).collect();
    Ok((200, Value::Array(list)))
}

fn query(store: &LiveStore, body: &[u8]) -> Result<Answer, Answer> {
    let request: QueryRequest = parse(body)?;
    let (from, to) = request.range.millis()?;
    check_filters(&request.adhoc_filters)?;
    let mut max_points = request.max_data_points.unwrap_or(1_000);
    // Buckets no narrower than intervalMs: fewer points when the interval says so, never more.
    // (An out-of-range maxDataPoints is left for the view to refuse.)
    let valid = (1..=pitwall_dataflows::live::MAX_DATA_POINTS).contains(&max_points);
    if let Some(interval) = request.interval_ms.filter(|i| valid && i.is_finite() && *i >= 1.0) {
        max_points = max_points.min((((to - from) as f64 / interval).ceil() as u64).max(1));
    }
    // The work of one request is bounded before any of it is done.
    let visible = request.targets.iter().filter(|t| !t.hide).count();
    if visible > MAX_TARGETS {
        return Err(bad(format!("{visible} targets in one query; at most {MAX_TARGETS}")));
    }
    let asked = (visible as u64).saturating_mul(max_points);
    if asked > MAX_POINTS_PER_QUERY {
        return Err(bad(format!(
            "{visible} targets x maxDataPoints {max_points} = {asked} points; at most {MAX_POINTS_PER_QUERY} per query (lower maxDataPoints or split the panel)"
        )));
    }
    let admits = |driver: &str, kind: &str, severity: &str| request.adhoc_filters.iter().all(|f| f.admits(driver, kind, severity));
    let mut out = Vec::new();
    for target in request.targets.iter().filter(|t| !t.hide) {
        let name = target
            .target
            .as_deref()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| bad(format!("target {} names no metric", target.ref_id.as_deref().unwrap_or("?"))))?;
        if name == "annotations" {
            let mut value = annotation_table(store, from, to, &admits)?;
            value["refId"] = json!(target.ref_id);
            out.push(value);
        } else if TABLES.contains(&name) {
            let mut table = table(store, name, from, to, TABLE_ROWS).map_err(live_error)?;
            if name == "alerts" {
                // Columns: time, driver, kind, severity, message.
                let cell = |row: &[Value], i: usize| row.get(i).and_then(Value::as_str).unwrap_or("").to_string();
                table.rows.retain(|row| admits(&cell(row, 1), &cell(row, 2), &cell(row, 3)));
            }
            let mut value = serde_json::to_value(table).expect("tables serialise");
            value["refId"] = json!(target.ref_id);
            out.push(value);
        } else {
            let driver = name.split_once(':').map_or("", |(d, _)| d);
            let mut points =
                // Series are per driver: only driver filters apply to them.
                if driver == "video" || request.adhoc_filters.iter().filter(|f| f.key == "driver").all(|f| f.admits(driver, "", "")) { store.series(name, from, to, max_points).map_err(live_error)? } else { Vec::new() };
            // JSON has no NaN: a point without a finite value is left out, not sent as null.
            points.retain(|[value, time]| value.is_finite() && time.is_finite());
            if target.kind.as_deref() == Some("table") {
                // A series asked for as a table (SimpleJSON's "Format as: Table"): time and value.
                let rows: Vec<[f64; 2]> = points.iter().map(|[value, time]| [*time, *value]).collect();
                let columns = json!([{ "text": "time", "type": "time" }, { "text": name, "type": "number" }]);
                out.push(json!({ "type": "table", "refId": target.ref_id, "columns": columns, "rows": rows }));
            } else {
                out.push(json!({ "target": name, "refId": target.ref_id, "datapoints": points }));
            }
        }
    }
    Ok((200, Value::Array(out)))
}

/// Alerts as the table the current plugin's annotation queries read.
fn annotation_table(store: &LiveStore, from: i64, to: i64, admits: &dyn Fn(&str, &str, &str) -> bool) -> Result<Value, Answer> {
    let alerts = store.alerts(from, to, "").map_err(live_error)?;
    let rows: Vec<Value> = alerts
        .into_iter()
        .filter_map(|(time, alert)| {
            let severity = alert.severity.name().to_string();
            admits(&alert.driver, alert.kind.name(), &severity).then(|| {
                let title = format!("{} {} ({severity})", alert.driver, alert.kind.name());
                json!([time, time, title, alert.message, format!("{},{},{severity}", alert.driver, alert.kind.name())])
            })
        })
        .collect();
    Ok(json!({
        "type": "table",
        "columns": [
            { "text": "time", "type": "time" },
            { "text": "timeEnd", "type": "time" },
            { "text": "title", "type": "string" },
            { "text": "text", "type": "string" },
            { "text": "tags", "type": "string" },
        ],
        "rows": rows,
    }))
}

/// `/variable`: `{"payload": {"target": "drivers"}}` (the current plugin) or `{"target": ...}`.
fn variable(store: &LiveStore, body: &[u8]) -> Result<Answer, Answer> {
    let request: Value = if body.iter().all(u8::is_ascii_whitespace) { json!({}) } else { parse(body)? };
    let target = request.pointer("/payload/target").or_else(|| request.get("target")).and_then(Value::as_str).unwrap_or("").trim();
    let values = match target {
        "drivers" => store.tag_values("driver"),
        "videos" => store.tag_values("video"),
        "kinds" => store.tag_values("kind"),
        "severities" => store.tag_values("severity"),
        filter => store.targets(filter),
    };
    Ok((200, Value::Array(values.into_iter().map(|v| json!({ "__text": v, "__value": v })).collect())))
}

fn tag_values(store: &LiveStore, body: &[u8]) -> Result<Answer, Answer> {
    #[derive(Deserialize)]
    struct TagValuesRequest {
        key: String,
    }
    let request: TagValuesRequest = parse(body)?;
    if !TAG_KEYS.contains(&request.key.as_str()) {
        return Err(bad(format!("tag key `{}` is not one of {TAG_KEYS:?}", request.key)));
    }
    Ok((200, Value::Array(store.tag_values(&request.key).into_iter().map(|v| json!({ "text": v })).collect())))
}

fn annotations(store: &LiveStore, body: &[u8]) -> Result<Answer, Answer> {
    let request: AnnotationRequest = parse(body)?;
    let (from, to) = request.range.millis()?;
    let query = request.annotation.get("query").and_then(Value::as_str).unwrap_or("");
    let alerts = store.alerts(from, to, query).map_err(live_error)?;
    let events: Vec<Value> = alerts
        .into_iter()
        .map(|(time, alert)| {
            let severity = alert.severity.name().to_string();
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
