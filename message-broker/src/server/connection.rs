//! One client connection: read requests, dispatch each, write responses as they complete.
//!
//! ```text
//!  socket ─▶ FramedRead<Request> ─▶ dispatch ─┬─ Now(resp) ───────────────┐
//!                ▲                            ├─ Later(fut) ─▶ task ─────┼─▶ channel ─▶ writer ─▶ socket
//!                │                            └─ Silent (acks = none)     │   (bounded)
//!        a permit per request; at `max_in_flight_requests` unanswered     │
//!        requests the loop stops reading the socket  ◀── permit freed ◀──┘ when written
//! ```
//!
//! Requests are dispatched in the order they arrive, so appends keep the client's order; what
//! has to wait (an fsync, a long poll) runs in its own task and answers out of order, matched
//! by correlation id. A frame that does not decode closes the connection (nothing after it can
//! be trusted to start a frame); the broker goes on serving everyone else.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use prometheus::{IntCounter, IntCounterVec, IntGauge};
use service_kit::frame::FrameCodec;
use service_kit::metrics::{MetricsError, Registry};
use service_kit::shutdown::Shutdown;
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::codec::{FramedRead, FramedWrite};

use super::broker::Broker;
use super::config::{FlushPolicy, Limits, RESPONSE_OVERHEAD_BYTES};
use super::coordinator::Coordinator;
use super::delivery::Deliveries;
use super::{fetch, produce};
use crate::protocol::{
    ApiKey, ApiVersionRange, ErrorCode, ErrorResponse, InitProducerIdResponse, ListOffsetsRequest,
    ListOffsetsResponse, Request, RequestBody, Response, ResponseBody,
};

/// What every connection shares.
pub struct State {
    /// Topics and partitions.
    pub broker: Arc<Broker>,
    /// When appends are fsynced.
    pub flush: FlushPolicy,
    /// Limits.
    pub limits: Limits,
    /// Counters.
    pub metrics: Metrics,
    /// Shutdown signal (long polls end early on it).
    pub shutdown: Shutdown,
    /// Consumer groups and committed offsets.
    pub coordinator: Arc<Coordinator>,
    /// Per-record deliveries: acknowledgments, retries, dead letters.
    pub deliveries: Arc<Deliveries>,
}

impl State {
    /// The state over an opened broker and coordinator: builds the deliveries and starts the
    /// coordinator's and the deliveries' timers, which end with `shutdown`.
    pub fn start(
        broker: Arc<Broker>,
        coordinator: Arc<Coordinator>,
        config: &super::Config,
        metrics: Metrics,
        shutdown: Shutdown,
    ) -> Arc<State> {
        let deliveries = Arc::new(Deliveries::new(
            Arc::clone(&broker),
            Arc::clone(&coordinator),
            config.limits.max_pending_deliveries_per_partition,
            config.limits.max_delivery_trackers,
            config.flush,
        ));
        let stop = shutdown.clone();
        tokio::spawn(Arc::clone(&coordinator).run_timer(async move { stop.triggered().await }));
        let stop = shutdown.clone();
        tokio::spawn(Arc::clone(&deliveries).run_timer(async move { stop.triggered().await }));
        Arc::new(State {
            broker,
            flush: config.flush,
            limits: config.limits.clone(),
            metrics,
            shutdown,
            coordinator,
            deliveries,
        })
    }
}

/// The broker's metrics.
pub struct Metrics {
    /// Open client connections.
    pub connections: IntGauge,
    /// Requests by API.
    pub requests: IntCounterVec,
    /// Error answers by code.
    pub error_codes: IntCounterVec,
    /// Records appended.
    pub produced_records: IntCounter,
    /// Bytes of batches appended.
    pub produced_bytes: IntCounter,
    /// Retried batches recognised and not written again.
    pub duplicate_batches: IntCounter,
    /// Record bytes sent to fetches.
    pub fetched_bytes: IntCounter,
}

impl Metrics {
    /// Registers the broker's metrics.
    pub fn register(registry: &Registry) -> Result<Metrics, MetricsError> {
        Ok(Metrics {
            connections: registry.gauge("broker_connections", "Open client connections.")?,
            requests: registry.counter_vec(
                "broker_requests_total",
                "Requests by API.",
                &["api"],
            )?,
            error_codes: registry.counter_vec(
                "broker_errors_total",
                "Error answers by code.",
                &["code"],
            )?,
            produced_records: registry
                .counter("broker_produced_records_total", "Records appended.")?,
            produced_bytes: registry.counter(
                "broker_produced_bytes_total",
                "Bytes of record batches appended.",
            )?,
            duplicate_batches: registry.counter(
                "broker_duplicate_batches_total",
                "Retried idempotent batches answered without writing them again.",
            )?,
            fetched_bytes: registry.counter(
                "broker_fetched_bytes_total",
                "Record bytes sent to fetches.",
            )?,
        })
    }

    /// Counts an error answer.
    pub fn errors(&self, code: ErrorCode) {
        self.error_codes
            .with_label_values(&[&format!("{code:?}")])
            .inc();
    }
}

/// How a request is answered.
pub enum Reply {
    /// Now, from the read loop.
    Now(ResponseBody),
    /// When the future completes (an fsync, a long poll, file-system work).
    Later(Pin<Box<dyn Future<Output = ResponseBody> + Send>>),
    /// Not at all (`acks = none`).
    Silent,
}

type ResponseSink = FramedWrite<OwnedWriteHalf, FrameCodec<Response>>;

/// Serves one connection until the client closes it, sends a bad frame, or shutdown begins;
/// then finishes the requests already read and returns.
pub async fn serve_connection(stream: TcpStream, state: Arc<State>) {
    state.metrics.connections.inc();
    let limits = &state.limits;
    let (read, write) = stream.into_split();
    let mut requests = FramedRead::new(
        read,
        FrameCodec::<Request>::with_max_frame_bytes(limits.max_request_bytes),
    );
    let responses = FramedWrite::new(
        write,
        FrameCodec::<Response>::with_max_frame_bytes(
            limits.max_fetch_bytes + RESPONSE_OVERHEAD_BYTES,
        ),
    );
    let permits = Arc::new(Semaphore::new(limits.max_in_flight_requests));
    let (sender, receiver) = mpsc::channel(limits.max_in_flight_requests);
    let writer = tokio::spawn(write_responses(responses, receiver));
    loop {
        let permit = tokio::select! {
            permit = Arc::clone(&permits).acquire_owned() => permit.expect("never closed"),
            () = state.shutdown.triggered() => break,
        };
        let frame = tokio::select! {
            frame = requests.next() => frame,
            () = state.shutdown.triggered() => break,
        };
        let request = match frame {
            None => break,
            Some(Ok(request)) => request,
            Some(Err(err)) => {
                tracing::info!(%err, "closing the connection after a bad frame");
                break;
            }
        };
        let correlation_id = request.correlation_id;
        match dispatch(&state, request) {
            Reply::Now(body) => {
                let response = Response {
                    correlation_id,
                    body,
                };
                if sender.send((response, permit)).await.is_err() {
                    break;
                }
            }
            Reply::Later(future) => {
                let sender = sender.clone();
                tokio::spawn(async move {
                    let body = future.await;
                    let response = Response {
                        correlation_id,
                        body,
                    };
                    // The writer is gone only if the client is: nobody to tell.
                    let _ = sender.send((response, permit)).await;
                });
            }
            Reply::Silent => drop(permit),
        }
    }
    drop(sender);
    // The writer ends once every waiting request has answered and the answers are flushed.
    let _ = writer.await;
    state.metrics.connections.dec();
}

async fn write_responses(
    mut sink: ResponseSink,
    mut responses: mpsc::Receiver<(Response, OwnedSemaphorePermit)>,
) {
    while let Some((response, permit)) = responses.recv().await {
        if let Err(err) = sink.feed(response).await {
            tracing::info!(%err, "cannot write a response; closing");
            return;
        }
        drop(permit);
        // Flush when no other answer is ready: one write for a burst of pipelined answers.
        if responses.is_empty() && sink.flush().await.is_err() {
            return;
        }
    }
    let _ = sink.flush().await;
}

/// Routes one request to its handler.
fn dispatch(state: &Arc<State>, request: Request) -> Reply {
    let key = request.body.api_key();
    state
        .metrics
        .requests
        .with_label_values(&[&format!("{key:?}")])
        .inc();
    if request.api_version > key.max_version() {
        state.metrics.errors(ErrorCode::UnsupportedVersion);
        return Reply::Now(ResponseBody::Error(ErrorResponse {
            code: ErrorCode::UnsupportedVersion,
            message: format!(
                "{key:?} version {} is not supported (newest: {})",
                request.api_version,
                key.max_version()
            ),
        }));
    }
    let broker = Arc::clone(&state.broker);
    match request.body {
        RequestBody::ApiVersions => Reply::Now(ResponseBody::ApiVersions(api_versions())),
        RequestBody::Metadata(request) => Reply::Now(ResponseBody::Metadata(
            broker.metadata(request.topics.as_deref()),
        )),
        RequestBody::CreateTopic(request) => {
            blocking(move || ResponseBody::CreateTopic(broker.create_topic(&request)))
        }
        RequestBody::DeleteTopic(request) => {
            blocking(move || ResponseBody::DeleteTopic(broker.delete_topic(&request.name)))
        }
        RequestBody::InitProducerId => blocking(move || init_producer_id(&broker)),
        RequestBody::Produce(request) => produce::produce(state, request),
        RequestBody::Fetch(request) => fetch::fetch(state, request),
        RequestBody::ListOffsets(request) => {
            Reply::Now(ResponseBody::ListOffsets(list_offsets(&broker, &request)))
        }
        RequestBody::JoinGroup(request) => state.coordinator.join(request),
        RequestBody::SyncGroup(request) => state.coordinator.sync(request),
        RequestBody::Heartbeat(request) => Reply::Now(ResponseBody::Heartbeat(
            state.coordinator.heartbeat(&request),
        )),
        RequestBody::LeaveGroup(request) => {
            Reply::Now(ResponseBody::LeaveGroup(state.coordinator.leave(&request)))
        }
        RequestBody::OffsetCommit(request) => state.coordinator.commit(request),
        RequestBody::OffsetFetch(request) => Reply::Now(ResponseBody::OffsetFetch(
            state.coordinator.fetch_offsets(&request),
        )),
        RequestBody::ListGroups => {
            Reply::Now(ResponseBody::ListGroups(state.coordinator.list_groups()))
        }
        RequestBody::DescribeGroup(request) => Reply::Now(ResponseBody::DescribeGroup(
            state.coordinator.describe(&request.group_id),
        )),
        RequestBody::ShareFetch(request) => {
            let deliveries = Arc::clone(&state.deliveries);
            blocking(move || ResponseBody::ShareFetch(deliveries.fetch(&request)))
        }
        RequestBody::Acknowledge(request) => Reply::Now(ResponseBody::Acknowledge(
            state.deliveries.acknowledge(&request),
        )),
    }
}

/// Runs file-system work (mkdir, fsync, rename) off the async threads.
fn blocking(work: impl FnOnce() -> ResponseBody + Send + 'static) -> Reply {
    Reply::Later(Box::pin(async move {
        match tokio::task::spawn_blocking(work).await {
            Ok(body) => body,
            Err(err) => ResponseBody::Error(ErrorResponse {
                code: ErrorCode::Unknown,
                message: format!("request failed: {err}"),
            }),
        }
    }))
}

fn api_versions() -> Vec<ApiVersionRange> {
    ApiKey::ALL
        .iter()
        .map(|&key| ApiVersionRange {
            api_key: key as u16,
            min_version: 0,
            max_version: key.max_version(),
        })
        .collect()
}

fn init_producer_id(broker: &Broker) -> ResponseBody {
    let answer = match broker.next_producer_id() {
        Ok(producer_id) => InitProducerIdResponse {
            error: ErrorCode::None,
            producer_id,
            producer_epoch: 0,
        },
        Err(err) => {
            tracing::error!(%err, "cannot reserve producer ids");
            InitProducerIdResponse {
                error: ErrorCode::StorageError,
                producer_id: -1,
                producer_epoch: -1,
            }
        }
    };
    ResponseBody::InitProducerId(answer)
}

fn list_offsets(broker: &Broker, request: &ListOffsetsRequest) -> ListOffsetsResponse {
    let Some(partition) = broker.partition(&request.topic, request.partition) else {
        return ListOffsetsResponse {
            error: ErrorCode::UnknownTopicOrPartition,
            offset: 0,
        };
    };
    match partition.list_offset(request.spec) {
        Ok(offset) => ListOffsetsResponse {
            error: ErrorCode::None,
            offset,
        },
        Err(error) => ListOffsetsResponse { error, offset: 0 },
    }
}
