//! A tabular model over window features (`[N, F]` in, `[N, 1]` out), as the [`BatchModel`] of
//! the telemetry predictions.

use pitwall_dataflows::infer::BatchModel;
use pitwall_dataflows::predict::{window_features, ModelCard, WINDOW_FEATURES};
use pitwall_dataflows::records::WindowResult;

use super::{ModelSource, OnnxError, OnnxModel};

/// A loaded window model; one per worker.
#[derive(Debug)]
pub struct WindowModel {
    model: OnnxModel,
    pub card: ModelCard,
    scratch: Vec<f32>,
}

impl WindowModel {
    /// Loads and checks the model: input `[N, 8]`, one output.
    pub fn load(source: &ModelSource, intra_threads: usize) -> Result<WindowModel, OnnxError> {
        let model = OnnxModel::load(source, intra_threads)?;
        let fail = |reason: String| OnnxError::Model { path: source.describe(), reason };
        let features = WINDOW_FEATURES.len() as i64;
        if model.input_shape.len() != 2 || (model.input_shape[1] != features && model.input_shape[1] > 0) {
            return Err(fail(format!(
                "input `{}` must be [N, {features}] ({}), is {:?}",
                model.input,
                WINDOW_FEATURES.join(", "),
                model.input_shape
            )));
        }
        if model.outputs.len() != 1 {
            return Err(fail(format!("expected one output [N, 1], the model has {:?}", model.outputs)));
        }
        let (version, unit) = model.card_metadata();
        let card = ModelCard { model_type: model.name.clone(), model: format!("{}.onnx", model.name), version, unit };
        Ok(WindowModel { model, card, scratch: Vec::new() })
    }
}

impl BatchModel for WindowModel {
    type Item = WindowResult;
    type Output = f32;

    fn wants(&self, _item: &WindowResult) -> bool {
        true
    }

    fn run(&mut self, batch: &[WindowResult]) -> Result<Vec<f32>, String> {
        self.scratch.clear();
        for window in batch {
            self.scratch.extend_from_slice(&window_features(window));
        }
        let outputs = self.model.run(&[batch.len() as i64, WINDOW_FEATURES.len() as i64], &self.scratch).map_err(|e| e.to_string())?;
        let out = &outputs[0];
        if out.data.len() != batch.len() {
            return Err(format!("model `{}` returned {} values for {} windows", self.model.name, out.data.len(), batch.len()));
        }
        Ok(out.data.clone())
    }
}
