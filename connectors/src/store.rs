//! Where finished videos go: an S3 bucket (aws-sdk-s3; any S3-compatible server with
//! `endpoint` + path-style) or, without S3 settings, a local folder with the same key layout.
//! Uploads retry with exponential backoff through outages; files above the multipart threshold
//! go up in parts.
//!
//! `upload_videos` is the timely operator: each finished video is uploaded on a background
//! runtime while the operator holds a capability for it, and its completion record (with the
//! location, or the error) is emitted once the upload has ended. A probe after the completions
//! sink therefore passes a video's time only once the object exists.

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
    #[error("{operation} s3://{bucket}/{key}: {reason}")]
    S3 { operation: &'static str, bucket: String, key: String, reason: String },
    #[error("{0}")]
    Local(String),
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

/// How uploads behave.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct UploadPolicy {
    /// Files at least this large go up in parts of `part_size` (S3's minimum part is 5 MiB).
    pub multipart_threshold: u64,
    pub part_size: u64,
    /// Give up on an object after retrying for this long.
    pub give_up_after: Duration,
    pub first_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for UploadPolicy {
    fn default() -> Self {
        UploadPolicy {
            multipart_threshold: 16 << 20,
            part_size: 8 << 20,
            give_up_after: Duration::from_secs(600),
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
        Ok(ObjectStore { target: Target::S3 { client, bucket }, runtime, policy })
    }

    /// A local folder standing in for a bucket: key `a/b.mp4` is stored as `root/a/b.mp4`.
    pub fn local(root: &Path) -> Result<ObjectStore, StoreError> {
        std::fs::create_dir_all(root).map_err(|e| StoreError::Local(format!("creating {}: {e}", root.display())))?;
        Ok(ObjectStore { target: Target::Local { root: root.to_path_buf() }, runtime: runtime()?, policy: UploadPolicy::default() })
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

    /// See [`ObjectStore::put_file_blocking`].
    pub async fn put_file(&self, file: &Path, key: &str) -> Result<String, StoreError> {
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
                    return Err(StoreError::Local(format!("copying {} to {}: {e}", file.display(), dest.display())));
                }
                Ok(dest.display().to_string())
            }
            Target::S3 { client, bucket } => {
                let size = std::fs::metadata(file).map_err(|e| StoreError::Local(format!("reading {}: {e}", file.display())))?.len();
                let started = Instant::now();
                let mut backoff = self.policy.first_backoff;
                let mut attempt = 1;
                loop {
                    let result = if size >= self.policy.multipart_threshold {
                        put_multipart(client, bucket, key, file, size, self.policy.part_size).await
                    } else {
                        put_single(client, bucket, key, file).await
                    };
                    match result {
                        Ok(()) => return Ok(format!("s3://{bucket}/{key}")),
                        Err(e) if started.elapsed() + backoff < self.policy.give_up_after => {
                            tracing::warn!(attempt, error = %e, retry_in_ms = backoff.as_millis() as u64, "upload failed; retrying");
                            tokio::time::sleep(backoff).await;
                            backoff = (backoff * 2).min(self.policy.max_backoff);
                            attempt += 1;
                        }
                        Err(e) => return Err(e),
                    }
                }
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

async fn put_single(client: &aws_sdk_s3::Client, bucket: &str, key: &str, file: &Path) -> Result<(), StoreError> {
    let fail = |operation: &'static str, reason: String| StoreError::S3 { operation, bucket: bucket.into(), key: key.into(), reason };
    let body = ByteStream::from_path(file).await.map_err(|e| fail("reading the file for", e.to_string()))?;
    client.put_object().bucket(bucket).key(key).content_type("video/mp4").body(body).send().await.map_err(|e| fail("PutObject", error_text(&e)))?;
    Ok(())
}

async fn put_multipart(client: &aws_sdk_s3::Client, bucket: &str, key: &str, file: &Path, size: u64, part_size: u64) -> Result<(), StoreError> {
    let fail = |operation: &'static str, reason: String| StoreError::S3 { operation, bucket: bucket.into(), key: key.into(), reason };
    let created = client
        .create_multipart_upload()
        .bucket(bucket)
        .key(key)
        .content_type("video/mp4")
        .send()
        .await
        .map_err(|e| fail("CreateMultipartUpload", error_text(&e)))?;
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
                .map_err(|e| fail("UploadPart", error_text(&e)))?;
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
                .map_err(|e| fail("CompleteMultipartUpload", error_text(&e)))?;
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
        let (done_tx, done_rx) = mpsc::channel::<(u64, VideoCompletion)>();
        let mut in_flight: Vec<(u64, Capability<EventTime>)> = Vec::new();
        let mut next_id = 0_u64;
        move |(input, _frontier), output| {
            input.for_each(|cap, data| {
                let Some(cap) = cap.retain_least(0) else { return };
                for video in data.drain(..) {
                    let id = next_id;
                    next_id += 1;
                    in_flight.push((id, cap.clone()));
                    let (store, tx, activator, counts) = (store.clone(), done_tx.clone(), activator.clone(), counts.clone());
                    let handle = store.runtime.handle().clone();
                    handle.spawn(async move {
                        let mut completion = video.completion;
                        match &video.file {
                            Some(file) if completion.error.is_none() => match store.put_file(&file.path, &completion.key).await {
                                Ok(location) => {
                                    completion.location = Some(location);
                                    completion.end_to_stored_ms = Some(now_ms().saturating_sub(video.end_produced_at_ms));
                                    counts.stored.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                    counts.bytes.fetch_add(file.bytes, std::sync::atomic::Ordering::Relaxed);
                                    let _ = std::fs::remove_file(&file.path);
                                }
                                Err(e) => {
                                    tracing::error!(video = %completion.video_id, error = %e, "could not store the overlayed video; the file stays in the spool folder");
                                    completion.error = Some(format!("storing {}: {e}", file.path.display()));
                                    counts.failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                }
                            },
                            _ => {
                                counts.failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            }
                        }
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
                    output.session(&cap).give(completion);
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
        return Err(StoreError::Local(format!("refusing to store under key {key:?}: not a plain relative path")));
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
