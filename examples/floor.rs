//! The floor under every HTTP proxy in `bench/`: a TCP relay with no HTTP in it, one task per
//! client connection copying bytes both ways to its own pod connection, on the runtime tether
//! uses (tokio, one current-thread worker). A keep-alive request through it costs the same
//! syscalls as through tether or HAProxy (a read and a write each way), so its CPU per request
//! is what the kernel and the runtime cost before any proxy does any work.
//!
//!   floor LISTEN_ADDR POD_ADDR
use std::net::SocketAddr;

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (listen, pod): (SocketAddr, SocketAddr) = match (args.get(1), args.get(2)) {
        (Some(l), Some(p)) => (l.parse().expect("LISTEN_ADDR"), p.parse().expect("POD_ADDR")),
        _ => {
            eprintln!("usage: floor LISTEN_ADDR POD_ADDR");
            std::process::exit(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen).await?;
        loop {
            let (mut client, _) = listener.accept().await?;
            tokio::spawn(async move {
                let Ok(mut upstream) = tokio::net::TcpStream::connect(pod).await else { return };
                let _ = client.set_nodelay(true);
                let _ = upstream.set_nodelay(true);
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            });
        }
    })
}
