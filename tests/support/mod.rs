//! Shared test support: a real Tansu broker on a free loopback port, and the `pitwall` binary.
//! A missing broker binary is a loud failure, never a skip.

#![allow(dead_code)]

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

/// How long one pitwall command may take in a test before it is killed and the test fails.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(180);

/// How often [`wait_until`] polls its condition unless told otherwise.
const POLL: Duration = Duration::from_millis(100);

/// Polls `check` every 100 ms until it gives a value; past `within`, fails the test naming
/// `what` and the last state `check` described (`Err(state)` means "not yet").
pub fn wait_until<T>(what: &str, within: Duration, check: impl FnMut() -> Result<T, String>) -> T {
    wait_until_every(what, within, POLL, check)
}

/// [`wait_until`], polling every `every` (for checks that cost a process or a scan each).
pub fn wait_until_every<T>(what: &str, within: Duration, every: Duration, mut check: impl FnMut() -> Result<T, String>) -> T {
    let deadline = std::time::Instant::now() + within;
    loop {
        match check() {
            Ok(value) => return value,
            Err(state) if std::time::Instant::now() >= deadline => panic!("timed out after {within:?} waiting for {what}: {state}"),
            Err(_) => std::thread::sleep(every),
        }
    }
}

/// `Ok(())` when `holds`, else `Err(state())`: a yes/no condition for [`wait_until`].
pub fn holds(holds: bool, state: impl FnOnce() -> String) -> Result<(), String> {
    if holds {
        Ok(())
    } else {
        Err(state())
    }
}

/// Waits until something accepts connections on `addr`.
pub fn wait_listening(addr: &str, within: Duration) {
    wait_until(&format!("a listener on {addr}"), within, || TcpStream::connect(addr).map(drop).map_err(|e| e.to_string()));
}

/// Sleeps until `due`: how a test paces a replay in real time (a schedule, not a wait for
/// something to happen).
pub fn pace_until(due: std::time::Instant) {
    std::thread::sleep(due.saturating_duration_since(std::time::Instant::now()));
}

/// Lets a live job run on for `length`: a scenario step (what happens meanwhile is what the
/// test measures), not a wait for something to happen.
pub fn keep_running(length: Duration) {
    std::thread::sleep(length);
}

/// Keeps a fault in place for `length` (an outage the scenario needs to last, not a wait for
/// something to happen).
pub fn hold_fault(length: Duration) {
    std::thread::sleep(length);
}

/// A free loopback port (bound, read, released).
pub fn free_port() -> u16 {
    pitwall::bench::broker::free_port().expect("a free loopback port")
}

pub use pitwall::bench::broker::Tansu;

/// A Tansu broker with in-memory storage on a free port, killed on drop. A broker that cannot
/// start fails the test loudly (never a skip).
pub fn start_tansu() -> Tansu {
    Tansu::start().unwrap_or_else(|e| panic!("{e:#}"))
}

pub fn pitwall_command(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_pitwall"));
    command.args(args).env("PITWALL_LOG", "warn").env_remove("PITWALL_BROKERS");
    command
}

/// The tracing filter under which a job logs each worker's source assignment
/// ("kafka source assigned"), for [`wait_for_sources`].
pub const SOURCE_LOG: &str = "warn,pitwall_connectors::kafka::source=info";

/// A `pitwall` command whose stderr goes to `log` with each source's assignment in it.
pub fn pitwall_command_logged(args: &[&str], log: &Path) -> Command {
    let mut command = pitwall_command(args);
    command.env("PITWALL_LOG", SOURCE_LOG).stderr(std::fs::File::create(log).expect("a log file"));
    command
}

/// How many group assignments an instance's log shows (`group assignment` lines, logged with
/// `pitwall_connectors::kafka::group=info`), and the last one.
pub fn assignments(log: &Path) -> (usize, String) {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| l.contains("group assignment")).collect();
    (lines.len(), lines.last().map(|l| l.to_string()).unwrap_or_default())
}

/// Partitions in an assignment log line (`partitions=[0, 2]`).
pub fn partitions_of(line: &str) -> Vec<i32> {
    let Some(start) = line.find("partitions=[") else { return vec![] };
    let rest = &line[start + "partitions=[".len()..];
    rest[..rest.find(']').unwrap_or(0)].split(',').filter_map(|p| p.trim().parse().ok()).collect()
}

/// Waits until the logs (see [`pitwall_command_logged`]) say `workers` workers have their
/// partitions assigned: the job is reading.
pub fn wait_for_sources(logs: &[&Path], workers: usize, within: Duration) {
    wait_until("every worker's source to be assigned", within, || {
        let assigned: usize = logs.iter().map(|log| std::fs::read_to_string(log).unwrap_or_default().matches("kafka source assigned").count()).sum();
        holds(assigned >= workers, || format!("{assigned} of {workers} assigned; logs: {logs:?}"))
    });
}

/// Waits for `child` at most `timeout` while draining its output; kills it and panics past that.
pub fn wait_with_timeout(child: Child, what: &str, timeout: Duration) -> Output {
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(timeout) {
        Ok(output) => output.expect("collect output"),
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            let output = rx.recv().expect("output after kill").expect("collect output");
            panic!("`{what}` timed out after {timeout:?}\nstderr:\n{}", String::from_utf8_lossy(&output.stderr));
        }
    }
}

/// Runs pitwall to completion; panics with its stderr unless it exits 0. Returns stdout.
pub fn pitwall(args: &[&str]) -> String {
    let child = pitwall_command(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn pitwall");
    let output = wait_with_timeout(child, &args.join(" "), COMMAND_TIMEOUT);
    assert!(output.status.success(), "`pitwall {}` failed ({})\nstderr:\n{}", args.join(" "), output.status, String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).expect("utf-8 output")
}

/// `pitwall run --exit-at-end` over `topic` as consumer group `group`, publishing to
/// `alerts-<outputs>` and `windows-<outputs>`, with `extra` flags; returns its JSON report.
pub fn run_to_end(brokers: &str, topic: &str, group: &str, outputs: &str, extra: &[&str]) -> Value {
    let (alerts, windows) = (format!("alerts-{outputs}"), format!("windows-{outputs}"));
    let mut args = vec!["run", "--brokers", brokers, "--exit-at-end", "--telemetry-topic", topic, "--group", group];
    args.extend(["--alerts-topic", &alerts, "--windows-topic", &windows]);
    args.extend_from_slice(extra);
    run_report(&pitwall(&args))
}

/// `pitwall run --pipelines video -w 2 --exit-at-end` writing overlayed videos under `out`, with
/// `extra` flags; returns its JSON report.
pub fn video_run_to_end(brokers: &str, out: &Path, extra: &[&str]) -> Value {
    let out = path_str(out);
    let mut args = vec!["run", "--brokers", brokers, "--pipelines", "video", "-w", "2", "--exit-at-end", "--video-out", &out];
    args.extend_from_slice(extra);
    run_report(&pitwall(&args))
}

/// The topics of the crash tests: a reference run and a live (crashed) run over the same race.
pub const REFERENCE_AND_LIVE_TOPICS: [(&str, i32); 8] = [
    ("reference", 4),
    ("live", 4),
    ("alerts-ref", 3),
    ("windows-ref", 4),
    ("alerts-crash", 3),
    ("windows-crash", 4),
    ("pitwall-dlq", 1),
    ("pitwall-late", 1),
];

/// Every message of `topic` (via `pitwall tail --from-beginning --exit-at-end`).
pub fn tail(brokers: &str, topic: &str) -> Vec<Value> {
    pitwall(&["tail", "--brokers", brokers, topic, "--from-beginning", "--exit-at-end"])
        .lines()
        .map(|l| serde_json::from_str(l).expect("tail prints JSON lines"))
        .collect()
}

/// The values of `topic`, counted by `field` (the whole value when `None`).
pub fn counted(brokers: &str, topic: &str, field: Option<&str>) -> std::collections::BTreeMap<String, usize> {
    let mut counts = std::collections::BTreeMap::new();
    for message in tail(brokers, topic) {
        let value = &message["value"];
        let key = field.map_or_else(|| value.to_string(), |f| value[f].as_str().unwrap().to_string());
        *counts.entry(key).or_insert(0) += 1;
    }
    counts
}

/// How the outputs of a run on the live side of [`REFERENCE_AND_LIVE_TOPICS`] (`alerts-crash`,
/// `windows-crash`) compare with the uninterrupted reference run's (`alerts-ref`, `windows-ref`).
#[derive(Debug)]
pub struct AgainstReference {
    /// Alerts (distinct ids) of the reference run.
    pub alerts: usize,
    pub alert_duplicates: usize,
    /// Alert ids the reference never had: a condition re-reported with a later start (a rule
    /// resumed inside it).
    pub new_alerts: Vec<String>,
    /// Windows of the reference run.
    pub windows: usize,
    pub window_duplicates: usize,
}

/// Asserts what every interrupted run (crash, hand-over) must keep: no record late, the reference
/// run's alerts unique and at least `min_alerts`, every one of them there by id, every window
/// there whole, and no window the reference never produced (a partial one); returns the counts.
pub fn against_reference(brokers: &str, min_alerts: usize) -> AgainstReference {
    assert!(tail(brokers, "pitwall-late").is_empty(), "no record was late, so the runs saw the same data");
    let reference = counted(brokers, "alerts-ref", Some("id"));
    let run = counted(brokers, "alerts-crash", Some("id"));
    assert!(reference.values().all(|n| *n == 1) && reference.len() >= min_alerts, "{reference:?}");
    let lost: Vec<&String> = reference.keys().filter(|id| !run.contains_key(*id)).collect();
    assert!(lost.is_empty(), "alerts lost: {lost:?}");
    let windows_ref = counted(brokers, "windows-ref", None);
    let windows_run = counted(brokers, "windows-crash", None);
    let missing: Vec<&String> = windows_ref.keys().filter(|w| !windows_run.contains_key(*w)).collect();
    assert!(missing.is_empty(), "windows lost: {missing:#?}");
    let partial: Vec<&String> = windows_run.keys().filter(|w| !windows_ref.contains_key(*w)).collect();
    assert!(partial.is_empty(), "windows the uninterrupted run never produced (partial re-sends): {partial:#?}");
    AgainstReference {
        alerts: reference.len(),
        alert_duplicates: run.values().map(|n| n - 1).sum(),
        new_alerts: run.keys().filter(|id| !reference.contains_key(*id)).cloned().collect(),
        windows: windows_ref.len(),
        window_duplicates: windows_run.values().map(|n| n - 1).sum(),
    }
}

/// The JSON report `pitwall run` prints last.
pub fn run_report(stdout: &str) -> Value {
    serde_json::from_str(stdout.lines().last().expect("run prints a report")).expect("report is JSON")
}

/// Generates a race into `dir` and returns its ground truth.
pub fn gen_race(dir: &Path, drivers: usize, laps: u32, format: &str) -> Vec<Value> {
    pitwall(&[
        "gen",
        "race",
        "--drivers",
        &drivers.to_string(),
        "--laps",
        &laps.to_string(),
        "--out",
        dir.to_str().unwrap(),
        "--format",
        format,
        "--seed",
        "42",
    ]);
    serde_json::from_slice(&std::fs::read(dir.join("ground_truth.json")).unwrap()).unwrap()
}

/// A Tansu broker with pitwall's topics and a generated race (`drivers` x `laps`, seed 42) in
/// a temporary folder, not yet produced; and the race's ground truth.
pub fn tansu_with_race(drivers: usize, laps: u32) -> (Tansu, tempfile::TempDir, Vec<Value>) {
    let tansu = start_tansu();
    let dir = temp_dir();
    let truth = gen_race(dir.path(), drivers, laps, "csv");
    pitwall(&["topics", "create", "--brokers", &tansu.brokers]);
    (tansu, dir, truth)
}

/// `pitwall produce telemetry --max-rate` of a race folder; returns what it printed.
pub fn produce_race(brokers: &str, dir: &Path) -> String {
    pitwall(&["produce", "telemetry", "--brokers", brokers, "--input", &path_str(dir), "--max-rate", "--quiet"])
}

pub fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

pub fn path_str(path: &Path) -> String {
    path.to_str().unwrap().to_string()
}

pub fn create_topics(brokers: &str, topics: &[(&str, i32)]) {
    let wanted: Vec<(String, i32)> = topics.iter().map(|(t, p)| (t.to_string(), *p)).collect();
    pitwall_connectors::kafka::admin::create_topics(&pitwall_connectors::kafka::KafkaConfig::new(brokers), &wanted, 1).expect("create topics");
}

/// A timely hostfile named `name` in `dir` for `processes` processes on free loopback ports.
pub fn hostfile(dir: &Path, name: &str, processes: usize) -> PathBuf {
    let path = dir.join(name);
    pitwall::bench::broker::write_hostfile(&path, processes).expect("write a hostfile");
    path
}

/// A plain HTTP/1.1 GET (tests only); returns the status code and the body.
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    http_get_with(addr, path, None)
}

/// A plain HTTP/1.1 GET with an optional `Authorization` header value.
pub fn http_get_with(addr: &str, path: &str, authorization: Option<&str>) -> (u16, String) {
    let (status, body) = http_get_bytes(addr, path, authorization);
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// A plain HTTP/1.1 GET returning the body's bytes (images).
pub fn http_get_bytes(addr: &str, path: &str, authorization: Option<&str>) -> (u16, Vec<u8>) {
    let auth = authorization.map(|a| format!("Authorization: {a}\r\n")).unwrap_or_default();
    http_request(addr, "GET", path, &auth, &[])
}

/// One HTTP/1.1 request on its own connection (tests only): `headers` are whole header lines;
/// a body gets a JSON content type and its length. Returns the status code and the body bytes.
pub fn http_request(addr: &str, method: &str, path: &str, headers: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let (status, _, body) = http_exchange(addr, method, path, headers, body);
    (status, body)
}

/// [`http_request`] that also returns the response head (status line and headers) as text.
pub fn http_exchange(addr: &str, method: &str, path: &str, headers: &str, body: &[u8]) -> (u16, String, Vec<u8>) {
    use std::io::{Read, Write};
    let mut stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let content = if body.is_empty() { String::new() } else { format!("Content-Type: application/json\r\nContent-Length: {}\r\n", body.len()) };
    write!(stream, "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{headers}{content}Connection: close\r\n\r\n").unwrap();
    let mut response = Vec::new();
    if body.is_empty() {
        stream.read_to_end(&mut response).unwrap();
    } else {
        // The server may answer (413) before reading the whole body; a reset is fine then.
        let _ = stream.write_all(body);
        let _ = stream.read_to_end(&mut response);
    }
    let head_end = response.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4).unwrap_or(response.len());
    let head = String::from_utf8_lossy(&response[..head_end]);
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = &response[head_end..];
    let chunked = head.to_ascii_lowercase().contains("transfer-encoding: chunked");
    (status, head.into_owned(), if chunked { dechunk(body) } else { body.to_vec() })
}

/// The body of a `Transfer-Encoding: chunked` response (sizes in hex, each chunk then CRLF).
fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(line_end) = body.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&body[..line_end]).ok().and_then(|l| usize::from_str_radix(l.split(';').next()?.trim(), 16).ok());
        let Some(size) = size.filter(|s| *s > 0) else { break };
        let start = line_end + 2;
        let end = (start + size).min(body.len());
        out.extend_from_slice(&body[start..end]);
        body = &body[(end + 2).min(body.len())..];
    }
    out
}

/// Sum of every sample of a Prometheus metric whose label set contains `labels`.
pub fn metric_sum(text: &str, name: &str, labels: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']) && l.contains(labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A child process killed (and reaped) when dropped, so a failing test leaves nothing behind.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A plain HTTP/1.1 POST of a JSON body (tests only); returns the status code and the body.
pub fn http_post(addr: &str, path: &str, body: &[u8]) -> (u16, String) {
    let (status, body) = http_request(addr, "POST", path, "", body);
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// A plain rdkafka producer for test input (1 ms linger, large messages allowed), kept to one
/// request in flight per connection as pitwall's own producers are: without idempotence (which a
/// restarted Tansu or the mock cluster may not keep), a request retried after a broker outage
/// could otherwise land behind a later one, and the job would rightly treat the overtaken records
/// as late; the tests assert every record processed, so their input must keep its order.
pub fn test_producer(brokers: &str) -> rdkafka::producer::BaseProducer {
    rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "1")
        .set("max.in.flight.requests.per.connection", "1")
        .set("message.max.bytes", "10000000")
        .create()
        .expect("producer")
}

/// A producer's settings for writing one record per batch, in order: Tansu 0.6 answers a fetch
/// that starts inside a record batch with nothing (the rest of that batch is skipped), which
/// would lose records at any resume or hand-over; Kafka returns the whole batch (README,
/// Guarantees). Add settings, then `create()`.
pub fn one_record_per_batch(brokers: &str) -> rdkafka::ClientConfig {
    let mut config = rdkafka::ClientConfig::new();
    config.set("bootstrap.servers", brokers).set("linger.ms", "1").set("batch.num.messages", "1").set("max.in.flight.requests.per.connection", "1");
    config
}

/// Sends `payload` keyed by `key` to the partition Kafka's default partitioner gives the key.
pub fn send_keyed(producer: &rdkafka::producer::BaseProducer, topic: &str, partitions: i32, key: &str, payload: &[u8]) {
    use pitwall_dataflows::partition::key_partition;
    let record = rdkafka::producer::BaseRecord::to(topic).key(key).partition(key_partition(key.as_bytes(), partitions)).payload(payload);
    producer.send(record).expect("enqueue");
    producer.poll(Duration::ZERO);
}

/// Sends a telemetry record as pitwall's producer would: JSON, keyed by driver.
pub fn send_record(producer: &rdkafka::producer::BaseProducer, topic: &str, partitions: i32, record: &pitwall_dataflows::records::TelemetryRecord) {
    send_keyed(producer, topic, partitions, &record.driver, &pitwall_dataflows::decode::encode_telemetry(record));
}

/// A consumer group's committed offsets and each partition's real end, read with kafka-python
/// (an independent client): `{"PARTITION": {"committed": C or null, "end": E}, ...}`.
pub fn committed_offsets(brokers: &str, group: &str, topic: &str) -> Value {
    let output = Command::new("python3")
        .args([concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/committed_offsets.py"), brokers, group, topic])
        .output()
        .expect("python3 runs (scripts/setup.sh installs kafka-python)");
    assert!(output.status.success(), "kafka-python check failed: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("committed_offsets.py prints JSON")
}

/// An S3 server (`s3s-fs`, SigV4 with fixed test keys) on a free loopback port over a temporary
/// folder, killed on drop. A missing binary is a loud failure, never a skip.
pub struct S3Server {
    child: std::process::Child,
    pub endpoint: String,
    pub root: tempfile::TempDir,
}

pub const S3_ACCESS_KEY: &str = "pitwall-test-access";
pub const S3_SECRET_KEY: &str = "pitwall-test-secret-key";

impl S3Server {
    /// Starts s3s-fs with `buckets` created (a bucket is a folder under the root).
    pub fn start(buckets: &[&str]) -> S3Server {
        let root = temp_dir();
        for bucket in buckets {
            std::fs::create_dir_all(root.path().join(bucket)).unwrap();
        }
        let port = free_port();
        let child = Self::spawn(root.path(), port, (S3_ACCESS_KEY, S3_SECRET_KEY));
        S3Server { child, endpoint: format!("http://127.0.0.1:{port}"), root }
    }

    fn spawn(root: &Path, port: u16, (access, secret): (&str, &str)) -> Child {
        let binary = std::env::var("S3S_FS_BIN").unwrap_or_else(|_| "s3s-fs".into());
        let child = Command::new(&binary)
            .args(["--host", "127.0.0.1", "--port", &port.to_string(), "--access-key", access, "--secret-key", secret])
            .arg(root)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start the S3 server `{binary}` ({e}); run scripts/setup.sh (cargo install s3s-fs@0.14.1 --features binary)")
            });
        wait_listening(&format!("127.0.0.1:{port}"), Duration::from_secs(20));
        child
    }

    pub fn port(&self) -> u16 {
        self.endpoint.rsplit(':').next().and_then(|p| p.parse().ok()).expect("endpoint has a port")
    }

    /// Kills the server (an outage); its objects stay in the root folder.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again on the same port over the same folder.
    pub fn restart(&mut self) {
        self.child = Self::spawn(self.root.path(), self.port(), (S3_ACCESS_KEY, S3_SECRET_KEY));
    }

    /// Stops it and starts it again over the same folder and port accepting only these keys:
    /// the test keys are refused (403).
    pub fn restart_with_keys(&mut self, access: &str, secret: &str) {
        self.stop();
        self.child = Self::spawn(self.root.path(), self.port(), (access, secret));
    }

    /// The environment an S3 client (object_store, the AWS SDKs) reads to use this server.
    pub fn client_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", S3_ACCESS_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY", S3_SECRET_KEY.into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_DEFAULT_REGION", "us-east-1".into()),
            ("AWS_ENDPOINT", self.endpoint.clone()),
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_ALLOW_HTTP", "true".into()),
        ]
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A YOLO-style graph with input `images [batch,3,64,64]` (`batch` "N" for a free batch
/// dimension, or a number to fix it, as exporters do) whose output `[batch, 6, 4]` is the same
/// four candidates for every image: columns are boxes, rows cx, cy, w, h, then the scores of
/// classes fire and smoke. `variant`: `plain`; `qdq` (the input goes through int8
/// QuantizeLinear/DequantizeLinear first, as a quantized export's does); `fails_on_content`
/// (any non-black pixel makes the run fail, so a black test batch passes); `always_fails`.
const YOLO_GRAPH: &str = r#"
import sys
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
path, batch, variant = sys.argv[1], sys.argv[2], sys.argv[3]
batch = batch if batch == "N" else int(batch)
boxes = np.array([
    [32, 32, 16, 16, 0.90, 0.05],
    [33, 33, 16, 16, 0.80, 0.05],
    [10, 50, 8, 8, 0.05, 0.70],
    [50, 10, 4, 4, 0.10, 0.10],
], dtype=np.float32).T[None]
inits = [numpy_helper.from_array(boxes, "boxes"), numpy_helper.from_array(np.array([0], np.int64), "zero"),
         numpy_helper.from_array(np.array([1], np.int64), "one"), numpy_helper.from_array(np.array([6, 4], np.int64), "tail")]
nodes = []
x = "images"
if variant == "qdq":
    inits += [numpy_helper.from_array(np.array(1 / 127, np.float32), "scale"), numpy_helper.from_array(np.array(0, np.int8), "zp")]
    nodes += [helper.make_node("QuantizeLinear", ["images", "scale", "zp"], ["q"]),
              helper.make_node("DequantizeLinear", ["q", "scale", "zp"], ["dq"])]
    x = "dq"
nodes += [
    helper.make_node("Shape", [x], ["shape"]),
    helper.make_node("Slice", ["shape", "zero", "one"], ["n"]),
    helper.make_node("Concat", ["n", "tail"], ["out_shape"], axis=0),
]
target = "out_shape"
if variant == "fails_on_content":
    # Any non-black pixel asks for 13 rows: Expand cannot broadcast the 6 rows to them.
    inits.append(numpy_helper.from_array(np.array([0, 7, 0], np.int64), "grow"))
    nodes += [helper.make_node("ReduceMax", ["images"], ["peak"], keepdims=0),
              helper.make_node("Ceil", ["peak"], ["up"]),
              helper.make_node("Cast", ["up"], ["k"], to=TensorProto.INT64),
              helper.make_node("Mul", ["k", "grow"], ["extra"]),
              helper.make_node("Add", ["out_shape", "extra"], ["target"])]
    target = "target"
elif variant == "always_fails":
    inits.append(numpy_helper.from_array(np.array([0, 1, 0], np.int64), "grow"))
    nodes.append(helper.make_node("Add", ["out_shape", "grow"], ["target"]))
    target = "target"
else:
    assert variant in ("plain", "qdq"), variant
nodes.append(helper.make_node("Expand", ["boxes", target], ["output0"]))
graph = helper.make_graph(nodes, "yolo_stub", [helper.make_tensor_value_info("images", TensorProto.FLOAT, [batch, 3, 64, 64])],
                          [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [batch, "rows", 4])], initializer=inits)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
model.ir_version = 8
onnx.checker.check_model(model)
onnx.save(model, path)
"#;

/// See [`YOLO_GRAPH`].
#[derive(Clone, Copy, Debug)]
pub enum StubVariant {
    Plain,
    Qdq,
    FailsOnContent,
    AlwaysFails,
}

/// Builds the stub YOLO graph at `path` with the `onnx` package (scripts/setup.sh installs it).
pub fn build_yolo_graph(path: &Path, batch: &str, variant: StubVariant) {
    let variant = match variant {
        StubVariant::Plain => "plain",
        StubVariant::Qdq => "qdq",
        StubVariant::FailsOnContent => "fails_on_content",
        StubVariant::AlwaysFails => "always_fails",
    };
    let output = Command::new("python3").args(["-c", YOLO_GRAPH, &path_str(path), batch, variant]).output().expect("python3 runs");
    assert!(output.status.success(), "building the graph failed (scripts/setup.sh installs onnx): {}", String::from_utf8_lossy(&output.stderr));
}

/// Every file under `dir`, recursively (none if it does not exist).
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    entries.flatten().flat_map(|e| if e.path().is_dir() { walk(&e.path()) } else { vec![e.path()] }).collect()
}
