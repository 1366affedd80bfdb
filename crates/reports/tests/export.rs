//! The machine-readable exports against each format's documented shape: Bencher's published
//! JSON schema for BMF, github-action-benchmark's documented `customSmallerIsBetter` entries,
//! and our own `docs/formats/mobilebench-summary-v1.schema.json`. The schemas are written
//! from the documentation (the documents' own examples must pass them too), never from our
//! output; a small validator of the JSON-schema keywords they use checks the output.

use std::path::{Path, PathBuf};

use mobilebench_reports::export::{export_text, exporter, Format, JSON_FORMAT, JSON_VERSION};
use mobilebench_results::{read_run, Run, SUMMARY_COLUMNS};
use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

fn fixture() -> Run {
    read_run(&root().join("tests/fixtures/local_run")).unwrap()
}

fn load(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn formats(name: &str) -> Value {
    load(&root().join("tests/fixtures/formats").join(name))
}

fn export(format: Format) -> Value {
    let text = export_text(&[fixture()], exporter(format).unwrap().as_ref());
    serde_json::from_str(&text).unwrap()
}

/// The errors of `value` against `schema` (the keywords the three schemas use: type,
/// properties, patternProperties, required, additionalProperties, items, const, enum).
fn violations(schema: &Value, value: &Value, at: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if let Some(t) = schema.get("type") {
        let types: Vec<&str> = match t {
            Value::String(s) => vec![s.as_str()],
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            _ => panic!("bad type keyword at {at}"),
        };
        let fits = types.iter().any(|t| match *t {
            "object" => value.is_object(),
            "array" => value.is_array(),
            "string" => value.is_string(),
            "number" => value.is_number(),
            "integer" => value.is_u64() || value.is_i64(),
            "boolean" => value.is_boolean(),
            "null" => value.is_null(),
            other => panic!("unknown type {other}"),
        });
        if !fits {
            errors.push(format!("{at}: {value} is not {types:?}"));
            return errors;
        }
    }
    if let Some(c) = schema.get("const") {
        if c != value {
            errors.push(format!("{at}: {value} is not {c}"));
        }
    }
    if let Some(Value::Array(allowed)) = schema.get("enum") {
        if !allowed.contains(value) {
            errors.push(format!("{at}: {value} not in {allowed:?}"));
        }
    }
    if let Value::Object(object) = value {
        let properties = schema.get("properties").and_then(Value::as_object);
        for key in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let key = key.as_str().unwrap();
            if !object.contains_key(key) {
                errors.push(format!("{at}: `{key}` is required"));
            }
        }
        for (key, v) in object {
            let here = format!("{at}.{key}");
            if let Some(s) = properties.and_then(|p| p.get(key)) {
                errors.extend(violations(s, v, &here));
            } else if let Some(Value::Object(patterns)) = schema.get("patternProperties") {
                // The only pattern the schemas use is ".+": any non-empty name.
                for (pattern, s) in patterns {
                    assert_eq!(pattern, ".+", "unsupported pattern");
                    if key.is_empty() {
                        errors.push(format!("{here}: empty name"));
                    }
                    errors.extend(violations(s, v, &here));
                }
            } else if schema.get("additionalProperties") == Some(&Value::Bool(false)) {
                errors.push(format!("{here}: not a documented property"));
            }
        }
    }
    if let (Value::Array(items), Some(s)) = (value, schema.get("items")) {
        for (i, item) in items.iter().enumerate() {
            errors.extend(violations(s, item, &format!("{at}[{i}]")));
        }
    }
    errors
}

fn assert_valid(schema: &Value, value: &Value, what: &str) {
    let errors = violations(schema, value, "$");
    assert!(errors.is_empty(), "{what}:\n{}", errors.join("\n"));
}

#[test]
fn the_validator_rejects_what_the_schemas_forbid() {
    let schema = formats("github-benchmark.schema.json");
    let missing_unit = serde_json::json!([{ "name": "a", "value": 1.0 }]);
    let text_value = serde_json::json!([{ "name": "a", "unit": "ms", "value": "1.0" }]);
    let extra_key = serde_json::json!([{ "name": "a", "unit": "ms", "value": 1.0, "p": 2 }]);
    for bad in [missing_unit, text_value, extra_key] {
        assert!(!violations(&schema, &bad, "$").is_empty(), "{bad}");
    }
    let bmf = formats("bmf.schema.json");
    let no_value = serde_json::json!({ "b": { "latency": { "lower_value": 1.0 } } });
    assert!(!violations(&bmf, &no_value, "$").is_empty());
}

#[test]
fn the_documents_own_examples_pass_their_schemas() {
    assert_valid(
        &formats("bmf.schema.json"),
        &formats("bmf.example.json"),
        "BMF example",
    );
    assert_valid(
        &formats("github-benchmark.schema.json"),
        &formats("github-benchmark.example.json"),
        "customSmallerIsBetter example",
    );
}

#[test]
fn bmf_has_one_latency_benchmark_per_measured_pair_in_nanoseconds() {
    let doc = export(Format::Bmf);
    assert_valid(
        &formats("bmf.schema.json"),
        &doc,
        "bench report --format bmf",
    );
    let run = fixture();
    let ok: Vec<_> = run.summary.iter().filter(|r| r.is_ok()).collect();
    let benchmarks = doc.as_object().unwrap();
    assert_eq!(benchmarks.len(), ok.len());
    for row in ok {
        let name = format!(
            "{}/{}/{}/{}",
            row.device, row.model, row.backend, row.precision
        );
        let latency = &benchmarks[&name]["latency"];
        let value = latency["value"].as_f64().unwrap();
        // Bencher's built-in latency measure is in nanoseconds.
        assert!((value - row.p50_ms.unwrap() * 1e6).abs() < 1e-3, "{name}");
        let (lo, hi) = (
            latency["lower_value"].as_f64().unwrap(),
            latency["upper_value"].as_f64().unwrap(),
        );
        assert!(lo < value && value < hi, "{name}: {lo} {value} {hi}");
        // The 5th/95th percentiles lie inside the samples' range, the 90th/99th around them.
        assert!(lo >= row.min_ms.unwrap() * 1e6 - 1e-3 && hi <= row.p99_ms.unwrap() * 1e6);
        assert!(hi >= row.p90_ms.unwrap() * 1e6, "{name}");
    }
}

#[test]
fn github_benchmark_lists_the_medians_in_ms() {
    let doc = export(Format::GithubBenchmark);
    assert_valid(
        &formats("github-benchmark.schema.json"),
        &doc,
        "bench report --format github-benchmark",
    );
    let entries = doc.as_array().unwrap();
    let run = fixture();
    assert_eq!(
        entries.len(),
        run.summary.iter().filter(|r| r.is_ok()).count()
    );
    let native = entries
        .iter()
        .find(|e| e["name"] == "local/mobilenet_v3_small_1.0_224/native/fp32")
        .unwrap_or_else(|| panic!("{doc:#}"));
    assert_eq!(native["unit"], "ms");
    assert!((native["value"].as_f64().unwrap() - 3.305618).abs() < 1e-9);
    assert!(native["extra"].as_str().unwrap().contains("p5 "));
}

#[test]
fn json_is_every_summary_row_typed_under_a_versioned_header() {
    let schema = load(&root().join("../../docs/formats/mobilebench-summary-v1.schema.json"));
    let doc = export(Format::Json);
    assert_valid(&schema, &doc, "bench report --format json");
    assert_eq!(doc["format"], JSON_FORMAT);
    assert_eq!(doc["version"], JSON_VERSION);
    let rows = doc["runs"][0]["rows"].as_array().unwrap();
    assert_eq!(rows.len(), fixture().summary.len());
    // The documented schema names every summary column, and nothing else.
    let properties = schema["properties"]["runs"]["items"]["properties"]["rows"]["items"]
        ["properties"]
        .as_object()
        .unwrap();
    let documented: Vec<&str> = properties.keys().map(String::as_str).collect();
    let mut columns: Vec<&str> = SUMMARY_COLUMNS.iter().map(|c| c.name).collect();
    let mut documented_sorted = documented.clone();
    documented_sorted.sort_unstable();
    columns.sort_unstable();
    assert_eq!(documented_sorted, columns);
}
