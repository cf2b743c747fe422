//! One file per CLI command; each takes its parsed flags and does the work.

pub mod demo;
pub mod gen;
pub mod group;
pub mod produce;
pub mod run;
pub mod tail;
pub mod topics;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A flag set on Ctrl-C / SIGTERM: sources stop reading, drain, flush, commit and exit 0.
pub fn shutdown_flag() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let handler_flag = flag.clone();
    if let Err(error) = ctrlc::set_handler(move || {
        tracing::info!("shutdown requested: draining windows, flushing sinks, committing offsets");
        handler_flag.store(true, Ordering::SeqCst);
    }) {
        tracing::warn!(%error, "could not install the Ctrl-C handler");
    }
    flag
}
