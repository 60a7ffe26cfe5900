//! Watches a directory and signals when its contents may have changed.
//!
//! Editors and `kubectl`-style tools write files in several steps; events are coalesced
//! over a short quiet period so one save compiles once.

use std::path::Path;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

/// How long the directory must be quiet before a reload.
pub const DEBOUNCE: Duration = Duration::from_millis(100);
/// A reload never waits longer than this after the first change of a burst, even if the
/// directory never goes quiet (a rollout rewriting EndpointSlices every few ms, say): a write
/// is served about this plus one compile after it lands, storm or not (a window that closes
/// while a reload runs starts the next reload the moment that one ends).
pub const MAX_DELAY: Duration = Duration::from_millis(150);

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
            // Swallow the rest of the burst, but not for longer than MAX_DELAY.
            let deadline = tokio::time::Instant::now() + MAX_DELAY;
            loop {
                let quiet = tokio::time::Instant::now() + DEBOUNCE;
                match tokio::time::timeout_at(quiet.min(deadline), raw_rx.recv()).await {
                    Ok(Some(())) if tokio::time::Instant::now() < deadline => continue,
                    Ok(Some(())) => break,
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
