#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The workspace's layout rules, checked on the sources (STYLE.md; the architecture issue):
//! - each library's `lib.rs` opens with a `# Layout` map that names every one of its modules;
//! - no import loops between a crate's top-level modules: what `crate::a` uses of `crate::b`
//!   (outside tests and doc comments) makes a graph without cycles.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .to_path_buf()
}

/// The library crates of the workspace: folders with `src/lib.rs`.
fn libraries() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(workspace())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("src/lib.rs").is_file() && p.join("Cargo.toml").is_file())
        .collect();
    out.sort();
    out
}

/// `mod x;` / `pub mod x;` declarations of a file, without `#[cfg(test)]` ones.
fn declared_modules(source: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut test_only = false;
    for line in source.lines().map(str::trim) {
        if line.starts_with("#[cfg(test)]") {
            test_only = true;
            continue;
        }
        let decl = line
            .strip_prefix("pub mod ")
            .or_else(|| line.strip_prefix("pub(crate) mod "))
            .or_else(|| line.strip_prefix("mod "));
        if let Some(name) = decl.and_then(|d| d.strip_suffix(';'))
            && !test_only
        {
            out.push(name.to_owned());
        }
        if !line.starts_with("#[") {
            test_only = false;
        }
    }
    out
}

/// The code of a file without its test module and comments.
fn code_of(source: &str) -> String {
    let cut = source
        .find("#[cfg(test)]\nmod tests")
        .unwrap_or(source.len());
    source[..cut]
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The files of top-level module `name`: `src/name.rs` and everything under `src/name/` but
/// unit tests.
fn module_files(src: &Path, name: &str) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let single = src.join(format!("{name}.rs"));
    if single.is_file() {
        files.push(single);
    }
    let mut stack = vec![src.join(name)];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries {
            let path = e.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|x| x == "rs")
                && path.file_name().is_some_and(|n| n != "tests.rs")
            {
                // A module's unit tests (`mod tests;` in `x/tests.rs`) are not its code.
                files.push(path);
            }
        }
    }
    files
}

/// The top-level modules `code` names as `crate::x`.
fn uses(code: &str, modules: &BTreeSet<String>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if modules.contains(&name) {
            out.insert(name);
        }
    }
    // `use crate::{a, b::c}` names several at once.
    for (at, _) in code.match_indices("crate::{") {
        let rest = &code[at + "crate::{".len()..];
        let group = &rest[..rest.find('}').unwrap_or(rest.len())];
        for item in group.split(',') {
            let name = item.trim().split("::").next().unwrap_or("").trim();
            if modules.contains(name) {
                out.insert(name.to_owned());
            }
        }
    }
    out
}

/// A cycle in `graph`, if there is one, as the path of modules around it.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|n| visit(n, graph, &mut Vec::new(), &mut done))
}

#[test]
fn every_library_opens_with_a_layout_map_naming_each_module() {
    let mut missing = Vec::new();
    for lib in libraries() {
        let source = std::fs::read_to_string(lib.join("src/lib.rs")).unwrap();
        let doc: String = source
            .lines()
            .take_while(|l| l.starts_with("//!") || l.trim().is_empty())
            .collect::<Vec<_>>()
            .join("\n");
        let Some(layout) = doc.find("# Layout").map(|at| &doc[at..]) else {
            missing.push(format!("{}: no `# Layout` in the crate doc", lib.display()));
            continue;
        };
        for m in declared_modules(&source) {
            if !layout.contains(&format!("`{m}`")) && !layout.contains(&format!("[`{m}")) {
                missing.push(format!(
                    "{}: module `{m}` is not in `# Layout`",
                    lib.display()
                ));
            }
        }
    }
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}

#[test]
fn no_crate_has_an_import_loop_between_its_modules() {
    let mut loops = Vec::new();
    for lib in libraries() {
        let src = lib.join("src");
        let root = std::fs::read_to_string(src.join("lib.rs")).unwrap();
        let modules: BTreeSet<String> = declared_modules(&root).into_iter().collect();
        let mut graph = BTreeMap::new();
        for m in &modules {
            let mut used = BTreeSet::new();
            for file in module_files(&src, m) {
                let code = code_of(&std::fs::read_to_string(&file).unwrap());
                used.extend(uses(&code, &modules));
            }
            used.remove(m);
            graph.insert(m.clone(), used);
        }
        if let Some(cycle) = find_cycle(&graph) {
            loops.push(format!("{}: {}", lib.display(), cycle.join(" → ")));
        }
    }
    assert!(loops.is_empty(), "import loops:\n{}", loops.join("\n"));
}

#[test]
fn the_loop_finder_finds_loops() {
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("a", &["b"][..]),
        ("b", &["c"][..]),
        ("c", &["a"][..]),
        ("d", &[][..]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.iter().map(|s| (*s).to_owned()).collect()))
    .collect();
    assert_eq!(find_cycle(&graph).unwrap(), ["a", "b", "c", "a"]);
    let modules: BTreeSet<String> = ["a", "b"].iter().map(|s| (*s).to_owned()).collect();
    assert_eq!(
        uses("use crate::{a::x, b};\n", &modules),
        modules,
        "grouped imports count"
    );
}

/// Every Rust file of the workspace (but generated code and build output).
fn rust_files() -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![workspace()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let path = e.unwrap().path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if path.is_dir() {
                if !name.starts_with('.') && name != "target" && name != "gen" {
                    stack.push(path);
                }
            } else if name.ends_with(".rs") {
                out.push(path);
            }
        }
    }
    out
}

/// Longer than this, a file says at its top why it is one file.
const LONG: usize = 650;

#[test]
fn a_long_file_says_why_it_is_one_file() {
    let mut unexplained = Vec::new();
    for file in rust_files() {
        let text = std::fs::read_to_string(&file).unwrap();
        if text.lines().count() <= LONG {
            continue;
        }
        let head: String = text.lines().take(60).collect::<Vec<_>>().join("\n");
        if !head.contains("# Why one long file") && !head.contains("One file, because") {
            unexplained.push(file.display().to_string());
        }
    }
    assert!(
        unexplained.is_empty(),
        "over {LONG} lines without a `# Why one long file` section or a `One file, because` line \
         at the top (or split the file; unit tests can go to `x/tests.rs`):\n{}",
        unexplained.join("\n")
    );
}
