//! Configuration sources. A source only produces a [`crate::model::Snapshot`].

pub mod files;
pub mod parse;
pub mod watch;
