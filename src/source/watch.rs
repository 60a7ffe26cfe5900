//! Watches a directory and signals when its contents may have changed.
//!
//! Editors and `kubectl`-style tools write files in several steps; events are coalesced
//! over a short quiet period so one save compiles once.

use std::path::Path;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

use crate::source::gather;

/// A running watch; dropping it stops watching.
pub struct DirWatch {
    _watcher: notify::RecommendedWatcher,
}

/// Starts watching `dir`; `changed` receives one message per burst of changes (gathered as
/// [`gather::FILES`] says; a burst that ends while a reload runs starts the next reload the
/// moment that one ends).
pub fn watch_dir(dir: &Path, changed: mpsc::Sender<()>) -> notify::Result<DirWatch> {
    // One pending signal is enough: the burst it starts reads the directory afresh.
    let (raw_tx, mut raw_rx) = mpsc::channel::<()>(1);
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event {
            if !event.kind.is_access() {
                let _ = raw_tx.try_send(());
            }
        }
    })?;
    watcher.watch(dir, RecursiveMode::Recursive)?;
    tokio::spawn(async move {
        while raw_rx.recv().await.is_some() {
            if !gather::FILES.rest_of_burst(&mut raw_rx).await || changed.send(()).await.is_err() {
                return;
            }
        }
    });
    Ok(DirWatch { _watcher: watcher })
}
