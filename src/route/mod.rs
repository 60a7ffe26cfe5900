//! The compiled route table and its host/path matcher.

pub mod backend;
pub mod canary;
pub mod conditions;
pub mod describe;
pub mod filters;
pub mod matcher;
pub mod path;
pub mod policy;

pub use backend::{Backend, Balance, Endpoint, EndpointState};
pub use matcher::{PathKind, Route, RouteTable};
