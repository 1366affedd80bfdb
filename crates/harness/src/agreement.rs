//! What each pair is fed and compared with: zoo models are exported once per file format into
//! the run directory; outputs are compared with a reference on the same weights and input
//! (the naive evaluator for `native`, the native engine for every other backend on a zoo
//! model, the first backend that ran for a user's file).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use mobilebench_backend::{Backend, FileFormat, SourceKind};
use mobilebench_export::Format;
use mobilebench_models::agreement::Agreement as FloatAgreement;
use mobilebench_models::{
    reference, synthetic_input, BnMode, Calibration, Model, ModelConfig, Precision, QuantModel,
};
use mobilebench_native::Engine;

use crate::worker::SourceSpec;

/// Outputs agreeing within this relative difference (max |a − b| / max |reference|) are
/// "the same result" in fp32. Measured: native against the naive reference differs by at
/// most 1.3e-5 on whole models (f32 summation order and BN folding; see the native engine's
/// tests); the Python ONNX Runtime and LiteRT runs of our exported files differ from each
/// other by 2e-6 to 8e-6. 1e-4 leaves a margin of 8× over the largest, while any real error
/// (wrong weights, layout, padding) is of order 1e-1.
pub const FP32_TOLERANCE: f64 = 1e-4;

/// The same for fp16 arithmetic (LiteRT's GPU accelerator at its default precision).
/// Measured with `litert-gpu-fp16` on lavapipe against native: 1.3e-2 (V3-Small 0.25/128),
/// 3.5e-2 (V2 0.35/96), 4.2e-2 (V1 0.25/128), 5.2e-2 (V3-Large 0.75/96) — fp16's 11-bit
/// mantissa over 50-odd layers; 1e-1 leaves 2× over the worst. Models whose seeded logits
/// are in the hundreds (V3 at 64 px) exceed it (0.19) and are flagged: fp16 is not enough
/// there, which is what the flag should say.
pub const FP16_TOLERANCE: f64 = 1e-1;

/// int8 rows against the int8 reference (the quantized model's meaning: the float ops with
/// every quantized tensor rounded to its grid): the smallest cosine similarity of the logits.
/// Integer kernels round differently (fixed-point rescaling, LUT hard swish, integer means):
/// a value lands one step off here and there, and these random-weight networks amplify such
/// steps (LiteRT's own builtin and reference kernels differ by 0.105 max relative on
/// V3-Small), so the largest difference is no test; the direction of the logits is.
/// Measured by tests/int8.rs (the Python runtimes on four test models): LiteRT XNNPACK
/// 0.978–0.999, LiteRT builtin 0.970–0.995, ONNX Runtime 0.993–1.000 (it reproduces the
/// reference exactly on V3-Small); the input's zero point written with uint8's offset:
/// 0.864–0.872 on all three. 0.95 sits between.
pub const INT8_MIN_REFERENCE_COSINE: f64 = 0.95;

/// The max relative difference int8 rows are not judged by (see above); recorded only.
pub const INT8_TOLERANCE: f64 = f64::INFINITY;

/// int8 rows against the float model: the smallest cosine similarity of the logits over
/// [`AGREEMENT_INPUTS`] inputs below which the row is flagged. Measured at 224 px: 0.97
/// (V3-Large) to 0.996 (V3-Small-minimalistic); tiny test models (64–96 px, 2×2 final maps)
/// 0.88–0.97. A broken quantization (a wrong scale) gives near 0.
pub const INT8_MIN_COSINE: f64 = 0.8;

/// Inputs (seeds input_seed + 1 ..) int8 rows run after the timed loop to compare with the
/// float model.
pub const AGREEMENT_INPUTS: u32 = 16;

/// The tolerance for a row's arithmetic precision.
pub fn tolerance(precision: &str) -> f64 {
    match precision {
        "fp16" => FP16_TOLERANCE,
        "int8" => INT8_TOLERANCE,
        _ => FP32_TOLERANCE,
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Agreement {
    pub reference: String,
    /// NaN when a value is not finite (`non_finite` says how many).
    pub max_abs_diff: f64,
    pub max_rel_diff: f64,
    /// Non-finite values (NaN, ±inf) in the output, and in the reference.
    pub non_finite: usize,
    pub reference_non_finite: usize,
    /// The output's length differs from the reference's: (output, reference).
    pub lengths: Option<(usize, usize)>,
    /// int8 rows: the cosine similarity with the int8 reference, which their check uses
    /// (see [`INT8_MIN_REFERENCE_COSINE`]).
    pub cosine: Option<f64>,
}

impl Agreement {
    /// Why the output does not agree, if it does not: a length mismatch, any non-finite
    /// value (which no tolerance excuses), or a difference beyond `tolerance`.
    pub fn problem(&self, tolerance: f64) -> Option<String> {
        if let Some((got, expected)) = self.lengths {
            return Some(format!(
                "the output has {got} values, the reference {expected}"
            ));
        }
        if self.non_finite > 0 {
            return Some(format!(
                "{} of the output's values are not finite (NaN or infinite)",
                self.non_finite
            ));
        }
        if self.reference_non_finite > 0 {
            return Some(format!(
                "the reference ({}) has {} non-finite values: nothing to agree with",
                self.reference, self.reference_non_finite
            ));
        }
        if let Some(c) = self.cosine {
            return (c.is_nan() || c < INT8_MIN_REFERENCE_COSINE).then(|| {
                format!(
                    "cosine similarity {c:.4} with {} is below {INT8_MIN_REFERENCE_COSINE}",
                    self.reference
                )
            });
        }
        // A NaN difference fails too.
        (self.max_rel_diff.is_nan() || self.max_rel_diff > tolerance).then(|| {
            format!(
                "max relative difference {:.1e} from {} exceeds the tolerance {tolerance:.0e}",
                self.max_rel_diff, self.reference
            )
        })
    }
}

pub fn compare(reference: &str, expected: &[f32], actual: &[f32]) -> Agreement {
    let non_finite = actual.iter().filter(|v| !v.is_finite()).count();
    let reference_non_finite = expected.iter().filter(|v| !v.is_finite()).count();
    let scale = expected
        .iter()
        .filter(|v| v.is_finite())
        .fold(0f64, |m, v| m.max(v.abs() as f64));
    // f64::max drops NaN; this keeps it.
    let mut max_abs = 0f64;
    for (a, b) in actual.iter().zip(expected) {
        let d = (*a as f64 - *b as f64).abs();
        if d.is_nan() || d > max_abs {
            max_abs = d;
            if d.is_nan() {
                break;
            }
        }
    }
    let lengths = (expected.len() != actual.len()).then_some((actual.len(), expected.len()));
    if lengths.is_some() {
        max_abs = f64::INFINITY;
    }
    Agreement {
        reference: reference.to_string(),
        max_abs_diff: max_abs,
        max_rel_diff: if scale > 0.0 {
            max_abs / scale
        } else {
            max_abs
        },
        non_finite,
        reference_non_finite,
        lengths,
        cosine: None,
    }
}

pub fn read_output(path: &Path) -> Result<Vec<f32>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

/// A zoo model prepared for every backend of a run: built once, exported on demand, with
/// its reference outputs computed on demand.
pub struct PreparedZoo {
    pub config: ModelConfig,
    pub precision: Precision,
    /// In the run's BN form (every backend gets this one).
    model: Model,
    bn: BnMode,
    /// The calibrated model, for `--precision int8`, and its int8 model per file format.
    calibration: Option<Calibration>,
    quantized: HashMap<&'static str, QuantModel>,
    /// The format each backend was given, which says which int8 model it ran.
    formats: HashMap<String, Format>,
    input: Vec<f32>,
    input_seed: u64,
    exports: HashMap<&'static str, PathBuf>,
    native: Option<Vec<f32>>,
    naive: Option<Vec<f32>>,
    int8_reference: HashMap<&'static str, Vec<f32>>,
    /// The float model's logits on the agreement inputs, one after another.
    float_outputs: Option<Vec<f32>>,
}

impl PreparedZoo {
    /// The model's graph, which per-op profiles are lined up with.
    pub fn graph(&self) -> &mobilebench_models::Graph {
        &self.model.graph
    }

    pub fn new(
        config: ModelConfig,
        weight_seed: u64,
        input_seed: u64,
        bn: BnMode,
        precision: Precision,
    ) -> Result<PreparedZoo> {
        let model = Model::from_config(&config, weight_seed).with_bn(bn)?;
        let input = synthetic_input(model.graph.input, input_seed);
        if precision == Precision::Int8 {
            mobilebench_models::quant::check_int8(&model)?;
        }
        let calibration = (precision == Precision::Int8).then(|| {
            eprintln!(
                "{config}: calibrating int8 activation ranges on {} images",
                mobilebench_models::quant::CALIBRATION_IMAGES
            );
            Calibration::run(&model)
        });
        Ok(PreparedZoo {
            config,
            precision,
            model,
            bn,
            calibration,
            quantized: HashMap::new(),
            formats: HashMap::new(),
            input,
            input_seed,
            exports: HashMap::new(),
            native: None,
            naive: None,
            int8_reference: HashMap::new(),
            float_outputs: None,
        })
    }

    /// The int8 model of `format`'s files (quantized on first use), for an int8 item.
    fn int8_model(&mut self, format: Format) -> Option<&QuantModel> {
        let calibration = self.calibration.as_ref()?;
        Some(
            self.quantized.entry(format.extension()).or_insert_with(|| {
                calibration.quantize(mobilebench_export::int8_weight_range(format))
            }),
        )
    }

    /// The model column of this item's rows.
    pub fn label(&self) -> String {
        self.precision.label(&self.config.name())
    }

    /// How `backend` gets this model: directly, or as an exported file (written into
    /// `models_dir` once). `None` when the backend takes neither.
    pub fn source_for(
        &mut self,
        backend: &dyn Backend,
        models_dir: &Path,
    ) -> Result<Option<SourceSpec>> {
        if backend.accepts(SourceKind::Zoo) && self.calibration.is_none() {
            return Ok(Some(SourceSpec::Zoo {
                name: self.config.name(),
            }));
        }
        for (format, file_format) in [
            (Format::Onnx, FileFormat::Onnx),
            (Format::Tflite, FileFormat::Tflite),
        ] {
            if backend.accepts(SourceKind::File(file_format)) {
                let path = self.export(format, models_dir)?;
                self.formats.insert(backend.name().to_string(), format);
                return Ok(Some(SourceSpec::File {
                    path,
                    format: file_format,
                }));
            }
        }
        Ok(None)
    }

    fn export(&mut self, format: Format, dir: &Path) -> Result<PathBuf> {
        if let Some(p) = self.exports.get(format.extension()) {
            return Ok(p.clone());
        }
        let path = dir.join(format!("{}.{}", self.label(), format.extension()));
        if !path.is_file() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            let bytes = match self.int8_model(format) {
                Some(q) => mobilebench_export::export_int8(q, format)?,
                None => mobilebench_export::export(&self.model, format, self.bn)?,
            };
            // Write then rename, so an interrupted export never leaves a truncated model.
            let partial = path.with_extension("partial");
            std::fs::write(&partial, bytes)
                .with_context(|| format!("cannot write {}", partial.display()))?;
            std::fs::rename(&partial, &path)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        self.exports.insert(format.extension(), path.clone());
        Ok(path)
    }

    /// `native` is checked against the naive evaluator, every other backend against native;
    /// of a batch's output, the first image (the batch-1 input) is compared.
    pub fn agreement(&mut self, backend: &str, output: &[f32]) -> Agreement {
        let classes = self.model.graph.output().len();
        if output.len() > classes && output.len().is_multiple_of(classes) {
            let mut a = self.agreement(backend, &output[..classes]);
            a.reference = format!("{} (first image of the batch)", a.reference);
            return a;
        }
        if self.calibration.is_some() {
            let format = self.formats.get(backend).copied().unwrap_or(Format::Tflite);
            let input = self.input.clone();
            let expected = match self.int8_reference.get(format.extension()) {
                Some(e) => e.clone(),
                None => {
                    let q = self.int8_model(format).expect("calibrated");
                    let e = q.evaluate(&input);
                    self.int8_reference.insert(format.extension(), e.clone());
                    e
                }
            };
            let mut a = compare(
                &format!("int8-reference ({} weights)", format.extension()),
                &expected,
                output,
            );
            a.cosine = Some(mobilebench_models::agreement::cosine(&expected, output));
            return a;
        }
        if backend == "native" {
            let expected = self.naive.get_or_insert_with(|| {
                reference::evaluate(&self.model.graph, &self.model.weights, &self.input)
            });
            compare("naive-reference", expected, output)
        } else {
            let expected = self.native.get_or_insert_with(|| {
                let mut engine = Engine::new(&self.model);
                let mut out = vec![0f32; engine.output_len()];
                engine.run(&self.input, &mut out);
                out
            });
            compare("native", expected, output)
        }
    }

    /// How an int8 backend's logits on the agreement inputs (one after another) agree with
    /// the float model's (the native engine on the same weights and inputs).
    pub fn float_agreement(&mut self, outputs: &[f32]) -> FloatAgreement {
        let classes = self.model.graph.output().len();
        let n = outputs.len() / classes;
        let float = self.float_outputs.get_or_insert_with(|| {
            let mut engine = Engine::new(&self.model);
            let mut all = vec![0f32; n * classes];
            for (i, out) in all.chunks_exact_mut(classes).enumerate() {
                let input = synthetic_input(self.model.graph.input, self.input_seed + 1 + i as u64);
                engine.run(&input, out);
            }
            all
        });
        FloatAgreement::of(
            float
                .chunks_exact(classes)
                .zip(outputs.chunks_exact(classes)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compare_scales_by_the_reference() {
        let a = compare("r", &[2.0, -4.0], &[2.0, -3.0]);
        assert_eq!(a.max_abs_diff, 1.0);
        assert_eq!(a.max_rel_diff, 0.25);
        assert!(compare("r", &[1.0, 2.0], &[1.0]).max_abs_diff.is_infinite());
        assert_eq!(
            a.problem(FP32_TOLERANCE).map(|p| p.contains("exceeds")),
            Some(true)
        );
        assert_eq!(
            compare("r", &[2.0, -4.0], &[2.0, -4.0]).problem(FP32_TOLERANCE),
            None
        );
    }

    #[test]
    fn non_finite_outputs_never_agree() {
        let nan = compare("r", &[1.0, 2.0, 3.0], &[f32::NAN; 3]);
        assert!(nan.max_rel_diff.is_nan());
        assert_eq!(nan.non_finite, 3);
        let why = nan.problem(FP32_TOLERANCE).unwrap();
        assert!(
            why.contains("3 of the output's values are not finite"),
            "{why}"
        );
        // One NaN among good values, and an infinity, are caught as well.
        let one = compare("r", &[1.0, 2.0, 3.0], &[1.0, f32::NAN, 3.0]);
        assert!(one.problem(FP16_TOLERANCE).unwrap().contains("1 of"));
        let inf = compare("r", &[1.0, 2.0], &[f32::INFINITY, 2.0]);
        assert!(inf.problem(FP16_TOLERANCE).is_some());
        let bad_reference = compare("r", &[f32::NAN, 2.0], &[1.0, 2.0]);
        assert!(bad_reference.problem(FP32_TOLERANCE).is_some());
    }
}
