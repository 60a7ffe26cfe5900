//! The data plane: listener, request forwarding, upstream pools.

pub mod body;
pub mod forward;
pub mod headers;
pub mod server;
pub mod upstream;
