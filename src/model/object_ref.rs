//! Typed identities of the objects tether reads: what diagnostics, metrics labels, rate-limit
//! tables and the last-good store name, instead of `Kind ns/name` strings parsed back apart.

use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// A kind tether reads, spelled once (as Kubernetes spells it) in [`ObjectKind::as_str`], and
/// ordered by that spelling.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ObjectKind {
    Ingress,
    IngressClass,
    Service,
    EndpointSlice,
    Endpoints,
    Secret,
    GatewayClass,
    Gateway,
    HTTPRoute,
    BackendTrafficPolicy,
    Route,
}

impl ObjectKind {
    pub const ALL: [ObjectKind; 11] = [
        ObjectKind::Ingress,
        ObjectKind::IngressClass,
        ObjectKind::Service,
        ObjectKind::EndpointSlice,
        ObjectKind::Endpoints,
        ObjectKind::Secret,
        ObjectKind::GatewayClass,
        ObjectKind::Gateway,
        ObjectKind::HTTPRoute,
        ObjectKind::BackendTrafficPolicy,
        ObjectKind::Route,
    ];

    /// The `kind` field's value.
    pub const fn as_str(self) -> &'static str {
        match self {
            ObjectKind::Ingress => "Ingress",
            ObjectKind::IngressClass => "IngressClass",
            ObjectKind::Service => "Service",
            ObjectKind::EndpointSlice => "EndpointSlice",
            ObjectKind::Endpoints => "Endpoints",
            ObjectKind::Secret => "Secret",
            ObjectKind::GatewayClass => "GatewayClass",
            ObjectKind::Gateway => "Gateway",
            ObjectKind::HTTPRoute => "HTTPRoute",
            ObjectKind::BackendTrafficPolicy => "XBackendTrafficPolicy",
            ObjectKind::Route => "Route",
        }
    }

    /// The `apiVersion` tether reads this kind at.
    pub const fn api_version(self) -> &'static str {
        match self {
            ObjectKind::Ingress | ObjectKind::IngressClass => "networking.k8s.io/v1",
            ObjectKind::Service | ObjectKind::Endpoints | ObjectKind::Secret => "v1",
            ObjectKind::EndpointSlice => "discovery.k8s.io/v1",
            ObjectKind::GatewayClass | ObjectKind::Gateway | ObjectKind::HTTPRoute => "gateway.networking.k8s.io/v1",
            ObjectKind::BackendTrafficPolicy => "gateway.networking.x-k8s.io/v1alpha1",
            ObjectKind::Route => "route.openshift.io/v1",
        }
    }

    /// The kind an `apiVersion` + `kind` pair names, if tether reads it.
    pub fn of(api_version: &str, kind: &str) -> Option<ObjectKind> {
        Self::ALL.into_iter().find(|k| k.as_str() == kind && k.api_version() == api_version)
    }

    /// The kind a `kind` field names at any version (for errors about a version tether does
    /// not read).
    pub fn named(kind: &str) -> Option<ObjectKind> {
        Self::ALL.into_iter().find(|k| k.as_str() == kind)
    }
}

impl Ord for ObjectKind {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl PartialOrd for ObjectKind {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One object: kind, namespace (`default` when unset, as kubectl applies it) and name.
/// Displayed (and serialized) as `Kind ns/name`; ordered by kind, then namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectRef {
    pub kind: ObjectKind,
    pub namespace: Box<str>,
    pub name: Box<str>,
}

impl ObjectRef {
    pub fn new(kind: ObjectKind, namespace: &str, name: &str) -> Self {
        ObjectRef { kind, namespace: namespace.into(), name: name.into() }
    }

    /// The object `meta` describes.
    pub fn of(kind: ObjectKind, meta: &ObjectMeta) -> Self {
        Self::new(kind, super::namespace(meta), super::name(meta))
    }

    /// True when `meta` describes this object.
    pub fn is(&self, kind: ObjectKind, meta: &ObjectMeta) -> bool {
        self.kind == kind && *self.namespace == *super::namespace(meta) && *self.name == *super::name(meta)
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

impl serde::Serialize for ObjectRef {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_spelling_of_each_kind_both_ways() {
        for kind in ObjectKind::ALL {
            assert_eq!(ObjectKind::of(kind.api_version(), kind.as_str()), Some(kind));
            assert_eq!(ObjectKind::named(kind.as_str()), Some(kind));
        }
        assert_eq!(ObjectKind::of("gateway.networking.k8s.io/v1", "HttpRoute"), None);
        assert_eq!(ObjectKind::of("extensions/v1beta1", "Ingress"), None);
        let meta = ObjectMeta { name: Some("web".into()), ..Default::default() };
        let r = ObjectRef::of(ObjectKind::HTTPRoute, &meta);
        assert_eq!(r.to_string(), "HTTPRoute default/web");
        assert_eq!(serde_json::to_string(&r).unwrap(), "\"HTTPRoute default/web\"");
        assert!(r.is(ObjectKind::HTTPRoute, &meta) && !r.is(ObjectKind::Route, &meta));
    }
}
