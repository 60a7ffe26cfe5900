//! The manifest-directory source: every `*.yaml|*.yml|*.json` under a directory.
//!
//! A file that cannot be read keeps contributing its last good objects, so one bad edit
//! never takes routes away.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

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
    parsed: HashMap<PathBuf, Cached>,
}

/// A file's last parse and what identified its bytes then.
#[derive(Debug)]
struct Cached {
    stamp: FileStamp,
    /// When the bytes were read (before the read began).
    read_at: SystemTime,
    hash: u128,
    parsed: ParsedFile,
}

/// What the kernel says about a file's bytes without reading them. A write changes the
/// change time (which no tool can set back), an atomic rename the inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl FileStamp {
    fn of(meta: &std::fs::Metadata) -> Self {
        FileStamp {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }

    fn changed_at(&self) -> SystemTime {
        let (secs, nanos) = self.ctime;
        SystemTime::UNIX_EPOCH + Duration::new(secs.max(0) as u64, nanos.clamp(0, 999_999_999) as u32)
    }
}

/// File times are coarse (a clock tick) and a write can land while a read runs: a stamp
/// vouches for the bytes only when the change it records is this much older than the read.
const STAMP_SETTLED: Duration = Duration::from_secs(2);

impl Cached {
    /// True when the bytes read last time are certainly the file's bytes now.
    fn still_current(&self, stamp: &FileStamp) -> bool {
        self.stamp == *stamp && self.read_at.duration_since(stamp.changed_at()).is_ok_and(|age| age > STAMP_SETTLED)
    }
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
    /// the others give their last parse again, the same objects by `Arc`. A file whose stamp
    /// (inode, size, times) is unchanged since a settled read is not even read again.
    pub fn load(&mut self) -> (Snapshot, Vec<Diagnostic>) {
        let mut diagnostics = Vec::new();
        let mut files = Vec::new();
        let mut visited = std::collections::HashSet::new();
        // A single file (`tether check app.yaml`) is read as a directory holding only it.
        let single = std::fs::metadata(&self.root).ok().filter(std::fs::Metadata::is_file);
        if let Some(meta) = single {
            files.push((self.root.clone(), FileStamp::of(&meta)));
        } else if let Err(e) = collect_manifest_files(&self.root, &mut files, &mut visited, 0) {
            diagnostics.push(Diagnostic::error(format!("cannot read directory: {e}")).file(&self.root));
        }
        files.sort_by(|a, b| a.0.cmp(&b.0));
        // Files changed lately are read and their bytes compared: two quick writes can share
        // their times.
        let mut outcomes: Vec<(PathBuf, Outcome)> = files
            .into_iter()
            .map(|(path, stamp)| {
                let cached = self.parsed.get_mut(&path);
                if let Some(c) = cached.as_ref().filter(|c| c.still_current(&stamp)) {
                    return (path, Outcome::Parsed(None, Box::new(c.parsed.clone())));
                }
                let read_at = SystemTime::now();
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
                        match cached {
                            Some(c) if c.hash == hash => {
                                (c.stamp, c.read_at) = (stamp, read_at);
                                Outcome::Parsed(None, Box::new(c.parsed.clone()))
                            }
                            _ => Outcome::Changed(Fresh { stamp, read_at, hash }, text),
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
            if let Some(Fresh { stamp, read_at, hash }) = fresh {
                self.parsed.insert(path.clone(), Cached { stamp, read_at, hash, parsed: (*parsed).clone() });
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

/// One file of a read: parsed (with what identifies its bytes when parsed just now, to be
/// cached), or changed and not parsed yet.
enum Outcome {
    Parsed(Option<Fresh>, Box<ParsedFile>),
    Changed(Fresh, String),
}

/// What identifies bytes read just now.
#[derive(Clone, Copy)]
struct Fresh {
    stamp: FileStamp,
    read_at: SystemTime,
    hash: u128,
}

/// Parses the changed files, on up to 4 threads when there is more than 1 MB of them (a first
/// read of a big directory).
fn parse_changed(outcomes: &mut [(PathBuf, Outcome)]) {
    let bytes: usize = outcomes.iter().map(|(_, o)| if let Outcome::Changed(_, t) = o { t.len() } else { 0 }).sum();
    let threads = if bytes > 1 << 20 { std::thread::available_parallelism().map_or(1, |n| n.get()).min(4) } else { 1 };
    let parse_one = |(path, outcome): &mut (PathBuf, Outcome)| {
        if let Outcome::Changed(fresh, text) = outcome {
            *outcome = Outcome::Parsed(Some(*fresh), Box::new(parse_file(path, text)));
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
    out: &mut Vec<(PathBuf, FileStamp)>,
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
            out.push((path, FileStamp::of(&meta)));
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
    fn settled_files_are_not_read_again_and_every_write_is_seen() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("svc.yaml");
        std::fs::write(&file, SVC).unwrap();
        let mut source = ManifestDir::new(dir.path());
        assert_eq!(source.load().0.services[0].obj.metadata.name.as_deref(), Some("web"));
        // Pretend the read happened long after the write: the stamp now vouches for the bytes.
        let cached = source.parsed.get_mut(&file).unwrap();
        let settled = cached.stamp.changed_at() + STAMP_SETTLED + Duration::from_secs(1);
        cached.read_at = settled;
        assert_eq!(source.load().0.services.len(), 1);
        assert_eq!(source.parsed[&file].read_at, settled, "an unchanged settled file is not read");

        // Same size, written at once: the change time differs, so the new bytes are read.
        std::fs::write(&file, SVC.replace("web", "wab")).unwrap();
        assert_eq!(source.load().0.services[0].obj.metadata.name.as_deref(), Some("wab"));
        // Written again within the same moment as the read: still read again (not settled).
        std::fs::write(&file, SVC.replace("web", "wob")).unwrap();
        assert_eq!(source.load().0.services[0].obj.metadata.name.as_deref(), Some("wob"));
        // Replaced by a rename (as kubectl-style tools and ConfigMap volumes do).
        let staged = dir.path().join(".staged");
        std::fs::write(&staged, SVC).unwrap();
        std::fs::rename(&staged, &file).unwrap();
        assert_eq!(source.load().0.services[0].obj.metadata.name.as_deref(), Some("web"));
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
