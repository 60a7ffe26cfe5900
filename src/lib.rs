//! tether: a Kubernetes ingress controller and reverse proxy built around sticky sessions.

pub mod access;
pub mod access_log;
pub mod admin;
pub mod affinity;
pub mod app;
pub mod check;
pub mod compile;
pub mod demo;
pub mod diag;
#[doc(hidden)]
pub mod fuzz_harness;
pub mod leader;
pub mod metrics;
pub mod model;
pub mod proxy;
pub mod reload;
pub mod route;
pub mod selection;
pub mod source;
pub mod tls;
pub mod upstream;
pub mod worker;

#[cfg(test)]
mod layers;
