//! The ONNX side against the real ONNX Runtime (the `onnxruntime` wheel's library, loaded by
//! `ort`'s load-dynamic): a YOLO-style graph built here with the `onnx` package that emits known
//! boxes (decoded + NMS in pitwall), the two built-in models, and the start-up errors.

mod support;

use std::rc::Rc;

use pitwall_connectors::onnx::fire::{FireDetector, FireOptions};
use pitwall_connectors::onnx::tabular::WindowModel;
use pitwall_connectors::onnx::{ModelSource, BUILTIN_FIRE_MODEL, BUILTIN_PACE_MODEL};
use pitwall_dataflows::infer::BatchModel;
use pitwall_dataflows::records::{ChannelStats, WindowKind, WindowResult};
use pitwall_dataflows::sim::video::{Scene, SceneConfig};
use pitwall_dataflows::video::frame::{FrameHeader, RgbImage, VideoRecord};
use pitwall_dataflows::video::outputs::FireOutputs;
use support::*;

fn frame(video: &str, index: u64, image: RgbImage) -> Rc<VideoRecord> {
    let header = FrameHeader {
        video_id: video.into(),
        frame_index: index,
        pts_ms: 0,
        produced_at_ms: 0,
        width: image.width,
        height: image.height,
        fps_num: 25,
        fps_den: 1,
        total_frames: None,
    };
    Rc::new(VideoRecord::Frame { header, image })
}

#[test]
fn yolo_outputs_are_decoded_with_nms_and_scaled_to_the_frame() {
    let dir = temp_dir();
    let path = dir.path().join("yolo_stub.onnx");
    build_yolo_graph(&path, "N", StubVariant::Plain);
    let options = FireOptions { kind: FireOutputs::Yolo, width: 999, height: 999, ..FireOptions::default() };
    let mut model = FireDetector::load(&ModelSource::File(path), options).unwrap();
    // Frames twice as wide as the model input: x and widths scale by 2, y and heights by 1.
    let batch = vec![frame("a", 0, RgbImage::new(128, 64)), frame("b", 7, RgbImage::new(128, 64))];
    let verdicts = model.run(&batch).unwrap();
    assert_eq!(verdicts.len(), 2);
    for verdict in &verdicts {
        let boxes: Vec<(&str, f32, f32, f32, f32, f32)> =
            verdict.regions.iter().map(|r| (r.label.as_str(), r.score, r.x, r.y, r.width, r.height)).collect();
        // The 0.8 fire box overlaps the 0.9 one (IoU ~0.78) and is suppressed; the weak box is dropped.
        assert_eq!(boxes, vec![("fire", 0.9, 48.0, 24.0, 32.0, 16.0), ("smoke", 0.7, 12.0, 46.0, 16.0, 8.0)]);
        assert_eq!(verdict.score, 0.9, "the frame's score is its best fire box");
        let heat = verdict.heatmap.as_ref().expect("boxes are painted into a heatmap for the overlay");
        assert!(heat.values.contains(&0.9) && heat.values.contains(&0.0));
    }
    // The same graph is not a heatmap model: a clear start-up error.
    let wrong = FireDetector::load(&ModelSource::File(dir.path().join("yolo_stub.onnx")), FireOptions::default()).unwrap_err().to_string();
    assert!(wrong.contains("needs outputs `heatmap` and `score`"), "{wrong}");
}

/// An export with a fixed batch dimension (Ultralytics' default is a static `[1, 3, H, W]`,
/// int8 QDQ when quantized) is found at load and fed batches of exactly that size, the last one
/// padded: every frame gets its verdict. Before, a batch of 8 failed every run ("invalid
/// dimensions for input: images ... Got: 8 Expected: 1").
#[test]
fn exports_with_a_fixed_batch_are_fed_batches_of_their_size() {
    let dir = temp_dir();
    for (batch, variant, fixed) in
        [("1", StubVariant::Plain, Some(1)), ("1", StubVariant::Qdq, Some(1)), ("4", StubVariant::Plain, Some(4)), ("N", StubVariant::Qdq, None)]
    {
        let path = dir.path().join(format!("yolo_{batch}_{variant:?}.onnx"));
        build_yolo_graph(&path, batch, variant);
        let options = FireOptions { kind: FireOutputs::Yolo, ..FireOptions::default() };
        let mut model = FireDetector::load(&ModelSource::File(path), options).unwrap();
        assert_eq!(model.fixed_batch(), fixed, "batch {batch} {variant:?}");
        for frames in [1, 7, 8] {
            let batch_of: Vec<Rc<VideoRecord>> = (0..frames).map(|i| frame("cam", i, RgbImage::new(64, 64))).collect();
            let verdicts = model.run(&batch_of).unwrap_or_else(|e| panic!("batch {batch} {variant:?}, {frames} frames: {e}"));
            assert_eq!(verdicts.len(), frames as usize, "batch {batch} {variant:?}");
            for verdict in &verdicts {
                let boxes: Vec<(&str, f32, f32)> = verdict.regions.iter().map(|r| (r.label.as_str(), r.score, r.x)).collect();
                assert_eq!(boxes, vec![("fire", 0.9, 24.0), ("smoke", 0.7, 6.0)], "batch {batch} {variant:?}, {frames} frames");
            }
        }
    }
}

/// A model that cannot run at all fails at start, naming why, rather than every frame failing
/// later; one that fails only on some input loads, and its failures are the run's errors.
#[test]
fn a_model_that_cannot_run_a_test_batch_is_a_start_up_error() {
    let dir = temp_dir();
    let options = FireOptions { kind: FireOutputs::Yolo, ..FireOptions::default() };
    let broken = dir.path().join("always_fails.onnx");
    build_yolo_graph(&broken, "N", StubVariant::AlwaysFails);
    let error = FireDetector::load(&ModelSource::File(broken), options.clone()).unwrap_err().to_string();
    assert!(error.contains("cannot run a test batch of 1 black 64x64 frames") && error.contains("always_fails.onnx"), "{error}");
    let picky = dir.path().join("fails_on_content.onnx");
    build_yolo_graph(&picky, "N", StubVariant::FailsOnContent);
    let mut model = FireDetector::load(&ModelSource::File(picky), options).unwrap();
    let black = model.run(&[frame("cam", 0, RgbImage::new(64, 64))]).unwrap();
    assert_eq!(black.len(), 1);
    let mut lit = RgbImage::new(64, 64);
    lit.pixels[0] = 200;
    let error = model.run(&[frame("cam", 1, lit)]).unwrap_err();
    assert!(error.contains("running model fails_on_content"), "{error}");
}

#[test]
fn the_builtin_fire_model_separates_flames_from_the_red_car() {
    let mut model = FireDetector::load(&BUILTIN_FIRE_MODEL, FireOptions::default()).unwrap();
    assert_eq!(model.name(), "fire_colour");
    let scene = Scene::new(SceneConfig { frames: 100, ..SceneConfig::default() });
    let truth = scene.truth();
    let batch: Vec<Rc<VideoRecord>> = (0..100).step_by(3).map(|i| frame("s", i, scene.frame(i))).collect();
    let verdicts = model.run(&batch).unwrap();
    for (record, verdict) in batch.iter().zip(&verdicts) {
        let index = record.header().frame_index;
        if truth.has_fire(index) {
            assert!(verdict.score > 0.8, "frame {index}: {}", verdict.score);
            let region = &verdict.regions[0];
            // The flames stand at the building's foot, 30-62% across and above 55% down.
            assert!(region.x >= 0.25 * 320.0 && region.x + region.width <= 0.7 * 320.0 && region.y + region.height <= 0.62 * 180.0, "{region:?}");
        } else {
            assert!(verdict.score < 0.2 && verdict.regions.is_empty(), "frame {index}: {} {:?}", verdict.score, verdict.regions);
        }
        let heat = verdict.heatmap.as_ref().unwrap();
        assert_eq!((heat.width, heat.height), (128, 128));
    }
}

/// A sliding window from features in the model's order (speed mean/min/max, rpm mean,
/// throttle mean, brake %, gear changes, DRS-open fraction).
fn window(f: [f64; 8]) -> WindowResult {
    let stats = |mean: f64, min: f64, max: f64| ChannelStats { mean, min, max };
    WindowResult {
        driver: "VER".into(),
        window: WindowKind::Sliding,
        start_ms: 0,
        end_ms: 5_000,
        count: 40,
        speed: stats(f[0], f[1], f[2]),
        rpm: stats(f[3], f[3], f[3]),
        throttle: stats(f[4], f[4], f[4]),
        brake_pct: f[5],
        gear_changes: f[6] as u64,
        drs_open_ms: (f[7] * 5_000.0) as u64,
    }
}

#[test]
fn the_builtin_pace_model_predicts_plausible_speeds() {
    let mut model = WindowModel::load(&BUILTIN_PACE_MODEL, 1).unwrap();
    assert_eq!((model.card.model_type.as_str(), model.card.version), ("pace_next5s", 1));
    // Three windows of the generated race (seed 11, ALB): a DRS straight, a slow corner, a
    // braking zone.
    let values = model
        .run(&[
            window([285.2, 259.0, 303.0, 10_935.7, 100.0, 0.0, 2.0, 1.0]),
            window([115.5, 86.0, 279.0, 10_708.9, 53.6, 28.2, 6.0, 0.0]),
            window([215.2, 107.0, 311.0, 10_493.3, 63.5, 26.2, 6.0, 0.2]),
        ])
        .unwrap();
    assert_eq!(values.len(), 3);
    assert!(values.iter().all(|v| v.is_finite() && (60.0..=360.0).contains(v)), "{values:?}");
    // Far outside what it was fitted on, the output is still a speed (clipped), never negative.
    let odd =
        model.run(&[window([120.0, 10.0, 130.0, 2_000.0, 0.0, 100.0, 40.0, 0.0]), window([5_000.0, 0.0, 9_000.0, 0.0, 0.0, 0.0, 0.0, 1.0])]).unwrap();
    assert!(odd.iter().all(|v| (0.0..=380.0).contains(v)), "{odd:?}");
}

#[test]
fn missing_models_and_runtime_are_start_up_errors() {
    let missing = FireDetector::load(&ModelSource::File("/nonexistent/fire.onnx".into()), FireOptions::default()).unwrap_err().to_string();
    assert!(missing.contains("/nonexistent/fire.onnx") && missing.contains("no such file"), "{missing}");
    let dir = temp_dir();
    let junk = dir.path().join("junk.onnx");
    std::fs::write(&junk, b"not a protobuf").unwrap();
    let invalid = WindowModel::load(&ModelSource::File(junk.clone()), 1).unwrap_err().to_string();
    assert!(invalid.contains("junk.onnx"), "{invalid}");

    // The runtime library is loaded once per process, so its absence is checked in a child
    // process: no broker is needed to fail.
    let output = pitwall_command(&["run", "--brokers", "127.0.0.1:1", "--pipelines", "video", "--onnxruntime", "/nonexistent/libonnxruntime.so"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("ONNX Runtime") && stderr.contains("/nonexistent/libonnxruntime.so"), "{stderr}");
    let output = pitwall_command(&["run", "--brokers", "127.0.0.1:1", "--pipelines", "video", "--fire-model", &path_str(&junk)]).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success() && stderr.contains("loading the fire model") && stderr.contains("junk.onnx"), "{stderr}");
}
