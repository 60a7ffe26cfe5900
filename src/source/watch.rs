//! Watches a directory and signals when its contents may have changed.
//!
//! Editors and `kubectl`-style tools write files in several steps; events are coalesced
//! over a short quiet period so one save compiles once.

use std::path::Path;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

/// How long the directory must be quiet before a reload.
pub const DEBOUNCE: Duration = Duration::from_millis(150);

/// A running watch; dropping it stops watching.
pub struct DirWatch {
    _watcher: notify::RecommendedWatcher,
}

/// Starts watching `dir`; `changed` receives one message per burst of changes.
pub fn watch_dir(dir: &Path, changed: mpsc::Sender<()>) -> notify::Result<DirWatch> {
    let (raw_tx, mut raw_rx) = mpsc::unbounded_channel::<()>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event {
            if !event.kind.is_access() {
                let _ = raw_tx.send(());
            }
        }
    })?;
    watcher.watch(dir, RecursiveMode::Recursive)?;
    tokio::spawn(async move {
        while raw_rx.recv().await.is_some() {
            // Swallow the rest of the burst.
            loop {
                match tokio::time::timeout(DEBOUNCE, raw_rx.recv()).await {
                    Ok(Some(())) => continue,
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            if changed.send(()).await.is_err() {
                return;
            }
        }
    });
    Ok(DirWatch { _watcher: watcher })
}
