//! `tether demo`: the tutorial experiment, end to end.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::harness::*;

#[tokio::test]
async fn the_demo_spreads_without_a_jar_and_sticks_with_one() {
    let state = tempfile::tempdir().unwrap();
    let child = Command::new(TETHER)
        .args(["demo", "--replicas", "3", "--listen", "127.0.0.1:0", "--watch", "--state-dir"])
        .arg(state.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(Some(child));
    let stdout = child.0.as_mut().unwrap().stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut url = None;
    let mut pod_pids_line = Vec::new();
    while let Ok(line) = rx.recv_timeout(DEADLINE) {
        if let Some(u) = line.trim().strip_prefix("proxy:") {
            url = Some(u.trim().to_owned());
        }
        if line.trim_start().starts_with("pod ") {
            pod_pids_line.push(line.clone());
        }
        if line.contains("Ctrl-C") {
            break;
        }
    }
    let url = url.expect("the demo prints the proxy URL");
    assert_eq!(pod_pids_line.len(), 3);

    let client = no_jar();
    let mut seen = BTreeSet::new();
    for _ in 0..30 {
        seen.insert(get(&client, &url).await.pod);
    }
    assert_eq!(seen.len(), 3, "without a cookie jar the pod varies: {seen:?}");
    let b = browser();
    let first = get(&b, &url).await;
    assert!(first.set_cookies[0].starts_with("route="));
    for _ in 0..10 {
        assert_eq!(get(&b, &url).await.pod, first.pod, "with a cookie jar it does not");
    }
    // `--watch` prints a line per request: the pod and how it was chosen.
    let pinned = format!("-> default/{} ", first.pod);
    let mut hits = 0;
    while hits < 10 {
        let line = rx.recv_timeout(DEADLINE).expect("a --watch line for every request");
        if line.contains(&pinned) && line.contains(" hit 200 ") {
            hits += 1;
        }
    }

    // SIGTERM stops the proxy and its pods.
    let pod_addrs: Vec<String> =
        pod_pids_line.iter().map(|l| l.split(" at ").nth(1).unwrap().trim().to_owned()).collect();
    let mut demo = child.0.take().unwrap();
    term(demo.id());
    let _ = tokio::task::spawn_blocking(move || demo.wait()).await;
    wait_for("the demo pods to stop", || {
        let addrs = pod_addrs.clone();
        async move {
            addrs
                .iter()
                .all(|a| std::net::TcpStream::connect_timeout(&a.parse().unwrap(), Duration::from_millis(200)).is_err())
        }
    })
    .await;
}

fn term(pid: u32) {
    let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status();
}

/// Stops the demo (which stops its pods) even when an assertion fails first.
struct KillOnDrop(Option<std::process::Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            term(child.id());
            let _ = child.wait();
        }
    }
}
