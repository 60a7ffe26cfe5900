//! Incremental compile (with the previous compile's memo) gives exactly the table a compile from
//! nothing gives: random sequences of changes (endpoints come, go, drain and change weight;
//! affinity and balancer annotations change; Ingresses, Routes and HTTPRoutes come and go; the
//! cookie keys rotate), each compiled both ways and compared field by field, diagnostics too.
//! Unchanged objects keep their allocations between steps (as both sources give them), and what
//! did not change is really kept (the same backend, the same route), which is the point.

use rand::{Rng, SeedableRng};

use crate::affinity::token::{CookieKey, CookieKeys};
use crate::compile::memo::Memo;
use crate::compile::{compile, CompileOptions};
use crate::model::Snapshot;
use crate::route::{Backend, RouteTable};
use crate::source::parse::parse_file;

const SERVICES: usize = 4;

/// The cluster a step of the sequence describes.
#[derive(Clone)]
struct World {
    /// Per service: endpoints as (pod number, ready, serving).
    endpoints: Vec<Vec<(u32, bool, bool)>>,
    /// Per service: ingress-nginx annotations of its Ingress, or no Ingress.
    ingress: Vec<Option<&'static str>>,
    /// An OpenShift Route over services 0 and 1 with these weights, or none.
    route_weights: Option<(u32, u32)>,
    /// An HTTPRoute to service 2 with this session persistence, or none.
    http_route: Option<&'static str>,
    key: u8,
}

const ANNOTATIONS: [&str; 5] = [
    "{}",
    "{nginx.ingress.kubernetes.io/affinity: cookie}",
    "{nginx.ingress.kubernetes.io/affinity: cookie, nginx.ingress.kubernetes.io/affinity-mode: persistent}",
    "{nginx.ingress.kubernetes.io/upstream-hash-by: $remote_addr}",
    "{nginx.ingress.kubernetes.io/load-balance: ewma, nginx.ingress.kubernetes.io/session-cookie-name: x}",
];

const PERSISTENCE: [&str; 2] = ["{sessionName: s, type: Cookie}", "{sessionName: h, type: Header}"];

impl World {
    fn new() -> Self {
        World {
            endpoints: (0..SERVICES).map(|s| (0..3).map(|p| (s as u32 * 10 + p, true, true)).collect()).collect(),
            ingress: vec![Some(ANNOTATIONS[1]); SERVICES],
            route_weights: Some((1, 1)),
            http_route: Some(PERSISTENCE[0]),
            key: 1,
        }
    }

    fn change(&mut self, rng: &mut rand::rngs::StdRng) {
        let s = rng.random_range(0..SERVICES);
        match rng.random_range(0..9) {
            0 => {
                let pod = rng.random_range(0..1000);
                self.endpoints[s].push((pod, true, true));
            }
            1 if !self.endpoints[s].is_empty() => {
                let i = rng.random_range(0..self.endpoints[s].len());
                self.endpoints[s].remove(i);
            }
            2 if !self.endpoints[s].is_empty() => {
                let i = rng.random_range(0..self.endpoints[s].len());
                let e = &mut self.endpoints[s][i];
                (e.1, e.2) = (false, rng.random()); // draining, or not serving
            }
            3 => self.ingress[s] = Some(ANNOTATIONS[rng.random_range(0..ANNOTATIONS.len())]),
            4 => self.ingress[s] = None,
            5 => self.route_weights = Some((rng.random_range(0..4), rng.random_range(1..4))),
            6 => self.route_weights = None,
            7 => self.http_route = [None, Some(PERSISTENCE[0]), Some(PERSISTENCE[1])][rng.random_range(0..3)],
            8 => self.key = rng.random_range(1..4),
            _ => {}
        }
    }

    /// The objects of this step; a document seen before gives the objects parsed then (the same
    /// allocations), as the file source does for a file whose bytes did not change.
    fn snapshot(&self, parsed: &mut std::collections::HashMap<String, Snapshot>) -> Snapshot {
        let mut yaml = String::new();
        for (s, endpoints) in self.endpoints.iter().enumerate() {
            yaml += &format!(
                "apiVersion: v1\nkind: Service\nmetadata: {{name: s{s}}}\nspec: {{ports: [{{name: http, port: 80}}]}}\n---\n\
                 apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: s{s}, labels: {{kubernetes.io/service-name: s{s}}}}}\n\
                 addressType: IPv4\nports: [{{name: http, port: 8080}}]\nendpoints:\n"
            );
            for (pod, ready, serving) in endpoints {
                yaml += &format!(
                    "- {{addresses: [127.1.{}.{}], targetRef: {{kind: Pod, name: p{pod}}}, conditions: {{ready: {ready}, serving: {serving}, terminating: {}}}}}\n",
                    pod / 250,
                    pod % 250 + 1,
                    !ready
                );
            }
            if endpoints.is_empty() {
                yaml += "  []\n";
            }
            yaml += "---\n";
            if let Some(annotations) = self.ingress[s] {
                yaml += &format!(
                    "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: i{s}, annotations: {annotations}}}\n\
                     spec:\n  ingressClassName: tether\n  rules:\n  - host: h{s}.test\n    http:\n      paths:\n      \
                     - {{path: /, pathType: Prefix, backend: {{service: {{name: s{s}, port: {{number: 80}}}}}}}}\n---\n"
                );
            }
        }
        if let Some((a, b)) = self.route_weights {
            yaml += &format!(
                "apiVersion: route.openshift.io/v1\nkind: Route\nmetadata: {{name: r}}\nspec:\n  host: r.test\n  \
                 to: {{kind: Service, name: s0, weight: {a}}}\n  alternateBackends: [{{kind: Service, name: s1, weight: {b}}}]\n---\n"
            );
        }
        if let Some(persistence) = self.http_route {
            yaml += &format!(
                "apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {{name: gc}}\nspec: {{controllerName: tether.dev/gateway-controller}}\n---\n\
                 apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: g}}\nspec: {{gatewayClassName: gc, listeners: [{{name: http, port: 80, protocol: HTTP}}]}}\n---\n\
                 apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: hr}}\n\
                 spec:\n  parentRefs: [{{name: g}}]\n  hostnames: [g.test]\n  rules:\n  - backendRefs: [{{name: s2, port: 80}}]\n    \
                 sessionPersistence: {persistence}\n"
            );
        }
        let mut snapshot = Snapshot::default();
        for doc in yaml.split("---\n").filter(|d| !d.trim().is_empty()) {
            let objects = parsed.entry(doc.to_owned()).or_insert_with(|| {
                let file = parse_file(std::path::Path::new("world.yaml"), doc);
                assert!(!file.failed, "{:?}\n{doc}", file.diagnostics);
                file.objects
            });
            snapshot.extend(objects.clone());
        }
        snapshot
    }

    fn options(&self, previous: std::sync::Arc<Memo>) -> CompileOptions {
        CompileOptions {
            ingress_classes: vec!["tether".into()],
            keys: CookieKeys::single(CookieKey::new(&[self.key; 32]).unwrap()),
            previous,
            serves_tls: false,
        }
    }
}

/// Everything a request can observe of a backend, spelled out (not its fingerprint).
fn describe_backend(b: &Backend) -> String {
    let endpoints: Vec<String> = b
        .endpoints
        .iter()
        .map(|e| {
            format!(
                "{} {} {:?} w{} d{:x} p{:?} n{:x?}",
                e.identity, e.addr, e.state, e.weight, e.digest, e.previous_digest, e.nginx_key
            )
        })
        .collect();
    let choices: Vec<_> = (0..64u64).map(|k| (b.hash_ready.first(k), b.hash_live.first(k))).collect();
    format!(
        "{} scope={:x} ready={:?} sticky={:?} client_ip={} hash_by={:?} balance={:?} protocol={:?} problem={:?} \
         keys={:x} endpoints={endpoints:?} choices={choices:?}",
        b.name,
        b.scope,
        b.ready,
        b.sticky,
        b.client_ip_affinity,
        b.hash_by,
        b.balance,
        b.protocol,
        b.problem,
        b.keys.current.digest("test", b""),
    )
}

fn describe_table(t: &RouteTable) -> Vec<String> {
    let mut out: Vec<String> = t
        .routes_and_default()
        .map(|r| {
            let canary = r.canary.as_ref().map(|c| describe_backend(&c.backend));
            format!(
                "{} {} {:?} {} sticky={:?} canary={canary:?} backend={}",
                r.host,
                r.path,
                r.kind,
                r.source,
                r.sticky.as_ref().map(|s| (&s.policy, &s.cookie_path, s.issues_cookies)),
                describe_backend(&r.backend)
            )
        })
        .collect();
    out.extend(t.passthrough.iter().map(|(h, b)| format!("passthrough {h} {}", describe_backend(b))));
    out.sort();
    out
}

#[test]
fn incremental_compile_gives_the_table_a_full_compile_gives() {
    let (mut reused_total, mut built_total, mut routes_kept) = (0, 0, 0);
    for seed in 0..12u64 {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut world = World::new();
        let mut parsed = std::collections::HashMap::new();
        let mut previous = compile(&world.snapshot(&mut parsed), &world.options(Default::default()));
        let hosts: Vec<_> = previous.table.routes().map(|r| r.host.to_string()).collect();
        for host in ["h0.test", "h3.test", "r.test", "g.test"] {
            assert!(hosts.iter().any(|h| h == host), "{host} is not routed: {hosts:?} {:?}", previous.diagnostics);
        }
        for step in 0..25 {
            let before = world.clone();
            world.change(&mut rng);
            let snapshot = world.snapshot(&mut parsed);
            let fresh = compile(&snapshot, &world.options(Default::default()));
            let incremental = compile(&snapshot, &world.options(std::sync::Arc::new(previous.memo)));
            let (got, want) = (describe_table(&incremental.table), describe_table(&fresh.table));
            if let Some((g, w)) = got.iter().zip(&want).find(|(g, w)| g != w) {
                panic!("seed {seed} step {step}: reuse changed the table:\n  reused: {g}\n  fresh:  {w}");
            }
            assert_eq!(got.len(), want.len(), "seed {seed} step {step}: reuse changed the routes");
            assert_eq!(incremental.endpoints, fresh.endpoints, "seed {seed} step {step}: the kept pod count drifted");
            let diags =
                |c: &crate::compile::Compiled| c.diagnostics.iter().map(ToString::to_string).collect::<Vec<_>>();
            assert_eq!(diags(&incremental), diags(&fresh), "seed {seed} step {step}: reuse changed the diagnostics");
            // A backend whose Service and settings did not change is the same allocation.
            let kept: std::collections::HashSet<_> = previous.table.backends().map(std::sync::Arc::as_ptr).collect();
            for b in incremental.table.backends() {
                if kept.contains(&std::sync::Arc::as_ptr(b)) {
                    reused_total += 1;
                } else {
                    built_total += 1;
                }
            }
            if before.key == world.key
                && before.endpoints[3] == world.endpoints[3]
                && before.ingress[3] == world.ingress[3]
            {
                let name = |t: &RouteTable| {
                    t.backends().find(|b| b.name.starts_with("default/s3:")).map(std::sync::Arc::as_ptr)
                };
                assert_eq!(name(&incremental.table), name(&previous.table), "seed {seed} step {step}: s3 rebuilt");
                // And its Ingress's route is the same route.
                let route = |t: &RouteTable| t.routes().find(|r| &*r.host == "h3.test").map(std::sync::Arc::as_ptr);
                if route(&previous.table).is_some() {
                    assert_eq!(
                        route(&incremental.table),
                        route(&previous.table),
                        "seed {seed} step {step}: route rebuilt"
                    );
                    routes_kept += 1;
                }
            }
            // Each step goes on from the incremental compile, as reloads do.
            previous = incremental;
        }
    }
    assert!(reused_total > built_total, "reuse is the common case: {reused_total} kept, {built_total} built");
    assert!(routes_kept > 50, "unchanged routes are kept: {routes_kept}");
}
