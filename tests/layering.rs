//! The reaktor's own sources are layered: no file imports another that imports it back,
//! directly or around a loop (ARCHITECTURE.md, "Layers"). A circle means two files can only be
//! understood — and changed — together; this test names the files of any circle that appears.
//!
//! Neither `reaktor/src` nor any other crate of the workspace has one.
//!
//! It reads each crate's `src` as text: every path a file names through `crate::`, `super::`,
//! `self::` or one of its own child modules (in `use` lines and in code), resolved to the
//! file that defines the deepest module the path reaches. A folder's `mod.rs` declaring its
//! children with `mod` is not an import.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module path from the crate root (`["console", "hub"]`).
type ModPath = Vec<String>;

struct SourceFile {
    module: ModPath,
    /// The text with comments and string literals blanked out.
    code: String,
}

/// Every `.rs` file under `dir`, by its module path. `main.rs` and `lib.rs` are both roots of
/// their crates; main.rs reaches the library through `reaktor::`, which is read like `crate::`.
fn read_sources(src: &Path) -> BTreeMap<PathBuf, SourceFile> {
    let mut files = BTreeMap::new();
    let mut pending = vec![src.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let relative = path.strip_prefix(src).unwrap();
            let mut module: ModPath = relative
                .parent()
                .into_iter()
                .flat_map(|p| p.components())
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
            let is_root = module.is_empty() && (stem == "main" || stem == "lib");
            if stem != "mod" && !is_root {
                module.push(stem);
            }
            let text = std::fs::read_to_string(&path).unwrap();
            files.insert(
                relative.to_path_buf(),
                SourceFile {
                    module,
                    code: strip_test_items(&strip_comments_and_strings(&text)),
                },
            );
        }
    }
    files
}

/// Blanks out `//` and `/* */` comments and the contents of string and char literals, so a
/// path named in a doc comment or a message is not read as an import.
fn strip_comments_and_strings(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        let rest = &text[i..];
        if rest.starts_with("//") {
            let end = rest.find('\n').unwrap_or(rest.len());
            i += end;
        } else if rest.starts_with("/*") {
            let end = rest.find("*/").map_or(rest.len(), |e| e + 2);
            i += end;
        } else if rest.starts_with("r#\"") || rest.starts_with("r\"") {
            let hashes = rest[1..].bytes().take_while(|&b| b == b'#').count();
            let close = format!("\"{}", "#".repeat(hashes));
            let open = 2 + hashes;
            let end = rest[open..]
                .find(&close)
                .map_or(rest.len(), |e| open + e + close.len());
            out.push_str("\"\"");
            i += end;
        } else if bytes[i] == b'"' {
            let mut j = i + 1;
            while j < bytes.len() && bytes[j] != b'"' {
                j += if bytes[j] == b'\\' { 2 } else { 1 };
            }
            out.push_str("\"\"");
            i = (j + 1).min(bytes.len());
        } else if bytes[i] == b'\'' && is_char_literal(rest) {
            let end = rest[1..].find('\'').map_or(rest.len(), |e| e + 2);
            out.push_str("' '");
            i += end;
        } else {
            let c = rest.chars().next().unwrap();
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// Removes every `#[cfg(test)]` item (a file's `mod tests { use super::*; ... }` names its own
/// file, not its parent's): the layering is the shipped code's.
fn strip_test_items(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    let mut rest = code;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let item = &rest[at + "#[cfg(test)]".len()..];
        let open = item.find(['{', ';']).unwrap_or(item.len());
        let end = if item[open..].starts_with('{') {
            let mut depth = 0usize;
            let mut end = item.len();
            for (k, b) in item.bytes().enumerate().skip(open) {
                match b {
                    b'{' => depth += 1,
                    b'}' => {
                        depth -= 1;
                        if depth == 0 {
                            end = k + 1;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            end
        } else {
            (open + 1).min(item.len())
        };
        rest = &item[end..];
    }
    out.push_str(rest);
    out
}

/// `'x'`, `'\n'`, `'\u{..}'` — not a lifetime (`'a`).
fn is_char_literal(rest: &str) -> bool {
    let mut chars = rest.chars().skip(1);
    matches!(
        (chars.next(), chars.next()),
        (Some('\\'), _) | (Some(_), Some('\''))
    )
}

fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// One path a file names: its segments from the crate root, the name it is bound to when a
/// `use` renames it (`as`), and whether it is a `pub use` (a module's public face).
struct Named {
    path: ModPath,
    alias: Option<String>,
    reexport: bool,
}

/// The paths of the tree that starts at `code[at..]` (`a::b::{c, d::e as f}` → `a::b::c`,
/// `a::b::d::e` bound to `f`), each as its segments and alias; returns where the tree ends.
fn path_tree(
    code: &str,
    mut at: usize,
    prefix: &[String],
    out: &mut Vec<(ModPath, Option<String>)>,
) -> usize {
    let bytes = code.as_bytes();
    let mut path = prefix.to_vec();
    loop {
        while at < bytes.len() && bytes[at].is_ascii_whitespace() {
            at += 1;
        }
        if at < bytes.len() && bytes[at] == b'{' {
            at += 1;
            loop {
                while at < bytes.len() && (bytes[at].is_ascii_whitespace() || bytes[at] == b',') {
                    at += 1;
                }
                if at >= bytes.len() || bytes[at] == b'}' {
                    return at + 1;
                }
                let before = at;
                at = path_tree(code, at, &path, out);
                if at == before {
                    at += 1;
                }
            }
        }
        let start = at;
        while at < bytes.len() && is_ident_byte(bytes[at]) {
            at += 1;
        }
        if start == at {
            out.push((path, None));
            return at;
        }
        path.push(code[start..at].to_string());
        if code[at..].starts_with("::") {
            at += 2;
            continue;
        }
        // `x as y`: the name it is bound to.
        let rest = &code[at..];
        let trimmed = rest.trim_start();
        let alias = trimmed.strip_prefix("as ").map(|after| {
            let after = after.trim_start();
            let len = after.bytes().take_while(|&b| is_ident_byte(b)).count();
            at += rest.len() - after.len() + len;
            after[..len].to_string()
        });
        out.push((path, alias));
        return at;
    }
}

/// Whether the text before `at` ends in `pub use` (or `pub(crate) use`, `pub(super) use`).
fn after_pub_use(code: &str, at: usize) -> bool {
    let Some(before) = code[..at].trim_end().strip_suffix("use") else {
        return false;
    };
    let before = before.trim_end();
    before.ends_with("pub")
        || (before.ends_with(')')
            && before
                .rfind("pub(")
                .is_some_and(|p| !before[p..].contains('\n')))
}

/// Every path `code` names from its own crate, absolute (from the crate root).
fn named_paths(file: &SourceFile, children: &BTreeSet<String>) -> Vec<Named> {
    let code = &file.code;
    let bytes = code.as_bytes();
    let mut found = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let starts_word = i == 0 || !(is_ident_byte(bytes[i - 1]) || bytes[i - 1] == b':');
        if !starts_word || !is_ident_byte(bytes[i]) {
            i += 1;
            continue;
        }
        let end = i + code[i..].bytes().take_while(|&b| is_ident_byte(b)).count();
        let word = &code[i..end];
        if !code[end..].starts_with("::") {
            i = end;
            continue;
        }
        let base: Option<ModPath> = match word {
            "crate" | "reaktor" => Some(Vec::new()),
            "self" => Some(file.module.clone()),
            "super" => Some(file.module[..file.module.len().saturating_sub(1)].to_vec()),
            child if children.contains(child) => Some(file.module.clone()),
            _ => None,
        };
        let Some(mut base) = base else {
            i = end;
            continue;
        };
        let at = if matches!(word, "crate" | "reaktor" | "self" | "super") {
            // `super::super::x`: each further `super` climbs one more module.
            let mut at = end + 2;
            while code[at..].starts_with("super::") {
                base.pop();
                at += "super::".len();
            }
            at
        } else {
            // A child module: the path starts at its name.
            i
        };
        let reexport = after_pub_use(code, i);
        let mut leaves = Vec::new();
        let next = path_tree(code, at, &base, &mut leaves);
        found.extend(leaves.into_iter().map(|(path, alias)| Named {
            path,
            alias,
            reexport,
        }));
        i = next.max(end + 2);
    }
    found
}

/// What each module re-exports (`pub use`): the name it offers -> the path it stands for.
type Reexports = BTreeMap<ModPath, BTreeMap<String, ModPath>>;

/// The file that defines what `path` names: the deepest module it reaches, or, where that
/// module only re-exports the next name, the file the re-export stands for.
fn resolve<'a>(
    path: &ModPath,
    modules: &'a BTreeMap<ModPath, PathBuf>,
    reexports: &Reexports,
) -> Option<&'a PathBuf> {
    let mut path = path.clone();
    // A bounded walk: re-exports of re-exports are followed, a loop of them is not.
    for _ in 0..16 {
        let n = (0..=path.len())
            .rev()
            .find(|&n| modules.contains_key(&path[..n]))?;
        let through = path
            .get(n)
            .and_then(|name| reexports.get(&path[..n])?.get(name));
        match through {
            Some(target) => {
                let mut next = target.clone();
                next.extend_from_slice(&path[n + 1..]);
                path = next;
            }
            None => return modules.get(&path[..n]),
        }
    }
    None
}

/// Each strongly connected component of more than one file: the circles.
fn circles(edges: &BTreeMap<PathBuf, BTreeSet<PathBuf>>) -> Vec<Vec<PathBuf>> {
    // Tarjan's algorithm, iterative enough for a few dozen files (recursion is fine here).
    struct State<'a> {
        edges: &'a BTreeMap<PathBuf, BTreeSet<PathBuf>>,
        index: BTreeMap<&'a PathBuf, usize>,
        low: BTreeMap<&'a PathBuf, usize>,
        stack: Vec<&'a PathBuf>,
        on_stack: BTreeSet<&'a PathBuf>,
        next: usize,
        found: Vec<Vec<PathBuf>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a PathBuf) {
        s.index.insert(v, s.next);
        s.low.insert(v, s.next);
        s.next += 1;
        s.stack.push(v);
        s.on_stack.insert(v);
        for w in s.edges.get(v).into_iter().flatten() {
            if !s.index.contains_key(w) {
                visit(s, w);
                let low = s.low[w].min(s.low[v]);
                s.low.insert(v, low);
            } else if s.on_stack.contains(w) {
                let low = s.index[w].min(s.low[v]);
                s.low.insert(v, low);
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                component.push(w.clone());
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                s.found.push(component);
            }
        }
    }
    let mut s = State {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        next: 0,
        found: Vec::new(),
    };
    for v in edges.keys() {
        if !s.index.contains_key(v) {
            visit(&mut s, v);
        }
    }
    s.found.sort();
    s.found
}

/// Which file imports which, from the sources under `src`.
fn import_graph(src: &Path) -> BTreeMap<PathBuf, BTreeSet<PathBuf>> {
    let files = read_sources(src);
    // The library's modules (main.rs is a crate of its own that only uses the library).
    let modules: BTreeMap<ModPath, PathBuf> = files
        .iter()
        .filter(|(path, _)| path.as_path() != Path::new("main.rs"))
        .map(|(path, f)| (f.module.clone(), path.clone()))
        .collect();
    let children_of = |module: &ModPath| -> BTreeSet<String> {
        modules
            .keys()
            .filter(|m| m.len() == module.len() + 1 && m.starts_with(module))
            .map(|m| m.last().unwrap().clone())
            .collect()
    };
    let named: BTreeMap<&PathBuf, Vec<Named>> = files
        .iter()
        .map(|(path, file)| (path, named_paths(file, &children_of(&file.module))))
        .collect();
    let mut reexports = Reexports::new();
    for (path, names) in &named {
        for n in names.iter().filter(|n| n.reexport) {
            let Some(name) = n.alias.clone().or_else(|| n.path.last().cloned()) else {
                continue;
            };
            reexports
                .entry(files[*path].module.clone())
                .or_default()
                .insert(name, n.path.clone());
        }
    }
    let mut edges = BTreeMap::new();
    for (path, names) in &named {
        // A `pub use` is the module's public face, not a use of what it names: the files
        // that name it through this module are resolved to the file it stands for.
        let targets: BTreeSet<PathBuf> = names
            .iter()
            .filter(|n| !n.reexport)
            .filter_map(|n| resolve(&n.path, &modules, &reexports))
            .filter(|t| t != path)
            .cloned()
            .collect();
        edges.insert((*path).clone(), targets);
    }
    edges
}

fn reaktor_src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn no_file_of_the_reaktor_imports_a_file_that_imports_it_back() {
    let edges = import_graph(&reaktor_src());
    let found = circles(&edges);
    let described: Vec<String> = found
        .iter()
        .map(|files| {
            let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
            format!("  {}", names.join(" <-> "))
        })
        .collect();
    assert!(
        found.is_empty(),
        "import circles in reaktor/src (move what both need below both, or hand it in as a \
         parameter, as kind::Machinery does for the console):\n{}",
        described.join("\n")
    );
}

/// Every other crate of the workspace (streams, the nuklei, the Rust client) by the same
/// rule: no import circle in its `src`. (The five circles found when this check first covered
/// the workspace were each a folder's `mod.rs` or `lib.rs` naming a child that holds `impl`
/// blocks of its type; the fix each time was to move what the parent names into a leaf
/// module, as switch/types.rs holds the switch's replies and cluster/pending.rs the cluster
/// instance's operations in flight.)
#[test]
fn no_crate_of_the_workspace_has_an_import_circle() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut srcs = vec!["streams/src".to_string(), "clients/rust/src".to_string()];
    let mut nuklei: Vec<String> = std::fs::read_dir(root.join("nuklei"))
        .expect("nuklei/")
        .filter_map(|e| Some(e.ok()?.file_name().to_string_lossy().into_owned()))
        .map(|name| format!("nuklei/{name}/src"))
        .filter(|src| root.join(src).is_dir())
        .collect();
    nuklei.sort();
    srcs.extend(nuklei);
    assert!(
        srcs.len() > 3,
        "the workspace's crates were not found: {srcs:?}"
    );
    let mut described = Vec::new();
    for src in &srcs {
        for files in circles(&import_graph(&root.join(src))) {
            let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
            described.push(format!("  {src}: {}", names.join(" <-> ")));
        }
    }
    assert!(
        described.is_empty(),
        "import circles (move what both need below both, as switch/types.rs holds the \
         switch's replies for the files of its operations):\n{}",
        described.join("\n")
    );
}

/// The reader itself: it must see a circle when there is one, or the test above cannot fail.
#[test]
fn the_reader_finds_a_circle_through_use_lines_super_and_child_modules() {
    let dir = std::env::temp_dir().join(format!("reaktor-layering-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("outer")).unwrap();
    let write = |name: &str, text: &str| std::fs::write(dir.join(name), text).unwrap();
    write("lib.rs", "mod low;\nmod outer;\nmod high;\n");
    // low -> high -> low, through a grouped use and a path in code.
    write("low.rs", "use crate::{high::{Top, other}};\n");
    write(
        "high.rs",
        "// crate::outer in a comment is not an import\nfn f() { crate::low::g(); let s = \"crate::outer\"; }\n",
    );
    // outer/mod.rs -> outer/inner.rs (child path) -> outer/mod.rs (super).
    write(
        "outer/mod.rs",
        "mod inner;\nmod face;\nmod user;\npub use face::Face as Front;\nfn m() { inner::run(); }\n",
    );
    write("outer/inner.rs", "use super::Shared;\nlet c = 'x';\n");
    // A facade is not a circle: outer/mod.rs re-exports face.rs's Face, and face.rs's sibling
    // names it through the facade; a test module's `use super::*` names its own file.
    write(
        "outer/face.rs",
        "pub struct Face;\n#[cfg(test)]\nmod tests { use super::*; fn t() { crate::low::x(); } }\n",
    );
    write("outer/user.rs", "use super::Front;\n");
    let found = circles(&import_graph(&dir));
    let _ = std::fs::remove_dir_all(&dir);
    let as_strings: Vec<Vec<String>> = found
        .iter()
        .map(|c| c.iter().map(|p| p.display().to_string()).collect())
        .collect();
    assert_eq!(
        as_strings,
        vec![
            vec!["high.rs".to_string(), "low.rs".to_string()],
            vec!["outer/inner.rs".to_string(), "outer/mod.rs".to_string()],
        ],
        "the reader missed or invented a circle"
    );
}
