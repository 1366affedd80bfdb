//! The models crate's modules import each other one way: no circle of `use crate::…`
//! between its files (test modules aside), so the numbers (`weights`), their typed view
//! (`layer`), what they compute (`reference`) and the calibrated `model` stay layered.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The crate modules each source file names through `crate::module`, outside comments and
/// `#[cfg(test)]` code.
fn imports(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut graph = BTreeMap::new();
    for entry in std::fs::read_dir(src).expect("src/") {
        let path = entry.expect("dir entry").path();
        let Some(module) = path
            .file_stem()
            .and_then(|s| s.to_str())
            .filter(|_| path.extension().is_some_and(|e| e == "rs"))
        else {
            continue;
        };
        let text = std::fs::read_to_string(&path).expect("source file");
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        let mut names = BTreeSet::new();
        for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
            for (i, _) in line.match_indices("crate::") {
                let rest = &line[i + "crate::".len()..];
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                    .collect();
                // `crate::Name` is a re-export of lib.rs; a lower-case word followed by `::`
                // or `;`/`}`/`,` is a module.
                if !name.is_empty() && name != module {
                    names.insert(name);
                }
            }
        }
        graph.insert(module.to_string(), names);
    }
    graph
}

/// A circle through `start`, if there is one (depth-first search).
fn circle_from(
    graph: &BTreeMap<String, BTreeSet<String>>,
    start: &str,
    path: &mut Vec<String>,
) -> Option<Vec<String>> {
    let here = path.last().cloned().unwrap_or_else(|| start.to_string());
    for next in graph.get(&here).into_iter().flatten() {
        if next == start {
            let mut circle = path.clone();
            circle.push(start.to_string());
            return Some(circle);
        }
        if !path.contains(next) && graph.contains_key(next) {
            path.push(next.clone());
            if let Some(c) = circle_from(graph, start, path) {
                return Some(c);
            }
            path.pop();
        }
    }
    None
}

#[test]
fn no_module_of_the_models_crate_imports_itself_through_others() {
    let graph = imports(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    assert!(graph.len() > 10, "read too few modules: {graph:?}");
    assert!(
        graph["model"].contains("reference"),
        "the scan misses imports: {graph:?}"
    );
    for module in graph.keys().filter(|m| *m != "lib") {
        let mut path = vec![module.clone()];
        if let Some(circle) = circle_from(&graph, module, &mut path) {
            panic!("import circle: {}", circle.join(" -> "));
        }
    }
}
