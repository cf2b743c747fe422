//! Any bytes, with any key, decode to a video record or a typed error: never a panic, and a
//! record that decodes re-encodes to bytes that decode to the same record.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pitwall_dataflows::video::frame::{decode_video_record, encode_end, encode_frame, VideoRecord};

fuzz_target!(|data: &[u8]| {
    let (key, payload) = match data.split_first() {
        Some((n, rest)) => rest.split_at((*n as usize % 12).min(rest.len())),
        None => (&[][..], data),
    };
    let key = (!key.is_empty()).then_some(key);
    if let Ok(record) = decode_video_record(key, payload) {
        let bytes = match &record {
            VideoRecord::Frame { header, image } => encode_frame(header, image),
            VideoRecord::End { header } => encode_end(header),
        };
        assert_eq!(decode_video_record(key, &bytes).expect("a decoded record re-encodes to a valid one"), record);
    }
});
