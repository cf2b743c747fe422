//! Any bytes, with any key, decode to a valid record or a typed error: never a panic, and a
//! record that decodes re-encodes to one that decodes to the same record.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pitwall_dataflows::decode::{decode_telemetry, encode_telemetry, DecodePolicy};

fuzz_target!(|data: &[u8]| {
    // The first byte picks a key length, so keys and payloads are both fuzzed.
    let (key, payload) = match data.split_first() {
        Some((n, rest)) => rest.split_at((*n as usize % 10).min(rest.len())),
        None => (&[][..], data),
    };
    let key = (!key.is_empty()).then_some(key);
    let policy = DecodePolicy::default();
    if let Ok(record) = decode_telemetry(key, payload, &policy) {
        let again = decode_telemetry(key, &encode_telemetry(&record), &policy).expect("a decoded record re-encodes to a valid one");
        assert_eq!(again, record);
    }
});
