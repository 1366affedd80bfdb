//! The README and the manual under docs/: every relative link and image points at a file
//! that exists (the schema page is kept in step with the schema by the results crate's
//! tests, the exceptions table by the models crate's).

use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// README.md and every markdown file under docs/.
fn pages() -> Vec<PathBuf> {
    let mut pages = vec![repo().join("README.md")];
    let mut pending = vec![repo().join("docs")];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "md") {
                pages.push(path);
            }
        }
    }
    pages
}

/// The targets of `[text](target)` and `![alt](target)` in `markdown`.
fn link_targets(markdown: &str) -> Vec<String> {
    let mut targets = Vec::new();
    let mut rest = markdown;
    while let Some(i) = rest.find("](") {
        rest = &rest[i + 2..];
        if let Some(end) = rest.find(')') {
            targets.push(rest[..end].trim().to_string());
        }
    }
    targets
}

/// The relative links of `page` whose file does not exist.
fn dead_links(page: &Path, text: &str) -> Vec<String> {
    let dir = page.parent().unwrap();
    link_targets(text)
        .into_iter()
        .filter(|t| !t.contains("://") && !t.starts_with('#') && !t.starts_with("mailto:"))
        .filter(|t| {
            let file = t.split('#').next().unwrap_or_default();
            !file.is_empty() && !dir.join(file).exists()
        })
        .collect()
}

#[test]
fn every_relative_link_of_the_readme_and_the_manual_resolves() {
    let pages = pages();
    assert!(pages.len() > 10, "{pages:?}");
    let mut dead = Vec::new();
    let mut checked = 0;
    for page in &pages {
        let text = std::fs::read_to_string(page).unwrap();
        checked += link_targets(&text).len();
        for target in dead_links(page, &text) {
            dead.push(format!("{}: {target}", page.display()));
        }
    }
    assert!(checked > 30, "the link scan found only {checked} links");
    assert!(dead.is_empty(), "dead links:\n{}", dead.join("\n"));
}

#[test]
fn a_dead_link_is_caught() {
    let page = repo().join("docs/README.md");
    let dead = dead_links(
        &page,
        "see [x](nowhere.md) and [y](backends.md#the-backends)",
    );
    assert_eq!(dead, ["nowhere.md"]);
}

#[test]
fn the_readme_is_a_front_door_that_maps_every_manual_page() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let lines = readme.lines().count();
    assert!(
        lines < 250,
        "the README has grown to {lines} lines: move detail to docs/"
    );
    for page in pages()
        .iter()
        .filter(|p| p.parent() == Some(&repo().join("docs")))
    {
        let name = page.file_name().unwrap().to_string_lossy();
        if name != "README.md" {
            assert!(
                readme.contains(&format!("(docs/{name})")),
                "the README's map lacks docs/{name}"
            );
        }
    }
}
