//! Where the front ends meet: Ingresses, OpenShift Routes and HTTPRoutes each plan and build
//! their routes, and hand them here with the age of the object they come from. The oldest
//! object gets a host and path, whatever its kind (creation time, then namespace/name, as
//! ingress-nginx, the OpenShift router and the Gateway API each rule within their own kind);
//! every later claim is left out with one diagnostic, worded the same for every kind.

use std::path::PathBuf;
use std::sync::Arc;

use crate::diag::Diagnostic;
use crate::model::Age;
use crate::route::{Route, RouteTable};

/// A built route on its way into the table.
pub struct Placement<'s> {
    /// The age of the object the route comes from: the older object wins a conflict.
    pub age: Age<'s>,
    /// The object's file, for the diagnostic of a route left out.
    pub file: Option<&'s PathBuf>,
    pub route: Arc<Route>,
}

/// Places the routes of every front end, oldest object first. Each front end's list is
/// already oldest first (they order their objects so), so this merges rather than sorts: a
/// reload over thousands of routes pays no comparison when one kind is in use. On equal ages
/// the earlier list wins (an Ingress before a Route before an HTTPRoute of the same name).
pub fn place<'s, const N: usize>(table: &mut RouteTable, fronts: [Vec<Placement<'s>>; N], diags: &mut Vec<Diagnostic>) {
    debug_assert!(fronts.iter().all(|f| f.is_sorted_by(|a, b| a.age <= b.age)), "a front end is not oldest first");
    let mut fronts = fronts.map(|f| f.into_iter().peekable());
    loop {
        // `min_by_key` keeps the first of equal minima: the earlier front end.
        let oldest =
            fronts.iter_mut().enumerate().filter_map(|(i, f)| Some((i, f.peek()?.age))).min_by_key(|(_, age)| *age);
        let Some((i, _)) = oldest else { return };
        let placement = fronts[i].next().expect("just peeked");
        if let Err(holder) = table.add(placement.route.clone()) {
            diags.push(conflict(&placement, &holder));
        }
    }
}

fn conflict(lost: &Placement<'_>, holder: &Route) -> Diagnostic {
    let route = &lost.route;
    Diagnostic::warning(format!(
        "route {} {} {} is also defined by the older {}, which wins; this one is ignored",
        route.host,
        route.kind.as_str(),
        holder.path,
        holder.source
    ))
    .maybe_file(lost.file)
    .object(&route.source)
}
