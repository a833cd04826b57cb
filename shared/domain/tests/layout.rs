//! The domain's layout (README, "Architecture"): which top-level module may use which, no cycle between them, and
//! no source file over 1,000 lines. Files named `tests.rs` and inline `#[cfg(test)] mod tests` blocks are test code
//! and may use anything (the in-memory adapters above all).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const MAX_LINES: usize = 1000;

/// A -> the modules A may use.
fn allowed() -> BTreeMap<&'static str, &'static [&'static str]> {
    BTreeMap::from([
        ("record", &[][..]),
        ("audit", &["record"][..]),
        ("tell", &["record"][..]),
        ("gate", &["record", "audit", "tell"][..]),
        ("rollback", &["record", "audit", "tell", "gate"][..]),
        ("measure", &["record", "audit", "tell", "gate", "rollback"][..]),
        ("ingest", &["record", "tell"][..]),
        (
            "memory",
            &["record", "audit", "tell", "gate", "rollback", "measure", "ingest"][..],
        ),
    ])
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The top-level module a file under src/ belongs to (`None` for lib.rs).
fn top_module(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel.components().next()?.as_os_str().to_str()?.to_string();
    if rel.components().count() == 1 {
        return first.strip_suffix(".rs").filter(|m| *m != "lib").map(str::to_string);
    }
    Some(first)
}

/// The code of a file that is not test code: everything before an inline `#[cfg(test)]` module.
fn non_test_code(text: &str) -> &str {
    let mut offset = 0;
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        if line.trim() == "#[cfg(test)]" && lines.peek().is_some_and(|next| next.trim_start().starts_with("mod ")) {
            return &text[..offset];
        }
        offset += line.len() + 1;
    }
    text
}

/// Every `crate::<module>` a piece of code names, with the line it is on (doc comments included: they link).
fn crate_references(code: &str) -> Vec<(String, usize, String)> {
    let mut found = Vec::new();
    for (n, line) in code.lines().enumerate() {
        let mut rest = line;
        while let Some(at) = rest.find("crate::") {
            let before_ok = at == 0 || !rest[..at].ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == '$');
            let after = &rest[at + "crate::".len()..];
            let name: String = after.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            if before_ok && !name.is_empty() {
                found.push((name, n + 1, line.trim().to_string()));
            }
            rest = after;
        }
    }
    found
}

#[test]
fn top_level_modules_use_only_what_the_layout_allows_and_form_no_cycle() {
    let src = root().join("src");
    let allowed = allowed();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut offences = Vec::new();
    for file in &files {
        if file.file_name().is_some_and(|n| n == "tests.rs") {
            continue;
        }
        let Some(from) = top_module(&src, file) else { continue };
        let text = std::fs::read_to_string(file).unwrap();
        let Some(may) = allowed.get(from.as_str()) else {
            offences.push(format!(
                "{}: top-level module `{from}` is not in the layout",
                file.display()
            ));
            continue;
        };
        for (to, line, code) in crate_references(non_test_code(&text)) {
            if to == from {
                continue;
            }
            graph.entry(from.clone()).or_default().insert(to.clone());
            if !may.contains(&to.as_str()) {
                offences.push(format!(
                    "{}:{line}: `{from}` may not use `{to}` (allowed: {may:?}): {code}",
                    file.strip_prefix(root()).unwrap().display()
                ));
            }
        }
    }
    assert!(
        offences.is_empty(),
        "imports against the layout:\n{}",
        offences.join("\n")
    );

    // No cycle: repeatedly remove modules that use nothing left.
    let mut left = graph.clone();
    for m in allowed.keys() {
        left.entry(m.to_string()).or_default();
    }
    loop {
        let leaves: Vec<String> = left
            .iter()
            .filter(|(_, uses)| uses.is_empty())
            .map(|(m, _)| m.clone())
            .collect();
        if leaves.is_empty() {
            break;
        }
        for leaf in &leaves {
            left.remove(leaf);
        }
        for uses in left.values_mut() {
            uses.retain(|u| !leaves.contains(u));
        }
    }
    assert!(left.is_empty(), "import cycle between top-level modules: {left:?}");
}

#[test]
fn no_source_file_is_over_a_thousand_lines() {
    let mut files = Vec::new();
    rust_files(&root().join("src"), &mut files);
    rust_files(&root().join("tests"), &mut files);
    let long: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let lines = std::fs::read_to_string(f).unwrap().lines().count();
            (lines > MAX_LINES).then(|| format!("{}: {lines} lines", f.strip_prefix(root()).unwrap().display()))
        })
        .collect();
    assert!(
        long.is_empty(),
        "files over {MAX_LINES} lines (split them by idea):\n{}",
        long.join("\n")
    );
}

#[test]
fn the_checker_sees_a_forbidden_import_and_skips_test_code() {
    let code = "use crate::memory::MemoryStore;\n#[cfg(test)]\nmod tests {\n    use crate::rollback::guard;\n}\n";
    let refs = crate_references(non_test_code(code));
    assert_eq!(refs.len(), 1);
    assert_eq!(refs[0].0, "memory");
    assert!(!allowed()["record"].contains(&"memory"));
}
