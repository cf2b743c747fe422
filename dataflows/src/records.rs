//! The domain records that flow through pitwall: telemetry samples in, alerts, window results
//! and dead letters out. Plain data with serde; no I/O and no Kafka types here.

use serde::{Deserialize, Serialize};
pub use smol_str::SmolStr;

/// Event time used as the timely timestamp everywhere: milliseconds of FastF1 `SessionTime`.
pub type EventTime = u64;

/// One telemetry sample in the FastF1 schema, as carried in a Kafka message value (JSON).
///
/// Field names are the wire format documented in the README ("Telemetry record"). No field is
/// skipped when serializing (an unknown one is `null` in JSON): timely exchanges samples between
/// processes with bincode, which is not self-describing, so a skipped field fails to decode on
/// the other side (a `-n 2` job crashed on the first sample whose driver lived in the other
/// process). Absent fields still decode, as `None`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TelemetryRecord {
    /// Driver code (`VER`) or number, the Kafka key. Stored inline (no heap allocation: ids are
    /// at most 8 characters), like `status` and `source`.
    pub driver: SmolStr,
    /// FastF1 `LapNumber`, when known.
    #[serde(default)]
    pub lap: Option<u32>,
    /// FastF1 `SessionTime` in milliseconds: the event time.
    pub session_time_ms: EventTime,
    /// FastF1 `Date` as Unix epoch milliseconds (UTC), when known.
    #[serde(default)]
    pub date_ms: Option<i64>,
    pub rpm: f64,
    /// km/h.
    pub speed: f64,
    /// FastF1 `nGear` (0 = neutral/unknown).
    pub gear: u8,
    /// Percent, 0-100; FastF1 uses 104 to mean "invalid".
    pub throttle: f64,
    pub brake: bool,
    /// FastF1 DRS status code (0-14; 10, 12 and 14 mean open).
    pub drs: u8,
    #[serde(default)]
    pub x: f64,
    #[serde(default)]
    pub y: f64,
    #[serde(default)]
    pub z: f64,
    /// Metres driven since the start of the lap (FastF1 `Distance`).
    #[serde(default)]
    pub distance: f64,
    /// Fraction of the lap, 0..1 (FastF1 `RelativeDistance`), when known.
    #[serde(default)]
    pub relative_distance: Option<f64>,
    #[serde(default)]
    pub status: Option<SmolStr>,
    /// `car`, `pos` or `interpolation`, as FastF1 writes it.
    #[serde(default)]
    pub source: Option<SmolStr>,
    /// Wall-clock epoch ms at which the producer sent the record (for latency measurement).
    #[serde(default)]
    pub produced_at_ms: Option<u64>,
}

/// FastF1 DRS codes at or above this value mean the flap is open (10, 12, 14).
pub const DRS_OPEN_MIN: u8 = 10;

impl TelemetryRecord {
    /// A plausible sample of `driver` at `session_time_ms` (lap 3, 7th gear at 280 km/h and
    /// 11,000 RPM, full throttle, DRS open, on track, from the car): the one fixture the tests
    /// and examples start from, changing what they are about with `..`.
    pub fn example(driver: &str, session_time_ms: u64) -> TelemetryRecord {
        TelemetryRecord {
            driver: driver.into(),
            lap: Some(3),
            session_time_ms,
            date_ms: None,
            rpm: 11_000.0,
            speed: 280.0,
            gear: 7,
            throttle: 100.0,
            brake: false,
            drs: 12,
            x: 1.0,
            y: 2.0,
            z: 0.5,
            distance: 1200.0,
            relative_distance: Some(0.24),
            status: Some("OnTrack".into()),
            source: Some("car".into()),
            produced_at_ms: None,
        }
    }

    pub fn drs_open(&self) -> bool {
        self.drs >= DRS_OPEN_MIN
    }
}

/// A driver id packed into a `u64`: its bytes big-endian, zero-padded. Driver ids are at most 8
/// ASCII letters or digits (checked at decode, `decode::validate`), so the packing is exact, and
/// codes order as the ids do (`"AB" < "ABC" < "B"`). `Copy` and compared as one integer, so
/// operators that hold or sort many driver-tagged updates (the live queries' arrangement) do so
/// without allocating or comparing strings.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DriverCode(u64);

impl DriverCode {
    /// The code of `driver`'s first 8 bytes (all of a valid id).
    pub fn new(driver: &str) -> DriverCode {
        let mut bytes = [0u8; 8];
        let len = driver.len().min(8);
        bytes[..len].copy_from_slice(&driver.as_bytes()[..len]);
        DriverCode(u64::from_be_bytes(bytes))
    }

    /// The id's bytes, without the padding.
    fn bytes(&self) -> ([u8; 8], usize) {
        let bytes = self.0.to_be_bytes();
        (bytes, bytes.iter().position(|b| *b == 0).unwrap_or(8))
    }

    /// A number in `0..shards` that spreads codes evenly (for sharding an arrangement).
    pub fn shard(&self, shards: u64) -> u64 {
        // splitmix64's finalizer: every input bit moves every output bit, so codes that differ
        // only in their last letter ("VER", "VES") land far apart.
        let mut x = self.0;
        x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (x ^ (x >> 31)) % shards.max(1)
    }
}

impl std::fmt::Display for DriverCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (bytes, len) = self.bytes();
        f.write_str(&String::from_utf8_lossy(&bytes[..len]))
    }
}

/// Where a record came from: the position that orders ties and that offsets are committed for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SourcePosition {
    pub partition: i32,
    pub offset: i64,
}

/// A decoded telemetry record with its source position.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub at: SourcePosition,
    pub record: TelemetryRecord,
}

/// What a decoded input record is keyed by in pitwall's own terms (a driver, a video id),
/// whatever Kafka key or partitioner carried it: the unit a Kafka source tracks its restart
/// points by (`connectors/src/kafka/source/commit.rs`) and looks delivered-before marks up by.
pub trait RecordKey {
    fn record_key(&self) -> &str;
}

impl RecordKey for Sample {
    fn record_key(&self) -> &str {
        &self.record.driver
    }
}

/// How urgent an alert is. The discriminant is the `f1-alerts` partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    High = 0,
    Medium = 1,
    Low = 2,
}

impl Severity {
    pub const ALL: [Severity; 3] = [Severity::High, Severity::Medium, Severity::Low];

    /// The `f1-alerts` partition for this severity: high=0, medium=1, low=2.
    pub fn partition(self) -> i32 {
        self as i32
    }

    /// The name on the wire and in queries: `high`, `medium`, `low`.
    pub fn name(self) -> &'static str {
        match self {
            Severity::High => "high",
            Severity::Medium => "medium",
            Severity::Low => "low",
        }
    }
}

/// The anomaly rules pitwall runs; each has a file under `anomalies/`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnomalyKind {
    WheelSpin,
    GearAnomaly,
    OverRev,
    BrakeThrottleOverlap,
    SuddenSpeedDrop,
}

impl AnomalyKind {
    pub const ALL: [AnomalyKind; 5] =
        [AnomalyKind::WheelSpin, AnomalyKind::GearAnomaly, AnomalyKind::OverRev, AnomalyKind::BrakeThrottleOverlap, AnomalyKind::SuddenSpeedDrop];

    pub fn severity(self) -> Severity {
        match self {
            AnomalyKind::OverRev | AnomalyKind::SuddenSpeedDrop => Severity::High,
            AnomalyKind::WheelSpin | AnomalyKind::BrakeThrottleOverlap => Severity::Medium,
            AnomalyKind::GearAnomaly => Severity::Low,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            AnomalyKind::WheelSpin => "wheel_spin",
            AnomalyKind::GearAnomaly => "gear_anomaly",
            AnomalyKind::OverRev => "over_rev",
            AnomalyKind::BrakeThrottleOverlap => "brake_throttle_overlap",
            AnomalyKind::SuddenSpeedDrop => "sudden_speed_drop",
        }
    }
}

/// One alert: a driver's condition, raised once when it starts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// `driver:kind:start_ms`, stable across replays so sinks can de-duplicate.
    pub id: String,
    pub driver: String,
    pub kind: AnomalyKind,
    pub severity: Severity,
    /// SessionTime (ms) of the first sample of the condition.
    pub session_time_ms: EventTime,
    /// SessionTime (ms) of the sample that confirmed it (when the alert was raised).
    pub detected_at_ms: EventTime,
    pub lap: Option<u32>,
    /// Human-readable summary of why the rule fired.
    pub message: String,
    /// The values the rule looked at, by name.
    pub evidence: Vec<(String, f64)>,
    /// Producer wall-clock time of the confirming sample, for end-to-end latency.
    #[serde(default)]
    pub produced_at_ms: Option<u64>,
}

impl Alert {
    pub fn new(kind: AnomalyKind, start: &TelemetryRecord, now: &TelemetryRecord, message: String, evidence: Vec<(&str, f64)>) -> Alert {
        Alert {
            id: format!("{}:{}:{}", start.driver, kind.name(), start.session_time_ms),
            driver: start.driver.to_string(),
            kind,
            severity: kind.severity(),
            session_time_ms: start.session_time_ms,
            detected_at_ms: now.session_time_ms,
            lap: start.lap,
            message,
            evidence: evidence.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
            produced_at_ms: now.produced_at_ms,
        }
    }
}

/// Which window a result describes.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum WindowKind {
    /// Event-time sliding window `[start_ms, end_ms)`.
    Sliding,
    /// All samples of one lap.
    Lap { lap: u32 },
    /// One third of a lap by `RelativeDistance` (sector 1, 2 or 3).
    Sector { lap: u32, sector: u8 },
}

/// Mean, minimum and maximum of one channel over a window.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChannelStats {
    pub mean: f64,
    pub min: f64,
    pub max: f64,
}

/// The aggregate of one window of one driver.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WindowResult {
    pub driver: String,
    pub window: WindowKind,
    /// Sliding: the window bounds `[start, end)`. Lap/sector: first and last sample time.
    pub start_ms: EventTime,
    pub end_ms: EventTime,
    pub count: u64,
    pub speed: ChannelStats,
    pub rpm: ChannelStats,
    pub throttle: ChannelStats,
    /// Percentage of samples with the brake on.
    pub brake_pct: f64,
    /// Number of consecutive sample pairs in the window whose gear differs.
    pub gear_changes: u64,
    /// Sum of the time from each sample with DRS open to the next sample in the window.
    pub drs_open_ms: u64,
}

impl WindowResult {
    /// The metrics a Grafana target can name (`<driver>:window.<metric>`) and a live query can read.
    pub const METRICS: [&'static str; 6] = ["speed_mean", "speed_max", "rpm_mean", "throttle_mean", "brake_pct", "gear_changes"];

    /// This window's values of [`WindowResult::METRICS`], in that order.
    pub fn metric_values(&self) -> [f64; 6] {
        [self.speed.mean, self.speed.max, self.rpm.mean, self.throttle.mean, self.brake_pct, self.gear_changes as f64]
    }
}

/// A message pitwall could not use, with the reason; published to `pitwall-dlq`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// The message key, lossily decoded as UTF-8.
    pub key: Option<String>,
    pub reason: String,
    /// Length of the original payload in bytes.
    pub payload_len: usize,
    /// The first bytes of the payload: as text when they are UTF-8 (at most
    /// [`DEAD_LETTER_PREFIX`] bytes), else base64 of the first [`DEAD_LETTER_BINARY_PREFIX`]
    /// bytes (also at most [`DEAD_LETTER_PREFIX`] characters), as `payload_encoding` says.
    pub payload_prefix: String,
    #[serde(default)]
    pub payload_encoding: PayloadEncoding,
}

/// How a payload kept in a dead letter or late record is written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PayloadEncoding {
    /// The bytes as they were, valid UTF-8 (telemetry JSON).
    #[default]
    Utf8,
    /// Standard base64 of the bytes (binary payloads such as video frames): never lossy UTF-8.
    Base64,
    /// Not kept, too large: the record's topic, partition and offset name the original.
    Omitted,
}

/// A payload (or a prefix of one) as text, whole: the bytes if they are UTF-8, else their base64.
fn payload_text(bytes: &[u8]) -> (String, PayloadEncoding) {
    use base64::Engine;
    match std::str::from_utf8(bytes) {
        Ok(text) => (text.to_string(), PayloadEncoding::Utf8),
        Err(_) => (base64::engine::general_purpose::STANDARD.encode(bytes), PayloadEncoding::Base64),
    }
}

/// A valid record that arrived after the watermark had passed its event time (more than the
/// allowed lateness behind its partition's newest record); published to `pitwall-late` whole,
/// so it can be inspected or replayed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LateRecord {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    pub event_time_ms: EventTime,
    /// The bound it missed: its partition's newest event time minus the allowed lateness, or
    /// the watermark if that was further.
    pub watermark_ms: EventTime,
    /// `watermark_ms - event_time_ms`.
    pub late_by_ms: u64,
    /// The original message value, whole, as `payload_encoding` says: the JSON of a telemetry
    /// record as it came, base64 of a binary one (a video frame), or nothing past
    /// [`LATE_PAYLOAD_MAX`] bytes (topic, partition and offset name it).
    pub payload: String,
    #[serde(default)]
    pub payload_encoding: PayloadEncoding,
    /// Length of the original payload in bytes.
    #[serde(default)]
    pub payload_len: usize,
}

/// Largest payload a late record carries whole; a larger one (a raw video frame is ~0.7 MB) is
/// kept by reference, so the late record stays far below a broker's message limit.
pub const LATE_PAYLOAD_MAX: usize = 64 * 1024;

impl LateRecord {
    pub fn new(topic: &str, at: SourcePosition, key: Option<&[u8]>, payload: &[u8], event_time_ms: EventTime, watermark_ms: EventTime) -> LateRecord {
        let mut late = LateRecord {
            topic: topic.to_string(),
            partition: at.partition,
            offset: at.offset,
            key: key.map(|k| String::from_utf8_lossy(k).into_owned()),
            event_time_ms,
            watermark_ms,
            late_by_ms: watermark_ms.saturating_sub(event_time_ms),
            payload: String::new(),
            payload_encoding: PayloadEncoding::Omitted,
            payload_len: payload.len(),
        };
        if payload.len() <= LATE_PAYLOAD_MAX {
            (late.payload, late.payload_encoding) = payload_text(payload);
        }
        late
    }
}

/// How many payload bytes a dead letter keeps, so a 2 MB message does not become a 2 MB DLQ record.
pub const DEAD_LETTER_PREFIX: usize = 1024;
/// How many bytes of a binary payload a dead letter keeps (their base64 is 1,024 characters).
pub const DEAD_LETTER_BINARY_PREFIX: usize = DEAD_LETTER_PREFIX / 4 * 3;

impl DeadLetter {
    pub fn new(topic: &str, at: SourcePosition, key: Option<&[u8]>, payload: &[u8], reason: String) -> DeadLetter {
        let prefix = &payload[..payload.len().min(DEAD_LETTER_PREFIX)];
        // A prefix of UTF-8 text may end inside a character: cut there, not at the limit.
        let text = match std::str::from_utf8(prefix) {
            Ok(_) => Some(prefix),
            Err(e) if e.error_len().is_none() && std::str::from_utf8(payload).is_ok() => Some(&prefix[..e.valid_up_to()]),
            Err(_) => None,
        };
        let (payload_prefix, payload_encoding) = match text {
            Some(text) => payload_text(text),
            None => payload_text(&payload[..payload.len().min(DEAD_LETTER_BINARY_PREFIX)]),
        };
        DeadLetter {
            topic: topic.to_string(),
            partition: at.partition,
            offset: at.offset,
            key: key.map(|k| String::from_utf8_lossy(k).into_owned()),
            reason,
            payload_len: payload.len(),
            payload_prefix,
            payload_encoding,
        }
    }
}

/// Wall-clock milliseconds since the Unix epoch (latency fields, production stamps).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::DriverCode;

    /// Through bincode, as timely sends a record to another process (`ContainerBytes for Vec<T>`).
    fn across_processes<T: serde::Serialize + serde::de::DeserializeOwned>(records: &Vec<T>) -> Vec<T> {
        bincode::deserialize(&bincode::serialize(records).expect("serializes")).expect("what timely sends, the other process decodes")
    }

    #[test]
    fn records_exchanged_between_processes_survive_timelys_encoding() {
        use super::{Alert, AnomalyKind, Sample, Severity, SourcePosition, TelemetryRecord};
        // With and without every optional field: a field skipped when absent (as JSON output
        // liked it) made bincode read the next field in its place.
        let full = TelemetryRecord {
            lap: Some(3),
            date_ms: Some(1_700_000_000_000),
            relative_distance: Some(0.5),
            status: Some("OnTrack".into()),
            source: Some("car".into()),
            produced_at_ms: Some(42),
            ..TelemetryRecord::example("VER", 3_600_250)
        };
        let bare =
            TelemetryRecord { lap: None, date_ms: None, relative_distance: None, status: None, source: None, produced_at_ms: None, ..full.clone() };
        let samples = vec![
            Sample { at: SourcePosition { partition: 1, offset: 9 }, record: bare },
            Sample { at: SourcePosition { partition: 2, offset: 10 }, record: full },
        ];
        assert_eq!(across_processes(&samples), samples);
        let alert = |produced_at_ms| Alert {
            id: "VER:over_rev:1000".into(),
            driver: "VER".into(),
            kind: AnomalyKind::OverRev,
            severity: Severity::Medium,
            session_time_ms: 1_000,
            detected_at_ms: 1_200,
            lap: None,
            message: "over the limit".into(),
            evidence: vec![("rpm".into(), 15_100.0)],
            produced_at_ms,
        };
        let alerts = vec![alert(None), alert(Some(7))];
        assert_eq!(across_processes(&alerts), alerts);
        // A driver's released rule hold is broadcast to every process (`follow_key_holds`).
        let holds = vec![
            crate::anomalies::DriverHold { driver: "VER".into(), since: Some(60_000) },
            crate::anomalies::DriverHold { driver: "HAM".into(), since: None },
        ];
        assert_eq!(across_processes(&holds), holds);
        // Absent fields still decode from JSON.
        let json = r#"{"driver":"VER","session_time_ms":1,"rpm":1.0,"speed":1.0,"gear":1,"throttle":1.0,"brake":false,"drs":0}"#;
        assert_eq!(serde_json::from_str::<TelemetryRecord>(json).unwrap().lap, None);
    }

    #[test]
    fn binary_payloads_are_kept_whole_never_as_lossy_text() {
        use super::{DeadLetter, LateRecord, PayloadEncoding, SourcePosition, DEAD_LETTER_PREFIX, LATE_PAYLOAD_MAX};
        use base64::Engine;
        let at = SourcePosition { partition: 2, offset: 7 };
        let decode = |text: &str| base64::engine::general_purpose::STANDARD.decode(text).unwrap();
        // A small binary record (a video end marker's header, say): late, kept byte for byte.
        let binary: Vec<u8> = (0..=255u8).cycle().take(3_000).collect();
        let late = LateRecord::new("video-frames", at, Some(b"cam-1"), &binary, 10, 20);
        assert_eq!((late.payload_encoding, late.payload_len), (PayloadEncoding::Base64, 3_000));
        assert_eq!(decode(&late.payload), binary);
        // A raw frame (0.7 MB) is kept by reference: the late record stays small.
        let frame = vec![0xffu8; 691_200];
        let late = LateRecord::new("video-frames", at, Some(b"cam-1"), &frame, 10, 20);
        assert_eq!((late.payload_encoding, late.payload.len(), late.payload_len), (PayloadEncoding::Omitted, 0, 691_200));
        assert!(serde_json::to_vec(&late).unwrap().len() < LATE_PAYLOAD_MAX);
        // Telemetry JSON stays readable text.
        let json = br#"{"driver":"VER"}"#;
        assert_eq!(LateRecord::new("f1-telemetry", at, None, json, 1, 2).payload, r#"{"driver":"VER"}"#);
        // Dead letters: a binary prefix in base64, within the same 1 KiB; text as text, never
        // cut inside a character.
        let dead = DeadLetter::new("video-frames", at, None, &frame, "bad".into());
        assert_eq!(dead.payload_encoding, PayloadEncoding::Base64);
        assert!(dead.payload_prefix.len() <= DEAD_LETTER_PREFIX);
        assert_eq!(decode(&dead.payload_prefix), frame[..768]);
        let text = "é".repeat(600);
        let dead = DeadLetter::new("f1-telemetry", at, None, text.as_bytes(), "bad".into());
        assert_eq!((dead.payload_encoding, dead.payload_prefix.as_str()), (PayloadEncoding::Utf8, &text[..1024]));
    }

    #[test]
    fn driver_codes_round_trip_and_order_as_the_ids_do() {
        let ids = ["1", "44", "AB", "ABC", "B", "HAM", "VER", "VES", "ZZZZZZZZ", "a1", "A"];
        for id in ids {
            assert_eq!(DriverCode::new(id).to_string(), id);
        }
        for a in ids {
            for b in ids {
                assert_eq!(DriverCode::new(a).cmp(&DriverCode::new(b)), a.cmp(b), "{a} vs {b}");
            }
        }
        let mut shards = [0usize; 4];
        for n in 0..400 {
            shards[DriverCode::new(&n.to_string()).shard(4) as usize] += 1;
        }
        assert!(shards.iter().all(|n| *n > 50), "uneven shards: {shards:?}");
    }
}
