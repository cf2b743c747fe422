//! ONNX Runtime (the `ort` crate, `load-dynamic`): the runtime library is loaded at start-up
//! from `--onnxruntime PATH`, `ORT_DYLIB_PATH`, or the `onnxruntime` Python wheel that the set-up
//! script installs (found by asking `python3`). Nothing is downloaded.
//!
//! `OnnxModel` is one session with float inputs and outputs; `fire` and `tabular` turn it into
//! the [`BatchModel`](pitwall_dataflows::infer::BatchModel)s of the two pipelines.

pub mod fire;
pub mod tabular;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ort::environment::Environment;
use ort::session::Session;
use ort::value::TensorRef;
use thiserror::Error;

/// The fire model built into the binary (`models/fire_colour.onnx`, see `models/make_fire_model.py`).
pub const BUILTIN_FIRE_MODEL: ModelSource = ModelSource::Builtin { name: "fire_colour", bytes: include_bytes!("../../../models/fire_colour.onnx") };
/// The telemetry model built into the binary (`models/pace_next5s.onnx`, see `models/make_pace_model.py`).
pub const BUILTIN_PACE_MODEL: ModelSource = ModelSource::Builtin { name: "pace_next5s", bytes: include_bytes!("../../../models/pace_next5s.onnx") };

/// A model or the runtime could not be loaded or run.
#[derive(Debug, Error)]
pub enum OnnxError {
    #[error("ONNX Runtime library not found: {0}")]
    RuntimeMissing(String),
    #[error("loading ONNX Runtime from {path}: {reason}")]
    Runtime { path: String, reason: String },
    #[error("loading model {path}: {reason}")]
    Model { path: String, reason: String },
    #[error("running model {model}: {reason}")]
    Run { model: String, reason: String },
}

/// Where the runtime library is: the explicit path, else `ORT_DYLIB_PATH`, else the
/// `onnxruntime` wheel's `capi/libonnxruntime.so*` (asks `python3` where the package is).
pub fn locate_runtime(explicit: Option<&Path>) -> Result<PathBuf, OnnxError> {
    if let Some(path) = explicit {
        return Ok(path.to_path_buf());
    }
    if let Some(path) = std::env::var_os("ORT_DYLIB_PATH") {
        return Ok(PathBuf::from(path));
    }
    let output = std::process::Command::new("python3")
        // find_spec locates the package without importing it (importing pulls in numpy).
        .args(["-c", "import importlib.util, os; s = importlib.util.find_spec('onnxruntime'); print(os.path.join(list(s.submodule_search_locations)[0], 'capi'))"])
        .output()
        .map_err(|e| OnnxError::RuntimeMissing(format!("no --onnxruntime, no ORT_DYLIB_PATH, and python3 could not be run ({e})")))?;
    if !output.status.success() {
        return Err(OnnxError::RuntimeMissing(
            "no --onnxruntime, no ORT_DYLIB_PATH, and python3 has no `onnxruntime` package (run scripts/setup.sh, or pip install onnxruntime)".into(),
        ));
    }
    let capi = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    let mut candidates: Vec<PathBuf> = std::fs::read_dir(&capi)
        .map_err(|e| OnnxError::RuntimeMissing(format!("reading {}: {e}", capi.display())))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libonnxruntime.so") || n == "libonnxruntime.dylib" || n == "onnxruntime.dll")
        })
        .collect();
    candidates.sort();
    candidates.pop().ok_or_else(|| OnnxError::RuntimeMissing(format!("no libonnxruntime in {}", capi.display())))
}

/// Loads the runtime library once per process; later calls (with any path) return the first
/// outcome. [`OnnxModel::load`] calls it with no path, so call it first to choose the library.
pub fn init_runtime(explicit: Option<&Path>) -> Result<&'static Environment, OnnxError> {
    static RUNTIME: OnceLock<Result<Environment, String>> = OnceLock::new();
    let outcome = RUNTIME.get_or_init(|| {
        let path = locate_runtime(explicit).map_err(|e| e.to_string())?;
        if !path.exists() {
            return Err(OnnxError::RuntimeMissing(format!("{} does not exist", path.display())).to_string());
        }
        let shown = path.display().to_string();
        let fail = |e: &dyn std::fmt::Display| OnnxError::Runtime { path: shown.clone(), reason: e.to_string() }.to_string();
        let environment = ort::init_from(&path).map_err(|e| fail(&e))?.with_name("pitwall").build().map_err(|e| fail(&e))?;
        tracing::info!(library = %shown, "ONNX Runtime loaded");
        Ok(environment)
    });
    outcome.as_ref().map_err(|reason| OnnxError::RuntimeMissing(reason.clone()))
}

/// Where a model comes from: a file, or bytes built into the binary.
#[derive(Clone, Debug, PartialEq)]
pub enum ModelSource {
    File(PathBuf),
    Builtin { name: &'static str, bytes: &'static [u8] },
}

impl ModelSource {
    pub fn describe(&self) -> String {
        match self {
            ModelSource::File(path) => path.display().to_string(),
            ModelSource::Builtin { name, .. } => format!("built-in {name}.onnx"),
        }
    }
}

/// One float output of a run.
#[derive(Clone, Debug, PartialEq)]
pub struct Output {
    pub name: String,
    pub shape: Vec<i64>,
    pub data: Vec<f32>,
}

/// One ONNX session with a single float input.
pub struct OnnxModel {
    session: Session,
    pub path: PathBuf,
    /// The file name without extension: what records name the model by.
    pub name: String,
    pub input: String,
    /// The input's shape as the model declares it (-1 for free dimensions).
    pub input_shape: Vec<i64>,
    pub outputs: Vec<String>,
}

impl std::fmt::Debug for OnnxModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnnxModel").field("path", &self.path).field("input", &self.input).field("outputs", &self.outputs).finish()
    }
}

impl OnnxModel {
    /// Loads `path` with `intra_threads` threads per run (0: ONNX Runtime's default). The
    /// runtime must be initialised first ([`init_runtime`]).
    pub fn load(source: &ModelSource, intra_threads: usize) -> Result<OnnxModel, OnnxError> {
        let shown = source.describe();
        let fail = |reason: String| OnnxError::Model { path: shown.clone(), reason };
        if let ModelSource::File(path) = source {
            if !path.is_file() {
                return Err(fail("no such file".into()));
            }
        }
        let environment = init_runtime(None)?;
        let mut builder = Session::builder(environment).map_err(|e| fail(e.to_string()))?;
        if intra_threads > 0 {
            builder = builder.with_intra_threads(intra_threads).map_err(|e| fail(e.to_string()))?;
        }
        let (session, path, name) = match source {
            ModelSource::File(path) => {
                let session = builder.commit_from_file(path).map_err(|e| fail(e.to_string()))?;
                (session, path.clone(), path.file_stem().and_then(|s| s.to_str()).unwrap_or("model").to_string())
            }
            ModelSource::Builtin { name, bytes } => {
                let session = builder.commit_from_memory(bytes).map_err(|e| fail(e.to_string()))?;
                (session, PathBuf::from(format!("{name}.onnx")), name.to_string())
            }
        };
        let inputs = session.inputs();
        if inputs.len() != 1 {
            return Err(fail(format!("expected one input, the model has {}", inputs.len())));
        }
        let input = inputs[0].name().to_string();
        let input_shape = match inputs[0].dtype() {
            ort::value::ValueType::Tensor { ty: ort::value::TensorElementType::Float32, shape, .. } => shape.iter().copied().collect(),
            other => return Err(fail(format!("input `{input}` must be a float32 tensor, is {other}"))),
        };
        let outputs = session.outputs().iter().map(|o| o.name().to_string()).collect();
        Ok(OnnxModel { session, path, name, input, input_shape, outputs })
    }

    /// The model's ONNX `model_version` and its `unit` metadata entry (if any): what
    /// prediction records carry.
    pub fn card_metadata(&self) -> (i64, String) {
        match self.session.metadata() {
            Ok(meta) => (meta.version().unwrap_or(0), meta.custom("unit").unwrap_or_else(|| "km/h".into())),
            Err(_) => (0, "km/h".into()),
        }
    }

    /// Runs the model on one float tensor; returns every output as floats.
    pub fn run(&mut self, shape: &[i64], data: &[f32]) -> Result<Vec<Output>, OnnxError> {
        let fail = |reason: String| OnnxError::Run { model: self.name.clone(), reason };
        let tensor = TensorRef::from_array_view((shape.to_vec(), data)).map_err(|e| fail(e.to_string()))?;
        let outputs = self
            .session
            .run(ort::inputs![self.input.as_str() => tensor])
            .map_err(|e| OnnxError::Run { model: self.name.clone(), reason: e.to_string() })?;
        let mut result = Vec::with_capacity(self.outputs.len());
        for name in &self.outputs {
            let value = &outputs[name.as_str()];
            let (shape, data) = value
                .try_extract_tensor::<f32>()
                .map_err(|e| OnnxError::Run { model: self.name.clone(), reason: format!("output `{name}`: {e}") })?;
            result.push(Output { name: name.clone(), shape: shape.iter().copied().collect(), data: data.to_vec() });
        }
        Ok(result)
    }
}
