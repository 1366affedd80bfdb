//! Model selection: named sets, globs over the published configs, and explicit names.

use crate::error::ModelError;
use crate::published;
use crate::zoo::{Family, ModelConfig};

/// The named sets, with what they hold (for `--help` and `bench list models`).
pub const NAMED_SETS: &[(&str, &str)] = &[
    ("seed", "V3 Small, Small-minimalistic, Large, Large-minimalistic at 1.0/224 (the TFLite device table)"),
    ("default", "`seed` + V2 1.0/224 + V1 1.0/224"),
    ("v3-widths", "V3 Small and Large × width 0.25, 0.5, 1.0 at 224 (width sweeps)"),
    ("v4", "MobileNetV4 Conv-S/224, Conv-M/256, Conv-L/384, Hybrid-M/256, Hybrid-L/384 (their published resolutions)"),
    ("all", "every published float config (49: V1–V3 and V4)"),
];

fn seed() -> Vec<ModelConfig> {
    [
        Family::V3Small,
        Family::V3SmallMinimalistic,
        Family::V3Large,
        Family::V3LargeMinimalistic,
    ]
    .into_iter()
    .map(|f| ModelConfig::new(f, 1.0, 224))
    .collect()
}

/// Resolves a comma-separated selection: set names, globs over `all` (e.g.
/// `mobilenet_v2_*_224`) and canonical names (any width and resolution). Duplicates are
/// dropped, first occurrence kept.
pub fn select(spec: &str) -> Result<Vec<ModelConfig>, ModelError> {
    let mut out: Vec<ModelConfig> = Vec::new();
    for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let found = match item {
            "seed" => seed(),
            "default" => {
                let mut v = seed();
                v.push(ModelConfig::new(Family::V2, 1.0, 224));
                v.push(ModelConfig::new(Family::V1, 1.0, 224));
                v
            }
            "v3-widths" => [Family::V3Small, Family::V3Large]
                .into_iter()
                .flat_map(|f| [0.25, 0.5, 1.0].map(|w| ModelConfig::new(f, w, 224)))
                .collect(),
            "v4" => Family::V4
                .into_iter()
                .map(|f| ModelConfig::new(f, 1.0, f.published_resolution()))
                .collect(),
            "all" => published::models().into_iter().map(|m| m.config).collect(),
            _ if item.contains(['*', '?', '[']) => {
                let pattern = glob::Pattern::new(item).map_err(|e| ModelError::BadPattern {
                    pattern: item.to_string(),
                    why: e.to_string(),
                })?;
                let hits: Vec<_> = published::models()
                    .into_iter()
                    .map(|m| m.config)
                    .filter(|c| pattern.matches(&c.name()))
                    .collect();
                if hits.is_empty() {
                    return Err(ModelError::NoMatch(item.to_string()));
                }
                hits
            }
            _ => vec![item.parse()?],
        };
        for cfg in found {
            if !out.iter().any(|c| c.name() == cfg.name()) {
                out.push(cfg);
            }
        }
    }
    if out.is_empty() {
        return Err(ModelError::NoMatch(spec.to_string()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(spec: &str) -> Vec<String> {
        select(spec).unwrap().iter().map(|c| c.name()).collect()
    }

    #[test]
    fn named_sets() {
        assert_eq!(
            names("seed"),
            [
                "mobilenet_v3_small_1.0_224",
                "mobilenet_v3_small_minimalistic_1.0_224",
                "mobilenet_v3_large_1.0_224",
                "mobilenet_v3_large_minimalistic_1.0_224"
            ]
        );
        assert_eq!(names("default").len(), 6);
        assert_eq!(names("all").len(), 49);
        assert_eq!(
            names("v4"),
            [
                "mobilenet_v4_conv_small_1.0_224",
                "mobilenet_v4_conv_medium_1.0_256",
                "mobilenet_v4_conv_large_1.0_384",
                "mobilenet_v4_hybrid_medium_1.0_256",
                "mobilenet_v4_hybrid_large_1.0_384"
            ]
        );
        assert!(names("all").ends_with(&names("v4")));
        assert_eq!(
            names("v3-widths"),
            [
                "mobilenet_v3_small_0.25_224",
                "mobilenet_v3_small_0.5_224",
                "mobilenet_v3_small_1.0_224",
                "mobilenet_v3_large_0.25_224",
                "mobilenet_v3_large_0.5_224",
                "mobilenet_v3_large_1.0_224",
            ]
        );
    }

    #[test]
    fn patterns_and_names_dedupe() {
        assert_eq!(
            names("mobilenet_v2_*_224"),
            [
                "mobilenet_v2_1.4_224",
                "mobilenet_v2_1.3_224",
                "mobilenet_v2_1.0_224",
                "mobilenet_v2_0.75_224",
                "mobilenet_v2_0.5_224",
                "mobilenet_v2_0.35_224"
            ]
        );
        assert_eq!(
            names("mobilenet_v3_small_0.25_64, seed,mobilenet_v3_small_1.0_224").len(),
            5
        );
    }

    #[test]
    fn unmatched_selection_is_an_error() {
        assert!(select("mobilenet_v9_*")
            .unwrap_err()
            .to_string()
            .contains("matches no model"));
        assert!(select(" , ").is_err());
        assert!(select("resnet50").is_err());
    }
}
