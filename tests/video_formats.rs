//! Video as people have it: clips written by FFmpeg's command-line tool the way phones, drones
//! and stock sites write them, each run end to end (`produce video` -> Tansu -> `run --pipelines
//! video -w 2` -> the overlayed MP4). Checked per clip with ffprobe (independent of pitwall):
//! the overlayed MP4 keeps the input's frame count and frame rate, and its shown size (rounded
//! down to even, see the README). Also: the format is found from the content (a WebM named
//! `.mp4`), audio and cover pictures are never taken for the video (a song with cover art is
//! refused as having no video stream), and rotation metadata is
//! applied the way FFmpeg's own tool applies it (frames compared pixel by pixel).

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use pitwall_connectors::video::decode::{read_video, ReadOptions};
use serde_json::Value;
use support::*;

/// Runs the ffmpeg command-line tool (installed by scripts/setup.sh); fails loudly without it.
fn ffmpeg(args: &[&str]) {
    let output = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(args)
        .output()
        .expect("the ffmpeg command-line tool runs (scripts/setup.sh installs it)");
    assert!(output.status.success(), "ffmpeg {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
}

/// (frames, frames per second, width, height) of the first video stream that is not a cover
/// picture, as ffprobe counts them (decoding every frame).
fn probe(path: &Path) -> (u64, f64, u32, u32) {
    let output = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-count_frames",
            "-show_entries",
            "stream=codec_type,nb_read_frames,avg_frame_rate,width,height:stream_disposition=attached_pic",
        ])
        .args(["-of", "json"])
        .arg(path)
        .output()
        .expect("ffprobe runs");
    assert!(output.status.success(), "ffprobe {}: {}", path.display(), String::from_utf8_lossy(&output.stderr));
    let info: Value = serde_json::from_slice(&output.stdout).unwrap();
    let stream = info["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["codec_type"] == "video" && s["disposition"]["attached_pic"] != 1)
        .unwrap_or_else(|| panic!("no video stream in {}: {info}", path.display()))
        .clone();
    let rate = stream["avg_frame_rate"].as_str().unwrap();
    let (n, d) = rate.split_once('/').unwrap();
    let fps = n.parse::<f64>().unwrap() / d.parse::<f64>().unwrap();
    let number = |key: &str| stream[key].as_u64().or_else(|| stream[key].as_str().and_then(|s| s.parse().ok())).unwrap();
    (number("nb_read_frames"), fps, number("width") as u32, number("height") as u32)
}

struct Clip {
    id: &'static str,
    file: PathBuf,
    /// The size as shown (after rotation), before the even-size adjustment.
    shown: (u32, u32),
}

fn clips(dir: &Path) -> Vec<Clip> {
    let lavfi = |size: &str, rate: &str, seconds: &str| format!("testsrc2=s={size}:r={rate}:d={seconds}");
    let mut clips = Vec::new();
    let mut make = |id: &'static str, name: &str, input: String, codec: &[&str], shown: (u32, u32)| {
        let file = dir.join(name);
        let mut args = vec!["-f", "lavfi", "-i", &input];
        args.extend_from_slice(codec);
        let out = file.to_str().unwrap().to_string();
        args.push(&out);
        ffmpeg(&args);
        clips.push(Clip { id, file, shown });
    };
    let x264 = ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-preset", "ultrafast"];
    // MP4 as ffmpeg writes it by default: the index (moov) at the end of the file.
    make("h264-moov-last", "h264.mp4", lavfi("160x90", "25", "1"), &x264, (160, 90));
    make(
        "h265-mkv",
        "h265.mkv",
        lavfi("176x100", "30000/1001", "1"),
        &["-c:v", "libx265", "-pix_fmt", "yuv420p", "-x265-params", "log-level=error"],
        (176, 100),
    );
    make("vp8-webm", "vp8.webm", lavfi("160x96", "24", "1"), &["-c:v", "libvpx", "-b:v", "300k"], (160, 96));
    // A WebM named .mp4: the content decides, not the name.
    make("vp9-named-mp4", "vp9-really-webm.mp4", lavfi("160x90", "25", "1"), &["-c:v", "libvpx-vp9", "-f", "webm"], (160, 90));
    make("av1-mkv", "av1.mkv", lavfi("160x96", "25", "1"), &["-c:v", "libsvtav1", "-preset", "12"], (160, 96));
    make("mpeg4-avi", "mpeg4.avi", lavfi("160x96", "24000/1001", "1"), &["-c:v", "mpeg4", "-q:v", "5"], (160, 96));
    make("fragmented-mp4", "frag.mp4", lavfi("160x90", "25", "1"), &[&x264[..], &["-movflags", "frag_keyframe+empty_moov"]].concat(), (160, 90));
    make("h264-mov", "clip.mov", lavfi("160x90", "50", "1"), &x264, (160, 90));
    // Odd width and height (VP9 allows them): shown as 160x90 after the even-size adjustment.
    make(
        "odd-size",
        "odd.webm",
        lavfi("160x90", "30000/1001", "1"),
        &["-vf", "scale=161:91", "-c:v", "libvpx-vp9", "-pix_fmt", "yuv420p"],
        (161, 91),
    );
    // Variable frame rate: 20 frames 40 ms apart, then 30 frames 100 ms apart.
    make(
        "vfr",
        "vfr.mkv",
        lavfi("128x72", "25", "2"),
        &[&["-vf", "setpts='if(lt(N,20),N*0.04,0.8+(N-20)*0.1)/TB'", "-fps_mode", "vfr"][..], &x264[..]].concat(),
        (128, 72),
    );
    // Audio first, then a cover picture larger than the video (attached_pic), then the video.
    let cover = dir.join("cover.mp4");
    let video = lavfi("128x72", "25", "1");
    with_audio_and_cover(&cover, "320x320", "aac", Some((&video, &["-c:v:1", "libx264", "-pix_fmt", "yuv420p"])));
    clips.push(Clip { id: "audio-and-cover", file: cover, shown: (128, 72) });
    // A phone's portrait clip: stored 160x96 with a display matrix (rotation), shown 96x160.
    let stored = dir.join("stored.mp4");
    ffmpeg(&["-f", "lavfi", "-i", &lavfi("160x96", "30", "1"), "-c:v", "libx264", "-pix_fmt", "yuv420p", stored.to_str().unwrap()]);
    let portrait = dir.join("portrait.mp4");
    ffmpeg(&["-i", stored.to_str().unwrap(), "-c", "copy", "-metadata:s:v:0", "rotate=90", portrait.to_str().unwrap()]);
    clips.push(Clip { id: "portrait-rotated", file: portrait, shown: (96, 160) });
    clips
}

/// Writes `out`: a 1 s tone, then a red cover picture of `cover_size` (one MJPEG frame marked
/// `attached_pic`), then, if given, a video input with its codec arguments (`-c:v:1 ...`).
fn with_audio_and_cover(out: &Path, cover_size: &str, audio_codec: &str, video: Option<(&str, &[&str])>) {
    let cover = format!("color=c=red:s={cover_size}:d=1");
    let mut args = vec!["-f", "lavfi", "-i", "sine=d=1", "-f", "lavfi", "-i", &cover];
    if let Some((input, _)) = video {
        args.extend(["-f", "lavfi", "-i", input]);
    }
    args.extend(["-map", "0:a", "-map", "1:v"]);
    if video.is_some() {
        args.extend(["-map", "2:v"]);
    }
    args.extend(["-c:a", audio_codec, "-c:v:0", "mjpeg", "-frames:v:0", "1", "-disposition:v:0", "attached_pic"]);
    if let Some((_, codec)) = video {
        args.extend_from_slice(codec);
    }
    args.push(out.to_str().unwrap());
    ffmpeg(&args);
}

/// The first frame as FFmpeg's own tool shows it (autorotation on), as packed RGB.
fn first_frame_shown_by_ffmpeg(path: &Path, width: u32, height: u32) -> Vec<u8> {
    let raw = path.with_extension("rgb");
    ffmpeg(&[
        "-i",
        path.to_str().unwrap(),
        "-frames:v",
        "1",
        "-vf",
        &format!("scale={width}:{height}"),
        "-f",
        "rawvideo",
        "-pix_fmt",
        "rgb24",
        raw.to_str().unwrap(),
    ]);
    std::fs::read(raw).unwrap()
}

#[test]
fn clips_as_people_have_them_keep_frame_count_rate_and_size() {
    let dir = temp_dir();
    let clips = clips(dir.path());

    // Rotation is applied as FFmpeg applies it: pitwall's first frame matches ffmpeg's.
    let portrait = clips.iter().find(|c| c.id == "portrait-rotated").unwrap();
    let mut first = None;
    read_video(&portrait.file, ReadOptions::default(), |_, frame| -> Result<(), String> {
        first.get_or_insert(frame.image);
        Ok(())
    })
    .unwrap();
    let first = first.unwrap();
    assert_eq!((first.width, first.height), (96, 160));
    let theirs = first_frame_shown_by_ffmpeg(&portrait.file, 96, 160);
    let mean_diff = first.pixels.iter().zip(&theirs).map(|(a, b)| f64::from(a.abs_diff(*b))).sum::<f64>() / theirs.len() as f64;
    assert!(mean_diff < 12.0, "pitwall's rotated frame differs from ffmpeg's by {mean_diff:.1} per channel");

    let tansu = start_tansu();
    let b = tansu.brokers.as_str();
    pitwall(&["topics", "create", "--brokers", b]);

    // A song with cover art has a one-frame "video" stream (attached picture): it is no video.
    let song = dir.path().join("song.mp3");
    with_audio_and_cover(&song, "64x64", "libmp3lame", None);
    let refused = pitwall_command(&["produce", "video", &path_str(&song), "--id", "song", "--brokers", b, "--quiet"]).output().unwrap();
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && said.contains("song.mp3 has no video stream"), "{said}");

    for clip in &clips {
        pitwall(&["produce", "video", &path_str(&clip.file), "--id", clip.id, "--brokers", b, "--quiet"]);
    }
    let out = dir.path().join("out");
    let spool = dir.path().join("spool");
    let report = video_run_to_end(b, &out, &["--spool", &path_str(&spool)]);
    assert_eq!(report["videos"].as_u64(), Some(clips.len() as u64), "{report}");
    assert_eq!(report["dead_letters"], 0, "{report}");

    let mut failures = Vec::new();
    for clip in &clips {
        let (frames, fps, _, _) = probe(&clip.file);
        let overlayed = out.join(format!("videos/{}_with_heatmaps.mp4", clip.id));
        assert!(overlayed.is_file(), "{}: no overlayed video at {}", clip.id, overlayed.display());
        let (out_frames, out_fps, width, height) = probe(&overlayed);
        let want = (clip.shown.0 & !1, clip.shown.1 & !1);
        if out_frames != frames || (out_fps - fps).abs() > fps * 0.001 || (width, height) != want {
            failures.push(format!(
                "{}: in {frames} frames at {fps:.3} fps, shown {:?}; out {out_frames} frames at {out_fps:.3} fps, {width}x{height} (want {want:?})",
                clip.id, clip.shown
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
