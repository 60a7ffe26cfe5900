//! End-to-end tests: the real `tether` binary, real `tether whoami` pods, a real HTTP client
//! with a cookie jar, all on loopback.

mod access;
mod apiserver;
mod auth;
mod bad_pod;
mod browser;
mod chart;
mod check;
mod client_cert;
mod harness;
mod hostile;

mod demo;
mod deploy;
mod dialects;
mod differential;
mod edge;
mod examples;
mod examples_readme;
mod gateway;
mod h2_frames;
mod hardening;
mod kube;
mod kube_access;
mod limits;
mod migration;
mod observe;
mod pod_conn;
mod proxying;
mod reload;
mod routing;
mod startup;
mod sticky;
mod tls;
mod uploads;
