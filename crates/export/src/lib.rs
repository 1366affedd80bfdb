//! Exporters from the zoo IR to the runtimes' file formats, written through the formats'
//! maintained schema types (ONNX protobuf, TFLite flatbuffers), never by hand.
//!
//! Every exported model takes the zoo's NHWC input `[1, H, W, 3]` and returns `[1, classes]` (1001 for V1–V3, 1000 for V4)
//! logits, so every backend is fed the same buffer and compared on the same output.

pub mod onnx;
pub mod onnx_qdq;
mod proto2;
pub mod tflite;
mod tflite_attention;
pub mod tflite_int8;
pub mod tflite_read;

pub use mobilebench_models::BnMode;
use mobilebench_models::{Model, ModelError, QuantModel, WeightRange};

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

/// The weight range of a format's int8 files: TFLite's spec range, and ONNX Runtime's
/// `reduce_range` for .onnx (see [`WeightRange::Reduced`]; measured on this project's x86
/// machine without VNNI, MobileNetV3-Small: full-range weights put ORT's int8 kernels 0.55
/// (max relative difference) away from the same file run op by op in float, 7-bit weights
/// 0.0).
pub fn int8_weight_range(format: Format) -> WeightRange {
    match format {
        Format::Tflite => WeightRange::Full,
        Format::Onnx => WeightRange::Reduced,
    }
}

/// Exports an int8 model to `format` in memory: a fully-integer .tflite or a QDQ .onnx,
/// both with float input and output.
pub fn export_int8(model: &QuantModel, format: Format) -> Result<Vec<u8>, ExportError> {
    if model.weight_range != int8_weight_range(format) {
        return Err(ExportError::Unsupported {
            format: format.extension(),
            what: format!(
                "{} with {:?} weights (this format's int8 files use {:?})",
                model.name,
                model.weight_range,
                int8_weight_range(format)
            ),
        });
    }
    match format {
        Format::Onnx => onnx_qdq::export(model),
        Format::Tflite => Ok(tflite_int8::export(model)),
    }
}

/// A kernel from our HWIO layout (`[kh][kw][in][out]`) to another order of the same axes:
/// `at(ky, kx, ci, co)` is where that element goes.
fn relayout_hwio<T: Copy + Default>(
    kernel: &[T],
    k: usize,
    cin: usize,
    cout: usize,
    at: impl Fn(usize, usize, usize, usize) -> usize,
) -> Vec<T> {
    let mut out = vec![T::default(); kernel.len()];
    for ky in 0..k {
        for kx in 0..k {
            for ci in 0..cin {
                for co in 0..cout {
                    out[at(ky, kx, ci, co)] = kernel[((ky * k + kx) * cin + ci) * cout + co];
                }
            }
        }
    }
    out
}

/// The model in the requested BN form.
fn prepare(model: &Model, bn: BnMode) -> Result<Model, ExportError> {
    Ok(model.with_bn(bn)?)
}
