//! The house stays layered: every `crate::` path in `src/` points down the
//! table below (or within its own module), and no files import each other in
//! a circle. Read from the source text, so a new import against the direction
//! fails here, naming the file, the line and what it should do instead.
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)] // a test crate: a failed expectation is the test failing

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Bottom first. A module may use the modules of the rows below its own.
const LAYERS: &[&[&str]] = &[
    // Plain data and pure functions with no crate imports.
    &["cli", "dns", "prediction", "units"],
    // The checklist as data: profiles, their templates and fact names.
    &["profile"],
    // The user's migration.toml.
    &["config"],
    // config + profile -> plan.
    &["plan"],
    // What the engine and steps say happened.
    &["events"],
    // Hosts over ssh; the journal's records and files.
    &["remote", "journal"],
    // Where each tool runs: the database, services and cache sides of a host.
    &["redact", "runtime"],
    // Step kinds and what they work with.
    &["steps"],
    // The engine runs steps; init reads a host to write a config.
    &["engine", "init"],
    // The fold every front end reads.
    &["run_state"],
    // Front ends.
    &["ui"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|row| row.contains(&module))
}

/// The module path of a source file: src/steps/preflight.rs -> steps::preflight.
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).expect("under src");
    let mut parts: Vec<String> = rel
        .with_extension("")
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read src") {
        let p = e.expect("entry").path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The code of a file without its test module (tests may reach anywhere).
fn code(text: &str) -> &str {
    match text.find("\n#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    }
}

/// Every path a line names after `crate::` or `super::`, as written.
fn paths_in(line: &str) -> Vec<(bool, Vec<String>)> {
    let mut out = Vec::new();
    for (prefix, is_super) in [("crate::", false), ("super::", true)] {
        let mut rest = line;
        while let Some(i) = rest.find(prefix) {
            let before = rest[..i].chars().last();
            rest = &rest[i + prefix.len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            let path: Vec<String> = rest
                .split("::")
                .map(|seg| {
                    seg.chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect::<String>()
                })
                .take_while(|s| !s.is_empty())
                .collect();
            // `use super::{a, b}` names each of a, b.
            let tail = rest.splitn(path.len() + 1, "::").last().unwrap_or("");
            if let Some(group) = tail.strip_prefix('{') {
                let inner = group.split('}').next().unwrap_or("");
                for item in inner.split(',') {
                    let item: String = item
                        .trim()
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    if !item.is_empty() {
                        let mut p = path.clone();
                        p.push(item);
                        out.push((is_super, p));
                    }
                }
            } else {
                out.push((is_super, path));
            }
        }
    }
    out
}

struct House {
    /// module path -> file
    modules: BTreeMap<Vec<String>, PathBuf>,
    /// (file, line number, line, target module path)
    uses: Vec<(PathBuf, usize, String, Vec<String>)>,
}

fn house() -> House {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    files.sort();
    let mut modules = BTreeMap::new();
    for f in &files {
        // The binary and the crate root are not layers.
        if f.ends_with("main.rs") || f.ends_with("lib.rs") || f.ends_with("tests.rs") {
            continue;
        }
        modules.insert(module_of(&src, f), f.clone());
    }
    let mut uses = Vec::new();
    for (module, file) in &modules {
        let text = std::fs::read_to_string(file).expect("read");
        for (n, line) in code(&text).lines().enumerate() {
            let trimmed = line.trim_start();
            if trimmed.starts_with("//") {
                continue;
            }
            for (is_super, path) in paths_in(line) {
                let full: Vec<String> = if is_super {
                    // `super` is the module above (for a/mod.rs too: its module is `a`).
                    let mut base = module.clone();
                    base.pop();
                    base.into_iter().chain(path).collect()
                } else {
                    path
                };
                // The longest module the path names.
                let target = (1..=full.len())
                    .rev()
                    .map(|k| full[..k].to_vec())
                    .find(|m| modules.contains_key(m));
                if let Some(t) = target
                    && &t != module
                {
                    uses.push((file.clone(), n + 1, line.trim().to_string(), t));
                }
            }
        }
    }
    House { modules, uses }
}

#[test]
fn every_import_points_down_the_layers() {
    let h = house();
    let mut wrong = Vec::new();
    let mut unknown = BTreeSet::new();
    for (module, _) in h.modules.iter() {
        if layer_of(&module[0]).is_none() {
            unknown.insert(module[0].clone());
        }
    }
    assert!(
        unknown.is_empty(),
        "modules not in LAYERS (tests/layers.rs): {unknown:?}; add each to the row it belongs to"
    );
    for (file, n, line, target) in &h.uses {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let from = module_of(&src, file);
        let (a, b) = (&from[0], &target[0]);
        if a == b {
            continue;
        }
        let (la, lb) = (layer_of(a).unwrap_or(0), layer_of(b).unwrap_or(0));
        if lb >= la {
            wrong.push(format!(
                "{}:{n}: '{a}' (row {la}) uses '{}' (row {lb}): `{line}` — move the piece it needs down, or this code up",
                file.strip_prefix(env!("CARGO_MANIFEST_DIR")).unwrap_or(file).display(),
                target.join("::"),
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against the layers:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn no_files_import_each_other_in_a_circle() {
    let h = house();
    let mut edges: BTreeMap<&Vec<String>, BTreeSet<&Vec<String>>> = BTreeMap::new();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let owned: Vec<(Vec<String>, Vec<String>)> = h
        .uses
        .iter()
        .map(|(f, _, _, t)| (module_of(&src, f), t.clone()))
        .collect();
    for (from, to) in &owned {
        edges.entry(from).or_default().insert(to);
    }
    // Depth-first search; a node met again on the current path closes a circle.
    fn visit<'a>(
        n: &'a Vec<String>,
        edges: &BTreeMap<&'a Vec<String>, BTreeSet<&'a Vec<String>>>,
        path: &mut Vec<&'a Vec<String>>,
        done: &mut BTreeSet<&'a Vec<String>>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| *p == n) {
            let mut circle: Vec<String> = path[i..].iter().map(|m| m.join("::")).collect();
            circle.push(n.join("::"));
            return Some(circle);
        }
        if done.contains(n) {
            return None;
        }
        path.push(n);
        for next in edges.get(n).into_iter().flatten() {
            if let Some(c) = visit(next, edges, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(n);
        None
    }
    let mut done = BTreeSet::new();
    for n in edges.keys() {
        if let Some(circle) = visit(n, &edges, &mut Vec::new(), &mut done) {
            panic!(
                "files import each other in a circle: {}",
                circle.join(" -> ")
            );
        }
    }
}

#[test]
fn the_scanner_sees_imports() {
    // A test that cannot fail is no test: the scanner must find what the
    // engine imports, or both tests above would pass on an empty house.
    let h = house();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let engine_uses: BTreeSet<String> = h
        .uses
        .iter()
        .filter(|(f, ..)| module_of(&src, f) == ["engine"])
        .map(|(.., t)| t.join("::"))
        .collect();
    for m in ["plan", "steps::ctx", "journal", "events"] {
        assert!(engine_uses.contains(m), "{m} not seen in {engine_uses:?}");
    }
    assert_eq!(
        paths_in("use super::{command, dns};"),
        vec![
            (true, vec!["command".to_string()]),
            (true, vec!["dns".to_string()])
        ]
    );
}
