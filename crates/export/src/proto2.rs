//! ONNX's canonical wire form for repeated numbers.
//!
//! `onnx.proto` is a proto2 file without `[packed = true]`, so the reference writers (ONNX's
//! C++ and Python protobuf) store `AttributeProto.ints`/`floats` and `TensorProto.dims` as one
//! field per value. The prost types we build the model with store them packed, which the
//! protobuf spec obliges every parser to accept, and ONNX Runtime and tract do; rten 0.27's
//! parser does not. This rewrites the encoded model so those lists take the reference form;
//! every other byte is copied as it is.

use prost::encoding::{decode_varint, encode_varint};

/// Field numbers on the paths to the lists: ModelProto.graph → GraphProto.node →
/// NodeProto.attribute → AttributeProto.{ints, floats, t}, and GraphProto.initializer →
/// TensorProto.dims.
const MODEL_GRAPH: u64 = 7;
const GRAPH_NODE: u64 = 1;
const GRAPH_INITIALIZER: u64 = 5;
const NODE_ATTRIBUTE: u64 = 5;
const ATTRIBUTE_FLOATS: u64 = 7;
const ATTRIBUTE_INTS: u64 = 8;
const ATTRIBUTE_TENSOR: u64 = 5;
const TENSOR_DIMS: u64 = 1;

const VARINT: u64 = 0;
const FIXED64: u64 = 1;
const LENGTH_DELIMITED: u64 = 2;
const FIXED32: u64 = 5;

/// Which message a byte range is, and so which of its fields to descend into.
#[derive(Clone, Copy, PartialEq)]
enum Level {
    Model,
    Graph,
    Node,
    Attribute,
    Tensor,
}

/// `model` re-encoded with those lists unpacked. Errors only on bytes that are not
/// a protobuf message (never the case for what the exporter encoded).
pub fn unpack_repeated_numbers(model: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(model.len() + model.len() / 16);
    rewrite(model, Level::Model, &mut out)?;
    Ok(out)
}

fn rewrite(mut msg: &[u8], level: Level, out: &mut Vec<u8>) -> Result<(), String> {
    let bad = |e: prost::DecodeError| e.to_string();
    while !msg.is_empty() {
        let key = decode_varint(&mut msg).map_err(bad)?;
        let (field, wire) = (key >> 3, key & 7);
        match wire {
            VARINT => {
                let v = decode_varint(&mut msg).map_err(bad)?;
                encode_varint(key, out);
                encode_varint(v, out);
            }
            FIXED64 | FIXED32 => {
                let n = if wire == FIXED64 { 8 } else { 4 };
                let (value, rest) = msg.split_at_checked(n).ok_or("truncated fixed field")?;
                encode_varint(key, out);
                out.extend_from_slice(value);
                msg = rest;
            }
            LENGTH_DELIMITED => {
                let len = decode_varint(&mut msg).map_err(bad)? as usize;
                let (body, rest) = msg.split_at_checked(len).ok_or("truncated field")?;
                msg = rest;
                let child = match (level, field) {
                    (Level::Model, MODEL_GRAPH) => Some(Level::Graph),
                    (Level::Graph, GRAPH_NODE) => Some(Level::Node),
                    (Level::Graph, GRAPH_INITIALIZER) => Some(Level::Tensor),
                    (Level::Node, NODE_ATTRIBUTE) => Some(Level::Attribute),
                    (Level::Attribute, ATTRIBUTE_TENSOR) => Some(Level::Tensor),
                    _ => None,
                };
                let packed_varints = matches!(
                    (level, field),
                    (Level::Attribute, ATTRIBUTE_INTS) | (Level::Tensor, TENSOR_DIMS)
                );
                if packed_varints {
                    // One (key, varint) per value.
                    let mut values = body;
                    while !values.is_empty() {
                        let v = decode_varint(&mut values).map_err(bad)?;
                        encode_varint(field << 3 | VARINT, out);
                        encode_varint(v, out);
                    }
                } else if (level, field) == (Level::Attribute, ATTRIBUTE_FLOATS) {
                    // One (key, 4 bytes) per value.
                    for value in body.chunks(4) {
                        if value.len() != 4 {
                            return Err("packed floats not a multiple of 4 bytes".into());
                        }
                        encode_varint(field << 3 | FIXED32, out);
                        out.extend_from_slice(value);
                    }
                } else if let Some(child) = child {
                    let mut inner = Vec::with_capacity(body.len() + body.len() / 8);
                    rewrite(body, child, &mut inner)?;
                    encode_varint(key, out);
                    encode_varint(inner.len() as u64, out);
                    out.extend_from_slice(&inner);
                } else {
                    encode_varint(key, out);
                    encode_varint(len as u64, out);
                    out.extend_from_slice(body);
                }
            }
            other => return Err(format!("wire type {other} (groups are not used by ONNX)")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;
    use tract_onnx::pb::{AttributeProto, GraphProto, ModelProto, NodeProto, TensorProto};

    fn model(ints: Vec<i64>, floats: Vec<f32>, dims: Vec<i64>) -> ModelProto {
        let tensor = TensorProto {
            dims: dims.clone(),
            raw_data: vec![1, 2, 3, 4],
            ..Default::default()
        };
        ModelProto {
            ir_version: 8,
            graph: Some(GraphProto {
                name: "g".into(),
                node: vec![NodeProto {
                    op_type: "Conv".into(),
                    attribute: vec![
                        AttributeProto {
                            name: "pads".into(),
                            ints,
                            floats,
                            ..Default::default()
                        },
                        AttributeProto {
                            name: "value".into(),
                            t: Some(tensor.clone()),
                            ..Default::default()
                        },
                    ],
                    ..Default::default()
                }],
                initializer: vec![tensor],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// Counts `key` bytes in `bytes` (a loose check that fields were written one per value;
    /// the exact check is that the result decodes to the same model).
    fn count(bytes: &[u8], key: u8) -> usize {
        bytes.iter().filter(|&&b| b == key).count()
    }

    #[test]
    fn lists_become_one_field_per_value_and_decode_to_the_same_model() {
        let m = model(vec![0, 1, -1, 300], vec![0.5, 2.0], vec![7, 3, 3, 1]);
        let packed = m.encode_to_vec();
        let unpacked = unpack_repeated_numbers(&packed).unwrap();
        assert_ne!(packed, unpacked, "the lists were rewritten");
        assert_eq!(ModelProto::decode(&unpacked[..]).unwrap(), m);
        // Keys: field 8 varint = 0x40, field 7 fixed32 = 0x3d, field 1 varint = 0x08.
        assert!(count(&unpacked, 0x40) >= 4 && count(&unpacked, 0x3d) >= 2);
        assert!(
            count(&unpacked, 0x08) >= 8,
            "dims of both tensors, one field each"
        );
    }

    #[test]
    fn a_model_without_lists_is_unchanged() {
        let packed = model(vec![], vec![], vec![]).encode_to_vec();
        assert_eq!(unpack_repeated_numbers(&packed).unwrap(), packed);
    }
}
