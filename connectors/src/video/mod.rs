//! Video files in and out, with FFmpeg (ffmpeg-next on the system's libav*): `decode` reads any
//! file FFmpeg reads into RGB frames; `encode` writes RGB frames as H.264 (libx264) MP4.

pub mod decode;
pub mod encode;
pub mod publish;

use thiserror::Error;

/// A video file could not be read or written.
#[derive(Debug, Error)]
pub enum VideoError {
    #[error("{context}: {source}")]
    Ffmpeg {
        context: String,
        #[source]
        source: ffmpeg_next::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

impl VideoError {
    pub(crate) fn ffmpeg(context: impl Into<String>) -> impl FnOnce(ffmpeg_next::Error) -> VideoError {
        let context = context.into();
        move |source| VideoError::Ffmpeg { context, source }
    }
}

/// Initialises FFmpeg once per process (idempotent) and keeps its logging to errors.
pub fn init() -> Result<(), VideoError> {
    static INIT: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    INIT.get_or_init(|| {
        ffmpeg_next::init().map_err(|e| e.to_string())?;
        ffmpeg_next::util::log::set_level(ffmpeg_next::util::log::Level::Error);
        Ok(())
    })
    .clone()
    .map_err(VideoError::Invalid)
}

/// The largest even number <= `x`, at least 2 (H.264 in 4:2:0 needs even sizes).
pub fn even(x: u32) -> u32 {
    (x & !1).max(2)
}
