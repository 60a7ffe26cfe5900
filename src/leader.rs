//! Leader election on a `coordination.k8s.io/v1` Lease, and the leader's one job: writing
//! `Ingress.status.loadBalancer.ingress` for the Ingresses tether serves, from
//! `--publish-status-address` or the `--publish-service`'s load balancer.
//!
//! Every replica serves traffic; only the leader writes status, so replicas never fight over
//! it. The Lease is taken with the API server's optimistic concurrency (resourceVersion): of
//! two replicas that try at once, one gets a 409 and stays a follower.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DynamicObject, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{json, Value};

use crate::compile::ApiStatus;
use crate::model::{ObjectKind, ObjectRef};
use crate::source::kube::CustomKind;

#[derive(Clone, Debug)]
pub struct LeaderOptions {
    /// The Lease's name (`--election-id`).
    pub election_id: String,
    /// Where the Lease lives.
    pub namespace: String,
    /// This replica (pod name, else hostname, plus a random suffix).
    pub identity: String,
    pub lease_duration: Duration,
    /// `--publish-status-address`: IPs or hostnames written as they are.
    pub publish_addresses: Vec<String>,
    /// `--publish-service NS/NAME`: its `status.loadBalancer.ingress` is copied.
    pub publish_service: Option<(String, String)>,
}

/// Runs for ever: holds or watches the Lease, and while leader keeps Ingress status current.
pub async fn run(client: Client, options: LeaderOptions, api_status: tokio::sync::watch::Receiver<Arc<ApiStatus>>) {
    let leases: Api<Lease> = Api::namespaced(client.clone(), &options.namespace);
    let renew_every = options.lease_duration / 3;
    let mut written: HashMap<(ObjectRef, String), Value> = HashMap::new();
    let mut leading = false;
    loop {
        let now_leading = match try_acquire(&leases, &options).await {
            Ok(held) => held,
            Err(e) => {
                tracing::warn!(error = %e, lease = %options.election_id, "leader election failed; retrying");
                false
            }
        };
        if now_leading != leading {
            tracing::info!(identity = %options.identity, "{}", if now_leading { "became the leader" } else { "not the leader" });
            written.clear();
            leading = now_leading;
        }
        if leading {
            let status = api_status.borrow().clone();
            if let Err(e) = write_status(&client, &options, &status, &mut written).await {
                tracing::warn!(error = %e, "cannot write Ingress status");
            }
        }
        tokio::time::sleep(renew_every).await;
    }
}

/// One round of the election: renew our Lease, take an expired one, or follow.
async fn try_acquire(leases: &Api<Lease>, options: &LeaderOptions) -> Result<bool, kube::Error> {
    let now = Timestamp::now();
    let spec = |acquired: Option<MicroTime>, transitions: i32| LeaseSpec {
        holder_identity: Some(options.identity.clone()),
        lease_duration_seconds: Some(options.lease_duration.as_secs().max(1) as i32),
        acquire_time: acquired.or(Some(MicroTime(now))),
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(transitions),
        ..LeaseSpec::default()
    };
    let existing = match leases.get_opt(&options.election_id).await? {
        Some(lease) => lease,
        None => {
            let lease = Lease {
                metadata: ObjectMeta { name: Some(options.election_id.clone()), ..ObjectMeta::default() },
                spec: Some(spec(None, 0)),
            };
            return match leases.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        }
    };
    let current = existing.spec.clone().unwrap_or_default();
    let mine = current.holder_identity.as_deref() == Some(&options.identity);
    let expired = current.renew_time.as_ref().is_none_or(|t| {
        let duration = i64::from(current.lease_duration_seconds.unwrap_or(15));
        now.as_second() > t.0.as_second() + duration
    });
    if !mine && !expired {
        return Ok(false);
    }
    let transitions = current.lease_transitions.unwrap_or(0) + i32::from(!mine);
    let acquired = if mine { current.acquire_time.clone() } else { None };
    // The resourceVersion makes this a compare-and-swap: a concurrent writer gets 409.
    let lease = Lease { metadata: existing.metadata.clone(), spec: Some(spec(acquired, transitions)) };
    match leases.replace(&options.election_id, &PostParams::default(), &lease).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

/// HTTPRoute `status.parents`: tether's entry for each of its Gateways (other controllers'
/// entries are kept), written when it changes.
async fn write_route_status(
    client: &Client,
    statuses: &[crate::compile::gateway_status::RouteStatus],
    written: &mut HashMap<(ObjectRef, String), Value>,
) -> Result<(), kube::Error> {
    const GROUP: &str = "gateway.networking.k8s.io";
    let ar = CustomKind::HttpRoute.api_resource();
    let condition = |kind: &str, c: &crate::compile::gateway_status::Condition, generation: Option<i64>| {
        json!({"type": kind, "status": if c.ok { "True" } else { "False" }, "reason": c.reason,
               "message": c.message, "observedGeneration": generation.unwrap_or(0),
               "lastTransitionTime": Timestamp::now().to_string()})
    };
    for s in statuses {
        let mut parent_ref = json!({"group": GROUP, "kind": "Gateway", "namespace": s.gateway.0, "name": s.gateway.1});
        if let Some(section) = &s.section {
            parent_ref["sectionName"] = json!(section);
        }
        // What decides a rewrite: everything but the timestamps.
        let desired = json!([
            parent_ref,
            s.accepted.ok,
            s.accepted.reason,
            s.accepted.message,
            s.resolved_refs.ok,
            s.resolved_refs.reason,
            s.resolved_refs.message,
            s.generation
        ]);
        let key =
            (ObjectRef::new(ObjectKind::HTTPRoute, &s.namespace, &s.name), format!("{}/{}", s.gateway.0, s.gateway.1));
        if written.get(&key) == Some(&desired) {
            continue;
        }
        let entry = json!({"parentRef": parent_ref, "controllerName": crate::compile::gateway::GATEWAY_CONTROLLER,
                           "conditions": [condition("Accepted", &s.accepted, s.generation),
                                          condition("ResolvedRefs", &s.resolved_refs, s.generation)]});
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &s.namespace, &ar);
        let replaced = replace_status(&api, &s.name, |data| {
            let mut parents: Vec<Value> = data["status"]["parents"].as_array().cloned().unwrap_or_default();
            parents.retain(|p| {
                !(p["controllerName"] == crate::compile::gateway::GATEWAY_CONTROLLER
                    && p["parentRef"] == entry["parentRef"])
            });
            parents.push(entry);
            data["status"] = json!({"parents": parents});
        })
        .await?;
        if replaced {
            written.insert(key, desired);
        }
    }
    Ok(())
}

/// Gateway `status`: Accepted and Programmed (tether serves every Gateway of its class on its
/// listeners), and per listener the routes attached. A Gateway has one controller, so its
/// status is written whole.
async fn write_gateway_status(
    client: &Client,
    statuses: &[crate::compile::gateway_status::GatewayStatus],
    written: &mut HashMap<(ObjectRef, String), Value>,
) -> Result<(), kube::Error> {
    let ar = CustomKind::Gateway.api_resource();
    for s in statuses {
        let desired = json!([s.listeners, s.generation]);
        let key = (ObjectRef::new(ObjectKind::Gateway, &s.namespace, &s.name), String::new());
        if written.get(&key) == Some(&desired) {
            continue;
        }
        let now = Timestamp::now().to_string();
        let generation = s.generation.unwrap_or(0);
        let condition = |kind: &str, reason: &str| {
            json!({"type": kind, "status": "True", "reason": reason, "message": "served by tether",
                   "observedGeneration": generation, "lastTransitionTime": now})
        };
        let listeners: Vec<Value> = s
            .listeners
            .iter()
            .map(|(name, protocol, attached)| {
                let served = protocol == "HTTP" || protocol == "HTTPS";
                json!({"name": name, "attachedRoutes": attached,
                       "supportedKinds": if served { json!([{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute"}]) } else { json!([]) },
                       "conditions": [condition("Accepted", "Accepted"), condition("Programmed", "Programmed"),
                                      condition("ResolvedRefs", "ResolvedRefs")]})
            })
            .collect();
        let status = json!({"conditions": [condition("Accepted", "Accepted"), condition("Programmed", "Programmed")],
                            "listeners": listeners});
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &s.namespace, &ar);
        if replace_status(&api, &s.name, |data| data["status"] = status).await? {
            written.insert(key, desired);
        }
    }
    Ok(())
}

/// Reads the object, lets `edit` set its status, and replaces the status (the read version
/// makes it a compare-and-swap). False when the object is gone (404) or changed meanwhile
/// (409): the next round sees the new version.
async fn replace_status(
    api: &Api<DynamicObject>,
    name: &str,
    edit: impl FnOnce(&mut Value),
) -> Result<bool, kube::Error> {
    let Some(mut object) = api.get_opt(name).await? else { return Ok(false) };
    edit(&mut object.data);
    match api.replace_status(name, &PostParams::default(), &object).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 409 || e.code == 404 => Ok(false),
        Err(e) => Err(e),
    }
}

/// The addresses to publish, as `loadBalancer.ingress` entries.
async fn published(client: &Client, options: &LeaderOptions) -> Result<Value, kube::Error> {
    if let Some((ns, name)) = &options.publish_service {
        let service = Api::<Service>::namespaced(client.clone(), ns).get(name).await?;
        let ingress = service.status.and_then(|s| s.load_balancer).and_then(|lb| lb.ingress).unwrap_or_default();
        return Ok(serde_json::to_value(ingress).unwrap_or_else(|_| json!([])));
    }
    let entries: Vec<Value> = options
        .publish_addresses
        .iter()
        .map(|a| if a.parse::<std::net::IpAddr>().is_ok() { json!({"ip": a}) } else { json!({"hostname": a}) })
        .collect();
    Ok(Value::Array(entries))
}

async fn write_status(
    client: &Client,
    options: &LeaderOptions,
    status: &ApiStatus,
    written: &mut HashMap<(ObjectRef, String), Value>,
) -> Result<(), kube::Error> {
    write_route_status(client, &status.routes, written).await?;
    write_gateway_status(client, &status.gateways, written).await?;
    if options.publish_addresses.is_empty() && options.publish_service.is_none() {
        return Ok(());
    }
    let addresses = published(client, options).await?;
    for ingress in &status.ingresses {
        let (ns, name) = (crate::model::namespace(&ingress.metadata), crate::model::name(&ingress.metadata));
        let key = (ObjectRef::of(ObjectKind::Ingress, &ingress.metadata), String::new());
        if written.get(&key) == Some(&addresses) {
            continue;
        }
        let patch = json!({"status": {"loadBalancer": {"ingress": addresses}}});
        let api: Api<Ingress> = Api::namespaced(client.clone(), ns);
        match api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(_) => {
                written.insert(key, addresses.clone());
            }
            // Deleted meanwhile: the next reload drops it.
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
