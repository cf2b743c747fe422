//! Reads a video file into RGB frames, scaled down to a maximum width and thinned to a maximum
//! frame rate if asked.

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
    let stream = input.streams().best(Type::Video).ok_or_else(|| VideoError::Invalid(format!("{shown} has no video stream")))?;
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
    let (width, height) = match options.max_width {
        Some(max) if sw > max => (even(max), even((u64::from(sh) * u64::from(max) / u64::from(sw)) as u32)),
        _ => (even(sw), even(sh)),
    };
    let mut scaler = Scaler::get(decoder.format(), sw, sh, Pixel::RGB24, width, height, Flags::BILINEAR)
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
        source_width: sw,
        source_height: sh,
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
            let image = packed_rgb(&rgb, width, height);
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
    let stream = input.streams().best(Type::Video).ok_or_else(|| VideoError::Invalid(format!("{shown} has no video stream")))?;
    ffmpeg_next::codec::context::Context::from_parameters(stream.parameters())
        .and_then(|c| c.decoder().video())
        .map_err(VideoError::ffmpeg(format!("opening the video decoder for {shown}")))?;
    Ok(())
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
