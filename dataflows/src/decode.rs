//! Telemetry decoding: bytes of a Kafka message value (and key) to a validated
//! [`TelemetryRecord`], or a [`DecodeError`] that says exactly what is wrong.
//!
//! Knows nothing of Kafka or files, so one decoder serves the source, tests and fuzzing.
//! It must never panic, whatever the bytes.

use std::collections::BTreeSet;

use thiserror::Error;

use crate::records::TelemetryRecord;

/// Messages larger than this are refused before parsing (64 KiB; a record is ~400 bytes).
pub const DEFAULT_MAX_RECORD_BYTES: usize = 64 * 1024;

/// Why a message was not accepted as telemetry.
#[derive(Debug, Error)]
pub enum DecodeError {
    #[error("message of {len} bytes exceeds the {max}-byte limit for a telemetry record")]
    Oversized { len: usize, max: usize },
    #[error("malformed JSON: the message is not UTF-8 (invalid byte at {at})")]
    NotUtf8 { at: usize },
    #[error("malformed JSON (NaN and Infinity are not JSON numbers): {0}")]
    NonJsonNumber(serde_json::Error),
    #[error("malformed JSON or wrong field type: {0}")]
    Json(#[from] serde_json::Error),
    #[error("field `{field}` is {value}, outside the valid range {min}..={max}")]
    OutOfRange { field: &'static str, value: f64, min: f64, max: f64 },
    #[error("field `{field}` is not a finite number")]
    NonFinite { field: &'static str },
    #[error("driver id {driver:?} is not 1-8 ASCII letters or digits")]
    BadDriverId { driver: String },
    #[error("unknown driver {driver:?} (not in the configured driver list)")]
    UnknownDriver { driver: String },
    #[error("message key {key:?} does not match the record's driver {driver:?}")]
    KeyMismatch { key: String, driver: String },
}

/// What the decoder accepts.
#[derive(Clone, Debug)]
pub struct DecodePolicy {
    pub max_record_bytes: usize,
    /// When set, only these driver ids are accepted; others are [`DecodeError::UnknownDriver`].
    pub known_drivers: Option<BTreeSet<String>>,
}

impl Default for DecodePolicy {
    fn default() -> Self {
        DecodePolicy { max_record_bytes: DEFAULT_MAX_RECORD_BYTES, known_drivers: None }
    }
}

/// Latest `session_time_ms` accepted: 7 days. FastF1's `SessionTime` counts from the start of a
/// session (a race weekend's longest is hours); a later one is a corrupt or absurd record, and
/// a bound here keeps every sum of event times and durations far from overflowing.
pub const MAX_SESSION_TIME_MS: u64 = 7 * 24 * 3_600_000;
/// Latest wall-clock time (`date_ms`, `produced_at_ms`) accepted: the start of 2200, epoch ms.
pub const MAX_EPOCH_MS: u64 = 7_258_118_400_000;

/// Valid ranges of the numeric channels. Throttle allows FastF1's 104 "invalid" sentinel.
const RANGES: [(&str, f64, f64); 4] = [("speed", 0.0, 500.0), ("rpm", 0.0, 25_000.0), ("throttle", 0.0, 104.0), ("drs", 0.0, 14.0)];
const MAX_GEAR: u8 = 8;

/// Decodes and validates one telemetry message.
pub fn decode_telemetry(key: Option<&[u8]>, payload: &[u8], policy: &DecodePolicy) -> Result<TelemetryRecord, DecodeError> {
    if payload.len() > policy.max_record_bytes {
        return Err(DecodeError::Oversized { len: payload.len(), max: policy.max_record_bytes });
    }
    // Checked as UTF-8 once, whole: `from_str` then skips serde_json's check of every string
    // (keys included), which was a sixth of the decode.
    let text = std::str::from_utf8(payload).map_err(|e| DecodeError::NotUtf8 { at: e.valid_up_to() })?;
    let record: TelemetryRecord =
        serde_json::from_str(text).map_err(
            |e| {
                if contains_non_json_number(payload) {
                    DecodeError::NonJsonNumber(e)
                } else {
                    DecodeError::Json(e)
                }
            },
        )?;
    validate(&record, key, policy)?;
    Ok(record)
}

fn contains_non_json_number(payload: &[u8]) -> bool {
    payload.windows(3).any(|w| w == b"NaN") || payload.windows(8).any(|w| w == b"Infinity")
}

/// Checks ranges, finiteness, the driver id and that the key (if any) names the same driver.
pub fn validate(record: &TelemetryRecord, key: Option<&[u8]>, policy: &DecodePolicy) -> Result<(), DecodeError> {
    let driver = &record.driver;
    if driver.is_empty() || driver.len() > 8 || !driver.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(DecodeError::BadDriverId { driver: driver.to_string() });
    }
    if let Some(known) = &policy.known_drivers {
        if !known.contains(driver.as_str()) {
            return Err(DecodeError::UnknownDriver { driver: driver.to_string() });
        }
    }
    if let Some(key) = key {
        if key != driver.as_bytes() {
            return Err(DecodeError::KeyMismatch { key: String::from_utf8_lossy(key).into_owned(), driver: driver.to_string() });
        }
    }
    let values = [record.speed, record.rpm, record.throttle, f64::from(record.drs)];
    for ((field, min, max), value) in RANGES.iter().zip(values) {
        if !value.is_finite() {
            return Err(DecodeError::NonFinite { field });
        }
        if value < *min || value > *max {
            return Err(DecodeError::OutOfRange { field, value, min: *min, max: *max });
        }
    }
    if record.session_time_ms > MAX_SESSION_TIME_MS {
        return Err(DecodeError::OutOfRange {
            field: "session_time_ms",
            value: record.session_time_ms as f64,
            min: 0.0,
            max: MAX_SESSION_TIME_MS as f64,
        });
    }
    if let Some(date) = record.date_ms.filter(|d| !(0..=MAX_EPOCH_MS as i64).contains(d)) {
        return Err(DecodeError::OutOfRange { field: "date_ms", value: date as f64, min: 0.0, max: MAX_EPOCH_MS as f64 });
    }
    if let Some(produced) = record.produced_at_ms.filter(|p| *p > MAX_EPOCH_MS) {
        return Err(DecodeError::OutOfRange { field: "produced_at_ms", value: produced as f64, min: 0.0, max: MAX_EPOCH_MS as f64 });
    }
    if record.gear > MAX_GEAR {
        return Err(DecodeError::OutOfRange { field: "gear", value: f64::from(record.gear), min: 0.0, max: f64::from(MAX_GEAR) });
    }
    let finite = [("x", record.x), ("y", record.y), ("z", record.z), ("distance", record.distance)];
    for (field, value) in finite {
        if !value.is_finite() {
            return Err(DecodeError::NonFinite { field });
        }
    }
    if let Some(rel) = record.relative_distance {
        if !rel.is_finite() {
            return Err(DecodeError::NonFinite { field: "relative_distance" });
        }
    }
    Ok(())
}

/// Encodes a record as the JSON message value.
pub fn encode_telemetry(record: &TelemetryRecord) -> Vec<u8> {
    serde_json::to_vec(record).expect("telemetry records always serialize")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> TelemetryRecord {
        TelemetryRecord::example("VER", 3_600_250)
    }

    #[test]
    fn round_trips_a_good_record() {
        let bytes = encode_telemetry(&good());
        let back = decode_telemetry(Some(b"VER"), &bytes, &DecodePolicy::default()).unwrap();
        assert_eq!(back, good());
        // Its strings are kept inline: decoding a record allocates nothing for them, and a
        // sample freed on another worker than decoded it costs no cross-thread free.
        assert!(!back.driver.is_heap_allocated());
        assert!(back.status.iter().chain(&back.source).all(|s| !s.is_heap_allocated()));
    }

    #[test]
    fn rejects_each_kind_of_bad_input_with_a_reason() {
        let policy = DecodePolicy { max_record_bytes: 4096, known_drivers: Some(["VER".to_string()].into()) };
        // (payload, key, what the error must say)
        type Case = (Vec<u8>, Option<&'static [u8]>, &'static str);
        let cases: Vec<Case> = vec![
            (b"{not json".to_vec(), None, "malformed JSON"),
            (b"{\"driver\":\"V\xffR\"}".to_vec(), None, "not UTF-8"),
            (
                br#"{"driver":"VER","session_time_ms":1,"rpm":"fast","speed":1,"gear":1,"throttle":1,"brake":false,"drs":0}"#.to_vec(),
                None,
                "wrong field type",
            ),
            (br#"{"driver":"VER","session_time_ms":1,"rpm":1,"speed":NaN,"gear":1,"throttle":1,"brake":false,"drs":0}"#.to_vec(), None, "NaN"),
            (vec![b' '; 5000], None, "exceeds"),
            (encode_telemetry(&TelemetryRecord { driver: "XYZ".into(), ..good() }), None, "unknown driver"),
            (encode_telemetry(&good()), Some(b"HAM"), "does not match"),
            (encode_telemetry(&TelemetryRecord { speed: 900.0, ..good() }), None, "outside the valid range"),
            (encode_telemetry(&TelemetryRecord { driver: "V E R".into(), ..good() }), None, "not 1-8 ASCII"),
            // Well-formed but absurd times: years ahead, or past what u64 arithmetic on them can take.
            (encode_telemetry(&TelemetryRecord { session_time_ms: 9_000_000_000_000_000, ..good() }), None, "`session_time_ms` is 9000000000000000"),
            (encode_telemetry(&TelemetryRecord { session_time_ms: u64::MAX, ..good() }), None, "`session_time_ms`"),
            (encode_telemetry(&TelemetryRecord { date_ms: Some(-1), ..good() }), None, "`date_ms`"),
            (encode_telemetry(&TelemetryRecord { produced_at_ms: Some(u64::MAX), ..good() }), None, "`produced_at_ms`"),
        ];
        // The bounds themselves are accepted.
        let longest = TelemetryRecord {
            session_time_ms: MAX_SESSION_TIME_MS,
            date_ms: Some(MAX_EPOCH_MS as i64),
            produced_at_ms: Some(MAX_EPOCH_MS),
            ..good()
        };
        assert!(decode_telemetry(None, &encode_telemetry(&longest), &DecodePolicy::default()).is_ok());
        for (payload, key, expected) in cases {
            let err = decode_telemetry(key, &payload, &policy).expect_err(expected).to_string();
            assert!(err.contains(expected), "{err:?} should mention {expected:?}");
        }
    }

    #[test]
    fn never_panics_on_arbitrary_bytes() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let base = encode_telemetry(&good());
        for _ in 0..5_000 {
            let mut bytes = base.clone();
            let cut = rng.random_range(0..bytes.len());
            bytes.truncate(cut);
            for _ in 0..rng.random_range(0..4) {
                if !bytes.is_empty() {
                    let i = rng.random_range(0..bytes.len());
                    bytes[i] = rng.random();
                }
            }
            let _ = decode_telemetry(None, &bytes, &DecodePolicy::default());
        }
    }
}
