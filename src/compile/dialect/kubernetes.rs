//! Kubernetes' own annotations that choose an ingress controller.

use super::{Dialect, Judgement};
use crate::model::ObjectKind;

/// The class an Ingress asks for (the spelling from before `spec.ingressClassName`).
pub const INGRESS_CLASS: &str = "kubernetes.io/ingress.class";
/// Marks the IngressClass that Ingresses without a class belong to.
pub const DEFAULT_CLASS: &str = "ingressclass.kubernetes.io/is-default-class";

pub struct Kubernetes;

impl Dialect for Kubernetes {
    fn verdict(&self, kind: ObjectKind, key: &str) -> Option<Judgement> {
        match (kind, key) {
            (ObjectKind::Ingress, INGRESS_CLASS) | (ObjectKind::IngressClass, DEFAULT_CLASS) => {
                Some(Judgement::HONOURED)
            }
            _ => None,
        }
    }
}
