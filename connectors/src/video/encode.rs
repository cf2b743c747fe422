//! Writes RGB frames as an H.264 (libx264, yuv420p) MP4 file, one frame at a time: nothing but
//! the encoder's own look-ahead is held in memory.

use std::path::{Path, PathBuf};

use ffmpeg_next::format::Pixel;
use ffmpeg_next::software::scaling::{Context as Scaler, Flags};
use ffmpeg_next::util::frame::Video as VideoFrame;
use ffmpeg_next::{codec, encoder, format, Dictionary, Packet, Rational};
use pitwall_dataflows::video::assemble::{EncodeError, EncodedVideo, EncoderFactory, VideoEncoder};
use pitwall_dataflows::video::frame::check_video_id;
use pitwall_dataflows::video::frame::{FrameHeader, RgbImage};

use super::{even, init, VideoError};

/// An open MP4 file being written.
pub struct Mp4Writer {
    path: PathBuf,
    output: format::context::Output,
    encoder: encoder::Video,
    scaler: Scaler,
    width: u32,
    height: u32,
    time_base: Rational,
    stream_time_base: Rational,
    next_pts: i64,
    frames: u64,
}

/// Encoder settings.
#[derive(Clone, Debug, PartialEq)]
pub struct EncodeOptions {
    /// x264 preset (ultrafast ... veryslow).
    pub preset: String,
    /// Constant rate factor: 0 lossless .. 51 worst; 23 is x264's default.
    pub crf: u32,
    /// Encoder threads per video (0: FFmpeg's choice, one per core). pitwall's default is 1:
    /// parallelism comes from timely workers, each encoding its own videos.
    pub threads: u32,
}

impl Default for EncodeOptions {
    fn default() -> Self {
        EncodeOptions { preset: "veryfast".into(), crf: 23, threads: 1 }
    }
}

impl Mp4Writer {
    /// Creates `path` for `width x height` frames (made even) at `fps_num / fps_den` frames/s.
    pub fn create(path: &Path, width: u32, height: u32, fps_num: u32, fps_den: u32, options: &EncodeOptions) -> Result<Mp4Writer, VideoError> {
        init()?;
        let shown = path.display().to_string();
        let (fps_num, fps_den) = if fps_num == 0 || fps_den == 0 { (25, 1) } else { (fps_num as i32, fps_den as i32) };
        let (out_w, out_h) = (even(width), even(height));
        let mut output = format::output(&path).map_err(VideoError::ffmpeg(format!("creating {shown}")))?;
        let global_header = output.format().flags().contains(format::Flags::GLOBAL_HEADER);
        let h264 = encoder::find_by_name("libx264")
            .or_else(|| encoder::find(codec::Id::H264))
            .ok_or_else(|| VideoError::Invalid("this FFmpeg has no H.264 encoder (install libavcodec with libx264)".into()))?;
        let mut stream = output.add_stream(h264).map_err(VideoError::ffmpeg(format!("adding a video stream to {shown}")))?;
        let mut setup =
            codec::context::Context::new_with_codec(h264).encoder().video().map_err(VideoError::ffmpeg("setting up the H.264 encoder"))?;
        let time_base = Rational(fps_den, fps_num);
        setup.set_width(out_w);
        setup.set_height(out_h);
        setup.set_format(Pixel::YUV420P);
        setup.set_time_base(time_base);
        setup.set_frame_rate(Some(Rational(fps_num, fps_den)));
        if global_header {
            setup.set_flags(codec::Flags::GLOBAL_HEADER);
        }
        let mut settings = Dictionary::new();
        settings.set("preset", &options.preset);
        settings.set("crf", &options.crf.to_string());
        settings.set("threads", &options.threads.to_string());
        let encoder = setup.open_with(settings).map_err(VideoError::ffmpeg(format!("opening the H.264 encoder ({out_w}x{out_h})")))?;
        stream.set_parameters(&encoder);
        stream.set_time_base(time_base);
        output.write_header().map_err(VideoError::ffmpeg(format!("writing the header of {shown}")))?;
        let stream_time_base = output.stream(0).map(|s| s.time_base()).unwrap_or(time_base);
        let scaler = Scaler::get(Pixel::RGB24, width, height, Pixel::YUV420P, out_w, out_h, Flags::BILINEAR)
            .map_err(VideoError::ffmpeg("setting up the RGB -> YUV scaler"))?;
        Ok(Mp4Writer { path: path.to_path_buf(), output, encoder, scaler, width, height, time_base, stream_time_base, next_pts: 0, frames: 0 })
    }

    /// Appends one frame (the size given at creation).
    pub fn push(&mut self, image: &RgbImage) -> Result<(), VideoError> {
        if image.width != self.width || image.height != self.height || image.pixels.len() != image.width as usize * image.height as usize * 3 {
            return Err(VideoError::Invalid(format!("frame is {:?}, this video is {}x{}", image, self.width, self.height)));
        }
        let mut rgb = VideoFrame::new(Pixel::RGB24, self.width, self.height);
        let stride = rgb.stride(0);
        let row = self.width as usize * 3;
        let data = rgb.data_mut(0);
        for y in 0..self.height as usize {
            data[y * stride..y * stride + row].copy_from_slice(&image.pixels[y * row..(y + 1) * row]);
        }
        let mut yuv = VideoFrame::empty();
        self.scaler.run(&rgb, &mut yuv).map_err(VideoError::ffmpeg("converting a frame to YUV"))?;
        yuv.set_pts(Some(self.next_pts));
        self.next_pts += 1;
        self.encoder.send_frame(&yuv).map_err(VideoError::ffmpeg(format!("encoding frame {}", self.frames)))?;
        self.frames += 1;
        self.drain()
    }

    fn drain(&mut self) -> Result<(), VideoError> {
        let mut packet = Packet::empty();
        while self.encoder.receive_packet(&mut packet).is_ok() {
            packet.set_stream(0);
            // One frame long: without a duration the MP4 edit list cuts the last frame off.
            if packet.duration() <= 0 {
                packet.set_duration(1);
            }
            packet.rescale_ts(self.time_base, self.stream_time_base);
            packet.write_interleaved(&mut self.output).map_err(VideoError::ffmpeg(format!("writing {}", self.path.display())))?;
        }
        Ok(())
    }

    /// Flushes the encoder and closes the file.
    pub fn finish(mut self) -> Result<EncodedVideo, VideoError> {
        self.encoder.send_eof().map_err(VideoError::ffmpeg("flushing the encoder"))?;
        self.drain()?;
        self.output.write_trailer().map_err(VideoError::ffmpeg(format!("finishing {}", self.path.display())))?;
        let bytes = std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0);
        Ok(EncodedVideo { path: self.path.clone(), bytes })
    }

    pub fn frames(&self) -> u64 {
        self.frames
    }
}

impl VideoEncoder for Mp4Writer {
    fn push(&mut self, frame: &RgbImage) -> Result<(), EncodeError> {
        Mp4Writer::push(self, frame).map_err(EncodeError::new)
    }

    fn finish(self: Box<Self>) -> Result<EncodedVideo, EncodeError> {
        Mp4Writer::finish(*self).map_err(EncodeError::new)
    }
}

/// Opens one MP4 per video under a spool folder: `<video id>.<n>_with_heatmaps.mp4`, `n`
/// counting the videos this spool has started. Video ids are safe names (checked at decode,
/// `check_video_id`), so two ids never share a file, and a reused id (consecutive clips of one
/// camera) gets a new file while the previous one may still be uploading.
#[derive(Clone, Debug)]
pub struct Mp4Spool {
    dir: PathBuf,
    options: EncodeOptions,
    started: u64,
}

impl Mp4Spool {
    pub fn new(dir: PathBuf, options: EncodeOptions) -> Mp4Spool {
        Mp4Spool { dir, options, started: 0 }
    }
}

impl EncoderFactory for Mp4Spool {
    fn start(&mut self, first: &FrameHeader) -> Result<Box<dyn VideoEncoder>, EncodeError> {
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| EncodeError::new(VideoError::Invalid(format!("creating spool folder {}: {e}", self.dir.display()))))?;
        check_video_id(&first.video_id).map_err(EncodeError::new)?;
        self.started += 1;
        let path = self.dir.join(format!("{}.{}_with_heatmaps.mp4", first.video_id, self.started));
        let writer = Mp4Writer::create(&path, first.width, first.height, first.fps_num, first.fps_den, &self.options).map_err(EncodeError::new)?;
        Ok(Box::new(writer))
    }
}
