//! Large uploads, which tether splices from the client's socket to the pod's when both are
//! plain TCP and the body has a `Content-Length` (`upstream::splice`): the pod must get every
//! byte in order, and the connection must carry on exactly where the body ends.

use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::*;

/// Bytes no two runs of a shifting bug would get right by chance (an LCG's high bytes).
fn body(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            (x >> 56) as u8
        })
        .collect()
}

fn hex_sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads until `n` chunked responses (whoami's) have ended.
async fn read_responses(stream: &mut TcpStream, n: usize) -> String {
    let mut got = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    while String::from_utf8_lossy(&got).matches("\r\n0\r\n\r\n").count() < n {
        let read = tokio::time::timeout(DEADLINE, stream.read(&mut buf)).await.expect("the responses in time").unwrap();
        assert!(read > 0, "closed early: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..read]);
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// One pod behind one Ingress whose body limit (16m) takes every upload here.
fn setup(prefix: &str) -> (Vec<Pod>, Manifests, Tether) {
    let pods = start_pods(prefix, 1);
    let m = Manifests::new();
    m.service("web", &pods.iter().collect::<Vec<_>>());
    m.write("web.yaml", &ingress_yaml("web", None, &[("/", "Prefix", "web")], &[("proxy-body-size", "16m")]));
    let t = Tether::start(m.path(), &[]);
    (pods, m, t)
}

#[tokio::test]
async fn large_uploads_reach_the_pod_byte_for_byte_and_the_connection_carries_on() {
    let (_pods, _m, t) = setup("upl");

    // 3 MiB and an odd tail, with the next request right behind the body in the same bytes:
    // nothing of it may be taken as body, nor any of the body left behind.
    let sent = body(3 * 1024 * 1024 + 4321);
    let mut wire = format!("POST /first HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n", sent.len()).into_bytes();
    wire.extend_from_slice(&sent);
    wire.extend_from_slice(b"GET /second HTTP/1.1\r\nHost: x\r\n\r\n");
    let stream = TcpStream::connect(t.addr).await.unwrap();
    let (rd, mut wr) = stream.into_split();
    let writer = tokio::spawn(async move {
        wr.write_all(&wire).await.unwrap();
        wr
    });
    let mut rd_stream = rd.reunite(writer.await.unwrap()).unwrap();
    let both = read_responses(&mut rd_stream, 2).await;
    let (first, second) = both.split_once("\r\n0\r\n\r\n").unwrap();
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    assert!(first.contains("/first"), "{first}");
    assert!(first.contains(&format!("BodyBytes: {}", sent.len())), "{first}");
    assert!(first.contains(&format!("BodySha256: {}", hex_sha256(&sent))), "{first}");
    assert!(second.starts_with("HTTP/1.1 200") && second.contains("/second"), "{second}");
    assert!(second.contains("BodyBytes: 0"), "{second}");

    // A body that comes in bursts with pauses between them (each burst more than a pipe holds),
    // and another upload on the same connection after it.
    let mut stream = TcpStream::connect(t.addr).await.unwrap();
    for (round, len) in [(1, 700 * 1024 + 7), (2, 300 * 1024)] {
        let sent = body(len);
        let head = format!("POST /burst/{round} HTTP/1.1\r\nHost: x\r\nContent-Length: {len}\r\n\r\n");
        stream.write_all(head.as_bytes()).await.unwrap();
        for part in sent.chunks(200 * 1024) {
            stream.write_all(part).await.unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        let answer = read_responses(&mut stream, 1).await;
        assert!(answer.starts_with("HTTP/1.1 200") && answer.contains(&format!("/burst/{round}")), "{answer}");
        assert!(answer.contains(&format!("BodyBytes: {len}")), "{answer}");
        assert!(answer.contains(&format!("BodySha256: {}", hex_sha256(&sent))), "{answer}");
    }
}

#[tokio::test]
async fn a_client_that_stops_mid_upload_costs_only_its_own_request() {
    let (_pods, _m, t) = setup("upc");
    // Half of a 2 MiB body, then the client goes away.
    let mut cut = TcpStream::connect(t.addr).await.unwrap();
    cut.write_all(b"POST /cut HTTP/1.1\r\nHost: x\r\nContent-Length: 2097152\r\n\r\n").await.unwrap();
    cut.write_all(&body(1024 * 1024)).await.unwrap();
    drop(cut);
    // The pod and tether go on serving: a whole upload right after gets through intact.
    let sent = body(1024 * 1024);
    let hit = get_with(no_jar().post(t.url("/after")).body(sent.clone())).await;
    assert_eq!(hit.status, 200, "{}", hit.body);
    assert!(hit.body.contains(&format!("BodySha256: {}", hex_sha256(&sent))), "{}", hit.body);
}
