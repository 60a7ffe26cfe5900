//! The data plane: listener, request forwarding, upstream pools.

pub mod body;
pub mod forward;
pub mod headers;
pub mod load;
pub mod request_body;
pub mod server;
pub mod upstream;
