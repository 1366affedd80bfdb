//! Exporters from the zoo IR to the runtimes' file formats, written through the formats'
//! maintained schema types (ONNX protobuf, TFLite flatbuffers), never by hand.
//!
//! Every exported model takes the zoo's NHWC input `[1, H, W, 3]` and returns `[1, 1001]`
//! logits, so every backend is fed the same buffer and compared on the same output.

pub mod onnx;
pub mod tflite;

use mobilebench_models::Model;

/// How batch norm reaches the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BnMode {
    /// Folded into the convolutions' kernels and biases (what deployments ship).
    #[default]
    Fused,
    /// Kept as separate ops after each convolution (BatchNormalization in ONNX; MUL + ADD in
    /// TFLite, which has no batch-norm op).
    Separate,
}

impl std::str::FromStr for BnMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "fused" => Ok(BnMode::Fused),
            "separate" => Ok(BnMode::Separate),
            _ => Err(format!("`{s}`: expected `fused` or `separate`")),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Onnx,
    Tflite,
}

impl Format {
    pub fn extension(self) -> &'static str {
        match self {
            Format::Onnx => "onnx",
            Format::Tflite => "tflite",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("cannot export {what} to {format}")]
    Unsupported { format: &'static str, what: String },
    #[error("--bn separate needs a model with batch norm, and {0} has none")]
    NoBatchNorm(String),
}

/// Exports `model` to `format` in memory.
pub fn export(model: &Model, format: Format, bn: BnMode) -> Result<Vec<u8>, ExportError> {
    match format {
        Format::Onnx => onnx::export(model, bn),
        Format::Tflite => tflite::export(model, bn),
    }
}

/// The model in the requested BN form.
fn prepare(model: &Model, bn: BnMode) -> Result<Model, ExportError> {
    match bn {
        BnMode::Fused => Ok(model.fold_batch_norm()),
        BnMode::Separate if model.has_batch_norm() => Ok(model.clone()),
        BnMode::Separate => Err(ExportError::NoBatchNorm(model.name.clone())),
    }
}
