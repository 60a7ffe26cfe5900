//! Configuration sources. A source only produces a [`crate::model::Snapshot`].

pub mod files;
pub mod gather;
pub mod kinds;
pub mod kube;
pub mod parse;
pub mod strict_keys;
pub mod watch;
pub mod yaml;

use crate::diag::Diagnostic;
use crate::model::Snapshot;

/// Something the reloader can read the current objects from.
pub trait Source: Send {
    /// The objects now, and what was wrong reading them.
    fn load(&mut self) -> (Snapshot, Vec<Diagnostic>);
    /// Where diagnostics about the source as a whole point (a directory), if anywhere.
    fn origin(&self) -> Option<&std::path::Path>;
}

impl Source for files::ManifestDir {
    fn load(&mut self) -> (Snapshot, Vec<Diagnostic>) {
        files::ManifestDir::load(self)
    }
    fn origin(&self) -> Option<&std::path::Path> {
        Some(self.root())
    }
}
