//! Reading TFLite files: structural validation before LiteRT sees them, and the operator
//! list a per-op profile is lined up with (LiteRT's events name an op by index or, under
//! XNNPACK, only by kind and position).

/// Checks that `bytes` is a structurally valid TFLite flatbuffer (the schema's verifier:
/// offsets, sizes, required fields) with at least one subgraph. LiteRT does not verify and
/// crashes on a truncated file; backends call this first to fail with a message instead.
pub fn validate(bytes: &[u8]) -> Result<(), String> {
    if bytes.len() < 8 || &bytes[4..8] != b"TFL3" {
        return Err("not a TFLite file (no TFL3 identifier)".into());
    }
    let model = tract_tflite::tflite::root_as_model(bytes)
        .map_err(|e| format!("corrupt TFLite flatbuffer: {e}"))?;
    if model.subgraphs().is_none_or(|s| s.is_empty()) {
        return Err("the TFLite model has no subgraph".into());
    }
    Ok(())
}

/// One operator of a TFLite file's main subgraph, in execution order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TfliteOp {
    /// The builtin's name (`CONV_2D`), or `CUSTOM` / the code number for others.
    pub code: String,
    /// The name of its first output tensor (our exporter names tensors after the IR node).
    pub output: String,
}

/// The operators of the first subgraph of a valid TFLite file.
pub fn operators(bytes: &[u8]) -> Result<Vec<TfliteOp>, String> {
    validate(bytes)?;
    let model = tract_tflite::tflite::root_as_model(bytes)
        .map_err(|e| format!("corrupt TFLite flatbuffer: {e}"))?;
    let codes = model.operator_codes();
    let Some(graph) = model.subgraphs().and_then(|s| s.iter().next()) else {
        return Err("the TFLite model has no subgraph".into());
    };
    let tensors = graph.tensors();
    let ops = graph.operators().map(|o| o.iter().collect::<Vec<_>>());
    Ok(ops
        .unwrap_or_default()
        .into_iter()
        .map(|op| {
            let code = codes
                .filter(|c| (op.opcode_index() as usize) < c.len())
                .map(|c| c.get(op.opcode_index() as usize))
                .map(|c| {
                    // Codes below 127 may sit only in the deprecated byte (older writers).
                    let code = c.builtin_code().max(tract_tflite::tflite::BuiltinOperator(
                        c.deprecated_builtin_code() as i32,
                    ));
                    code.variant_name()
                        .map_or_else(|| format!("op {}", code.0), str::to_string)
                })
                .unwrap_or_default();
            let output = op
                .outputs()
                .and_then(|o| o.iter().next())
                .and_then(|t| {
                    tensors
                        .filter(|ts| (t as usize) < ts.len())
                        .map(|ts| ts.get(t as usize))
                })
                .and_then(|t| t.name())
                .unwrap_or_default()
                .to_string();
            TfliteOp { code, output }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use mobilebench_models::{Model, ModelConfig};

    #[test]
    fn exports_validate_and_truncations_do_not() {
        let model = Model::from_config(
            &"mobilenet_v3_small_0.25_64".parse::<ModelConfig>().unwrap(),
            1,
        );
        let bytes = crate::tflite::export(&model, crate::BnMode::Fused).unwrap();
        assert_eq!(validate(&bytes), Ok(()));
        for cut in [bytes.len() / 3, bytes.len() - 100, 12] {
            assert!(validate(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        assert!(validate(b"random bytes, no header").is_err());
    }

    #[test]
    fn operators_come_in_order_with_their_output_tensor_names() {
        let model = Model::from_config(
            &"mobilenet_v3_small_0.25_64".parse::<ModelConfig>().unwrap(),
            1,
        );
        let bytes = crate::tflite::export(&model, crate::BnMode::Fused).unwrap();
        let ops = operators(&bytes).unwrap();
        assert_eq!(ops[0].code, "CONV_2D");
        assert!(ops[0].output.starts_with("conv0"), "{:?}", ops[0]);
        assert!(ops.iter().any(|o| o.code == "DEPTHWISE_CONV_2D"));
        assert!(
            ops.last().unwrap().output.starts_with("logits"),
            "{:?}",
            ops.last()
        );
        assert!(operators(b"random bytes, no header").is_err());
    }
}
