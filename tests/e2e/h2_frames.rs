//! The HTTP/2 frames a client gets, read off the wire by a raw client (reqwest hides them):
//! a pod's chunked response that arrives whole ends the stream with its last DATA frame, as
//! nginx 1.22 ends it, not with an empty DATA frame of its own (as HAProxy 2.6 sends).

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::*;
use crate::hostile::pod::{RawPod, Seen};

const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const SETTINGS: u8 = 0x4;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const ACK: u8 = 0x1;

/// The whole chunked response in one write: two chunks, the last chunk and a trailer line.
fn chunked_whole(_: &Seen) -> Vec<u8> {
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n\
      5\r\nhello\r\n6\r\n world\r\n0\r\nx-trailer: t\r\n\r\n"
        .to_vec()
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// A raw HTTP/2 connection (prior knowledge) that asks `GET /` on streams 1, 3, ...
struct RawH2 {
    s: TcpStream,
    authority: String,
    next_stream: u32,
}

impl RawH2 {
    async fn connect(addr: std::net::SocketAddr) -> RawH2 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        hello.extend(frame(SETTINGS, 0, 0, &[]));
        s.write_all(&hello).await.unwrap();
        RawH2 { s, authority: addr.to_string(), next_stream: 1 }
    }

    /// (type, flags, payload) of every frame of the next stream, up to the one that ends it.
    async fn get(&mut self) -> Vec<(u8, u8, Vec<u8>)> {
        let id = self.next_stream;
        self.next_stream += 2;
        // Indexed :method GET, :scheme http, :path /; a literal :authority.
        let mut block = vec![0x82, 0x86, 0x84, 0x01, self.authority.len() as u8];
        block.extend_from_slice(self.authority.as_bytes());
        self.s.write_all(&frame(HEADERS, END_STREAM | END_HEADERS, id, &block)).await.unwrap();
        let mut frames = Vec::new();
        let s = &mut self.s;
        let read = async {
            loop {
                let mut head = [0u8; 9];
                s.read_exact(&mut head).await.unwrap();
                let len = (usize::from(head[0]) << 16) | (usize::from(head[1]) << 8) | usize::from(head[2]);
                let (kind, flags) = (head[3], head[4]);
                let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
                let mut payload = vec![0u8; len];
                s.read_exact(&mut payload).await.unwrap();
                if kind == SETTINGS && flags & ACK == 0 {
                    s.write_all(&frame(SETTINGS, ACK, 0, &[])).await.unwrap();
                }
                if stream == id {
                    frames.push((kind, flags, payload));
                    if flags & END_STREAM != 0 {
                        return;
                    }
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(20), read).await.expect("the stream ended");
        frames
    }
}

#[tokio::test]
async fn a_whole_chunked_response_ends_with_its_last_data_frame() {
    let pod = RawPod::start(chunked_whole).await;
    let m = Manifests::new();
    m.write("web-service.yaml", &service_yaml("web"));
    m.write("web-slice.yaml", &slice_yaml_for("web", &[("web", pod.addr)]));
    m.write("web.yaml", &ingress_yaml("web", None, &[("/", "Prefix", "web")], &[]));
    let t = Tether::start(m.path(), &["--h2c"]);

    let mut client = RawH2::connect(t.addr).await;
    let frames = client.get().await;
    let kinds: Vec<(u8, u8)> = frames.iter().map(|(kind, flags, _)| (*kind, *flags)).collect();
    let body: Vec<u8> = frames.iter().filter(|(kind, ..)| *kind == DATA).flat_map(|(.., p)| p.clone()).collect();
    assert_eq!(body, b"hello world", "{kinds:?}");
    let (last_kind, last_flags, last_payload) = frames.last().unwrap();
    assert_eq!((*last_kind, *last_flags & END_STREAM), (DATA, END_STREAM), "{kinds:?}");
    assert!(!last_payload.is_empty(), "the stream ends on a frame with data, not an empty one: {kinds:?}");
    assert_eq!(frames[0].0, HEADERS, "{kinds:?}");
    assert_eq!(pod.requests().len(), 1);

    // The pod connection went back to the pool whole: the next request (on the same client
    // connection, so the same worker and pool) reuses it.
    let again = client.get().await;
    assert_eq!(again.last().map(|(kind, flags, _)| (*kind, flags & END_STREAM)), Some((DATA, END_STREAM)));
    let requests = pod.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!((requests[0].conn, requests[1].conn), (0, 0), "one pod connection, reused");
}
