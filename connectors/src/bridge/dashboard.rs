//! The live dashboard's routes: the page (`/`), its snapshot (`/api/snapshot`) and event stream
//! (`/api/events`, server-sent events) as JSON, and the video thumbnails as PNG.

use std::convert::Infallible;

use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Bytes, Frame};
use hyper::{Response, StatusCode};
use pitwall_dataflows::live::{DashboardView, LiveStore};
use serde_json::{json, Value};

use super::{percent_decode, text, Body};

/// The dashboard's JSON of one view: `cars`, `track`, `traces` (per driver `[[time, speed]]`),
/// `alerts`, `videos` and `completions` (newest first).
pub(crate) fn snapshot(view: &DashboardView) -> Value {
    let traces: serde_json::Map<String, Value> =
        view.traces.iter().map(|(driver, points)| (driver.to_string(), points.iter().map(|(t, v)| json!([*t as f64, v])).collect())).collect();
    let alerts: Vec<Value> = view
        .alerts
        .iter()
        .map(|(t, a)| json!({ "time": t, "driver": a.driver, "kind": a.kind.name(), "severity": a.severity.name(), "message": a.message }))
        .collect();
    let videos: Vec<Value> = view
        .videos
        .iter()
        .map(|(video_id, frame_index, score)| json!({ "video_id": video_id, "frame_index": frame_index, "score": score }))
        .collect();
    let completions: Vec<Value> = view
        .completions
        .iter()
        .map(|(t, c)| json!({ "time": t, "video_id": c.video_id, "frames": c.frames, "fire_frames": c.fire_frames, "max_score": c.max_score, "location": c.location }))
        .collect();
    json!({ "cars": view.cars, "track": view.track, "traces": traces, "alerts": alerts, "videos": videos, "completions": completions })
}

/// The live dashboard: the page, its snapshot, its event stream and the video thumbnails.
pub(crate) fn dashboard(live: &LiveStore, path: &str) -> Option<Response<Body>> {
    const TRACE_POINTS: usize = 240;
    const RECENT: usize = 20;
    match path {
        "/" => Some(text(StatusCode::OK, "text/html; charset=utf-8", include_bytes!("dashboard.html").to_vec())),
        "/api/snapshot" => {
            Some(text(StatusCode::OK, "application/json", snapshot(&live.dashboard_view(TRACE_POINTS, RECENT)).to_string().into_bytes()))
        }
        "/api/events" => {
            // A snapshot every 500 ms for as long as the page listens (server-sent events).
            let live = live.clone();
            let ticks = tokio::time::interval(std::time::Duration::from_millis(500));
            let stream = futures_util::stream::unfold((live, ticks), |(live, mut ticks)| async move {
                ticks.tick().await;
                let event = format!("data: {}\n\n", snapshot(&live.dashboard_view(TRACE_POINTS, RECENT)));
                Some((Ok::<_, Infallible>(Frame::data(Bytes::from(event))), (live, ticks)))
            });
            let mut response = Response::new(StreamBody::new(stream).boxed());
            let headers = response.headers_mut();
            headers.insert(hyper::header::CONTENT_TYPE, "text/event-stream".parse().expect("valid header"));
            headers.insert(hyper::header::CACHE_CONTROL, "no-cache".parse().expect("valid header"));
            Some(response)
        }
        _ => {
            let video = path.strip_prefix("/api/thumbnails/")?.strip_suffix(".png")?;
            let video = percent_decode(video);
            Some(match live.thumbnail(&video).map(|t| png(&t.image)) {
                Some(Ok(bytes)) => text(StatusCode::OK, "image/png", bytes),
                Some(Err(e)) => text(StatusCode::INTERNAL_SERVER_ERROR, "text/plain", e.into_bytes()),
                None => text(StatusCode::NOT_FOUND, "text/plain", format!("no thumbnail of video `{video}`\n").into_bytes()),
            })
        }
    }
}

fn png(image: &pitwall_dataflows::video::frame::RgbImage) -> Result<Vec<u8>, String> {
    let mut out = std::io::Cursor::new(Vec::new());
    image::write_buffer_with_format(&mut out, &image.pixels, image.width, image.height, image::ColorType::Rgb8, image::ImageOutputFormat::Png)
        .map_err(|e| format!("encoding a thumbnail: {e}"))?;
    Ok(out.into_inner())
}
