//! The data plane: listeners, client connections, request forwarding.

pub mod answer;
pub mod auth_request;
pub mod body;
pub mod client_addr;
pub mod client_request;
pub mod conn;
pub mod deadline;
pub mod forward;
pub mod h1_reply;
pub mod h1_server;
mod h1_upload;
pub mod headers;
pub mod idle;
pub mod observe;
pub mod passthrough;
pub mod phase;
pub mod pod_body;
pub mod pod_head;
pub mod proxy_protocol;
pub mod server;
pub mod sni;
pub mod spares;
pub mod upgrade;
pub mod write_timeout;
