//! What the reloader writes and others only read: the latest reload's report and the
//! endpoints removed lately (admin), beside the live route table (data plane).

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::diag::Diagnostic;
use crate::proxy::forward::ProxyState;

/// The outcome of the latest reload, as the admin endpoints show it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ReloadReport {
    pub generation: u64,
    /// Unix seconds.
    pub at: u64,
    /// False when the new objects could not be used and the previous table kept serving.
    pub applied: bool,
    pub routes: usize,
    pub endpoints: usize,
    pub compile_ms: f64,
    pub diagnostics: Vec<Diagnostic>,
}

/// Shared between the reloader and the admin listener.
pub struct ControlState {
    pub proxy: Arc<ProxyState>,
    pub report: ArcSwap<Option<ReloadReport>>,
    /// Endpoints removed in the last minute, shown as `gone` on `/status`.
    pub gone: std::sync::Mutex<Vec<GoneEndpoint>>,
}

/// An endpoint a reload removed.
pub struct GoneEndpoint {
    pub service: Box<str>,
    pub identity: Box<str>,
    /// Kept for its last minute of counts.
    pub upstream: Arc<crate::upstream::Upstream>,
    /// Unix seconds.
    pub at: u64,
}

impl ControlState {
    pub fn new(proxy: Arc<ProxyState>) -> Self {
        ControlState { proxy, report: ArcSwap::from_pointee(None), gone: Default::default() }
    }
}
