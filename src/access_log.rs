//! The access log: one line per request, JSON (default) or nginx's `combined` format, written
//! by a thread of its own. Requests only format their line and hand it over a bounded channel;
//! when the writer falls behind, lines are dropped and counted rather than slowing requests.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::time::{Duration, SystemTime};

use serde::Serialize;

/// Lines buffered between requests and the writer.
const QUEUE: usize = 16 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One JSON object per line.
    Json,
    /// nginx's `combined` format, plus the request time and upstream.
    Combined,
    /// A short line per request for a terminal (`tether demo --watch`).
    Watch,
}

pub struct AccessLog {
    format: Format,
    lines: SyncSender<String>,
}

/// One finished request.
#[derive(Serialize)]
pub struct Entry<'a> {
    #[serde(serialize_with = "rfc3339")]
    pub time: SystemTime,
    pub request_id: &'a str,
    pub client: &'a str,
    pub method: &'a str,
    pub host: &'a str,
    pub path: &'a str,
    pub protocol: &'a str,
    pub status: u16,
    pub bytes: u64,
    /// Seconds from the request head to the end of the response.
    pub duration: f64,
    pub upstream: Option<SocketAddr>,
    /// The pod (`namespace/pod:port`) that answered.
    pub pod: Option<&'a str>,
    pub upstream_duration: Option<f64>,
    /// `Kind namespace/name` of the routing object.
    pub route: Option<&'a str>,
    pub service: Option<&'a str>,
    /// How the pod was chosen (`new`, `hit`, `failover`, `drain`, `rejected-cookie`, ...).
    pub affinity: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    pub referer: Option<&'a str>,
}

fn rfc3339<S: serde::Serializer>(time: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    let ts = jiff::Timestamp::try_from(*time).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    s.collect_str(&ts.strftime("%Y-%m-%dT%H:%M:%S%.3fZ"))
}

impl AccessLog {
    /// `off`, `stdout`, `stderr` or a file (appended to). The writer thread lives as long as
    /// the process.
    pub fn open(target: &str, format: Format) -> anyhow::Result<Option<AccessLog>> {
        let out: Box<dyn Write + Send> = match target {
            "off" | "" => return Ok(None),
            "stdout" | "-" => Box::new(std::io::stdout()),
            "stderr" => Box::new(std::io::stderr()),
            path => {
                let file = std::fs::OpenOptions::new().create(true).append(true).open(path);
                Box::new(file.map_err(|e| anyhow::anyhow!("access log {path}: {e}"))?)
            }
        };
        let (lines, rx) = sync_channel(QUEUE);
        std::thread::Builder::new().name("tether-access-log".into()).spawn(move || write_lines(rx, out))?;
        Ok(Some(AccessLog { format, lines }))
    }

    /// Queues the line of `entry`; false when it had to be dropped.
    pub fn write(&self, entry: &Entry<'_>) -> bool {
        let line = match self.format {
            Format::Json => serde_json::to_string(entry).unwrap_or_default(),
            Format::Combined => combined(entry),
            Format::Watch => watch(entry),
        };
        match self.lines.try_send(line) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
        }
    }
}

fn write_lines(rx: Receiver<String>, out: Box<dyn Write + Send>) {
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, out);
    while let Ok(line) = rx.recv() {
        let _ = writeln!(out, "{line}");
        // Batch what is already queued, then flush: a quiet log is never held back.
        while let Ok(line) = rx.try_recv() {
            let _ = writeln!(out, "{line}");
        }
        let _ = out.flush();
    }
}

fn or_dash(v: Option<&str>) -> &str {
    v.filter(|v| !v.is_empty()).unwrap_or("-")
}

/// `$remote_addr - - [$time_local] "$request" $status $body_bytes_sent "$http_referer"
/// "$http_user_agent"`, then `$request_time $upstream_addr $request_id` (as ingress-nginx's
/// default log adds them).
fn combined(e: &Entry<'_>) -> String {
    let ts = jiff::Timestamp::try_from(e.time).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    let quote = |v: Option<&str>| or_dash(v).replace('"', "\\x22");
    format!(
        "{} - - [{}] \"{} {} {}\" {} {} \"{}\" \"{}\" {:.3} {} {}",
        e.client,
        ts.strftime("%d/%b/%Y:%H:%M:%S +0000"),
        e.method,
        e.path.replace('"', "\\x22"),
        e.protocol,
        e.status,
        e.bytes,
        quote(e.referer),
        quote(e.user_agent),
        e.duration,
        e.upstream.map_or("-".to_owned(), |a| a.to_string()),
        e.request_id,
    )
}

/// `GET example.com/cart -> default/web-1:8080 hit 200 3 ms`
fn watch(e: &Entry<'_>) -> String {
    let pod = e.pod.map(|p| p.rsplit_once(':').map_or(p, |(pod, _)| pod)).unwrap_or("(tether)");
    format!(
        "{:<6} {}{} -> {pod} {} {} {:.0} ms",
        e.method,
        e.host,
        e.path,
        e.affinity.unwrap_or("-"),
        e.status,
        Duration::from_secs_f64(e.duration).as_secs_f64() * 1000.0
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry<'static> {
        Entry {
            time: SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123),
            request_id: "abc",
            client: "127.0.0.9",
            method: "GET",
            host: "shop.example",
            path: "/cart?x=\"1\"",
            protocol: "HTTP/1.1",
            status: 200,
            bytes: 42,
            duration: 0.0123,
            upstream: Some("127.0.0.11:8080".parse().unwrap()),
            pod: Some("default/web-1:8080"),
            upstream_duration: Some(0.01),
            route: Some("Ingress default/web"),
            service: Some("default/web:80"),
            affinity: Some("hit"),
            user_agent: Some("curl/8"),
            referer: None,
        }
    }

    #[test]
    fn json_lines_carry_every_field() {
        let line = serde_json::to_string(&entry()).unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["time"], "2023-11-14T22:13:20.123Z");
        assert_eq!(v["client"], "127.0.0.9");
        assert_eq!(v["upstream"], "127.0.0.11:8080");
        assert_eq!(v["affinity"], "hit");
        assert_eq!(v["referer"], serde_json::Value::Null);
    }

    #[test]
    fn combined_lines_match_nginx() {
        assert_eq!(
            combined(&entry()),
            "127.0.0.9 - - [14/Nov/2023:22:13:20 +0000] \"GET /cart?x=\\x221\\x22 HTTP/1.1\" 200 42 \"-\" \"curl/8\" \
             0.012 127.0.0.11:8080 abc"
        );
        assert_eq!(watch(&entry()), "GET    shop.example/cart?x=\"1\" -> default/web-1 hit 200 12 ms");
    }
}
