//! The proxy's accept loop, and partitions.
//!
//! The loop owns the listening socket and every link task (in a `JoinSet`, capped at
//! [`CONNECTIONS_MAX`]). It also executes the two commands that need both: disable and enable.
//!
//! A partition (`set_enabled(false)`) closes the listening socket and aborts every link task,
//! which drops, and so closes, both sockets of every proxied connection. Closing the listener
//! rather than accepting-and-closing means a new client gets `ECONNREFUSED` at once, as from a
//! host whose service is down, and nothing it sends is ever read. Healing (`set_enabled(true)`)
//! binds the same address again. The command is acknowledged only after the listener is closed
//! and every link has ended, so when `set_enabled` returns the partition is fully in place.
//!
//! `stop_accepting` closes the listener but leaves the links open: a server that is shutting
//! down gracefully stops accepting while it finishes the connections it has.

use std::future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::SyncSender;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::{Shared, link};

/// Most proxied connections open at once. At the cap the proxy stops accepting until one closes;
/// new clients wait in the kernel's accept backlog meanwhile.
pub const CONNECTIONS_MAX: usize = 256;

/// A request from the [`super::FaultProxy`] handle, answered once carried out.
pub(super) enum Command {
    Disable { done: SyncSender<io::Result<()>> },
    StopAccepting { done: SyncSender<io::Result<()>> },
    Enable { done: SyncSender<io::Result<()>> },
}

/// Runs until the handle drops its command sender.
pub(super) async fn run(
    listener: TcpListener,
    upstream: SocketAddr,
    shared: Arc<Shared>,
    mut commands: mpsc::Receiver<Command>,
) {
    let listen_addr = shared.listen_addr;
    let mut listener = Some(listener);
    let mut links = JoinSet::new();
    loop {
        tokio::select! {
            accepted = accept(listener.as_ref()), if links.len() < CONNECTIONS_MAX => {
                match accepted {
                    Ok(client) => {
                        shared.stats.connections_accepted.fetch_add(1, Ordering::Relaxed);
                        links.spawn(link::serve(client, upstream, shared.clone()));
                    }
                    Err(e) => tracing::debug!(%listen_addr, "fault proxy: accept failed: {e}"),
                }
            }
            Some(_) = links.join_next(), if !links.is_empty() => {}
            command = commands.recv() => match command {
                None => return,
                Some(Command::Disable { done }) => {
                    listener = None;
                    links.shutdown().await;
                    let _ = done.send(Ok(()));
                }
                Some(Command::StopAccepting { done }) => {
                    listener = None;
                    let _ = done.send(Ok(()));
                }
                Some(Command::Enable { done }) => {
                    if listener.is_none() {
                        match TcpListener::bind(listen_addr).await {
                            Ok(bound) => listener = Some(bound),
                            Err(e) => { let _ = done.send(Err(e)); continue; }
                        }
                    }
                    let _ = done.send(Ok(()));
                }
            },
        }
    }
}

/// Accepts from the listener, or waits forever while partitioned (no listener).
async fn accept(listener: Option<&TcpListener>) -> io::Result<TcpStream> {
    match listener {
        Some(listener) => listener.accept().await.map(|(client, _)| client),
        None => future::pending().await,
    }
}
