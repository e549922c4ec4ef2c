//! The hello-world server the benchmarks run against nginx's `return 200 "hello"`: one thread,
//! one `current_thread` runtime, as nginx runs with `worker_processes 1`.
//!
//! ```text
//! cargo run --release -p http1 --example hello -- --listen 127.0.0.1:8080
//! ```

use std::net::SocketAddr;

use bytes::Bytes;
use http1::server::{ServerConfig, serve};
use http1::{Request, Response, StatusCode};

fn main() -> std::io::Result<()> {
    let listen = listen_addr()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(listen).await?;
        eprintln!("listening on {}", listener.local_addr()?);
        let handler = |_request: Request| async {
            Response::text(StatusCode::OK, Bytes::from_static(b"hello"))
        };
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        serve(listener, ServerConfig::default(), handler, shutdown)
            .await
            .map_err(std::io::Error::other)
    })
}

/// `--listen ADDR`, default `127.0.0.1:8080`.
fn listen_addr() -> std::io::Result<SocketAddr> {
    let mut args = std::env::args().skip(1);
    let mut listen = "127.0.0.1:8080".to_owned();
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--listen", Some(addr)) => listen = addr,
            _ => {
                let usage = "usage: hello [--listen ADDR]";
                return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, usage));
            }
        }
    }
    listen
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))
}
