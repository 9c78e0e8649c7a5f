//! The layering of `src/` (docs/architecture.md, "Layers"), enforced: a module may use modules
//! of its own layer or below, never above, and the module graph has no cycle at all (a cycle
//! within one layer is refused too). The test reads the sources as text: every `crate::NAME`
//! outside a comment is an edge from the file's top-level module to `NAME`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Lowest first. A module missing from this table fails the test: a new module must be given
/// its place on purpose.
const LAYERS: &[(&str, &[&str])] = &[
    (
        "L0 leaves: ids, units, errors, paths, files, host facts",
        &[
            "error",
            "ids",
            "units",
            "graph",
            "paths",
            "files",
            "sys",
            "rt",
            "task_array",
        ],
    ),
    ("L1 wire and configuration", &["protocol", "config"]),
    (
        "L2 deployer, scheduler, worker",
        &["jobqueue", "scheduler", "kernels", "worker"],
    ),
    (
        "L3 clients and what is built on them",
        &["client", "local", "array", "cluster", "mpi", "dashboard"],
    ),
    ("L4 the command line (the binary's)", &["cli"]),
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS
        .iter()
        .position(|(_, modules)| modules.contains(&module))
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

/// The top-level module a file belongs to: `src/a.rs` and `src/a/...` are `a`.
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (name != "lib" && name != "main").then(|| name.to_string())
}

/// `crate::NAME` references outside `//` comments (doc links are not dependencies).
fn crate_references(text: &str) -> BTreeSet<String> {
    let mut refs = BTreeSet::new();
    for line in text.lines() {
        let code = match line.find("//") {
            Some(i) => &line[..i],
            None => line,
        };
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            // Not `rdask_crate::` or similar: the character before must not be part of a name.
            let before = rest[..i].chars().next_back();
            rest = &rest[i + "crate::".len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue;
            }
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                refs.insert(name);
            }
        }
    }
    refs
}

fn module_graph() -> BTreeMap<String, BTreeMap<String, Vec<String>>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    // module -> dependency -> files that use it
    let mut graph: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    for file in files {
        let Some(module) = module_of(&src, &file) else {
            continue;
        };
        let text = std::fs::read_to_string(&file).unwrap();
        let deps = graph.entry(module.clone()).or_default();
        for dep in crate_references(&text) {
            // Items of lib.rs itself (`crate::Error`, `crate::Result`) are re-exports of L0.
            if dep == module || dep.starts_with(char::is_uppercase) {
                continue;
            }
            let shown = file.strip_prefix(&src).unwrap().display().to_string();
            deps.entry(dep).or_default().push(shown);
        }
    }
    graph
}

#[test]
fn every_module_has_a_layer() {
    let unplaced: Vec<String> = module_graph()
        .keys()
        .filter(|m| layer_of(m).is_none())
        .cloned()
        .collect();
    assert!(
        unplaced.is_empty(),
        "modules with no layer in tests/layers.rs (give each its place): {unplaced:?}"
    );
}

#[test]
fn imports_only_run_downwards() {
    let mut upward = Vec::new();
    for (module, deps) in module_graph() {
        let Some(from) = layer_of(&module) else {
            continue;
        };
        for (dep, files) in deps {
            match layer_of(&dep) {
                Some(to) if to <= from => {}
                Some(to) => upward.push(format!(
                    "{module} ({}) uses {dep} ({}) in {}",
                    LAYERS[from].0,
                    LAYERS[to].0,
                    files.join(", ")
                )),
                None => upward.push(format!(
                    "{module} uses `crate::{dep}`, which is not a module with a layer ({})",
                    files.join(", ")
                )),
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports against the layering:\n{}",
        upward.join("\n")
    );
}

#[test]
fn the_module_graph_has_no_cycle() {
    let graph = module_graph();
    // Depth-first search with colours; the first back edge names a cycle.
    fn visit<'a>(
        node: &'a str,
        graph: &'a BTreeMap<String, BTreeMap<String, Vec<String>>>,
        state: &mut BTreeMap<&'a str, bool>,
        path: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        match state.get(node) {
            Some(true) => return None,
            Some(false) => {
                let start = path.iter().position(|n| *n == node).unwrap();
                let mut cycle: Vec<String> = path[start..].iter().map(|s| s.to_string()).collect();
                cycle.push(node.to_string());
                return Some(cycle);
            }
            None => {}
        }
        state.insert(node, false);
        path.push(node);
        if let Some(deps) = graph.get(node) {
            for dep in deps.keys() {
                if let Some(c) = visit(dep, graph, state, path) {
                    return Some(c);
                }
            }
        }
        path.pop();
        state.insert(node, true);
        None
    }
    let mut state = BTreeMap::new();
    for node in graph.keys() {
        let mut path = Vec::new();
        if let Some(cycle) = visit(node, &graph, &mut state, &mut path) {
            panic!("import cycle: {}", cycle.join(" -> "));
        }
    }
}

#[test]
fn the_scanner_sees_what_it_should() {
    let text = "use crate::graph::TaskId;\n// crate::cli in a comment\nlet x = crate::units::parse(); my_crate::no;";
    let refs: Vec<String> = crate_references(text).into_iter().collect();
    assert_eq!(refs, ["graph", "units"]);
}
