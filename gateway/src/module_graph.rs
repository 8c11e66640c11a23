//! The gateway's top-level modules and who imports whom, read from the source: the gateway
//! stays acyclic at module level (a new import that closes a cycle fails here), and the
//! wire layer ([`crate::wire`]) imports nothing else from the crate but the Fx hasher.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// What [`crate::wire`] may import from the rest of the crate.
const WIRE_MAY_IMPORT: &[&str] = &["fx"];

type Graph = BTreeMap<String, BTreeSet<String>>;

/// Each top-level module of `src` and the top-level modules its code names (`crate::x`,
/// also inside `use crate::{x, y}`), comments left out.
fn graph(src: &Path) -> std::io::Result<Graph> {
    let mut sources: BTreeMap<String, String> = BTreeMap::new();
    for entry in std::fs::read_dir(src)? {
        let path = entry?.path();
        let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_owned();
        if name == "lib" || name == "module_graph" {
            continue;
        }
        let mut text = String::new();
        collect(&path, &mut text)?;
        sources.entry(name).or_default().push_str(&text);
    }
    let names: BTreeSet<String> = sources.keys().cloned().collect();
    Ok(sources
        .iter()
        .map(|(m, text)| {
            let deps = crate_refs(text).into_iter().filter(|d| d != m && names.contains(d)).collect();
            (m.clone(), deps)
        })
        .collect())
}

fn collect(path: &Path, out: &mut String) -> std::io::Result<()> {
    if path.is_dir() {
        for entry in std::fs::read_dir(path)? {
            collect(&entry?.path(), out)?;
        }
    } else if path.extension().is_some_and(|e| e == "rs") {
        for line in std::fs::read_to_string(path)?.lines() {
            let code = if line.trim_start().starts_with("//") { "" } else { line };
            out.push_str(code);
            out.push('\n');
        }
    }
    Ok(())
}

/// The first path segment after every `crate::`, and each item of a `crate::{…}` group.
fn crate_refs(text: &str) -> BTreeSet<String> {
    let ident = |s: &str| s.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect::<String>();
    let mut refs = BTreeSet::new();
    for (at, _) in text.match_indices("crate::") {
        let rest = &text[at + "crate::".len()..];
        match rest.strip_prefix('{') {
            Some(group) => {
                let (mut depth, mut item_start) = (0usize, true);
                for (i, c) in group.char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' if depth == 0 => break,
                        '}' => depth -= 1,
                        ',' if depth == 0 => item_start = true,
                        c if item_start && !c.is_whitespace() => {
                            refs.insert(ident(&group[i..]));
                            item_start = false;
                        }
                        _ => {}
                    }
                }
            }
            None => {
                refs.insert(ident(rest));
            }
        }
    }
    refs
}

/// Edges whose ends are in one strongly connected component (that is, on a cycle).
fn cycle_edges(g: &Graph) -> BTreeSet<(String, String)> {
    let reach = |from: &str| {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.to_owned()];
        while let Some(m) = todo.pop() {
            for d in g.get(&m).into_iter().flatten() {
                if seen.insert(d.clone()) {
                    todo.push(d.clone());
                }
            }
        }
        seen
    };
    let reachable: BTreeMap<&String, BTreeSet<String>> = g.keys().map(|m| (m, reach(m))).collect();
    let mut edges = BTreeSet::new();
    for (m, deps) in g {
        for d in deps {
            if reachable.get(d).is_some_and(|r| r.contains(m)) {
                edges.insert((m.clone(), d.clone()));
            }
        }
    }
    edges
}

#[test]
fn no_import_cycle_between_top_level_modules() -> std::io::Result<()> {
    let g = graph(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"))?;
    assert!(g.len() > 10 && g.values().any(|d| !d.is_empty()), "the source was not read: {g:?}");
    let cycles = cycle_edges(&g);
    assert!(cycles.is_empty(), "imports on a cycle between top-level modules: {cycles:?}");
    Ok(())
}

#[test]
fn the_wire_layer_imports_nothing_of_the_pipeline() -> std::io::Result<()> {
    let g = graph(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"))?;
    let wire = g.get("wire").ok_or_else(|| std::io::Error::other("no wire module"))?;
    let foreign: Vec<_> = wire.iter().filter(|m| !WIRE_MAY_IMPORT.contains(&m.as_str())).collect();
    assert!(foreign.is_empty(), "the wire layer imports {foreign:?}");
    // And the rest of the pipeline does depend on it (the reader sees the imports).
    assert!(g.get("proxy").is_some_and(|d| d.contains("wire")), "{g:?}");
    Ok(())
}

#[test]
fn the_reader_sees_grouped_imports_and_skips_comments() {
    let refs = crate_refs("use crate::{a::X, b, c::{d, e}};\nlet x = crate::f::g();");
    assert_eq!(refs, ["a", "b", "c", "f"].into_iter().map(str::to_owned).collect());
    let g: Graph = [("a", vec!["b"]), ("b", vec!["a", "c"]), ("c", vec![])]
        .into_iter()
        .map(|(m, d)| (m.to_owned(), d.into_iter().map(str::to_owned).collect()))
        .collect();
    let cyc = cycle_edges(&g);
    assert_eq!(cyc.len(), 2, "{cyc:?}");
    assert!(!cyc.contains(&("b".to_owned(), "c".to_owned())));
}
