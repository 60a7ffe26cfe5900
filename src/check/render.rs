//! `tether check` output: text for people, JSON for tools.

use std::fmt::Write;

use super::{Report, Verdict};

pub fn json(report: &Report) -> String {
    serde_json::to_string_pretty(report).unwrap_or_else(|_| "null".into()) + "\n"
}

pub fn text(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Routes ({}):", report.routes.len());
    if report.routes.is_empty() {
        out.push_str("  (none)\n");
    }
    for r in &report.routes {
        let ready = r.endpoints.iter().filter(|e| e.state == "ready").count();
        let draining = r.endpoints.len() - ready;
        let _ = writeln!(out, "  {} {} ({}) -> {}", r.host, r.path, r.kind, r.service);
        let _ = writeln!(out, "      from {}", r.source);
        let _ = writeln!(out, "      endpoints: {ready} ready, {draining} draining");
        for e in &r.endpoints {
            let _ = writeln!(out, "        {} {} {}", e.pod, e.address, e.state);
        }
        let _ = writeln!(out, "      affinity: {}", r.affinity_words);
        for line in &r.access {
            let _ = writeln!(out, "      access: {line}");
        }
    }
    let _ = writeln!(out, "\nAnnotations ({}):", report.annotations.len());
    if report.annotations.is_empty() {
        out.push_str("  (none)\n");
    }
    let mut current_object = None;
    for a in &report.annotations {
        if current_object != Some(&a.object) {
            let file = a.file.as_ref().map(|f| format!(" ({})", f.display())).unwrap_or_default();
            let _ = writeln!(out, "  {}{file}", a.object);
            current_object = Some(&a.object);
        }
        let _ = write!(out, "    {:<8} {}: {:?}", a.verdict.as_str(), a.key, a.value);
        match &a.reason {
            Some(reason) if a.verdict != Verdict::Honoured => {
                let _ = writeln!(out, " -- {reason}");
            }
            Some(words) => {
                let _ = writeln!(out, " -- {words}");
            }
            _ => out.push('\n'),
        }
    }
    let _ = writeln!(out, "\nDiagnostics ({}):", report.diagnostics.len());
    if report.diagnostics.is_empty() {
        out.push_str("  (none)\n");
    }
    for d in &report.diagnostics {
        let _ = writeln!(out, "  {d}");
    }
    let s = &report.summary;
    let _ = writeln!(
        out,
        "\n{}, {}; annotations: {} honoured, {} ignored, {} unknown{}; {}, {}{}",
        crate::diag::plural(s.routes, "route"),
        crate::diag::plural(s.endpoints, "endpoint"),
        s.honoured,
        s.ignored,
        s.unknown,
        if s.closed > 0 { format!(", {} fail closed", s.closed) } else { String::new() },
        crate::diag::plural(s.errors, "error"),
        crate::diag::plural(s.warnings, "warning"),
        match s.on_annotations {
            0 => String::new(),
            n => format!(" ({n} of them shown with their annotation above)"),
        }
    );
    out
}
