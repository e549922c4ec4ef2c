//! `Fetch`: byte ranges of segment files, with long polling.
//!
//! Each partition's answer is one `pread` of a range that starts at the batch holding the
//! fetch offset: the bytes are the ones on disk, never decoded or re-encoded. The request's
//! `max_bytes` (capped by `limits.max_fetch_bytes`) is a budget shared by its partitions in
//! order; the first non-empty partition always returns at least one whole batch, so a consumer
//! makes progress whatever its limits.
//!
//! If fewer than `min_bytes` are available the answer waits, up to `max_wait_ms` (capped by
//! `limits.max_fetch_wait_ms`), on a watch of each partition's end offset, and is sent as soon
//! as an append brings the total to `min_bytes`, the wait ends, or the broker shuts down.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::select_all;
use tokio::time::Instant;

use super::connection::{Reply, State};
use super::partition::error_code;
use crate::protocol::{
    ErrorCode, FetchPartitionResponse, FetchRequest, FetchResponse, ResponseBody,
};

/// Handles one fetch request: at once if enough data is there, else as a long poll.
pub fn fetch(state: &Arc<State>, request: FetchRequest) -> Reply {
    let (response, bytes) = read_once(state, &request);
    let max_wait = request.max_wait_ms.min(state.limits.max_fetch_wait_ms);
    if bytes >= request.min_bytes as usize || max_wait == 0 {
        return Reply::Now(ResponseBody::Fetch(response));
    }
    let deadline = Instant::now() + Duration::from_millis(max_wait.into());
    Reply::Later(Box::pin(long_poll(Arc::clone(state), request, deadline)))
}

async fn long_poll(state: Arc<State>, request: FetchRequest, deadline: Instant) -> ResponseBody {
    let mut watches: Vec<_> = request
        .partitions
        .iter()
        .filter_map(|p| state.broker.partition(&p.topic, p.partition))
        .map(|p| p.subscribe())
        .collect();
    loop {
        for watch in &mut watches {
            watch.borrow_and_update();
        }
        let (response, bytes) = read_once(&state, &request);
        if bytes >= request.min_bytes as usize || watches.is_empty() || Instant::now() >= deadline {
            return ResponseBody::Fetch(response);
        }
        let changed = select_all(watches.iter_mut().map(|w| Box::pin(w.changed())));
        tokio::select! {
            (result, _, _) = changed => {
                if result.is_err() {
                    // The partition was deleted: answer with what there is.
                    return ResponseBody::Fetch(read_once(&state, &request).0);
                }
            }
            () = tokio::time::sleep_until(deadline) => {}
            () = state.shutdown.triggered() => {}
        }
        if state.shutdown.is_triggered() {
            return ResponseBody::Fetch(read_once(&state, &request).0);
        }
    }
}

/// Reads every partition of the request once; returns the answer and its record bytes.
fn read_once(state: &State, request: &FetchRequest) -> (FetchResponse, usize) {
    let mut budget = request.max_bytes.min(state.limits.max_fetch_bytes) as usize;
    let mut total = 0;
    let mut partitions = Vec::with_capacity(request.partitions.len());
    for wanted in &request.partitions {
        let mut answer = FetchPartitionResponse {
            topic: wanted.topic.clone(),
            partition: wanted.partition,
            error: ErrorCode::None,
            high_watermark: 0,
            log_start_offset: 0,
            records: Vec::new(),
        };
        let Some(partition) = state.broker.partition(&wanted.topic, wanted.partition) else {
            answer.error = ErrorCode::UnknownTopicOrPartition;
            partitions.push(answer);
            continue;
        };
        if budget > 0 || total == 0 {
            let limit = (wanted.max_bytes as usize).min(budget).max(1);
            match partition.read(wanted.offset, limit) {
                Ok(Some(range)) if total == 0 || range.len <= budget => match range.read() {
                    Ok(bytes) => {
                        total += bytes.len();
                        budget = budget.saturating_sub(bytes.len());
                        answer.records = bytes;
                    }
                    Err(err) => answer.error = error_code(&err),
                },
                Ok(_) => {}
                Err(code) => answer.error = code,
            }
        }
        (answer.log_start_offset, answer.high_watermark) = partition.offsets();
        partitions.push(answer);
    }
    state.metrics.fetched_bytes.inc_by(total as u64);
    (FetchResponse { partitions }, total)
}
