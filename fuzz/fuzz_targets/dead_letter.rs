//! Whatever a message holds, its dead letter is built and serialised to JSON without a panic,
//! and keeps at most the documented prefix of the payload.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pitwall_dataflows::decode::{decode_telemetry, DecodePolicy};
use pitwall_dataflows::records::{DeadLetter, SourcePosition, DEAD_LETTER_PREFIX};

fuzz_target!(|data: &[u8]| {
    let (key, payload) = data.split_at(data.len().min(4));
    if let Err(error) = decode_telemetry(Some(key), payload, &DecodePolicy::default()) {
        let letter = DeadLetter::new("f1-telemetry", SourcePosition { partition: 0, offset: 0 }, Some(key), payload, error.to_string());
        assert!(letter.payload_prefix.len() <= DEAD_LETTER_PREFIX * 4);
        serde_json::to_vec(&letter).expect("a dead letter is always valid JSON");
    }
});
