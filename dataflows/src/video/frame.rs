//! The `video-frames` wire format: one compact binary record per frame, then an end-of-video
//! marker, all keyed by the video id (so one video stays in order on one partition).
//!
//! Every record is a fixed little-endian header followed by the body:
//!
//! | bytes | field |
//! | --- | --- |
//! | 4 | magic `PWVF` |
//! | 1 | version (1) |
//! | 1 | kind: 0 = frame, 1 = end of video |
//! | 2 | video id length `n` (1..=255) |
//! | n | video id, UTF-8 |
//! | 8 | frame index (end of video: the number of frames sent) |
//! | 8 | presentation time in ms (signed) |
//! | 8 | produced at, ms since the Unix epoch (the producer's clock) |
//! | 4, 4 | width, height in pixels |
//! | 4, 4 | source frame rate as a fraction (numerator, denominator) |
//! | 8 | total frames in the source if known, else 0 |
//! | 1 | body encoding: 0 = raw RGB24 (row-major, `width * height * 3` bytes) |
//! | 4 | body length |
//! | .. | body |
//!
//! Raw RGB keeps the consumer free of any codec; `pitwall produce video --max-width` bounds
//! the size (640x360 is 691,200 bytes).

use std::fmt;

use thiserror::Error;

/// The first bytes of every video record.
pub const MAGIC: &[u8; 4] = b"PWVF";
/// The wire format version this code writes and reads.
pub const VERSION: u8 = 1;
/// The largest width or height accepted.
pub const MAX_DIMENSION: u32 = 8_192;
/// The longest video id.
pub const MAX_VIDEO_ID: usize = 255;

/// What one record says about its video and frame.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FrameHeader {
    pub video_id: String,
    pub frame_index: u64,
    pub pts_ms: i64,
    pub produced_at_ms: u64,
    pub width: u32,
    pub height: u32,
    pub fps_num: u32,
    pub fps_den: u32,
    /// Frames in the source, if the container says.
    pub total_frames: Option<u64>,
}

impl FrameHeader {
    /// The source frame rate (25 when the source did not say).
    pub fn fps(&self) -> f64 {
        if self.fps_num == 0 || self.fps_den == 0 {
            25.0
        } else {
            f64::from(self.fps_num) / f64::from(self.fps_den)
        }
    }
}

/// One frame's pixels: `width * height` RGB triples, row-major.
#[derive(Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RgbImage {
    pub width: u32,
    pub height: u32,
    pub pixels: Vec<u8>,
}

impl fmt::Debug for RgbImage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RgbImage({}x{}, {} bytes)", self.width, self.height, self.pixels.len())
    }
}

impl RgbImage {
    pub fn new(width: u32, height: u32) -> RgbImage {
        RgbImage { width, height, pixels: vec![0; width as usize * height as usize * 3] }
    }

    pub fn pixel(&self, x: u32, y: u32) -> [u8; 3] {
        let i = (y as usize * self.width as usize + x as usize) * 3;
        [self.pixels[i], self.pixels[i + 1], self.pixels[i + 2]]
    }

    pub fn put(&mut self, x: u32, y: u32, rgb: [u8; 3]) {
        let i = (y as usize * self.width as usize + x as usize) * 3;
        self.pixels[i..i + 3].copy_from_slice(&rgb);
    }
}

/// A decoded `video-frames` record.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum VideoRecord {
    Frame {
        header: FrameHeader,
        image: RgbImage,
    },
    /// The producer sent every frame; `header.frame_index` is how many.
    End {
        header: FrameHeader,
    },
}

impl crate::records::RecordKey for VideoRecord {
    fn record_key(&self) -> &str {
        &self.header().video_id
    }
}

impl VideoRecord {
    pub fn header(&self) -> &FrameHeader {
        match self {
            VideoRecord::Frame { header, .. } | VideoRecord::End { header } => header,
        }
    }
}

/// Why a `video-frames` record was refused.
#[derive(Debug, Error, PartialEq)]
pub enum FrameError {
    #[error("truncated video record: {0}")]
    Truncated(&'static str),
    #[error("not a video record (magic {0:02x?}, expected `PWVF`)")]
    Magic([u8; 4]),
    #[error("unsupported video record version {0} (this build reads {VERSION})")]
    Version(u8),
    #[error("unknown record kind {0}")]
    Kind(u8),
    #[error("unknown body encoding {0} (0 = raw RGB24)")]
    Encoding(u8),
    #[error("video id is empty, longer than {MAX_VIDEO_ID} bytes, or not UTF-8")]
    VideoId,
    #[error("video id {0:?} is not a safe name: {VIDEO_ID_RULE}")]
    UnsafeVideoId(String),
    #[error("{field} {value} is outside 0..={max}")]
    OutOfRange { field: &'static str, value: i128, max: u64 },
    #[error("frame size {0}x{1} is outside 1..={MAX_DIMENSION}")]
    Dimensions(u32, u32),
    #[error("body is {got} bytes but {width}x{height} RGB needs {expected}")]
    BodyLength { got: usize, expected: usize, width: u32, height: u32 },
    #[error("{0} trailing bytes after the body")]
    Trailing(usize),
    #[error("message key `{key}` does not match video id `{video_id}`")]
    KeyMismatch { key: String, video_id: String },
}

/// Writes one frame record.
pub fn encode_frame(header: &FrameHeader, image: &RgbImage) -> Vec<u8> {
    encode(0, header, &image.pixels)
}

/// Writes the end-of-video marker; `header.frame_index` must be the number of frames sent.
pub fn encode_end(header: &FrameHeader) -> Vec<u8> {
    encode(1, header, &[])
}

fn encode(kind: u8, header: &FrameHeader, body: &[u8]) -> Vec<u8> {
    let id = header.video_id.as_bytes();
    let mut out = Vec::with_capacity(64 + id.len() + body.len());
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.push(kind);
    out.extend_from_slice(&(id.len() as u16).to_le_bytes());
    out.extend_from_slice(id);
    out.extend_from_slice(&header.frame_index.to_le_bytes());
    out.extend_from_slice(&header.pts_ms.to_le_bytes());
    out.extend_from_slice(&header.produced_at_ms.to_le_bytes());
    out.extend_from_slice(&header.width.to_le_bytes());
    out.extend_from_slice(&header.height.to_le_bytes());
    out.extend_from_slice(&header.fps_num.to_le_bytes());
    out.extend_from_slice(&header.fps_den.to_le_bytes());
    out.extend_from_slice(&header.total_frames.unwrap_or(0).to_le_bytes());
    out.push(0);
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(body);
    out
}

/// A cursor that names the field it ran out on.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], FrameError> {
        if self.bytes.len() < n {
            return Err(FrameError::Truncated(field));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], FrameError> {
        Ok(self.take(N, field)?.try_into().expect("took N bytes"))
    }
}

/// Reads one record, checking every length against the header; never panics. With a key, the
/// key must equal the video id.
/// What a video id may be, in words (it names an S3 key, a local file and a spool file).
pub const VIDEO_ID_RULE: &str = "1-255 ASCII letters, digits, '.', '_' or '-', not starting with '.'";

/// Checks a video id against [`VIDEO_ID_RULE`]: it becomes part of a path
/// (`videos/<id>_with_heatmaps.mp4` in S3 or under `--video-out`, a spool file), so `../x`,
/// `/`, spaces and the like are refused, never escaped.
pub fn check_video_id(id: &str) -> Result<(), FrameError> {
    let safe = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-');
    if id.is_empty() || id.len() > MAX_VIDEO_ID || id.starts_with('.') || !id.bytes().all(safe) {
        return Err(FrameError::UnsafeVideoId(id.to_string()));
    }
    Ok(())
}

/// Latest `produced_at_ms` accepted: the start of 2200, epoch ms (as `decode::MAX_EPOCH_MS`).
pub const MAX_PRODUCED_AT_MS: u64 = crate::decode::MAX_EPOCH_MS;
/// Highest frame index (and frame count) accepted: a trillion frames, over a thousand years at
/// 25 fps; keeps every count and gap computed from them far from overflowing.
pub const MAX_FRAME_INDEX: u64 = 1_000_000_000_000;
/// Largest presentation time accepted either side of 0, ms (about 31 years).
pub const MAX_PTS_MS: u64 = 1_000_000_000_000;

pub fn decode_video_record(key: Option<&[u8]>, bytes: &[u8]) -> Result<VideoRecord, FrameError> {
    let mut r = Reader { bytes };
    let magic = r.array::<4>("magic")?;
    if &magic != MAGIC {
        return Err(FrameError::Magic(magic));
    }
    let version = r.array::<1>("version")?[0];
    if version != VERSION {
        return Err(FrameError::Version(version));
    }
    let kind = r.array::<1>("kind")?[0];
    let id_len = u16::from_le_bytes(r.array("video id length")?) as usize;
    if id_len == 0 || id_len > MAX_VIDEO_ID {
        return Err(FrameError::VideoId);
    }
    let video_id = std::str::from_utf8(r.take(id_len, "video id")?).map_err(|_| FrameError::VideoId)?.to_string();
    check_video_id(&video_id)?;
    if let Some(key) = key {
        if key != video_id.as_bytes() {
            return Err(FrameError::KeyMismatch { key: String::from_utf8_lossy(key).into_owned(), video_id });
        }
    }
    let frame_index = u64::from_le_bytes(r.array("frame index")?);
    let pts_ms = i64::from_le_bytes(r.array("pts")?);
    let produced_at_ms = u64::from_le_bytes(r.array("produced at")?);
    let width = u32::from_le_bytes(r.array("width")?);
    let height = u32::from_le_bytes(r.array("height")?);
    let fps_num = u32::from_le_bytes(r.array("fps numerator")?);
    let fps_den = u32::from_le_bytes(r.array("fps denominator")?);
    let total = u64::from_le_bytes(r.array("total frames")?);
    let encoding = r.array::<1>("encoding")?[0];
    let body_len = u32::from_le_bytes(r.array("body length")?) as usize;
    for (field, value, max) in [
        ("frame index", i128::from(frame_index), MAX_FRAME_INDEX),
        ("total frames", i128::from(total), MAX_FRAME_INDEX),
        ("produced at (ms)", i128::from(produced_at_ms), MAX_PRODUCED_AT_MS),
        ("presentation time (ms, absolute)", i128::from(pts_ms).abs(), MAX_PTS_MS),
    ] {
        if value > i128::from(max) {
            return Err(FrameError::OutOfRange { field, value, max });
        }
    }
    let header =
        FrameHeader { video_id, frame_index, pts_ms, produced_at_ms, width, height, fps_num, fps_den, total_frames: (total > 0).then_some(total) };
    let record = match kind {
        0 => {
            if encoding != 0 {
                return Err(FrameError::Encoding(encoding));
            }
            if width == 0 || height == 0 || width > MAX_DIMENSION || height > MAX_DIMENSION {
                return Err(FrameError::Dimensions(width, height));
            }
            let expected = width as usize * height as usize * 3;
            if body_len != expected {
                return Err(FrameError::BodyLength { got: body_len, expected, width, height });
            }
            let pixels = r.take(body_len, "body")?.to_vec();
            VideoRecord::Frame { header, image: RgbImage { width, height, pixels } }
        }
        1 => {
            r.take(body_len, "body")?;
            VideoRecord::End { header }
        }
        other => return Err(FrameError::Kind(other)),
    };
    if !r.bytes.is_empty() {
        return Err(FrameError::Trailing(r.bytes.len()));
    }
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> FrameHeader {
        FrameHeader {
            video_id: "cam-7".into(),
            frame_index: 3,
            pts_ms: 120,
            produced_at_ms: 1_700_000_000_000,
            width: 4,
            height: 2,
            fps_num: 25,
            fps_den: 1,
            total_frames: Some(250),
        }
    }

    #[test]
    fn frames_and_end_markers_round_trip() {
        let mut image = RgbImage::new(4, 2);
        image.put(3, 1, [250, 100, 7]);
        let bytes = encode_frame(&header(), &image);
        assert_eq!(decode_video_record(Some(b"cam-7"), &bytes), Ok(VideoRecord::Frame { header: header(), image }));
        let end = FrameHeader { frame_index: 250, ..header() };
        assert_eq!(decode_video_record(None, &encode_end(&end)), Ok(VideoRecord::End { header: end }));
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let bytes = encode_frame(&header(), &RgbImage::new(4, 2));
        for cut in 0..bytes.len() {
            assert!(decode_video_record(None, &bytes[..cut]).is_err(), "cut at {cut} decoded");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(decode_video_record(None, &longer), Err(FrameError::Trailing(1)));
    }

    #[test]
    fn wrong_sizes_keys_and_magic_are_named() {
        let good = encode_frame(&header(), &RgbImage::new(4, 2));
        assert!(matches!(decode_video_record(Some(b"cam-8"), &good), Err(FrameError::KeyMismatch { .. })));
        assert!(matches!(decode_video_record(None, b"{\"json\":true}"), Err(FrameError::Magic(_))));
        let short_body = encode_frame(&header(), &RgbImage { width: 4, height: 2, pixels: vec![0; 5] });
        assert!(matches!(decode_video_record(None, &short_body), Err(FrameError::BodyLength { got: 5, expected: 24, .. })));
        let huge = FrameHeader { width: 100_000, ..header() };
        assert_eq!(decode_video_record(None, &encode_frame(&huge, &RgbImage::new(0, 0))), Err(FrameError::Dimensions(100_000, 2)));
    }

    #[test]
    fn unsafe_ids_and_absurd_times_are_refused_by_name() {
        for bad in ["../../x", "a/b", "..", ".hidden", "cam 1", "cam\\1", "caméra", ""] {
            let h = FrameHeader { video_id: bad.into(), ..header() };
            let decoded = decode_video_record(None, &encode_frame(&h, &RgbImage::new(4, 2)));
            let refused = matches!(&decoded, Err(FrameError::UnsafeVideoId(_)) | Err(FrameError::VideoId));
            assert!(refused, "{bad:?}: {decoded:?}");
        }
        for good in ["cam-7", "cam.1", "cam_1", "A.b-c_9"] {
            assert_eq!(check_video_id(good), Ok(()), "{good}");
        }
        let err = check_video_id("../../x").unwrap_err().to_string();
        assert!(err.contains("not a safe name") && err.contains("not starting with '.'"), "{err}");
        let cases = [
            FrameHeader { produced_at_ms: 9_000_000_000_000_000, ..header() },
            FrameHeader { frame_index: u64::MAX, ..header() },
            FrameHeader { total_frames: Some(u64::MAX), ..header() },
            FrameHeader { pts_ms: i64::MIN, ..header() },
        ];
        for h in cases {
            let decoded = decode_video_record(None, &encode_frame(&h, &RgbImage::new(4, 2)));
            assert!(matches!(decoded, Err(FrameError::OutOfRange { .. })), "{h:?}: {decoded:?}");
        }
    }
}
