//! One proxied connection: two pumps and a supervisor.
//!
//! ```text
//!            ┌────────── pump(Upstream) ───────────┐
//!   client ──┤ read chunk → toxics → write pieces  ├──▶ upstream
//!          ◀─┤ write pieces ← toxics ← read chunk  ├─── upstream
//!            └────────── pump(Downstream) ─────────┘
//!                  supervisor: reset_peer / timeout clocks
//! ```
//!
//! Each pump reads one chunk (at most [`CHUNK_BYTES_MAX`]) and then applies the toxics of its
//! direction as they are *at that moment*, so a toxic added to an open connection applies from
//! its next chunk on. A pump that sees end of file shuts down the write side of the other socket
//! and finishes; the other direction keeps flowing (TCP half-close). The supervisor sleeps until
//! the earliest timed toxic expires, re-planning whenever the toxic table changes.
//!
//! The link ends when both pumps finish, when a pump or the supervisor decides to close or reset
//! it, or when the proxy aborts its task (a partition). Dropping the two sockets then closes them
//! (FIN); a reset sets `SO_LINGER` to zero first, so the close sends RST.

use std::fmt;
use std::future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{sleep, sleep_until, timeout};

use super::Shared;
use super::toxic::{Active, Direction, Toxic, ToxicId, ToxicTable};

/// Largest chunk a pump reads at once: the unit that latency delays and limits count.
pub const CHUNK_BYTES_MAX: usize = 16 * 1024;

/// How long to wait for the upstream to accept before dropping the client's connection.
const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Most unforwarded bytes thrown away when a link closes; see `discard_unread`.
const DISCARD_BYTES_MAX: usize = 1024 * 1024;

/// A bandwidth-limited chunk is written in pieces of at most this fraction of a second's worth
/// of bytes (here a tenth), so the stream is paced smoothly instead of in one-second bursts.
const BANDWIDTH_PIECES_PER_S: u64 = 10;

/// Why a link ended.
#[derive(Debug)]
enum End {
    /// Both directions reached end of file.
    Finished,
    /// A toxic closed the connection (`limit_data`, `timeout`).
    Close(&'static str),
    /// `reset_peer`: the receiver of this direction's data gets an RST.
    Reset(Direction),
    /// A socket failed (usually the peer reset or went away).
    Io(io::Error),
}

impl fmt::Display for End {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            End::Finished => f.write_str("both sides closed"),
            End::Close(reason) => write!(f, "closed: {reason}"),
            End::Reset(Direction::Downstream) => f.write_str("reset_peer: RST to the client"),
            End::Reset(Direction::Upstream) => f.write_str("reset_peer: RST to the upstream"),
            End::Io(e) => write!(f, "socket error: {e}"),
        }
    }
}

/// Proxies `client` to `upstream` until one of the ends above.
pub(super) async fn serve(mut client: TcpStream, upstream: SocketAddr, shared: Arc<Shared>) {
    let opened_at = Instant::now();
    let mut server = match timeout(UPSTREAM_CONNECT_TIMEOUT, TcpStream::connect(upstream)).await {
        Ok(Ok(server)) => server,
        Ok(Err(e)) => return tracing::debug!(%upstream, "fault proxy: upstream refused: {e}"),
        Err(_) => return tracing::debug!(%upstream, "fault proxy: upstream connect timed out"),
    };
    // Without Nagle's algorithm every piece a slicer writes leaves as its own segment.
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let end = {
        let (client_read, client_write) = client.split();
        let (server_read, server_write) = server.split();
        let up = pump(Direction::Upstream, client_read, server_write, &shared);
        let down = pump(Direction::Downstream, server_read, client_write, &shared);
        tokio::select! {
            result = async { tokio::try_join!(up, down) } => result.err().unwrap_or(End::Finished),
            end = supervise(&shared, opened_at) => end,
        }
    };
    tracing::debug!(%upstream, "fault proxy: link ended: {end}");
    match end {
        End::Reset(Direction::Downstream) => drop(client.set_zero_linger()),
        End::Reset(Direction::Upstream) => drop(server.set_zero_linger()),
        End::Finished | End::Close(_) | End::Io(_) => {
            discard_unread(&client);
            discard_unread(&server);
        }
    }
}

/// Reads and throws away what the peer sent but the link never forwarded (a blackholed
/// direction, the bytes past a limit).
///
/// Closing a socket with unread received data makes the kernel answer with RST instead of FIN
/// (RFC 2525, section 2.17), which would turn an orderly close into a reset. Stops when the
/// receive buffer is empty (`try_read` returns `WouldBlock`), or after [`DISCARD_BYTES_MAX`] if
/// the peer keeps sending; the close may then still be a reset.
fn discard_unread(stream: &TcpStream) {
    let mut scratch = [0u8; 4096];
    let mut discarded = 0;
    while discarded < DISCARD_BYTES_MAX {
        match stream.try_read(&mut scratch) {
            Ok(0) | Err(_) => break,
            Ok(n) => discarded += n,
        }
    }
}

/// Copies one direction, chunk by chunk, through the toxics.
async fn pump(
    direction: Direction,
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    shared: &Shared,
) -> Result<(), End> {
    let mut toxics = shared.toxics.subscribe();
    let mut limits = LimitCounters::default();
    let mut buf = BytesMut::with_capacity(CHUNK_BYTES_MAX);
    loop {
        unblocked(direction, &mut toxics).await;
        buf.reserve(CHUNK_BYTES_MAX);
        let n = (&mut from)
            .take(CHUNK_BYTES_MAX as u64)
            .read_buf(&mut buf)
            .await
            .map_err(End::Io)?;
        if n == 0 {
            let _ = to.shutdown().await;
            return Ok(());
        }
        let chunk = buf.split().freeze();
        let active = unblocked(direction, &mut toxics).await;
        let (chunk, limit_reached) = limits.admit(chunk, &active);
        forward(chunk, &active, &mut to, shared, direction).await?;
        if limit_reached {
            return Err(End::Close("limit_data reached"));
        }
    }
}

/// Waits while a `timeout` toxic blackholes this direction, then returns its toxics.
async fn unblocked(direction: Direction, toxics: &mut watch::Receiver<ToxicTable>) -> Vec<Active> {
    loop {
        let active = toxics.borrow_and_update().for_direction(direction);
        if !active
            .iter()
            .any(|a| matches!(a.entry.toxic, Toxic::Timeout { .. }))
        {
            return active;
        }
        changed(toxics).await;
    }
}

/// Applies latency, then writes the chunk in pieces paced by the slicer and bandwidth toxics.
async fn forward(
    mut chunk: Bytes,
    active: &[Active],
    to: &mut (impl AsyncWrite + Unpin),
    shared: &Shared,
    direction: Direction,
) -> Result<(), End> {
    let delay = latency(active, shared);
    if !delay.is_zero() {
        sleep(delay).await;
    }
    let pacing = Pacing::from_toxics(active);
    while !chunk.is_empty() {
        let piece = chunk.split_to(pacing.piece_len(chunk.len(), shared));
        // Counted before the write, so that a peer that has read the bytes sees them counted.
        let forwarded = shared.stats.bytes(direction);
        forwarded.fetch_add(piece.len() as u64, Ordering::Relaxed);
        to.write_all(&piece).await.map_err(End::Io)?;
        let pause = pacing.pause_after(piece.len(), !chunk.is_empty());
        if !pause.is_zero() {
            sleep(pause).await;
        }
    }
    Ok(())
}

/// How the slicer and bandwidth toxics cut a chunk into writes and space them out.
#[derive(Debug, Clone, Copy)]
struct Pacing {
    /// The first slicer's `(average_size, size_variation, delay_us)`.
    slicer: Option<(usize, usize, u64)>,
    /// The lowest bandwidth, in bytes per second.
    bytes_per_s: Option<u64>,
}

impl Pacing {
    fn from_toxics(active: &[Active]) -> Pacing {
        let mut pacing = Pacing {
            slicer: None,
            bytes_per_s: None,
        };
        for a in active {
            match a.entry.toxic {
                Toxic::Slicer {
                    average_size,
                    size_variation,
                    delay_us,
                } if pacing.slicer.is_none() => {
                    pacing.slicer = Some((average_size, size_variation, delay_us));
                }
                Toxic::Bandwidth { rate_kb_per_s } => {
                    let rate = rate_kb_per_s.saturating_mul(1024);
                    pacing.bytes_per_s = Some(pacing.bytes_per_s.map_or(rate, |r| r.min(rate)));
                }
                _ => {}
            }
        }
        pacing
    }

    /// The size of the next write, out of `remaining` bytes.
    fn piece_len(&self, remaining: usize, shared: &Shared) -> usize {
        let mut len = remaining;
        if let Some((average, variation, _)) = self.slicer {
            len = len.min(shared.random_range(average - variation..=average + variation));
        }
        if let Some(rate) = self.bytes_per_s {
            len = len.min((rate / BANDWIDTH_PIECES_PER_S).max(1) as usize);
        }
        len
    }

    /// The pause after writing `written` bytes. Bandwidth paces every piece, the last one too,
    /// so that the next chunk waits its turn; the slicer only pauses between pieces of a chunk.
    fn pause_after(&self, written: usize, more_pieces: bool) -> Duration {
        let mut pause = match self.bytes_per_s {
            Some(rate) => Duration::from_secs_f64(written as f64 / rate as f64),
            None => Duration::ZERO,
        };
        if let (Some((_, _, delay_us)), true) = (self.slicer, more_pieces) {
            pause += Duration::from_micros(delay_us);
        }
        pause
    }
}

/// The total delay of the latency toxics, each `latency_ms ± jitter_ms`.
fn latency(active: &[Active], shared: &Shared) -> Duration {
    let mut total_ms = 0u64;
    for a in active {
        if let Toxic::Latency {
            latency_ms,
            jitter_ms,
        } = a.entry.toxic
        {
            let low = latency_ms.saturating_sub(jitter_ms);
            total_ms += shared.random_range(low..=latency_ms.saturating_add(jitter_ms));
        }
    }
    Duration::from_millis(total_ms)
}

/// Bytes counted by each `limit_data` toxic on one direction of one connection.
#[derive(Debug, Default)]
struct LimitCounters {
    counted: Vec<(ToxicId, u64)>,
}

impl LimitCounters {
    /// Cuts `chunk` to what the limits still allow; true if a limit is now used up.
    fn admit(&mut self, mut chunk: Bytes, active: &[Active]) -> (Bytes, bool) {
        // Forget removed toxics, so that the counters stay bounded by TOXICS_MAX.
        self.counted
            .retain(|(id, _)| active.iter().any(|a| a.entry.id == *id));
        let mut reached = false;
        for a in active {
            let Toxic::LimitData { bytes } = a.entry.toxic else {
                continue;
            };
            let counted = self.counter(a.entry.id);
            let allowed = bytes.saturating_sub(*counted);
            if chunk.len() as u64 >= allowed {
                chunk.truncate(allowed as usize);
                reached = true;
            }
        }
        for a in active {
            if matches!(a.entry.toxic, Toxic::LimitData { .. }) {
                *self.counter(a.entry.id) += chunk.len() as u64;
            }
        }
        (chunk, reached)
    }

    fn counter(&mut self, id: ToxicId) -> &mut u64 {
        let index = match self.counted.iter().position(|(i, _)| *i == id) {
            Some(index) => index,
            None => {
                self.counted.push((id, 0));
                self.counted.len() - 1
            }
        };
        &mut self.counted[index].1
    }
}

/// Ends the link when a timed toxic (`reset_peer`, or `timeout` with a non-zero timeout) expires.
async fn supervise(shared: &Shared, opened_at: Instant) -> End {
    let mut toxics = shared.toxics.subscribe();
    loop {
        let next = next_expiry(toxics.borrow_and_update().all(), opened_at);
        match next {
            Some((at, end)) => {
                tokio::select! {
                    _ = sleep_until(at.into()) => return end,
                    _ = changed(&mut toxics) => {}
                }
            }
            None => changed(&mut toxics).await,
        }
    }
}

/// The earliest timed toxic to expire on a connection opened at `opened_at`, and its effect.
fn next_expiry(active: &[Active], opened_at: Instant) -> Option<(Instant, End)> {
    let mut next: Option<(Instant, End)> = None;
    for a in active {
        let (at, end) = match a.entry.toxic {
            Toxic::ResetPeer { timeout_ms } => (
                a.expires_at(opened_at, timeout_ms),
                End::Reset(a.entry.direction),
            ),
            Toxic::Timeout { timeout_ms } if timeout_ms > 0 => (
                a.expires_at(opened_at, timeout_ms),
                End::Close("timeout expired"),
            ),
            _ => continue,
        };
        if next.as_ref().is_none_or(|(earliest, _)| at < *earliest) {
            next = Some((at, end));
        }
    }
    next
}

/// Waits for the toxic table to change. The sender lives as long as the proxy's runtime, so an
/// error (sender gone) can only happen during shutdown, when waiting forever is right.
async fn changed(toxics: &mut watch::Receiver<ToxicTable>) {
    if toxics.changed().await.is_err() {
        future::pending::<()>().await;
    }
}
