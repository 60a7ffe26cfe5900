//! `examples/README.md`, followed to the letter: each example's shell block is run line by line
//! as written (the pods, tether with its default ports, the `curl` lines), in a network and
//! PID namespace of its own so the documented fixed ports (8080, 10254, 127.0.0.1x:9000) are
//! free and every process dies with it. Only waits are added between lines, as a person would
//! wait for a program to start; the build step is replaced by the binary under test on `PATH`.

use std::path::Path;
use std::process::Command;

use crate::harness::TETHER;

/// The README's `## name` sections with the lines of all their ```sh blocks, in order.
fn sections(readme: &str) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    let mut lines = readme.lines();
    while let Some(line) = lines.next() {
        if let Some(h) = line.strip_prefix("## ") {
            out.push((h.trim().to_owned(), Vec::new()));
        } else if line.trim() == "```sh" {
            let block = lines.by_ref().take_while(|l| l.trim() != "```").map(str::to_owned);
            if let Some((_, lines)) = out.last_mut() {
                lines.extend(block);
            }
        }
    }
    out
}

/// What the person waits for after a line before typing the next.
fn wait_after(line: &str) -> &'static str {
    if line.contains("tether whoami") {
        "for a in 11 12 13; do wait_for \"(exec 3<>/dev/tcp/127.0.0.$a/9000)\"; done"
    } else if line.starts_with("tether run") {
        "wait_for 'curl -sf -o /dev/null http://127.0.0.1:10254/readyz'"
    } else {
        ""
    }
}

/// Runs one example's lines; returns each line's output (markers split them), and stderr.
fn run(workdir: &Path, lines: &[String], stop: &[String]) -> (Vec<(String, String)>, String) {
    let bin_dir = Path::new(TETHER).parent().unwrap();
    let mut script = format!(
        "ip link set lo up\nexport PATH={}:$PATH\ncd {}\n\
         wait_for() {{ for _ in $(seq 400); do eval \"$1\" 2>/dev/null && return 0; sleep 0.05; done; \
         echo \"gave up waiting for: $1\" >&2; return 1; }}\n",
        bin_dir.display(),
        workdir.display()
    );
    for line in lines.iter().chain(stop) {
        script.push_str(&format!("echo '@@@ {}'\n{line}\n{}\n", line.replace('\'', ""), wait_after(line)));
    }
    script.push_str("wait\n");
    // --kill-child and the PID namespace: nothing started here outlives the test.
    let out = Command::new("timeout")
        .args(["-s", "KILL", "120", "unshare", "--net", "--pid", "--fork", "--kill-child", "bash", "-c", &script])
        .env("XDG_STATE_HOME", workdir)
        .output()
        .expect("run unshare (root is needed for network namespaces)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut outputs: Vec<(String, String)> = Vec::new();
    for l in stdout.lines() {
        if let Some(cmd) = l.strip_prefix("@@@ ") {
            outputs.push((cmd.to_owned(), String::new()));
        } else if l.starts_with("whoami ") || l.starts_with("tether listening") {
            // The programs' own start lines, printed whenever they get there.
        } else if let Some((_, text)) = outputs.last_mut() {
            text.push_str(l);
            text.push('\n');
        }
    }
    (outputs, String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn every_example_works_as_its_readme_says() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("examples/README.md")).unwrap();
    let sections = sections(&readme);
    let stop = &sections.iter().find(|(h, _)| h == "Before you start").expect("a setup section").1;
    let stop: Vec<String> = stop.iter().filter(|l| l.starts_with("kill ")).cloned().collect();
    assert_eq!(stop, ["kill $(jobs -p)"], "the README says how to stop an example");
    // (example, the pod names its slice uses, the cookies `grep` must find)
    let expected = [
        ("ingress-nginx", "web-", &["route"][..]),
        ("traefik-k3s", "web-", &["sticky"]),
        ("openshift-route", "hello-", &["hello-1"]),
        ("gateway-api", "web-", &["shop", "account"]),
    ];
    for (name, pod_prefix, cookies) in expected {
        let (_, lines) = sections.iter().find(|(h, _)| h == name).unwrap_or_else(|| panic!("no section {name}"));
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(root.join("examples"), dir.path().join("examples")).unwrap();
        let (outputs, stderr) = run(dir.path(), lines, &stop);
        let context = format!("{name}: {outputs:#?}\nstderr:\n{stderr}");
        assert!(!stderr.contains("gave up waiting"), "{context}");
        assert!(!stderr.contains("Address already in use"), "{context}");
        // Every curl answered from one pod of the example, and the same path from the same pod.
        let mut pods_by_path = std::collections::HashMap::new();
        for (cmd, text) in outputs.iter().filter(|(c, _)| c.starts_with("curl ")) {
            let pod = text.trim();
            assert!(pod.starts_with(pod_prefix) && pod.len() <= pod_prefix.len() + 1, "{cmd} -> {pod:?}\n{context}");
            let url = cmd.split_whitespace().find(|w| w.starts_with("http://")).unwrap();
            let first = pods_by_path.entry(url.to_owned()).or_insert(pod.to_owned());
            assert_eq!(first, pod, "{cmd} stays on its pod\n{context}");
        }
        assert!(outputs.iter().filter(|(c, _)| c.starts_with("curl ")).count() >= 2, "{context}");
        let (_, jar) = outputs.iter().find(|(c, _)| c.starts_with("grep ")).expect("a grep line");
        for cookie in cookies {
            assert!(jar.lines().any(|l| l.split('\t').nth(5) == Some(cookie)), "cookie {cookie} in the jar\n{context}");
        }
    }
}
