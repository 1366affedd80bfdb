//! The one error type of model selection and construction.

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("bad model name `{name}`: {why}")]
    BadName { name: String, why: String },
    #[error("`{0}` matches no model (see `bench list models`)")]
    NoMatch(String),
    #[error("bad model pattern `{pattern}`: {why}")]
    BadPattern { pattern: String, why: String },
    #[error("--bn separate needs a model with batch norm, and {0} has none")]
    NoBatchNorm(String),
    #[error("{model} has no int8 form: {why}")]
    NoInt8 { model: String, why: String },
}
