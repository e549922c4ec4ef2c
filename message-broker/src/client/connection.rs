//! One pipelined connection to a broker.
//!
//! Any number of tasks may call [`Connection::call`] at once: each request gets the next
//! correlation id, is written under a short lock, and waits on its own channel for the answer,
//! which a reader task routes by id. Requests in flight are bounded by
//! [`MAX_IN_FLIGHT_REQUESTS`]; callers beyond it wait for a slot.
//!
//! When the connection breaks, every waiting call fails with [`ClientError::Disconnected`] and
//! so does every later one: the caller reconnects (a broker restart is not hidden, so that a
//! producer can decide what to retry).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use futures_util::{SinkExt, StreamExt};
use service_kit::frame::{FrameCodec, FrameError};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{Semaphore, oneshot};
use tokio_util::codec::{FramedRead, FramedWrite};

use crate::protocol::{ErrorCode, Request, RequestBody, Response, ResponseBody};
use crate::server::config::{Limits, RESPONSE_OVERHEAD_BYTES};

/// Requests one connection keeps in flight before callers wait; the broker's default
/// `max_in_flight_requests`.
pub const MAX_IN_FLIGHT_REQUESTS: usize = 64;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Could not connect.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// The broker.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The connection closed or failed; the request may or may not have been applied.
    #[error("connection to the broker lost")]
    Disconnected,
    /// A frame could not be written (too large, for instance).
    #[error("cannot send the request: {0}")]
    Frame(#[from] FrameError),
    /// The broker refused the whole request.
    #[error("broker error {code}: {message}")]
    Broker {
        /// Its code.
        code: ErrorCode,
        /// Its explanation.
        message: String,
    },
    /// Fetched bytes that are not valid batches (a CRC mismatch, say).
    #[error("corrupt data from {topic}/{partition} at offset {offset}: {defect}")]
    CorruptData {
        /// Topic.
        topic: String,
        /// Partition.
        partition: u32,
        /// Fetch position.
        offset: u64,
        /// What is wrong.
        defect: crate::record_batch::Defect,
    },
    /// The answer does not match the request's API.
    #[error("unexpected response to {api}")]
    UnexpectedResponse {
        /// The API called.
        api: &'static str,
    },
}

/// The answer to a request already written (see [`Connection::call_pipelined`]).
pub type AnswerFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<ResponseBody, ClientError>> + Send>>;

type Pending = Mutex<HashMap<u32, oneshot::Sender<ResponseBody>>>;

/// A pipelined connection. Cheap to share behind an `Arc`.
pub struct Connection {
    addr: SocketAddr,
    sink: tokio::sync::Mutex<FramedWrite<OwnedWriteHalf, FrameCodec<Request>>>,
    pending: Arc<Pending>,
    broken: Arc<AtomicBool>,
    next_id: AtomicU32,
    slots: Arc<Semaphore>,
    reader: tokio::task::JoinHandle<()>,
}

impl Connection {
    /// Connects to the broker at `addr`.
    pub async fn connect(addr: SocketAddr) -> Result<Connection, ClientError> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|source| ClientError::Connect { addr, source })?;
        let _ = stream.set_nodelay(true);
        let (read, write) = stream.into_split();
        let limits = Limits::default();
        let sink = FramedWrite::new(
            write,
            FrameCodec::with_max_frame_bytes(limits.max_request_bytes),
        );
        let pending: Arc<Pending> = Arc::default();
        let broken = Arc::new(AtomicBool::new(false));
        let reader = tokio::spawn(route_responses(
            read,
            limits.max_fetch_bytes + RESPONSE_OVERHEAD_BYTES,
            Arc::clone(&pending),
            Arc::clone(&broken),
        ));
        Ok(Connection {
            addr,
            sink: tokio::sync::Mutex::new(sink),
            pending,
            broken,
            next_id: AtomicU32::new(1),
            slots: Arc::new(Semaphore::new(MAX_IN_FLIGHT_REQUESTS)),
            reader,
        })
    }

    /// The broker's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Whether the connection has failed (every call will fail).
    pub fn is_broken(&self) -> bool {
        self.broken.load(Ordering::Acquire)
    }

    /// Sends a request and waits for its answer. A [`ResponseBody::Error`] becomes
    /// [`ClientError::Broker`].
    pub async fn call(&self, body: RequestBody) -> Result<ResponseBody, ClientError> {
        self.call_pipelined(body).await?.await
    }

    /// Writes a request now and returns the wait for its answer, so that a caller can send
    /// more requests meanwhile (they reach the broker in the order of these calls).
    pub async fn call_pipelined(&self, body: RequestBody) -> Result<AnswerFuture, ClientError> {
        let slot = Arc::clone(&self.slots)
            .acquire_owned()
            .await
            .expect("never closed");
        let (id, answer) = self.register();
        if let Err(err) = self.send(id, body).await {
            self.lock_pending().remove(&id);
            return Err(err);
        }
        Ok(Box::pin(async move {
            let _slot = slot;
            match answer.await {
                Ok(ResponseBody::Error(error)) => Err(ClientError::Broker {
                    code: error.code,
                    message: error.message,
                }),
                Ok(body) => Ok(body),
                Err(_) => Err(ClientError::Disconnected),
            }
        }))
    }

    /// Sends a request the broker does not answer (a produce with `acks = none`).
    pub async fn send_only(&self, body: RequestBody) -> Result<(), ClientError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.send(id, body).await
    }

    fn register(&self) -> (u32, oneshot::Receiver<ResponseBody>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (sender, receiver) = oneshot::channel();
        self.lock_pending().insert(id, sender);
        (id, receiver)
    }

    async fn send(&self, correlation_id: u32, body: RequestBody) -> Result<(), ClientError> {
        if self.is_broken() {
            return Err(ClientError::Disconnected);
        }
        let request = Request {
            correlation_id,
            api_version: body.api_key().max_version(),
            body,
        };
        let mut sink = self.sink.lock().await;
        match sink.send(request).await {
            Ok(()) => Ok(()),
            Err(FrameError::Io(_)) => {
                self.broken.store(true, Ordering::Release);
                Err(ClientError::Disconnected)
            }
            Err(err) => Err(ClientError::Frame(err)),
        }
    }

    fn lock_pending(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<u32, oneshot::Sender<ResponseBody>>> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

async fn route_responses(
    read: OwnedReadHalf,
    max_frame_bytes: u32,
    pending: Arc<Pending>,
    broken: Arc<AtomicBool>,
) {
    let mut responses = FramedRead::new(
        read,
        FrameCodec::<Response>::with_max_frame_bytes(max_frame_bytes),
    );
    while let Some(Ok(response)) = responses.next().await {
        let waiter = pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&response.correlation_id);
        if let Some(waiter) = waiter {
            let _ = waiter.send(response.body);
        }
    }
    broken.store(true, Ordering::Release);
    // Dropping the senders wakes every waiting call with `Disconnected`.
    pending
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clear();
}
