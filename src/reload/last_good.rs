//! Each routing object's last version that compiled without errors, and putting it back in
//! place of a broken new version.

use std::collections::HashSet;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::diag::Diagnostic;
use crate::model::gateway::HttpRoute;
use crate::model::openshift::Route;
use crate::model::{ObjectKind, ObjectRef, Snapshot, Sourced};

/// The objects that define routes as the last reload used them (broken ones already replaced
/// by their last good versions), and which of them had errors: the others are each object's
/// last good version. Kept as the lists they came in (moved, not copied): they are searched only
/// when an object breaks.
#[derive(Default)]
pub(super) struct LastGood {
    ingresses: Vec<Sourced<Ingress>>,
    routes: Vec<Sourced<Route>>,
    http_routes: Vec<Sourced<HttpRoute>>,
    /// A TLS Secret with a bad PEM keeps serving its last good certificate.
    secrets: Vec<Sourced<Secret>>,
    /// The objects above that had errors.
    failing: HashSet<ObjectRef>,
}

/// A kind whose broken new version can be replaced by its last good one.
trait Kept: Clone + Sized {
    const KIND: ObjectKind;
    fn meta(&self) -> &ObjectMeta;
    fn meta_mut(&mut self) -> &mut ObjectMeta;
    /// Its list in the store and in a snapshot.
    fn kept(store: &LastGood) -> &[Sourced<Self>];
    fn in_snapshot(snapshot: &mut Snapshot) -> &mut Vec<Sourced<Self>>;
}

macro_rules! kept {
    ($ty:ty, $kind:ident, $field:ident) => {
        impl Kept for $ty {
            const KIND: ObjectKind = ObjectKind::$kind;
            fn meta(&self) -> &ObjectMeta {
                &self.metadata
            }
            fn meta_mut(&mut self) -> &mut ObjectMeta {
                &mut self.metadata
            }
            fn kept(store: &LastGood) -> &[Sourced<Self>] {
                &store.$field
            }
            fn in_snapshot(snapshot: &mut Snapshot) -> &mut Vec<Sourced<Self>> {
                &mut snapshot.$field
            }
        }
    };
}

kept!(Ingress, Ingress, ingresses);
kept!(Route, Route, routes);
kept!(HttpRoute, HTTPRoute, http_routes);
kept!(Secret, Secret, secrets);

impl LastGood {
    /// Keeps the snapshot's routing objects (taken out of it) as the next reload's last good
    /// versions, but for `failing`.
    pub(super) fn keep(snapshot: &mut Snapshot, failing: HashSet<ObjectRef>) -> Self {
        LastGood {
            ingresses: std::mem::take(&mut snapshot.ingresses),
            routes: std::mem::take(&mut snapshot.routes),
            http_routes: std::mem::take(&mut snapshot.http_routes),
            secrets: std::mem::take(&mut snapshot.secrets),
            failing,
        }
    }

    /// True when a good version of `object` is kept.
    pub(super) fn contains(&self, object: &ObjectRef) -> bool {
        match object.kind {
            ObjectKind::Ingress => self.good::<Ingress>(object).is_some(),
            ObjectKind::Route => self.good::<Route>(object).is_some(),
            ObjectKind::HTTPRoute => self.good::<HttpRoute>(object).is_some(),
            ObjectKind::Secret => self.good::<Secret>(object).is_some(),
            _ => false,
        }
    }

    /// The last good version of `object`.
    fn good<T: Kept>(&self, object: &ObjectRef) -> Option<&Sourced<T>> {
        if self.failing.contains(object) {
            return None;
        }
        T::kept(self).iter().find(|o| object.is(T::KIND, o.obj.meta()))
    }

    /// Replaces each broken object of the snapshot with its last good version.
    pub(super) fn substitute(
        &self,
        snapshot: &mut Snapshot,
        broken: &HashSet<ObjectRef>,
        diagnostics: &mut Vec<Diagnostic>,
    ) {
        self.substitute_kind::<Ingress>(snapshot, broken, diagnostics);
        self.substitute_kind::<Route>(snapshot, broken, diagnostics);
        self.substitute_kind::<HttpRoute>(snapshot, broken, diagnostics);
        self.substitute_kind::<Secret>(snapshot, broken, diagnostics);
    }

    /// The last good version is never a way around access control: it serves with the access
    /// annotations of the *new* version (which close its routes if they do not compile).
    fn substitute_kind<T: Kept>(
        &self,
        snapshot: &mut Snapshot,
        broken: &HashSet<ObjectRef>,
        diagnostics: &mut Vec<Diagnostic>,
    ) {
        for object in T::in_snapshot(snapshot) {
            // (Only a broken object is copied to be changed: the others stay shared, and kept.)
            let name = ObjectRef::of(T::KIND, object.obj.meta());
            let Some(last) = broken.contains(&name).then(|| self.good::<T>(&name)).flatten() else { continue };
            let mut last = last.clone();
            let carried =
                carry_access(Arc::make_mut(&mut object.obj).meta_mut(), Arc::make_mut(&mut last.obj).meta_mut());
            let what = if carried {
                "has errors; its last good version keeps serving, with the access annotations of this version"
            } else {
                "has errors; its last good version keeps serving"
            };
            diagnostics.push(Diagnostic::warning(what).maybe_file(object.file.as_ref()).object(&name));
            *object = last;
        }
    }
}

/// Puts the access-restricting annotations of `new` on `old` (replacing old's); true when
/// they differed.
fn carry_access(new: &ObjectMeta, old: &mut ObjectMeta) -> bool {
    let restricting = |key: &String| crate::compile::dialect::restricts(key);
    let pick = |meta: &ObjectMeta| -> Vec<(String, String)> {
        meta.annotations.iter().flatten().filter(|(k, _)| restricting(k)).map(|(k, v)| (k.clone(), v.clone())).collect()
    };
    let (wanted, had) = (pick(new), pick(old));
    if wanted == had {
        return false;
    }
    let annotations = old.annotations.get_or_insert_with(Default::default);
    annotations.retain(|k, _| !restricting(k));
    annotations.extend(wanted);
    true
}
