//! The manifest-directory source: every `*.yaml|*.yml|*.json` under a directory.
//!
//! A file that cannot be read keeps contributing its last good objects, so one bad edit
//! never takes routes away.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::diag::Diagnostic;
use crate::model::Snapshot;
use crate::source::parse::{parse_file, ParsedFile};

/// Reads a manifest directory, remembering each file's last good contents.
#[derive(Debug)]
pub struct ManifestDir {
    root: PathBuf,
    last_good: HashMap<PathBuf, Snapshot>,
    /// Each file's last parse, by a hash of its bytes: a reload parses only the files whose
    /// bytes changed, and unchanged objects stay the same allocations.
    parsed: HashMap<PathBuf, (u128, ParsedFile)>,
}

impl ManifestDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        ManifestDir { root: root.into(), last_good: HashMap::new(), parsed: HashMap::new() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Reads every manifest file now; returns the objects and what was wrong. Only files whose
    /// bytes changed since the last read are parsed (on several threads when there are many);
    /// the others give their last parse again, the same objects by `Arc`.
    pub fn load(&mut self) -> (Snapshot, Vec<Diagnostic>) {
        let mut diagnostics = Vec::new();
        let mut files = Vec::new();
        let mut visited = std::collections::HashSet::new();
        if let Err(e) = collect_manifest_files(&self.root, &mut files, &mut visited, 0) {
            diagnostics.push(Diagnostic::error(format!("cannot read directory: {e}")).file(&self.root));
        }
        files.sort();
        // (The bytes are compared, not modification times, which two quick writes can share.)
        let mut outcomes: Vec<(PathBuf, Outcome)> = files
            .into_iter()
            .map(|path| {
                let outcome = match std::fs::read_to_string(&path) {
                    Err(e) => Outcome::Parsed(
                        None,
                        Box::new(ParsedFile {
                            failed: true,
                            diagnostics: vec![Diagnostic::error(format!("cannot read file: {e}")).file(&path)],
                            ..Default::default()
                        }),
                    ),
                    Ok(text) => {
                        let hash = xxhash_rust::xxh3::xxh3_128(text.as_bytes());
                        match self.parsed.get(&path) {
                            Some((seen, parsed)) if *seen == hash => Outcome::Parsed(None, Box::new(parsed.clone())),
                            _ => Outcome::Changed(hash, text),
                        }
                    }
                };
                (path, outcome)
            })
            .collect();
        parse_changed(&mut outcomes);

        let mut snapshot = Snapshot::default();
        let mut seen = HashMap::new();
        for (path, outcome) in outcomes {
            let Outcome::Parsed(fresh, parsed) = outcome else {
                unreachable!("parse_changed parses every changed file")
            };
            if let Some(hash) = fresh {
                self.parsed.insert(path.clone(), (hash, (*parsed).clone()));
            }
            diagnostics.extend(parsed.diagnostics);
            let objects = if parsed.failed {
                match self.last_good.get(&path) {
                    Some(previous) => {
                        diagnostics.push(Diagnostic::warning("kept serving this file's last good objects").file(&path));
                        previous.clone()
                    }
                    None => Snapshot::default(),
                }
            } else {
                self.last_good.insert(path.clone(), parsed.objects.clone());
                parsed.objects
            };
            seen.insert(path, ());
            snapshot.extend(objects);
        }
        // Deleted files take their objects with them.
        self.last_good.retain(|path, _| seen.contains_key(path));
        self.parsed.retain(|path, _| seen.contains_key(path));
        (snapshot, diagnostics)
    }
}

/// One file of a read: parsed (with the hash of its bytes when parsed just now, to be cached),
/// or changed and not parsed yet.
enum Outcome {
    Parsed(Option<u128>, Box<ParsedFile>),
    Changed(u128, String),
}

/// Parses the changed files, on up to 4 threads when there is more than 1 MB of them (a first
/// read of a big directory).
fn parse_changed(outcomes: &mut [(PathBuf, Outcome)]) {
    let bytes: usize = outcomes.iter().map(|(_, o)| if let Outcome::Changed(_, t) = o { t.len() } else { 0 }).sum();
    let threads = if bytes > 1 << 20 { std::thread::available_parallelism().map_or(1, |n| n.get()).min(4) } else { 1 };
    let parse_one = |(path, outcome): &mut (PathBuf, Outcome)| {
        if let Outcome::Changed(hash, text) = outcome {
            *outcome = Outcome::Parsed(Some(*hash), Box::new(parse_file(path, text)));
        }
    };
    if threads == 1 {
        outcomes.iter_mut().for_each(parse_one);
        return;
    }
    // Files in turn to each thread, so one thread does not get all the big ones.
    let next = std::sync::atomic::AtomicUsize::new(0);
    let slots: Vec<std::sync::Mutex<&mut (PathBuf, Outcome)>> =
        outcomes.iter_mut().map(std::sync::Mutex::new).collect();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(slot) = slots.get(i) else { break };
                parse_one(&mut slot.lock().unwrap_or_else(|e| e.into_inner()));
            });
        }
    });
}

fn is_manifest(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref(),
        Some("yaml" | "yml" | "json")
    )
}

/// Hidden entries are skipped: editor swap files, `.git`, and the `..data` directories of
/// ConfigMap mounts (whose visible symlinks are followed instead).
fn is_hidden(path: &Path) -> bool {
    path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.'))
}

/// Directories are walked once each (by canonical path) and at most 32 deep, so a symlink
/// loop cannot make a reload walk forever.
fn collect_manifest_files(
    dir: &Path,
    out: &mut Vec<PathBuf>,
    visited: &mut std::collections::HashSet<PathBuf>,
    depth: usize,
) -> std::io::Result<()> {
    if depth > 32 || !visited.insert(std::fs::canonicalize(dir)?) {
        return Ok(());
    }
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if is_hidden(&path) {
            continue;
        }
        // metadata() follows symlinks, as a ConfigMap volume needs.
        let Ok(meta) = std::fs::metadata(&path) else { continue };
        if meta.is_dir() {
            collect_manifest_files(&path, out, visited, depth + 1)?;
        } else if meta.is_file() && is_manifest(&path) {
            out.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SVC: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {ports: [{port: 80}]}\n";

    #[test]
    fn a_broken_file_keeps_its_last_good_objects() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sub").join("svc.yaml");
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, SVC).unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not a manifest").unwrap();
        let mut source = ManifestDir::new(dir.path());
        let (snap, diags) = source.load();
        assert_eq!(snap.services.len(), 1);
        assert!(diags.is_empty(), "{diags:?}");

        std::fs::write(&file, "kind: [oops\n").unwrap();
        let (snap, diags) = source.load();
        assert_eq!(snap.services.len(), 1, "last good objects kept");
        assert!(crate::diag::has_errors(&diags));

        std::fs::remove_file(&file).unwrap();
        let (snap, _) = source.load();
        assert_eq!(snap.services.len(), 0, "a deleted file's objects go away");
    }

    #[test]
    fn symlink_loops_are_walked_once() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("svc.yaml"), SVC).unwrap();
        std::os::unix::fs::symlink(dir.path(), dir.path().join("loop")).unwrap();
        std::os::unix::fs::symlink(dir.path(), dir.path().join("loop2")).unwrap();
        let (snap, _) = ManifestDir::new(dir.path()).load();
        assert_eq!(snap.services.len(), 1);
    }
}
