//! One client connection: read, parse every complete command, execute the batch, write once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::{Bytes, BytesMut};
use service_kit::shutdown::Shutdown;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{Session, Shared};
use crate::command::{self, Ctx};
use crate::resp::{self, Frame, Protocol, request};

/// Initial size of a connection's read and write buffers. They grow with the batch and shrink
/// back to this when a large batch has gone (see [`shrink`]).
pub const BUFFER_BYTES: usize = 16 * 1024;

/// Serves one client until it quits, disconnects, breaks the protocol, or the server shuts
/// down (checked whenever the connection waits for input, so a batch in progress finishes).
pub async fn serve_connection(
    mut stream: TcpStream,
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Shutdown,
) {
    // Replies are written once per batch, already coalesced: Nagle's delay would only add
    // latency.
    let _ = stream.set_nodelay(true);
    let Some(info) = shared.register_client(Some(addr), stream.local_addr().ok()) else {
        shared
            .stats
            .rejected_connections
            .fetch_add(1, Ordering::Relaxed);
        let _ = stream
            .write_all(b"-ERR max number of clients reached\r\n")
            .await;
        return;
    };
    let id = info.id;
    let span = tracing::debug_span!("connection", id, %addr);
    let _entered = span.enter();
    let mut session = Session::new(info);
    // As in Redis, a connection made while no password is set is authenticated as the default
    // user, and stays so if `CONFIG SET requirepass` adds one later.
    session.authenticated = shared.lock().settings.requirepass.is_none();
    if let Err(err) = converse(&mut stream, &shared, &mut session, &shutdown).await {
        tracing::debug!(%err, "connection closed by an I/O error");
    }
    shared.unregister_client(id);
}

async fn converse(
    stream: &mut TcpStream,
    shared: &Shared,
    session: &mut Session,
    shutdown: &Shutdown,
) -> std::io::Result<()> {
    let mut input = BytesMut::with_capacity(BUFFER_BYTES);
    let mut output = BytesMut::with_capacity(BUFFER_BYTES);
    let limits = shared.limits;
    // Made once: a fresh shutdown future per read would register and unregister a waiter on
    // the shutdown token for every batch.
    let stop = shutdown.triggered();
    tokio::pin!(stop);
    loop {
        let (commands, error) = parse_available(&mut input, &limits);
        if !commands.is_empty() {
            run_batch(shared, session, &commands, &mut output).await;
        }
        if let Some(error) = &error {
            shared.stats.protocol_errors.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%error, "closing after a protocol error");
            let frame = Frame::error(format!("ERR {error}"));
            resp::encode(&frame, session.protocol, &mut output);
        }
        if !output.is_empty() {
            stream.write_all(&output).await?;
            output.clear();
            shrink(&mut output);
        }
        if error.is_some() || session.closing {
            return Ok(());
        }
        if input.len() > limits.query_buffer_bytes {
            let message = format!(
                "-ERR query buffer limit exceeded ({} bytes, client-query-buffer-limit)\r\n",
                limits.query_buffer_bytes
            );
            stream.write_all(message.as_bytes()).await?;
            return Ok(());
        }
        shrink(&mut input);
        if input.capacity() - input.len() < BUFFER_BYTES / 4 {
            input.reserve(BUFFER_BYTES);
        }
        let read = tokio::select! {
            read = stream.read_buf(&mut input) => read?,
            () = &mut stop => return Ok(()),
        };
        if read == 0 {
            return Ok(());
        }
    }
}

/// Takes every complete command off `input`; stops at the first protocol error, which is
/// returned beside the commands before it (they are answered first, as Redis does).
fn parse_available(
    input: &mut BytesMut,
    limits: &request::Limits,
) -> (Vec<Vec<Bytes>>, Option<request::ProtocolError>) {
    let mut commands = Vec::new();
    loop {
        match request::parse_command(input, limits) {
            Ok(Some(args)) if args.is_empty() => {}
            Ok(Some(args)) => commands.push(args),
            Ok(None) => return (commands, None),
            Err(error) => return (commands, Some(error)),
        }
    }
}

/// Executes `commands` in order under one hold of the keyspace lock, hands their log records to
/// the log before letting go of it (so log order is apply order), waits until the log holds
/// them as the `--fsync` policy requires, and encodes the replies into `output`. Stops after
/// `QUIT`. If the log fails, every reply of the batch becomes the failure: none of its writes
/// can be promised.
async fn run_batch(
    shared: &Shared,
    session: &mut Session,
    commands: &[Vec<Bytes>],
    output: &mut BytesMut,
) {
    let log = shared.log();
    log.wait_for_room().await;
    let now_ms = shared.clock.now_ms();
    let mut replies: Vec<(Frame, Protocol)> = Vec::with_capacity(commands.len());
    let mut records = Vec::new();
    let mut acked = None;
    {
        let mut state = shared.lock();
        for args in commands {
            let mut ctx = Ctx::new(&mut state, session, shared, now_ms);
            let reply = command::execute(&mut ctx, args, &mut records);
            replies.push((reply, session.protocol));
            if session.closing {
                break;
            }
        }
        if !records.is_empty() {
            acked = Some(log.submit_for_reply(records));
        }
    }
    shared
        .stats
        .commands_processed
        .fetch_add(replies.len() as u64, Ordering::Relaxed);
    if let Some(acked) = acked
        && let Err(failed) = log.acknowledged(acked).await
    {
        let error = Frame::error(failed.to_string());
        replies
            .iter_mut()
            .for_each(|(reply, _)| *reply = error.clone());
    }
    if let Some(spec) = commands.last().and_then(|last| command::lookup(&last[0])) {
        session.info.details().last_command = spec.name;
        session.info.touch();
    }
    for (reply, protocol) in &replies {
        resp::encode(reply, *protocol, output);
    }
}

/// Gives back the memory of a buffer that grew for one large batch, once it is empty again.
fn shrink(buffer: &mut BytesMut) {
    if buffer.is_empty() && buffer.capacity() > 64 * BUFFER_BYTES {
        *buffer = BytesMut::with_capacity(BUFFER_BYTES);
    }
}
