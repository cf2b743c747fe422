//! Reads a video file into RGB frames, scaled down to a maximum width and thinned to a maximum
//! frame rate if asked.
//!
//! Whatever FFmpeg decodes is accepted, found by probing the content (a WebM named `.mp4` reads
//! as WebM): H.264, H.265, VP8, VP9, AV1, MPEG-4 part 2, ... in MP4 (moov first or last,
//! fragmented), MOV, MKV/WebM, AVI. The video stream is chosen by [`pick_video_stream`] (audio,
//! data and attached cover pictures are never chosen, even when they come first). Rotation
//! metadata (a display matrix, as phones write) is applied, so frames come out as the clip is
//! shown: a portrait phone clip stored as 1920x1080 with a 90 degree rotation gives 1080x1920
//! frames. Sizes are made even (H.264 4:2:0 needs it) by scaling odd ones down by one pixel:
//! 853x481 reads as 852x480.

use std::path::Path;

use ffmpeg_next::format::Pixel;
use ffmpeg_next::media::Type;
use ffmpeg_next::software::scaling::{Context as Scaler, Flags};
use ffmpeg_next::util::frame::Video as VideoFrame;
use pitwall_dataflows::video::frame::RgbImage;

use super::{even, init, VideoError};

/// What the container says about the video stream.
#[derive(Clone, Debug, PartialEq)]
pub struct VideoInfo {
    /// Size of the frames this reader returns (after `max_width`).
    pub width: u32,
    pub height: u32,
    pub source_width: u32,
    pub source_height: u32,
    /// Frame rate of the frames returned, as a fraction.
    pub fps_num: u32,
    pub fps_den: u32,
    /// Frames in the stream, if the container says (before `fps_limit` thinning).
    pub total_frames: Option<u64>,
    pub codec: String,
}

/// One decoded frame.
#[derive(Clone, Debug)]
pub struct DecodedFrame {
    /// 0, 1, 2, ... over the frames returned.
    pub index: u64,
    pub pts_ms: i64,
    pub image: RgbImage,
}

/// How a file is read.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ReadOptions {
    /// Scale frames wider than this down (keeping the aspect ratio, even sizes).
    pub max_width: Option<u32>,
    /// Drop frames so that at most this many per second of video are returned.
    pub fps_limit: Option<f64>,
}

/// Decodes every frame of `path`, calling `on_frame` in order; stops at the first error
/// `on_frame` returns. Returns the stream's info and the number of frames returned.
pub fn read_video<E>(
    path: &Path,
    options: ReadOptions,
    mut on_frame: impl FnMut(&VideoInfo, DecodedFrame) -> Result<(), E>,
) -> Result<(VideoInfo, u64), VideoError>
where
    E: std::fmt::Display,
{
    init()?;
    let shown = path.display().to_string();
    let mut input = ffmpeg_next::format::input(&path).map_err(VideoError::ffmpeg(format!("opening video {shown}")))?;
    let stream = pick_video_stream(&input).ok_or_else(|| VideoError::Invalid(format!("{shown} has no video stream")))?;
    let rotation = rotation_of(&stream);
    let index = stream.index();
    let time_base = stream.time_base();
    let rate = if stream.avg_frame_rate().numerator() > 0 { stream.avg_frame_rate() } else { stream.rate() };
    let total = u64::try_from(stream.frames()).ok().filter(|n| *n > 0);
    let context = ffmpeg_next::codec::context::Context::from_parameters(stream.parameters())
        .map_err(VideoError::ffmpeg(format!("reading the codec parameters of {shown}")))?;
    let mut decoder = context.decoder().video().map_err(VideoError::ffmpeg(format!("opening the video decoder for {shown}")))?;
    let (sw, sh) = (decoder.width(), decoder.height());
    if sw == 0 || sh == 0 {
        return Err(VideoError::Invalid(format!("{shown}: video stream has no frame size")));
    }
    // The size as shown (after rotation), then scaled; the scaler works in the stored orientation.
    let turned = rotation % 180 != 0;
    let (dw, dh) = if turned { (sh, sw) } else { (sw, sh) };
    let (width, height) = match options.max_width {
        Some(max) if dw > max => (even(max), even((u64::from(dh) * u64::from(max) / u64::from(dw)) as u32)),
        _ => (even(dw), even(dh)),
    };
    let (scaled_w, scaled_h) = if turned { (height, width) } else { (width, height) };
    let mut scaler = Scaler::get(decoder.format(), sw, sh, Pixel::RGB24, scaled_w, scaled_h, Flags::BILINEAR)
        .map_err(VideoError::ffmpeg(format!("setting up the RGB scaler for {shown}")))?;
    let source_fps = if rate.numerator() > 0 && rate.denominator() > 0 { f64::from(rate) } else { 25.0 };
    let keep_every = match options.fps_limit {
        Some(limit) if limit > 0.0 && limit < source_fps => source_fps / limit,
        _ => 1.0,
    };
    let (fps_num, fps_den) = if keep_every > 1.0 {
        ((source_fps / keep_every * 1000.0).round() as u32, 1000)
    } else if rate.numerator() > 0 && rate.denominator() > 0 {
        (rate.numerator() as u32, rate.denominator() as u32)
    } else {
        (25, 1)
    };
    let info = VideoInfo {
        width,
        height,
        source_width: dw,
        source_height: dh,
        fps_num,
        fps_den,
        total_frames: total.map(|t| (t as f64 / keep_every).ceil() as u64),
        codec: decoder.codec().map(|c| c.name().to_string()).unwrap_or_default(),
    };

    let mut decoded_count = 0_u64;
    let mut returned = 0_u64;
    let mut failure: Option<String> = None;
    let mut receive = |decoder: &mut ffmpeg_next::decoder::Video, failure: &mut Option<String>| -> Result<(), VideoError> {
        let mut frame = VideoFrame::empty();
        while failure.is_none() && decoder.receive_frame(&mut frame).is_ok() {
            let n = decoded_count;
            decoded_count += 1;
            // Keep frame n when it is the first to reach the next multiple of `keep_every`.
            if keep_every > 1.0 && ((n as f64 / keep_every).floor() as u64) < returned {
                continue;
            }
            let mut rgb = VideoFrame::empty();
            scaler.run(&frame, &mut rgb).map_err(VideoError::ffmpeg(format!("scaling frame {n} of {shown}")))?;
            let pts_ms = frame
                .timestamp()
                .map(|t| (t as f64 * f64::from(time_base) * 1000.0).round() as i64)
                .unwrap_or((n as f64 * 1000.0 / source_fps) as i64);
            let image = rotate(packed_rgb(&rgb, scaled_w, scaled_h), rotation);
            if let Err(e) = on_frame(&info, DecodedFrame { index: returned, pts_ms, image }) {
                *failure = Some(e.to_string());
            }
            returned += 1;
        }
        Ok(())
    };
    let mut consecutive_errors = 0;
    loop {
        let mut packet = ffmpeg_next::Packet::empty();
        match packet.read(&mut input) {
            Ok(()) => consecutive_errors = 0,
            Err(ffmpeg_next::Error::Eof) => break,
            Err(e) => {
                consecutive_errors += 1;
                if consecutive_errors > 100 {
                    return Err(VideoError::Ffmpeg { context: format!("reading packets of {shown} (after {returned} frames)"), source: e });
                }
                continue;
            }
        }
        if packet.stream() != index {
            continue;
        }
        if let Err(e) = decoder.send_packet(&packet) {
            // A damaged packet: FFmpeg conceals what it can; the frames around it still count.
            tracing::warn!(file = %shown, error = %e, "skipping a packet the decoder refused");
            continue;
        }
        receive(&mut decoder, &mut failure)?;
        if let Some(reason) = failure.take() {
            return Err(VideoError::Invalid(format!("after frame {returned} of {shown}: {reason}")));
        }
    }
    decoder.send_eof().map_err(VideoError::ffmpeg(format!("flushing the decoder of {shown}")))?;
    receive(&mut decoder, &mut failure)?;
    if let Some(reason) = failure {
        return Err(VideoError::Invalid(format!("after frame {returned} of {shown}: {reason}")));
    }
    if returned == 0 {
        return Err(VideoError::Invalid(format!("{shown}: no frame could be decoded")));
    }
    Ok((info, returned))
}

/// Opens `path` and checks it has a decodable video stream, without decoding frames.
pub fn probe_video(path: &Path) -> Result<(), VideoError> {
    init()?;
    let shown = path.display().to_string();
    let input = ffmpeg_next::format::input(&path).map_err(VideoError::ffmpeg(format!("opening video {shown}")))?;
    let stream = pick_video_stream(&input).ok_or_else(|| VideoError::Invalid(format!("{shown} has no video stream")))?;
    ffmpeg_next::codec::context::Context::from_parameters(stream.parameters())
        .and_then(|c| c.decoder().video())
        .map_err(VideoError::ffmpeg(format!("opening the video decoder for {shown}")))?;
    Ok(())
}

/// The video stream to read: never an attached picture (cover art is a one-frame "video"
/// stream); among the others the default-disposition one first, then the largest frame, then
/// the highest bit rate, then the first.
pub fn pick_video_stream(input: &ffmpeg_next::format::context::Input) -> Option<ffmpeg_next::format::stream::Stream<'_>> {
    use ffmpeg_next::format::stream::Disposition;
    input.streams().filter(|s| s.parameters().medium() == Type::Video && !s.disposition().contains(Disposition::ATTACHED_PIC)).max_by_key(|s| {
        // SAFETY: reads plain fields of the stream's codec parameters, alive while `input` is.
        let (width, height, bit_rate) = unsafe {
            let p = &*s.parameters().as_ptr();
            (i64::from(p.width.max(0)), i64::from(p.height.max(0)), p.bit_rate)
        };
        (s.disposition().contains(Disposition::DEFAULT), width * height, bit_rate, std::cmp::Reverse(s.index()))
    })
}

/// Degrees to turn the stored frames clockwise to show them upright (0, 90, 180 or 270), from
/// the stream's display matrix (what FFmpeg's command-line tool applies by default).
fn rotation_of(stream: &ffmpeg_next::format::stream::Stream) -> u32 {
    use ffmpeg_next::codec::packet::side_data::Type as SideType;
    for side in stream.side_data() {
        if side.kind() == SideType::DisplayMatrix && side.data().len() >= 36 {
            // SAFETY: a display matrix is nine i32s (36 bytes), checked above; the read does
            // not outlive `side`. Unaligned data is copied first.
            let matrix: Vec<i32> = side.data()[..36].chunks_exact(4).map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]])).collect();
            let counter_clockwise = unsafe { ffmpeg_next::ffi::av_display_rotation_get(matrix.as_ptr()) };
            if counter_clockwise.is_finite() {
                return ((-counter_clockwise).round() as i64).rem_euclid(360) as u32 / 90 * 90;
            }
        }
    }
    0
}

/// `image` turned clockwise by `degrees` (0, 90, 180, 270).
pub fn rotate(image: RgbImage, degrees: u32) -> RgbImage {
    let (w, h) = (image.width as usize, image.height as usize);
    let at = |x: usize, y: usize| &image.pixels[(y * w + x) * 3..(y * w + x) * 3 + 3];
    let (out_w, out_h) = match degrees {
        90 | 270 => (h, w),
        180 => (w, h),
        _ => return image,
    };
    let mut pixels = Vec::with_capacity(image.pixels.len());
    for y in 0..out_h {
        for x in 0..out_w {
            let (sx, sy) = match degrees {
                90 => (y, h - 1 - x),
                180 => (w - 1 - x, h - 1 - y),
                _ => (w - 1 - y, x),
            };
            pixels.extend_from_slice(at(sx, sy));
        }
    }
    RgbImage { width: out_w as u32, height: out_h as u32, pixels }
}

/// Copies an RGB24 frame (rows padded to its stride) into tightly packed pixels.
fn packed_rgb(frame: &VideoFrame, width: u32, height: u32) -> RgbImage {
    let stride = frame.stride(0);
    let data = frame.data(0);
    let row = width as usize * 3;
    let mut pixels = Vec::with_capacity(row * height as usize);
    for y in 0..height as usize {
        pixels.extend_from_slice(&data[y * stride..y * stride + row]);
    }
    RgbImage { width, height, pixels }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_turns_frames_clockwise() {
        // 3x2: pixels numbered 1..6 row by row (one byte per channel, all channels equal).
        let image = RgbImage { width: 3, height: 2, pixels: (1..=6).flat_map(|v| [v, v, v]).collect() };
        let values = |i: &RgbImage| i.pixels.chunks(3).map(|p| p[0]).collect::<Vec<u8>>();
        let turned = rotate(image.clone(), 90);
        assert_eq!((turned.width, turned.height, values(&turned)), (2, 3, vec![4, 1, 5, 2, 6, 3]));
        let turned = rotate(image.clone(), 180);
        assert_eq!((turned.width, turned.height, values(&turned)), (3, 2, vec![6, 5, 4, 3, 2, 1]));
        let turned = rotate(image.clone(), 270);
        assert_eq!((turned.width, turned.height, values(&turned)), (2, 3, vec![3, 6, 2, 5, 1, 4]));
        assert_eq!(rotate(image.clone(), 0).pixels, image.pixels);
    }
}
