//! The model side of mobilebench: the graph IR, the MobileNet zoo defined once as block
//! tables, MAC/param counting, deterministic weights, the naive reference evaluator, the
//! published figures and the named model sets.

pub mod agreement;
pub mod counting;
pub mod error;
pub mod groups;
pub mod input;
pub mod ir;
pub mod layer;
pub mod model;
pub mod precision;
pub mod published;
pub mod quant;
pub mod reference;
pub mod sets;
pub mod weights;
pub mod zoo;

pub use counting::{count, count_config, trained_params, Counts};
pub use error::ModelError;
pub use groups::LayerGroup;
pub use input::{synthetic_for_shape, synthetic_input, DEFAULT_INPUT_SEED};
pub use ir::{Graph, Shape};
pub use layer::{Layer, SeWeights};
pub use model::Model;
pub use precision::Precision;
pub use quant::{Calibration, QuantModel, WeightRange};
pub use weights::{BnMode, DEFAULT_SEED};
pub use zoo::{Family, ModelConfig, NUM_CLASSES};
