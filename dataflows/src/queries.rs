//! Incremental queries over live windows, maintained by differential dataflow.
//!
//! Each driver's newest sliding window is a differential collection: a new window inserts its
//! values and retracts the driver's previous ones, at the new window's end time. The collection is
//! arranged once, by a shard of the driver, and every registered query is data, `(id, query)`, joined against
//! that one arrangement: adding a query does not re-scan history or build a new index, and each
//! query's result changes only where the windows it reads change.
//!
//! Queries: `top_k` (the k drivers with the highest current value of a window metric; ties by
//! driver code), `above` (drivers whose current value exceeds a threshold) and `alert_counts`
//! (alerts per `kind/severity` raised in the last T seconds of event time: each alert is counted
//! from the event time it was raised and retracted T seconds later). Values are kept in thousandths (integers:
//! differential data must be totally ordered).

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use differential_dataflow::input::{Input, InputSession};
use differential_dataflow::{AsCollection, VecCollection};
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::core::Inspect;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::Exchange;
use timely::dataflow::Stream;

use crate::records::{Alert, DriverCode, EventTime, WindowKind, WindowResult};

/// Shards of the current-windows arrangement (see [`live_queries`]).
const SHARDS: u64 = 16;

/// What a user registers (`POST /v1/queries`), as JSON.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum QuerySpec {
    /// The `k` drivers with the highest current `metric` (1 <= k <= 100).
    TopK { metric: String, k: u32 },
    /// Drivers whose current `metric` is above `threshold`.
    Above { metric: String, threshold: f64 },
    /// Alerts per kind and severity over the last `seconds` of event time (1..=3600).
    AlertCounts { seconds: u32 },
}

/// A compiled query: metric index and integer parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub enum Query {
    TopK { metric: u8, k: u32 },
    Above { metric: u8, threshold_milli: i64 },
    AlertCounts { seconds: u32 },
}

impl Query {
    /// The window metric a window query reads (`None`: an alert query).
    fn metric(&self) -> Option<u8> {
        match self {
            Query::TopK { metric, .. } | Query::Above { metric, .. } => Some(*metric),
            Query::AlertCounts { .. } => None,
        }
    }
}

/// Why a query cannot be registered.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QueryError {
    #[error("unknown metric `{name}`; one of {}", WindowResult::METRICS.join(", "))]
    UnknownMetric { name: String },
    #[error("k must be 1..=100, got {0}")]
    K(u32),
    #[error("threshold must be a finite number, got {0}")]
    Threshold(f64),
    #[error("seconds must be 1..=3600, got {0}")]
    Seconds(u32),
    #[error("at most {MAX_QUERIES} queries may be registered")]
    TooMany,
}

impl QuerySpec {
    /// Checks the spec and compiles it.
    pub fn compile(&self) -> Result<Query, QueryError> {
        let metric = |name: &str| {
            WindowResult::METRICS.iter().position(|m| *m == name).map(|i| i as u8).ok_or_else(|| QueryError::UnknownMetric { name: name.to_string() })
        };
        match self {
            QuerySpec::TopK { metric: m, k } if (1..=100).contains(k) => Ok(Query::TopK { metric: metric(m)?, k: *k }),
            QuerySpec::TopK { k, .. } => Err(QueryError::K(*k)),
            QuerySpec::Above { metric: m, threshold } if threshold.is_finite() && threshold.abs() < 1e12 => {
                Ok(Query::Above { metric: metric(m)?, threshold_milli: milli(*threshold) })
            }
            QuerySpec::Above { threshold, .. } => Err(QueryError::Threshold(*threshold)),
            QuerySpec::AlertCounts { seconds } if (1..=3_600).contains(seconds) => Ok(Query::AlertCounts { seconds: *seconds }),
            QuerySpec::AlertCounts { seconds } => Err(QueryError::Seconds(*seconds)),
        }
    }
}

fn milli(value: f64) -> i64 {
    (value * 1_000.0).round() as i64
}

/// A window's metrics in thousandths, in [`WindowResult::METRICS`] order.
pub fn window_values(w: &WindowResult) -> [i64; 6] {
    w.metric_values().map(milli)
}

/// Each driver's newest sliding window as a differential collection, at window-end times. Input
/// must hold each driver's windows on one worker (as the window operators emit them).
pub fn current_windows(windows: Stream<'_, EventTime, Vec<WindowResult>>) -> VecCollection<'_, EventTime, (DriverCode, [i64; 6]), isize> {
    windows
        .unary(Pipeline, "CurrentWindows", |_initial, _info| {
            let mut newest: HashMap<DriverCode, (EventTime, [i64; 6])> = HashMap::new();
            let mut sliding: Vec<(EventTime, DriverCode, [i64; 6])> = Vec::new();
            move |input, output| {
                input.for_each(|cap, data| {
                    let Some(cap) = cap.retain_least(0) else { return };
                    sliding.extend(
                        data.iter().filter(|w| w.window == WindowKind::Sliding).map(|w| (w.end_ms, DriverCode::new(&w.driver), window_values(w))),
                    );
                    sliding.sort_by_key(|(end, _, _)| *end);
                    // One session (and capability) per distinct end time, not per window.
                    let mut windows = sliding.drain(..).peekable();
                    while let Some(&(end, _, _)) = windows.peek() {
                        let time = end.max(*cap.time());
                        let at = cap.delayed(&time);
                        let mut session = output.session(&at);
                        while let Some((_, driver, values)) = windows.next_if(|(e, _, _)| *e == end) {
                            let previous = newest.get(&driver).copied();
                            if previous.is_some_and(|(newest_end, _)| newest_end >= end) {
                                continue;
                            }
                            if let Some((_, old)) = previous {
                                session.give(((driver, old), time, -1_isize));
                            }
                            session.give(((driver, values), time, 1_isize));
                            newest.insert(driver, (end, values));
                        }
                    }
                });
            }
        })
        .as_collection()
}

/// A query's result row: a driver and its value in thousandths.
pub type Row = (String, i64);

/// The query side of a dataflow: the input queries enter through (on every worker; only one
/// needs to insert) and every query's result rows.
pub struct LiveQueries<'s> {
    pub input: InputSession<EventTime, (u64, Query), isize>,
    pub results: VecCollection<'s, EventTime, (u64, Row), isize>,
}

/// Every alert as `(kind/severity label, time raised)` at the event time it was raised (its
/// message time: an alert is raised when its condition is confirmed, after its start).
fn alert_events(alerts: Stream<'_, EventTime, Vec<Alert>>) -> VecCollection<'_, EventTime, (String, EventTime), isize> {
    alerts
        .unary(Pipeline, "AlertEvents", |_initial, _info| {
            move |input, output| {
                input.for_each(|cap, data| {
                    let Some(cap) = cap.retain_least(0) else { return };
                    for alert in data.iter() {
                        let time = alert.session_time_ms.max(*cap.time());
                        let label = format!("{}/{}", alert.kind.name(), alert.severity.name());
                        output.session(&cap.delayed(&time)).give(((label, time), time, 1_isize));
                    }
                });
            }
        })
        .as_collection()
}

/// Builds the query dataflow over `windows` and `alerts` (see the module docs).
pub fn live_queries<'s>(windows: Stream<'s, EventTime, Vec<WindowResult>>, alerts: Stream<'s, EventTime, Vec<Alert>>) -> LiveQueries<'s> {
    let scope = windows.scope();
    // Arranged by a shard of the driver, not by metric: two updates per window (its values in,
    // the driver's previous ones out) instead of one per metric, spread over the workers; each
    // window query is joined against every shard (queries are few).
    let current = current_windows(windows).map(|(driver, values)| (driver.shard(SHARDS), (driver, values))).arrange_by_key();
    let (input, queries) = scope.new_collection::<(u64, Query), isize>();
    let matched = queries
        .clone()
        .flat_map(|(id, query)| query.metric().into_iter().flat_map(move |_| (0..SHARDS).map(move |shard| (shard, (id, query)))))
        .join_core(current, |_shard, (id, query), (driver, values)| query.metric().map(|m| ((*id, *query), (*driver, values[usize::from(m)]))));
    // Alert counts: each alert joins each alert query and counts from its time until `seconds`
    // later, when it is retracted again (an update at a future time).
    let alert_queries = queries.flat_map(|(id, query)| match query {
        Query::AlertCounts { seconds } => Some(((), (id, seconds))),
        _ => None,
    });
    let counted = alert_queries
        .join_core(alert_events(alerts).map(|event| ((), event)).arrange_by_key(), |_, (id, seconds), (label, at)| {
            Some((*id, *seconds, label.clone(), *at))
        })
        .inner
        .unary(Pipeline, "AlertWindow", |_initial, _info| {
            move |input, output| {
                input.for_each(|cap, data| {
                    let Some(cap) = cap.retain_least(0) else { return };
                    for ((id, seconds, label, at), time, diff) in data.drain(..) {
                        let expires = (at + u64::from(seconds) * 1_000).max(time);
                        output.session(&cap.delayed(&time)).give(((id, label.clone()), time, diff));
                        output.session(&cap.delayed(&expires)).give(((id, label), expires, -diff));
                    }
                });
            }
        })
        .as_collection()
        .count()
        .map(|((id, label), count): ((u64, String), isize)| (id, (label, count as i64 * 1_000)));
    let above = matched
        .clone()
        .filter(|((_, query), (_, value))| matches!(query, Query::Above { threshold_milli, .. } if value > threshold_milli))
        .map(|((id, _), (driver, value))| (id, (driver.to_string(), value)));
    let top = matched
        .filter(|((_, query), _)| matches!(query, Query::TopK { .. }))
        .map(|((id, query), (driver, value))| ((id, query), (Reverse(value), driver)))
        .reduce(|(_, query), candidates, output| {
            let Query::TopK { k, .. } = query else { return };
            // Candidates come sorted: highest value first, then driver code.
            for ((Reverse(value), driver), count) in candidates.iter().take(*k as usize) {
                if *count > 0 {
                    output.push(((driver.to_string(), *value), 1_isize));
                }
            }
        })
        .map(|((id, _), row)| (id, row));
    LiveQueries { input, results: above.concat(top).concat(counted) }
}

/// A change to a query's result: a row in (+1) or out (-1) at an event time.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Change {
    pub seq: u64,
    pub time: EventTime,
    pub driver: String,
    pub value: f64,
    pub diff: isize,
}

/// A query's spec, its current rows (driver, value), and the newest event time they reflect.
pub type QueryResult = (QuerySpec, Vec<(String, f64)>, EventTime);

/// What the HTTP side asks the dataflow to do.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    Add(u64, Query),
    Remove(u64, Query),
}

impl Command {
    /// Inserts or removes the query on a query input.
    pub fn apply_to(self, input: &mut InputSession<EventTime, (u64, Query), isize>) {
        match self {
            Command::Add(id, query) => input.insert((id, query)),
            Command::Remove(id, query) => input.remove((id, query)),
        }
    }
}

#[derive(Default)]
struct Hub {
    next_id: u64,
    specs: BTreeMap<u64, (QuerySpec, Query)>,
    pending: Vec<Command>,
    rows: BTreeMap<u64, BTreeMap<Row, isize>>,
    time: BTreeMap<u64, EventTime>,
    changes: BTreeMap<u64, VecDeque<Change>>,
    seq: u64,
}

/// Registered queries and their live results, shared by the bridge and the worker that owns
/// the query input.
#[derive(Clone, Default)]
pub struct QueryHub(Arc<Mutex<Hub>>);

/// Most queries registered at once.
pub const MAX_QUERIES: usize = 1_000;
/// Changes kept per query for streaming clients.
const CHANGE_LOG: usize = 10_000;

impl QueryHub {
    fn lock(&self) -> std::sync::MutexGuard<'_, Hub> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a query; its results start flowing once a worker takes it in.
    pub fn register(&self, spec: QuerySpec) -> Result<u64, QueryError> {
        let query = spec.compile()?;
        let mut hub = self.lock();
        if hub.specs.len() >= MAX_QUERIES {
            return Err(QueryError::TooMany);
        }
        hub.next_id += 1;
        let id = hub.next_id;
        hub.specs.insert(id, (spec, query));
        hub.pending.push(Command::Add(id, query));
        Ok(id)
    }

    /// Removes a query (its rows are retracted by the dataflow); false if unknown.
    pub fn remove(&self, id: u64) -> bool {
        let mut hub = self.lock();
        let Some((_, query)) = hub.specs.remove(&id) else { return false };
        hub.pending.push(Command::Remove(id, query));
        hub.rows.remove(&id);
        hub.changes.remove(&id);
        hub.time.remove(&id);
        true
    }

    /// For a new query dataflow (a new group lease): forgets the results so far and what was
    /// pending, and returns every registered query to insert into the new input.
    pub fn restart(&self) -> Vec<Command> {
        let mut hub = self.lock();
        hub.pending.clear();
        hub.rows.clear();
        hub.time.clear();
        hub.specs.iter().map(|(id, (_, query))| Command::Add(*id, *query)).collect()
    }

    /// What the query-input worker inserts next.
    pub fn take_pending(&self) -> Vec<Command> {
        std::mem::take(&mut self.lock().pending)
    }

    /// Applies result updates `((id, row), time, diff)` from the dataflow.
    pub fn apply(&self, updates: &[((u64, Row), EventTime, isize)]) {
        let mut hub = self.lock();
        for ((id, (driver, value)), time, diff) in updates {
            if !hub.specs.contains_key(id) {
                continue;
            }
            let rows = hub.rows.entry(*id).or_default();
            let count = rows.entry((driver.clone(), *value)).or_default();
            *count += diff;
            if *count == 0 {
                rows.remove(&(driver.clone(), *value));
            }
            let latest = hub.time.entry(*id).or_default();
            *latest = (*latest).max(*time);
            hub.seq += 1;
            let change = Change { seq: hub.seq, time: *time, driver: driver.clone(), value: *value as f64 / 1_000.0, diff: *diff };
            let log = hub.changes.entry(*id).or_default();
            if log.len() >= CHANGE_LOG {
                log.pop_front();
            }
            log.push_back(change);
        }
    }

    /// A query's spec and current rows (sorted by value, highest first), and the newest event
    /// time reflected; `None` if unknown.
    pub fn result(&self, id: u64) -> Option<QueryResult> {
        let hub = self.lock();
        let (spec, _) = hub.specs.get(&id)?;
        let mut rows: Vec<(String, f64)> =
            hub.rows.get(&id).map(|r| r.keys().map(|(d, v)| (d.clone(), *v as f64 / 1_000.0)).collect()).unwrap_or_default();
        rows.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        Some((spec.clone(), rows, hub.time.get(&id).copied().unwrap_or(0)))
    }

    /// Every registered query.
    pub fn list(&self) -> Vec<(u64, QuerySpec)> {
        self.lock().specs.iter().map(|(id, (spec, _))| (*id, spec.clone())).collect()
    }

    /// A query's changes after `seq` (`None`: unknown query).
    pub fn changes_since(&self, id: u64, seq: u64) -> Option<Vec<Change>> {
        let hub = self.lock();
        hub.specs.get(&id)?;
        Some(hub.changes.get(&id).map(|log| log.iter().filter(|c| c.seq > seq).cloned().collect()).unwrap_or_default())
    }
}

/// Sends every result update to worker 0 and applies it to `hub` there.
pub fn publish_results(results: VecCollection<'_, EventTime, (u64, Row), isize>, hub: QueryHub) {
    results.inner.exchange(|_| 0).inspect_core(move |event| {
        if let Ok((_, batch)) = event {
            hub.apply(batch);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_removed_query_leaves_nothing_behind_in_the_hub() {
        let hub = QueryHub::default();
        let id = hub.register(QuerySpec::TopK { metric: "speed_mean".into(), k: 3 }).unwrap();
        hub.apply(&[((id, ("VER".into(), 280_000)), 5_000, 1)]);
        assert_eq!(hub.result(id).map(|(_, rows, time)| (rows.len(), time)), Some((1, 5_000)));
        assert!(hub.remove(id));
        let inner = hub.lock();
        assert!(!inner.specs.contains_key(&id) && !inner.rows.contains_key(&id) && !inner.changes.contains_key(&id));
        assert!(!inner.time.contains_key(&id), "the removed query's time entry is gone too");
        drop(inner);
        // Late updates for it are ignored, and recreate nothing.
        hub.apply(&[((id, ("VER".into(), 281_000)), 6_000, 1)]);
        assert!(!hub.lock().time.contains_key(&id) && hub.result(id).is_none());
        assert_eq!(hub.register(QuerySpec::TopK { metric: "boost".into(), k: 3 }), Err(QueryError::UnknownMetric { name: "boost".into() }));
    }
}
