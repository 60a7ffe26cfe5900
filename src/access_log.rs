//! The access log: one line per request, JSON (default) or nginx's `combined` format, written
//! by a thread of its own. Each proxy worker formats its lines into a batch of its own and hands
//! the batch over a bounded channel when it is full (or every 250 ms, from a timer on the
//! worker), so a request costs a formatted line and no system call. When the writer falls
//! behind, batches are dropped and counted rather than slowing requests.

use std::cell::RefCell;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// A worker's batch is handed over at this size.
const BATCH_BYTES: usize = 32 * 1024;
/// Batches queued for the writer (about 2 MB).
const QUEUE: usize = 64;
/// How often workers hand over a partial batch.
pub const FLUSH_EVERY: Duration = Duration::from_millis(250);

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One JSON object per line.
    Json,
    /// nginx's `combined` format, plus the request time and upstream.
    Combined,
    /// A short line per request for a terminal (`tether demo --watch`), written at once.
    Watch,
}

pub struct AccessLog {
    format: Format,
    batches: SyncSender<Batch>,
    dropped: AtomicU64,
    /// Batches handed over and not yet written.
    queued: std::sync::Arc<AtomicU64>,
    /// Set by SIGUSR1: the writer reopens its file before the next batch (after logrotate moved
    /// it), as nginx does.
    reopen: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

struct Batch {
    bytes: Vec<u8>,
    lines: u64,
}

thread_local! {
    /// This worker's lines not yet handed to the writer.
    static PENDING: RefCell<Batch> = const { RefCell::new(Batch { bytes: Vec::new(), lines: 0 }) };
    /// The formatted second of the last timestamp (`2026-11-22T06:31:10`, `22/Nov/2026:06:31:10`).
    static SECOND: RefCell<(u64, bool, String)> = const { RefCell::new((u64::MAX, false, String::new())) };
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
    /// The routing object.
    pub route: Option<&'a crate::model::ObjectRef>,
    pub service: Option<&'a str>,
    /// How the pod was chosen (`new`, `hit`, `failover`, `drain`, `rejected-cookie`, ...).
    pub affinity: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    pub referer: Option<&'a str>,
}

fn rfc3339<S: serde::Serializer>(time: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&timestamp(*time, false))
}

/// `2026-11-22T06:31:10.998Z`, or nginx's `22/Nov/2026:06:31:10 +0000`. The seconds part is
/// formatted once per second and thread.
fn timestamp(time: SystemTime, combined: bool) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let secs = since.as_secs();
    SECOND.with(|cache| {
        let mut cache = cache.borrow_mut();
        if cache.0 != secs || cache.1 != combined {
            let ts = jiff::Timestamp::from_second(secs as i64).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
            let pattern = if combined { "%d/%b/%Y:%H:%M:%S" } else { "%Y-%m-%dT%H:%M:%S" };
            *cache = (secs, combined, ts.strftime(pattern).to_string());
        }
        if combined {
            format!("{} +0000", cache.2)
        } else {
            format!("{}.{:03}Z", cache.2, since.subsec_millis())
        }
    })
}

impl AccessLog {
    /// `off`, `stdout`, `stderr` or a file (appended to). The writer thread lives as long as
    /// the process.
    pub fn open(target: &str, format: Format) -> anyhow::Result<Option<AccessLog>> {
        let out: Box<dyn Write + Send> = match target {
            "off" | "" => return Ok(None),
            "stdout" | "-" => Box::new(std::io::stdout()),
            "stderr" => Box::new(std::io::stderr()),
            path => Box::new(append_to(std::path::Path::new(path))?),
        };
        let file = (!matches!(target, "stdout" | "-" | "stderr")).then(|| std::path::PathBuf::from(target));
        let (batches, rx) = sync_channel(QUEUE);
        let queued = std::sync::Arc::new(AtomicU64::new(0));
        let reopen = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = Writer { out, file, queued: queued.clone(), reopen: reopen.clone() };
        std::thread::Builder::new().name("tether-access-log".into()).spawn(move || writer.run(rx))?;
        Ok(Some(AccessLog { format, batches, dropped: AtomicU64::new(0), queued, reopen }))
    }

    /// Reopens the log file before the next write (SIGUSR1, after logrotate).
    pub fn reopen(&self) {
        self.reopen.store(true, Relaxed);
    }

    /// Adds the line of `entry` to this worker's batch.
    pub fn write(&self, entry: &Entry<'_>) {
        PENDING.with(|pending| {
            let mut pending = pending.borrow_mut();
            let out = &mut pending.bytes;
            match self.format {
                Format::Json => {
                    let _ = serde_json::to_writer(&mut *out, entry);
                }
                Format::Combined => out.extend_from_slice(combined(entry).as_bytes()),
                Format::Watch => out.extend_from_slice(watch(entry).as_bytes()),
            }
            out.push(b'\n');
            pending.lines += 1;
            if self.format == Format::Watch || pending.bytes.len() >= BATCH_BYTES {
                self.hand_over(&mut pending);
            }
        });
    }

    /// Hands this worker's partial batch to the writer (the workers' timer calls it).
    pub fn flush_local(&self) {
        PENDING.with(|pending| {
            let mut pending = pending.borrow_mut();
            if pending.lines > 0 {
                self.hand_over(&mut pending);
            }
        });
    }

    fn hand_over(&self, pending: &mut Batch) {
        let batch = std::mem::replace(pending, Batch { bytes: Vec::with_capacity(BATCH_BYTES), lines: 0 });
        let lines = batch.lines;
        self.queued.fetch_add(1, Relaxed);
        if self.batches.try_send(batch).is_err() {
            self.queued.fetch_sub(1, Relaxed);
            self.dropped.fetch_add(lines, Relaxed);
        }
    }

    /// Waits (blocking, up to `limit`) until every handed-over batch is written: at shutdown,
    /// after the workers flushed theirs.
    pub fn wait_written(&self, limit: Duration) {
        let deadline = std::time::Instant::now() + limit;
        while self.queued.load(Relaxed) > 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Lines dropped because the writer fell behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Relaxed)
    }
}

fn append_to(path: &std::path::Path) -> anyhow::Result<std::fs::File> {
    let file = std::fs::OpenOptions::new().create(true).append(true).open(path);
    file.map_err(|e| anyhow::anyhow!("access log {}: {e}", path.display()))
}

/// The writer thread's end.
struct Writer {
    out: Box<dyn Write + Send>,
    /// The file written to, when it is one (it can be reopened).
    file: Option<std::path::PathBuf>,
    queued: std::sync::Arc<AtomicU64>,
    reopen: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Writer {
    fn run(mut self, rx: Receiver<Batch>) {
        while let Ok(batch) = rx.recv() {
            if self.reopen.swap(false, Relaxed) {
                if let Some(path) = &self.file {
                    match append_to(path) {
                        Ok(file) => self.out = Box::new(file),
                        Err(e) => tracing::warn!(error = %e, "cannot reopen the access log; writing to the old file"),
                    }
                }
            }
            let _ = self.out.write_all(&batch.bytes);
            let _ = self.out.flush();
            self.queued.fetch_sub(1, Relaxed);
        }
    }
}

fn or_dash(v: Option<&str>) -> &str {
    v.filter(|v| !v.is_empty()).unwrap_or("-")
}

/// `$remote_addr - - [$time_local] "$request" $status $body_bytes_sent "$http_referer"
/// "$http_user_agent"`, then `$request_time $upstream_addr $request_id` (as ingress-nginx's
/// default log adds them).
fn combined(e: &Entry<'_>) -> String {
    let quote = |v: Option<&str>| or_dash(v).replace('"', "\\x22");
    format!(
        "{} - - [{}] \"{} {} {}\" {} {} \"{}\" \"{}\" {:.3} {} {}",
        e.client,
        timestamp(e.time, true),
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
        e.duration * 1000.0
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
            route: Some(Box::leak(Box::new(crate::model::ObjectRef::new(
                crate::model::ObjectKind::Ingress,
                "default",
                "web",
            )))),
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
