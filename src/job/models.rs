//! What the model and storage flags choose: which ONNX models run and how they are fed, and
//! where overlayed videos are stored. Loading them to check is `preflight.rs`'s.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use pitwall_connectors::onnx::fire::FireOptions;
use pitwall_connectors::onnx::{ModelSource, BUILTIN_FIRE_MODEL, BUILTIN_PACE_MODEL};
use pitwall_connectors::store::{ObjectStore, S3Settings, UploadPolicy};
use pitwall_dataflows::infer::Batching;
use pitwall_dataflows::video::detect::YoloDecode;

use crate::cli::{ModelArgs, StorageArgs};

/// The fire model the flags choose.
pub fn fire_source(models: &ModelArgs) -> ModelSource {
    models.fire_model.clone().map(ModelSource::File).unwrap_or(BUILTIN_FIRE_MODEL)
}

/// The telemetry model the flags choose.
pub fn predictions_source(models: &ModelArgs) -> ModelSource {
    models.predictions_model.clone().map(ModelSource::File).unwrap_or(BUILTIN_PACE_MODEL)
}

/// How frames are fed to the fire model and its outputs read.
pub fn fire_options(models: &ModelArgs) -> FireOptions {
    FireOptions {
        kind: models.fire_model_kind,
        width: models.model_input.0,
        height: models.model_input.1,
        intra_threads: models.intra_threads,
        yolo: YoloDecode { classes: models.fire_classes.clone(), scores: models.fire_scores, ..YoloDecode::default() },
        ..FireOptions::default()
    }
}

/// How items are batched for a model run.
pub fn batching(models: &ModelArgs) -> Batching {
    Batching { max_batch: models.infer_batch.max(1), max_wait: Duration::from_millis(models.infer_wait_ms) }
}

/// Where overlayed videos are stored: S3 when a bucket is set, else the local folder.
pub fn open_store(storage: &StorageArgs) -> Result<Arc<ObjectStore>> {
    let store = match &storage.s3_bucket {
        Some(bucket) if !bucket.is_empty() => {
            let settings = S3Settings {
                bucket: bucket.clone(),
                endpoint: storage.s3_endpoint.clone(),
                region: storage.s3_region.clone(),
                access_key: storage.s3_access_key.clone(),
                secret_key: storage.s3_secret_key.clone(),
                path_style: storage.s3_endpoint.is_some(),
            };
            let policy = UploadPolicy {
                multipart_threshold: storage.s3_multipart_mib.max(5) << 20,
                degraded_after: Duration::from_secs(storage.s3_degraded_after_s),
                ..UploadPolicy::default()
            };
            let mut store = ObjectStore::s3(&settings, policy).with_context(|| format!("opening {settings:?}"))?;
            if !storage.s3_delete_local_after_upload {
                store = store.keeping_local_copies(&storage.video_out);
            }
            store
        }
        _ => ObjectStore::local(&storage.video_out)?,
    };
    let store = match storage.s3_presign_secs {
        Some(secs) => store.with_presigned_links(Duration::from_secs(secs))?,
        None => store,
    };
    Ok(Arc::new(store))
}

/// The spool folder videos are encoded into before they are stored.
pub fn spool_dir(storage: &StorageArgs) -> PathBuf {
    storage.spool.clone().unwrap_or_else(|| std::env::temp_dir().join(format!("pitwall-spool-{}", std::process::id())))
}
