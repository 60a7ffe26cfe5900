//! The crate's layer order and the test that keeps it: every `crate::` path in non-test code
//! points to a module of a lower tier. Modules of one tier do not use each other, so each tier
//! can be read knowing only the tiers below it. The README's "Layers" list is this list.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Top-level modules by tier, bottom first.
const LAYERS: &[&[&str]] = &[
    &["worker", "model", "h1"],
    &["diag"],
    &["access", "affinity", "tls", "access_log"],
    &["metrics"],
    &["upstream"],
    &["route"],
    &["selection", "compile", "source"],
    &["proxy"],
    &["reload"],
    &["leader", "admin"],
    &["app"],
    &["check", "demo", "fuzz_harness"],
];

fn tier(module: &str) -> Option<usize> {
    LAYERS.iter().position(|tier| tier.contains(&module))
}

/// The top-level module a source file belongs to (`src/route/backend.rs` → `route`).
fn owner(src: &Path, file: &Path) -> String {
    let first = file.strip_prefix(src).unwrap().components().next().unwrap();
    first.as_os_str().to_string_lossy().trim_end_matches(".rs").to_owned()
}

/// The source files of the crate that are not test code: `#[cfg(test)] mod x;` files are left
/// out (with their subtrees), and so is everything from an inline `#[cfg(test)]` on.
fn production_sources(dir: &Path, skip: &mut BTreeSet<PathBuf>, out: &mut Vec<(PathBuf, String)>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    let is_rust = |p: &PathBuf| p.extension().is_some_and(|e| e == "rs");
    let mut code = Vec::new();
    for path in entries.iter().filter(|p| is_rust(p)) {
        if !skip.contains(path) {
            code.push((path.clone(), without_tests(path, &std::fs::read_to_string(path).unwrap(), skip)));
        }
    }
    for path in entries.iter().filter(|p| p.is_dir()) {
        if !skip.contains(path) {
            production_sources(path, skip, out);
        }
    }
    out.extend(code.into_iter().filter(|(p, _)| !skip.contains(p)));
}

/// A file's code without comments and test modules; its `#[cfg(test)] mod x;` files go to `skip`.
fn without_tests(path: &Path, text: &str, skip: &mut BTreeSet<PathBuf>) -> String {
    let dir = path.parent().unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let mut kept = String::new();
    for (i, line) in lines.iter().enumerate() {
        let trimmed = line.trim();
        if trimmed.starts_with("//") {
            continue;
        }
        if trimmed != "#[cfg(test)]" {
            kept.push_str(line);
            kept.push('\n');
            continue;
        }
        let next = lines.get(i + 1).map_or("", |l| l.trim());
        match next.strip_prefix("mod ").and_then(|m| m.strip_suffix(';')) {
            Some(name) => {
                let stem = path.file_stem().unwrap();
                let base = if stem == "mod" || stem == "lib" { dir.to_path_buf() } else { dir.join(stem) };
                skip.insert(base.join(format!("{name}.rs")));
                skip.insert(base.join(name));
            }
            // An inline test module runs to the end of its file, by the house convention.
            None if next.starts_with("mod ") => break,
            None => {}
        }
    }
    kept
}

/// The top-level modules a file's code names through `crate::`.
fn used_modules(code: &str) -> BTreeSet<String> {
    let mut used = BTreeSet::new();
    let ident = |s: &str| s.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect::<String>();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // `use crate::{a::b, c}`: the first name of each item at the group's top level.
            let mut depth = 0;
            let mut item_start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if item_start && !c.is_whitespace() => {
                        used.insert(ident(&group[i..]));
                        item_start = false;
                    }
                    _ => {}
                }
            }
        } else {
            used.insert(ident(rest));
        }
    }
    used
}

#[test]
fn every_crate_path_points_down_the_layers() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let src = root.join("src");
    let mut files = Vec::new();
    production_sources(&src, &mut BTreeSet::new(), &mut files);
    let mut upward = Vec::new();
    let mut modules = BTreeSet::new();
    for (file, code) in &files {
        let from = owner(&src, file);
        if from == "lib" || from == "main" {
            continue;
        }
        modules.insert(from.clone());
        let Some(from_tier) = tier(&from) else {
            upward.push(format!("{from} is in no tier of LAYERS"));
            continue;
        };
        for to in used_modules(code).into_iter().filter(|to| *to != from && !to.is_empty()) {
            match tier(&to) {
                Some(t) if t < from_tier => {}
                Some(_) => upward.push(format!("{} uses crate::{to}", file.strip_prefix(root).unwrap().display())),
                None => {}
            }
        }
    }
    assert!(upward.is_empty(), "paths that do not point down the layers:\n{}", upward.join("\n"));
    let listed: BTreeSet<String> = LAYERS.iter().flat_map(|t| t.iter().map(|m| (*m).to_owned())).collect();
    assert_eq!(listed, modules, "LAYERS names every top-level module once");
}

#[test]
fn the_readme_shows_the_same_layers() {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let section = readme.split("\n### Layers\n").nth(1).expect("README has a ### Layers section");
    // Numbered items, bottom first: the backticked names before the dash are the tier.
    let tiers: Vec<Vec<String>> = section
        .lines()
        .skip_while(|l| !l.starts_with("1. "))
        .take_while(|l| l.chars().next().is_some_and(|c| c.is_ascii_digit()) || l.starts_with("   "))
        .filter(|l| !l.starts_with("   "))
        .map(|l| {
            let names = l.split(" — ").next().unwrap();
            names.split('`').skip(1).step_by(2).map(str::to_owned).collect()
        })
        .collect();
    let expected: Vec<Vec<String>> = LAYERS.iter().map(|t| t.iter().map(|m| (*m).to_owned()).collect()).collect();
    assert_eq!(tiers, expected);
}

#[test]
fn the_scanner_sees_grouped_and_nested_paths() {
    let code = "use crate::{route::{Backend, Route}, tls};\nlet x = crate::metrics::stats::X;";
    let found: Vec<String> = used_modules(code).into_iter().collect();
    assert_eq!(found, ["metrics", "route", "tls"]);
}
