//! Protocol upgrades (WebSocket and others) relayed end to end.
//!
//! When the client asks to upgrade, the proxy forwards the request with `Upgrade` and
//! `Connection: upgrade` put back (see `headers.rs`). If the upstream answers
//! `101 Switching Protocols`, the proxy answers 101 too, and both connections stop being HTTP:
//! `http1` hands each of them over as a raw stream (`OnUpgrade`), and this module copies bytes
//! between the two until either side closes.
//!
//! ```text
//!  client ──GET Upgrade: websocket──▶ proxy ──GET Upgrade: websocket──▶ upstream
//!  client ◀──────────── 101 ───────── proxy ◀────────── 101 ─────────── upstream
//!  client ◀═══════════ bytes, both ways, until one side closes ════════▶ upstream
//! ```
//!
//! Bytes that either side sent right after its head (already read by `http1`) are written to
//! the other side first. The copy uses one bounded buffer per direction (tokio's
//! `copy_bidirectional`), so a slow reader slows the writer down: back-pressure, not memory
//! growth. A half-close is passed on: when one side finishes writing, the other side's write
//! half is shut down, and the copy ends when both directions have.
//!
//! Upgraded connections no longer count against `proxy.max_connections` (the HTTP
//! connection that carried them has ended), so they have their own limit,
//! `proxy.max_tunnels`.

use std::sync::Arc;

use http1::{OnUpgrade, Upgraded};
use service_kit::shutdown::Shutdown;
use tokio::io::AsyncWriteExt;
use tokio::sync::OwnedSemaphorePermit;

/// Relays bytes between the two sides of an accepted upgrade, in a task tracked by
/// `shutdown` (so a drain waits for it, and cuts it at the deadline). `permit` holds the
/// tunnel's place under `proxy.max_tunnels` until the tunnel ends.
pub fn spawn(
    downstream: OnUpgrade,
    upstream: OnUpgrade,
    permit: OwnedSemaphorePermit,
    shutdown: &Shutdown,
) {
    let forced = shutdown.clone();
    shutdown.spawn("tunnel", async move {
        let _permit = permit;
        tokio::select! {
            () = forced.forced() => tracing::debug!("tunnel cut off by shutdown"),
            result = relay(downstream, upstream) => match result {
                Ok((up, down)) => tracing::debug!(up, down, "tunnel closed"),
                Err(e) => tracing::debug!(error = %e, "tunnel ended with an error"),
            },
        }
    });
}

/// Copies until both directions are done. Returns the bytes sent (upstream, downstream).
async fn relay(downstream: OnUpgrade, upstream: OnUpgrade) -> std::io::Result<(u64, u64)> {
    let (downstream, upstream) = tokio::join!(downstream, upstream);
    let closed = |_| std::io::Error::other("connection did not switch protocols");
    let Upgraded {
        io: mut client,
        read_buf: from_client,
    } = downstream.map_err(closed)?;
    let Upgraded {
        io: mut server,
        read_buf: from_server,
    } = upstream.map_err(closed)?;
    server.write_all(&from_client).await?;
    client.write_all(&from_server).await?;
    let (up, down) = tokio::io::copy_bidirectional(&mut client, &mut server).await?;
    Ok((
        up + from_client.len() as u64,
        down + from_server.len() as u64,
    ))
}

/// The tunnel limit, shared by a proxy's requests.
pub type TunnelLimit = Arc<tokio::sync::Semaphore>;
