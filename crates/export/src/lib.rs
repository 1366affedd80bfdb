//! Exporters from the zoo IR to the runtimes' file formats, written through the formats'
//! maintained schema types (ONNX protobuf, TFLite flatbuffers), never by hand.
//!
//! Every exported model takes the zoo's NHWC input `[1, H, W, 3]` and returns `[1, 1001]`
//! logits, so every backend is fed the same buffer and compared on the same output.

pub mod onnx;
mod proto2;
pub mod tflite;

pub use mobilebench_models::BnMode;
use mobilebench_models::{Model, ModelError};

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
    #[error(transparent)]
    Model(#[from] ModelError),
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
    Ok(model.with_bn(bn)?)
}
