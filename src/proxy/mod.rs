//! The data plane: listener, request forwarding, upstream pools.

pub mod access;
pub mod auth_request;
pub mod body;
pub mod client_addr;
pub mod conn;
pub mod forward;
pub mod headers;
pub mod idle;
pub mod load;
pub mod observe;
pub mod passthrough;
pub mod pod_conn;
pub mod proxy_protocol;
pub mod request_body;
pub mod request_checks;
pub mod send;
pub mod server;
pub mod upgrade;
pub mod upstream;
pub mod write_timeout;
