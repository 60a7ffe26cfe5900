//! Start-up mistakes give one message naming the flag to change, before anything is read or
//! logged, and the process exits non-zero.

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{DEADLINE, TETHER};

/// Runs tether to its exit (killed at the deadline); returns (success, stderr).
fn run_to_exit(args: &[&str]) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(TETHER)
        .args(args)
        .env("XDG_STATE_HOME", dir.path())
        .env("RUST_BACKTRACE", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > DEADLINE {
            let _ = child.kill();
            panic!("tether {args:?} did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn one_line(stderr: &str) -> &str {
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one message:\n{stderr}");
    lines[0]
}

#[test]
fn a_missing_directory_is_one_message_naming_the_flag() {
    let (ok, stderr) = run_to_exit(&["run", "--manifests", "/nonexistent/manifests", "--admin", "127.0.0.1:0"]);
    assert!(!ok);
    let line = one_line(&stderr);
    assert!(line.contains("--manifests /nonexistent/manifests") && line.contains("--kube"), "{line}");
}

#[test]
fn a_taken_port_fails_before_anything_is_loaded() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("svc.yaml"), crate::harness::service_yaml("web")).unwrap();
    let manifests = dir.path().to_str().unwrap();
    let (ok, stderr) = run_to_exit(&["run", "--manifests", manifests, "--listen", &addr, "--admin", "127.0.0.1:0"]);
    assert!(!ok);
    let line = one_line(&stderr);
    assert!(line.contains(&format!("cannot listen on {addr}")) && line.contains("(change --listen)"), "{line}");

    let (ok, stderr) = run_to_exit(&["run", "--manifests", manifests, "--listen", "127.0.0.1:0", "--admin", &addr]);
    assert!(!ok);
    assert!(one_line(&stderr).contains("(change --admin)"), "{stderr}");

    let (ok, stderr) = run_to_exit(&["whoami", "--listen", &addr]);
    assert!(!ok);
    assert!(stderr.contains(&format!("cannot listen on {addr}")), "{stderr}");
}

#[test]
fn a_bare_run_names_both_sources() {
    let (ok, stderr) = run_to_exit(&["run"]);
    assert!(!ok);
    let line = one_line(&stderr);
    assert!(line.contains("--manifests") && line.contains("--kube"), "{line}");
}
