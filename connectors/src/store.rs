//! Where finished videos go: an S3 bucket (aws-sdk-s3; any S3-compatible server with
//! `endpoint` + path-style) or, without S3 settings, a local folder with the same key layout.
//! Files above the multipart threshold go up in parts.
//!
//! No video is ever given up on. An upload that fails for a reason that can pass (the server
//! down, a 5xx, a timeout) is retried with exponential backoff for as long as it takes; past
//! [`UploadPolicy::degraded_after`] the store reports it in [`ObjectStore::health_reasons`]
//! (`/health` degraded). An upload the server refuses for good (403: credentials; 404: no such
//! bucket; 400/301/405) is not retried: the store keeps the first such error
//! ([`ObjectStore::fatal`]) and the job stops the video pipeline with it.
//!
//! `upload_videos` is the timely operator: each finished video is uploaded on a background
//! runtime while the operator holds a capability for it, and its completion record (with the
//! location) is emitted once the video is stored. A probe after the completions sink therefore
//! passes a video's time, and the source commits its frames, only once the object exists; a
//! video refused for good keeps its capability, so its frames stay uncommitted and the next run
//! (credentials fixed) reads it again.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use pitwall_dataflows::records::now_ms;
use pitwall_dataflows::records::EventTime;
use pitwall_dataflows::video::assemble::{FinishedVideo, VideoCompletion};
use thiserror::Error;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::Capability;
use timely::dataflow::Stream;

/// An object could not be stored.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("S3 settings: {0}")]
    Settings(String),
    #[error("{operation} s3://{bucket}/{key}: {reason}{}", .status.map(|s| format!(" (HTTP {s})")).unwrap_or_default())]
    S3 { operation: &'static str, bucket: String, key: String, reason: String, status: Option<u16> },
    #[error("{0}")]
    Local(String),
    /// A key the store will never take.
    #[error("{0}")]
    Refused(String),
}

impl StoreError {
    /// Whether retrying cannot help: the server answered with a status that a retry gets again
    /// (403 credentials or policy, 404 no such bucket, 400 bad request, 301 wrong region, 405),
    /// or the key is refused. Connection failures, timeouts, 408, 429 and 5xx can pass.
    pub fn permanent(&self) -> bool {
        match self {
            StoreError::S3 { status: Some(status), .. } => matches!(status, 301 | 400 | 403 | 404 | 405),
            StoreError::Refused(_) => true,
            _ => false,
        }
    }
}

/// How to reach S3. Empty fields fall back to the AWS environment (`AWS_ENDPOINT_URL`,
/// `AWS_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, profiles, ...).
#[derive(Clone, Default)]
pub struct S3Settings {
    pub bucket: String,
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key: Option<String>,
    pub secret_key: Option<String>,
    /// `http://endpoint/bucket/key` instead of `http://bucket.endpoint/key` (S3-compatible servers).
    pub path_style: bool,
}

impl std::fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Settings")
            .field("bucket", &self.bucket)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key", &self.access_key)
            .field("secret_key", &self.secret_key.as_ref().map(|_| "[redacted]"))
            .field("path_style", &self.path_style)
            .finish()
    }
}

/// Seconds an upload may keep failing before the store reports itself degraded, unless configured.
pub const DEFAULT_DEGRADED_AFTER_S: u64 = 60;

/// How uploads behave.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct UploadPolicy {
    /// Files at least this large go up in parts of `part_size` (S3's minimum part is 5 MiB).
    pub multipart_threshold: u64,
    pub part_size: u64,
    /// An upload still failing after this long makes the store report itself degraded (it is
    /// retried all the same: a video is never given up on).
    pub degraded_after: Duration,
    pub first_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for UploadPolicy {
    fn default() -> Self {
        UploadPolicy {
            multipart_threshold: 16 << 20,
            part_size: 8 << 20,
            degraded_after: Duration::from_secs(DEFAULT_DEGRADED_AFTER_S),
            first_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(10),
        }
    }
}

enum Target {
    S3 { client: aws_sdk_s3::Client, bucket: String },
    Local { root: PathBuf },
}

/// An S3 bucket or a local folder, with the runtime its uploads run on.
pub struct ObjectStore {
    target: Target,
    runtime: tokio::runtime::Runtime,
    pub policy: UploadPolicy,
    /// Uploads failing right now, by key: since when, attempts, the last error.
    failing: std::sync::Mutex<std::collections::BTreeMap<String, Failing>>,
    /// The first upload refused for good.
    fatal: std::sync::Mutex<Option<String>>,
    /// Where a stored video's file is kept (under its key) instead of being deleted, if anywhere
    /// (the seed's `S3_DELETE_LOCAL_AFTER_UPLOAD=false`).
    keep_local: Option<PathBuf>,
    /// How the presigned GET link a completion carries is made (how long it is valid), if one
    /// is wanted.
    presign: Option<aws_sdk_s3::presigning::PresigningConfig>,
}

struct Failing {
    since: Instant,
    attempts: u32,
    error: String,
}

impl std::fmt::Debug for ObjectStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, StoreError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("pitwall-upload")
        .enable_all()
        .build()
        .map_err(|e| StoreError::Settings(format!("starting the upload runtime: {e}")))
}

impl ObjectStore {
    /// An S3 bucket. Checks at once that the bucket is reachable (HeadBucket), so wrong settings
    /// are a start-up error.
    pub fn s3(settings: &S3Settings, policy: UploadPolicy) -> Result<ObjectStore, StoreError> {
        if settings.bucket.is_empty() {
            return Err(StoreError::Settings("no bucket (--s3-bucket or S3_BUCKET)".into()));
        }
        let runtime = runtime()?;
        let client = runtime.block_on(async {
            let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
            if let Some(region) = &settings.region {
                loader = loader.region(aws_config::Region::new(region.clone()));
            }
            if let Some(endpoint) = &settings.endpoint {
                loader = loader.endpoint_url(endpoint);
            }
            if let (Some(access), Some(secret)) = (&settings.access_key, &settings.secret_key) {
                loader = loader.credentials_provider(aws_sdk_s3::config::Credentials::new(access, secret, None, None, "pitwall-flags"));
            }
            let shared = loader.load().await;
            let mut config = aws_sdk_s3::config::Builder::from(&shared).force_path_style(settings.path_style);
            if shared.region().is_none() {
                config = config.region(aws_config::Region::new("us-east-1"));
            }
            aws_sdk_s3::Client::from_conf(config.build())
        });
        let bucket = settings.bucket.clone();
        runtime.block_on(async {
            tokio::time::timeout(Duration::from_secs(20), client.head_bucket().bucket(&bucket).send())
                .await
                .map_err(|_| StoreError::Settings(format!("bucket `{bucket}`: no answer from S3 within 20 s")))?
                .map_err(|e| StoreError::Settings(format!("bucket `{bucket}` is not reachable: {}", error_text(&e))))
        })?;
        Ok(ObjectStore::new(Target::S3 { client, bucket }, runtime, policy))
    }

    /// A local folder standing in for a bucket: key `a/b.mp4` is stored as `root/a/b.mp4`.
    pub fn local(root: &Path) -> Result<ObjectStore, StoreError> {
        std::fs::create_dir_all(root).map_err(|e| StoreError::Local(format!("creating {}: {e}", root.display())))?;
        Ok(ObjectStore::new(Target::Local { root: root.to_path_buf() }, runtime()?, UploadPolicy::default()))
    }

    fn new(target: Target, runtime: tokio::runtime::Runtime, policy: UploadPolicy) -> ObjectStore {
        ObjectStore { target, runtime, policy, failing: Default::default(), fatal: Default::default(), keep_local: None, presign: None }
    }

    /// Keeps each stored video's file under `dir` at its key (moved out of the spool) instead of
    /// deleting it.
    pub fn keeping_local_copies(mut self, dir: &Path) -> ObjectStore {
        self.keep_local = Some(dir.to_path_buf());
        self
    }

    /// Has each completion carry a presigned GET link valid for `valid` (S3 only; at most 7
    /// days, SigV4's limit).
    pub fn with_presigned_links(mut self, valid: Duration) -> Result<ObjectStore, StoreError> {
        let config = aws_sdk_s3::presigning::PresigningConfig::expires_in(valid)
            .map_err(|e| StoreError::Settings(format!("presigned links valid for {valid:?}: {e}")))?;
        if matches!(self.target, Target::Local { .. }) {
            return Err(StoreError::Settings("presigned links need an S3 bucket (--s3-bucket)".into()));
        }
        self.presign = Some(config);
        Ok(self)
    }

    /// A presigned GET link to `key`, when links are wanted.
    async fn presigned_link(&self, key: &str) -> Result<Option<String>, StoreError> {
        let (Some(config), Target::S3 { client, bucket }) = (&self.presign, &self.target) else { return Ok(None) };
        let config = config.clone();
        let request =
            client.get_object().bucket(bucket).key(key).presigned(config).await.map_err(|e| s3_error(bucket, key, "presigning GetObject", e))?;
        Ok(Some(request.uri().to_string()))
    }

    /// After a video is stored: its spool file moved under the local-copies folder at `key`, or
    /// deleted. Returns where it was kept.
    fn release_spooled(&self, file: &Path, key: &str) -> Option<PathBuf> {
        let Some(dir) = &self.keep_local else {
            let _ = std::fs::remove_file(file);
            return None;
        };
        let kept = local_path(dir, key).and_then(|dest| {
            if let Some(parent) = dest.parent() {
                std::fs::create_dir_all(parent).map_err(|e| StoreError::Local(format!("creating {}: {e}", parent.display())))?;
            }
            // A rename within one file system, else a copy (the spool may be elsewhere).
            std::fs::rename(file, &dest)
                .or_else(|_| std::fs::copy(file, &dest).and_then(|_| std::fs::remove_file(file)))
                .map_err(|e| StoreError::Local(format!("keeping {} as {}: {e}", file.display(), dest.display())))?;
            Ok(dest)
        });
        match kept {
            Ok(dest) => Some(dest),
            Err(error) => {
                tracing::warn!(%error, "the stored video's local copy was not kept");
                None
            }
        }
    }

    /// Why the store is degraded: uploads that have kept failing for longer than
    /// [`UploadPolicy::degraded_after`] (empty: healthy).
    pub fn health_reasons(&self) -> Vec<String> {
        let failing = self.failing();
        let late: Vec<(&String, &Failing)> = failing.iter().filter(|(_, f)| f.since.elapsed() >= self.policy.degraded_after).collect();
        let Some((key, oldest)) = late.iter().max_by_key(|(_, f)| f.since.elapsed()) else { return Vec::new() };
        vec![format!(
            "storing videos in {} has failed for {} s ({} waiting, {key} tried {} times; retrying): {}",
            self.describe(),
            oldest.since.elapsed().as_secs(),
            late.len(),
            oldest.attempts,
            oldest.error
        )]
    }

    /// Uploads failing right now, being retried.
    pub fn retrying(&self) -> usize {
        self.failing().len()
    }

    /// The first upload refused for good (see the module docs), if any.
    pub fn fatal(&self) -> Option<String> {
        self.fatal.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The uploads failing right now (a poisoned lock is still read: it only holds counts).
    fn failing(&self) -> std::sync::MutexGuard<'_, std::collections::BTreeMap<String, Failing>> {
        self.failing.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn refused_for_good(&self, error: String) {
        self.fatal.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(error);
    }

    /// `s3://bucket` or the local folder.
    pub fn describe(&self) -> String {
        match &self.target {
            Target::S3 { bucket, .. } => format!("s3://{bucket}"),
            Target::Local { root } => root.display().to_string(),
        }
    }

    /// Stores `file` under `key`, retrying with backoff; returns the location.
    pub fn put_file_blocking(&self, file: &Path, key: &str) -> Result<String, StoreError> {
        self.runtime.block_on(self.put_file(file, key))
    }

    /// See [`ObjectStore::put_file_blocking`]. Retries until stored unless the error is
    /// [permanent](StoreError::permanent); never gives up otherwise.
    pub async fn put_file(&self, file: &Path, key: &str) -> Result<String, StoreError> {
        let started = Instant::now();
        let mut backoff = self.policy.first_backoff;
        let mut attempt = 1_u32;
        let result = loop {
            match self.put_once(file, key).await {
                Ok(location) => break Ok(location),
                Err(e) if e.permanent() => break Err(e),
                Err(e) => {
                    let degraded = started.elapsed() >= self.policy.degraded_after;
                    if degraded {
                        tracing::error!(attempt, error = %e, failing_s = started.elapsed().as_secs(), retry_in_ms = backoff.as_millis() as u64, "upload still failing; retrying");
                    } else {
                        tracing::warn!(attempt, error = %e, retry_in_ms = backoff.as_millis() as u64, "upload failed; retrying");
                    }
                    self.failing().insert(key.to_string(), Failing { since: started, attempts: attempt, error: e.to_string() });
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(self.policy.max_backoff);
                    attempt = attempt.saturating_add(1);
                }
            }
        };
        self.failing().remove(key);
        result
    }

    async fn put_once(&self, file: &Path, key: &str) -> Result<String, StoreError> {
        match &self.target {
            Target::Local { root } => {
                let dest = local_path(root, key)?;
                if let Some(parent) = dest.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| StoreError::Local(format!("creating {}: {e}", parent.display())))?;
                }
                // Copied under a temporary name beside it, then renamed: a reader never sees a
                // partial file at the final path, and a failed copy leaves none there.
                let partial = dest.with_file_name(format!(".{}.partial", dest.file_name().map(|n| n.to_string_lossy()).unwrap_or_default()));
                let copied = std::fs::copy(file, &partial).and_then(|_| std::fs::rename(&partial, &dest));
                if let Err(e) = copied {
                    let _ = std::fs::remove_file(&partial);
                    let error = format!("copying {} to {}: {e}", file.display(), dest.display());
                    // A spool file gone cannot come back.
                    return Err(if e.kind() == std::io::ErrorKind::NotFound { StoreError::Refused(error) } else { StoreError::Local(error) });
                }
                Ok(dest.display().to_string())
            }
            Target::S3 { client, bucket } => {
                let size = std::fs::metadata(file).map_err(|e| StoreError::Refused(format!("reading {}: {e}", file.display())))?.len();
                if size >= self.policy.multipart_threshold {
                    put_multipart(client, bucket, key, file, size, self.policy.part_size).await?;
                } else {
                    put_single(client, bucket, key, file).await?;
                }
                Ok(format!("s3://{bucket}/{key}"))
            }
        }
    }
}

fn error_text<E: std::error::Error>(error: &E) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The HTTP status the server answered a failed request with, if it answered.
fn status<E>(error: &aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>) -> Option<u16> {
    error.raw_response().map(|r| r.status().as_u16())
}

/// A failed S3 request as a [`StoreError`] (see [`StoreError::permanent`]).
fn s3_error<E: std::error::Error + 'static>(
    bucket: &str,
    key: &str,
    operation: &'static str,
    error: aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> StoreError {
    StoreError::S3 { operation, bucket: bucket.into(), key: key.into(), status: status(&error), reason: error_text(&error) }
}

async fn put_single(client: &aws_sdk_s3::Client, bucket: &str, key: &str, file: &Path) -> Result<(), StoreError> {
    let body = ByteStream::from_path(file).await.map_err(|e| StoreError::S3 {
        operation: "reading the file for",
        bucket: bucket.into(),
        key: key.into(),
        reason: e.to_string(),
        status: None,
    })?;
    client
        .put_object()
        .bucket(bucket)
        .key(key)
        .content_type("video/mp4")
        .body(body)
        .send()
        .await
        .map_err(|e| s3_error(bucket, key, "PutObject", e))?;
    Ok(())
}

async fn put_multipart(client: &aws_sdk_s3::Client, bucket: &str, key: &str, file: &Path, size: u64, part_size: u64) -> Result<(), StoreError> {
    let fail = |operation: &'static str, reason: String| StoreError::S3 { operation, bucket: bucket.into(), key: key.into(), reason, status: None };
    let created = client
        .create_multipart_upload()
        .bucket(bucket)
        .key(key)
        .content_type("video/mp4")
        .send()
        .await
        .map_err(|e| s3_error(bucket, key, "CreateMultipartUpload", e))?;
    let upload_id = created.upload_id().ok_or_else(|| fail("CreateMultipartUpload", "no upload id in the answer".into()))?.to_string();
    let result: Result<Vec<CompletedPart>, StoreError> = async {
        let mut parts = Vec::new();
        let part_size = part_size.max(5 << 20);
        let mut offset = 0;
        let mut number = 1;
        while offset < size {
            let length = part_size.min(size - offset);
            let body = ByteStream::read_from()
                .path(file)
                .offset(offset)
                .length(aws_sdk_s3::primitives::Length::Exact(length))
                .build()
                .await
                .map_err(|e| fail("reading a part for", e.to_string()))?;
            let part = client
                .upload_part()
                .bucket(bucket)
                .key(key)
                .upload_id(&upload_id)
                .part_number(number)
                .body(body)
                .send()
                .await
                .map_err(|e| s3_error(bucket, key, "UploadPart", e))?;
            parts.push(CompletedPart::builder().part_number(number).set_e_tag(part.e_tag().map(String::from)).build());
            offset += length;
            number += 1;
        }
        Ok(parts)
    }
    .await;
    match result {
        Ok(parts) => {
            client
                .complete_multipart_upload()
                .bucket(bucket)
                .key(key)
                .upload_id(&upload_id)
                .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
                .send()
                .await
                .map_err(|e| s3_error(bucket, key, "CompleteMultipartUpload", e))?;
            Ok(())
        }
        Err(e) => {
            let _ = client.abort_multipart_upload().bucket(bucket).key(key).upload_id(&upload_id).send().await;
            Err(e)
        }
    }
}

/// Counts of one worker's uploads.
#[derive(Clone, Debug, Default)]
pub struct UploadStats {
    pub stored: Arc<std::sync::atomic::AtomicU64>,
    pub failed: Arc<std::sync::atomic::AtomicU64>,
    /// Bytes of the videos stored.
    pub bytes: Arc<std::sync::atomic::AtomicU64>,
    /// Uploads under way (retrying ones included; refused ones not).
    pub in_flight: Arc<std::sync::atomic::AtomicU64>,
}

/// See the module docs. Spooled files are removed once stored in S3 (or copied to the folder).
pub fn upload_videos<'s>(
    videos: Stream<'s, EventTime, Vec<FinishedVideo>>,
    store: Arc<ObjectStore>,
) -> (Stream<'s, EventTime, Vec<VideoCompletion>>, UploadStats) {
    let stats = UploadStats::default();
    let counts = stats.clone();
    let scope = videos.scope();
    let stream = videos.unary_frontier(Pipeline, "UploadVideos", move |initial, info| {
        drop(initial);
        let activator = Arc::new(scope.worker().sync_activator_for(info.address.to_vec()));
        // `None`: refused for good (the capability is kept: see the module docs).
        let (done_tx, done_rx) = mpsc::channel::<(u64, Option<VideoCompletion>)>();
        let mut in_flight: Vec<(u64, Capability<EventTime>)> = Vec::new();
        let mut refused: Vec<Capability<EventTime>> = Vec::new();
        let mut next_id = 0_u64;
        move |(input, _frontier), output| {
            input.for_each(|cap, data| {
                let Some(cap) = cap.retain_least(0) else { return };
                for video in data.drain(..) {
                    let id = next_id;
                    next_id += 1;
                    in_flight.push((id, cap.clone()));
                    counts.in_flight.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let (store, tx, activator, counts) = (store.clone(), done_tx.clone(), activator.clone(), counts.clone());
                    let handle = store.runtime.handle().clone();
                    handle.spawn(async move {
                        let mut completion = Some(video.completion);
                        let announced = completion.as_mut().expect("just set");
                        use std::sync::atomic::Ordering::Relaxed;
                        match &video.file {
                            Some(file) if announced.error.is_none() => match store.put_file(&file.path, &announced.key).await {
                                Ok(location) => {
                                    announced.location = Some(location);
                                    announced.end_to_stored_ms = Some(now_ms().saturating_sub(video.end_produced_at_ms));
                                    counts.stored.fetch_add(1, Relaxed);
                                    counts.bytes.fetch_add(file.bytes, Relaxed);
                                    match store.presigned_link(&announced.key).await {
                                        Ok(link) => announced.presigned_url = link,
                                        Err(error) => tracing::warn!(%error, video = %announced.video_id, "no presigned link for the stored video"),
                                    }
                                    if let Some(kept) = store.release_spooled(&file.path, &announced.key) {
                                        tracing::debug!(video = %announced.video_id, kept = %kept.display(), "local copy kept");
                                    }
                                }
                                Err(e) => {
                                    let error = format!("storing video `{}` at {}: {e}", announced.video_id, announced.key);
                                    tracing::error!(video = %announced.video_id, error = %e, spooled = %file.path.display(), "the store refused the overlayed video for good: the video pipeline stops, the video's frames stay uncommitted and the next run stores it");
                                    store.refused_for_good(error);
                                    counts.failed.fetch_add(1, Relaxed);
                                    completion = None;
                                }
                            },
                            // Not encoded, or not scored whole (its error says why): announced
                            // as such, and its spooled file (if any) let go.
                            _ => {
                                counts.failed.fetch_add(1, Relaxed);
                                if let Some(file) = &video.file {
                                    if let Err(error) = std::fs::remove_file(&file.path) {
                                        tracing::warn!(%error, path = %file.path.display(), "removing the spooled file of a video not stored");
                                    }
                                }
                            }
                        }
                        counts.in_flight.fetch_sub(1, Relaxed);
                        // Let go of the store before the worker learns the upload ended: the
                        // last handle must be dropped by the worker, never inside the runtime.
                        drop(store);
                        let _ = tx.send((id, completion));
                        let _ = activator.activate();
                    });
                }
            });
            while let Ok((id, completion)) = done_rx.try_recv() {
                if let Some(at) = in_flight.iter().position(|(i, _)| *i == id) {
                    let (_, cap) = in_flight.swap_remove(at);
                    match completion {
                        Some(completion) => output.session(&cap).give(completion),
                        None => refused.push(cap),
                    }
                }
            }
        }
    });
    (stream, stats)
}

/// Where `key` is stored under a local `root`: a relative path of plain components only, so no
/// key (`../x`, `/etc/x`) can name a file outside the folder.
fn local_path(root: &Path, key: &str) -> Result<PathBuf, StoreError> {
    let relative = Path::new(key);
    let plain = relative.components().all(|c| matches!(c, std::path::Component::Normal(_)));
    if key.is_empty() || !plain {
        return Err(StoreError::Refused(format!("refusing to store under key {key:?}: not a plain relative path")));
    }
    Ok(root.join(relative))
}

#[cfg(test)]
mod tests {
    use super::ObjectStore;

    #[test]
    fn a_local_store_writes_only_under_its_folder_and_never_a_partial_file() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("videos-out");
        let store = ObjectStore::local(&root).unwrap();
        let source = dir.path().join("clip.mp4");
        std::fs::write(&source, b"a whole video").unwrap();
        for key in ["../escaped.mp4", "videos/../../escaped.mp4", "/tmp/escaped.mp4", ""] {
            let refused = store.put_file_blocking(&source, key).expect_err(key).to_string();
            assert!(refused.contains("not a plain relative path"), "{key}: {refused}");
        }
        assert!(!dir.path().join("escaped.mp4").exists() && !std::path::Path::new("/tmp/escaped.mp4").exists());
        // Stored whole at its key, with no temporary file left beside it.
        let stored = store.put_file_blocking(&source, "videos/cam-1_with_heatmaps.mp4").unwrap();
        assert_eq!(std::fs::read(&stored).unwrap(), b"a whole video");
        let names: Vec<_> = std::fs::read_dir(root.join("videos")).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("cam-1_with_heatmaps.mp4")]);
        // A copy that fails leaves the previous video at the key as it was, and nothing partial.
        let missing = dir.path().join("not-there.mp4");
        assert!(store.put_file_blocking(&missing, "videos/cam-1_with_heatmaps.mp4").is_err());
        assert_eq!(std::fs::read(&stored).unwrap(), b"a whole video");
        assert_eq!(std::fs::read_dir(root.join("videos")).unwrap().count(), 1);
    }
}
