//! tether: a Kubernetes ingress controller and reverse proxy built around sticky sessions.

pub(crate) mod access;
pub(crate) mod access_log;
pub(crate) mod admin;
pub(crate) mod affinity;
pub mod app;
pub mod check;
pub(crate) mod compile;
pub mod demo;
pub(crate) mod diag;
#[doc(hidden)]
pub mod fuzz_harness;
pub(crate) mod h1;
pub(crate) mod leader;
pub(crate) mod metrics;
pub(crate) mod model;
pub(crate) mod proxy;
pub(crate) mod reload;
pub(crate) mod route;
pub(crate) mod selection;
pub(crate) mod source;
pub(crate) mod tls;
pub(crate) mod upstream;
pub(crate) mod worker;

#[cfg(test)]
mod layers;

// What the command line (`main.rs`) configures; everything else stays inside the crate.
pub use access_log::Format as AccessLogFormat;
pub use affinity::key::default_state_dir;
pub use compile::dialect::nginx_location::nginx_size;
pub use compile::DEFAULT_CLASS;
pub use leader::LeaderOptions;
pub use proxy::client_addr::TrustedProxies;
pub use proxy::forward::Timeouts;
pub use proxy::server::{ConnLimits, H1Path};
pub use source::kube::KubeOptions;
