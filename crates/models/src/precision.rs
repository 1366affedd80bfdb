//! A model's number format, and how it shows in the model column of the CSVs.

/// A model's number format: `bench run --precision`, `bench export --precision`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub enum Precision {
    /// The zoo model as built: float32 weights and activations.
    #[default]
    Float32,
    /// Post-training quantized: int8 weights and activations (this module).
    Int8,
}

impl Precision {
    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Precision::Float32 => "float32",
            Precision::Int8 => "int8",
        }
    }
    /// The `precision` column of the CSVs (`fp32`, as backends report float runs).
    pub fn column(self) -> &'static str {
        match self {
            Precision::Float32 => "fp32",
            Precision::Int8 => "int8",
        }
    }
}

impl Precision {
    /// The model column of a zoo model in this precision: the name, `_int8` appended for int8.
    pub fn label(self, model: &str) -> String {
        match self {
            Precision::Float32 => model.to_string(),
            Precision::Int8 => format!("{model}{INT8_SUFFIX}"),
        }
    }

    /// A model column split into the model's name and its precision.
    pub fn of_label(label: &str) -> (&str, Precision) {
        match label.strip_suffix(INT8_SUFFIX) {
            Some(name) => (name, Precision::Int8),
            None => (label, Precision::Float32),
        }
    }
}

/// What an int8 model's name ends with in the CSVs.
pub const INT8_SUFFIX: &str = "_int8";

impl std::str::FromStr for Precision {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "float32" | "fp32" => Ok(Precision::Float32),
            "int8" => Ok(Precision::Int8),
            _ => Err(format!("`{s}`: expected `float32` or `int8`")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int8_labels_round_trip() {
        let name = "mobilenet_v3_large_1.0_224";
        assert_eq!(
            Precision::Int8.label(name),
            "mobilenet_v3_large_1.0_224_int8"
        );
        assert_eq!(
            Precision::of_label(&Precision::Int8.label(name)),
            (name, Precision::Int8)
        );
        assert_eq!(Precision::of_label(name), (name, Precision::Float32));
        assert_eq!("fp32".parse::<Precision>(), Ok(Precision::Float32));
        assert!("int4".parse::<Precision>().is_err());
    }
}
