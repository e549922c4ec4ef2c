//! Record-by-record consumption with acknowledgments: the client side of `server::delivery`.
//!
//! ```text
//!  poll ─▶ ShareFetch ─▶ records (new ones, and redeliveries whose backoff ended)
//!  ack(offset) / nack(offset, reason) ─▶ buffered ─▶ flush ─▶ Acknowledge
//! ```
//!
//! Acknowledgments are buffered and sent with the next `poll` (or `flush`), one request per
//! poll. A record neither acknowledged nor rejected within the group's ack timeout is
//! redelivered, like a rejected one; after the group's `max_delivery_attempts` it goes to the
//! dead-letter topic.

use std::sync::Arc;
use std::time::Duration;

use super::{Client, ClientError};
use crate::protocol::{
    AcknowledgeRequest, DeliveredRecord, Nack, RequestBody, ResponseBody, RetrySettings,
    ShareFetchRequest,
};

/// Default `max_records` per poll.
pub const DEFAULT_SHARE_MAX_RECORDS: u32 = 500;
/// Pause of a poll that found nothing, so an idle consumer does not spin.
pub const EMPTY_POLL_PAUSE: Duration = Duration::from_millis(20);

/// A consumer of one partition whose records are acknowledged one by one.
pub struct ShareConsumer {
    client: Arc<Client>,
    group: String,
    topic: String,
    partition: u32,
    settings: RetrySettings,
    max_records: u32,
    acks: Vec<u64>,
    nacks: Vec<Nack>,
    committed: u64,
}

impl ShareConsumer {
    /// A consumer for `group` on `topic`/`partition` with the group's retry policy.
    pub fn new(
        client: Arc<Client>,
        group: &str,
        topic: &str,
        partition: u32,
        settings: RetrySettings,
    ) -> ShareConsumer {
        ShareConsumer {
            client,
            group: group.to_owned(),
            topic: topic.to_owned(),
            partition,
            settings,
            max_records: DEFAULT_SHARE_MAX_RECORDS,
            acks: Vec::new(),
            nacks: Vec::new(),
            committed: 0,
        }
    }

    /// Marks a delivered record as processed.
    pub fn ack(&mut self, offset: u64) {
        self.acks.push(offset);
    }

    /// Marks a delivered record as failed; `reason` is kept for the dead-letter record.
    pub fn nack(&mut self, offset: u64, reason: &str) {
        self.nacks.push(Nack {
            offset,
            reason: reason.to_owned(),
        });
    }

    /// The group's committed offset as of the last acknowledgment sent.
    pub fn committed(&self) -> u64 {
        self.committed
    }

    /// Sends buffered acknowledgments.
    pub async fn flush(&mut self) -> Result<(), ClientError> {
        if self.acks.is_empty() && self.nacks.is_empty() {
            return Ok(());
        }
        let request = AcknowledgeRequest {
            group_id: self.group.clone(),
            topic: self.topic.clone(),
            partition: self.partition,
            acks: std::mem::take(&mut self.acks),
            nacks: std::mem::take(&mut self.nacks),
        };
        let body = self
            .client
            .connection()
            .call(RequestBody::Acknowledge(request))
            .await?;
        let ResponseBody::Acknowledge(answer) = body else {
            return Err(ClientError::UnexpectedResponse { api: "Acknowledge" });
        };
        if !answer.error.is_ok() {
            return Err(ClientError::Broker {
                code: answer.error,
                message: "acknowledge".into(),
            });
        }
        self.committed = answer.committed;
        Ok(())
    }

    /// Sends buffered acknowledgments, then fetches the records due now (pausing briefly if
    /// there are none).
    pub async fn poll(&mut self) -> Result<Vec<DeliveredRecord>, ClientError> {
        self.flush().await?;
        let request = ShareFetchRequest {
            group_id: self.group.clone(),
            topic: self.topic.clone(),
            partition: self.partition,
            max_records: self.max_records,
            settings: self.settings.clone(),
        };
        let body = self
            .client
            .connection()
            .call(RequestBody::ShareFetch(request))
            .await?;
        let ResponseBody::ShareFetch(answer) = body else {
            return Err(ClientError::UnexpectedResponse { api: "ShareFetch" });
        };
        if !answer.error.is_ok() {
            return Err(ClientError::Broker {
                code: answer.error,
                message: format!("share fetch {}/{}", self.topic, self.partition),
            });
        }
        if answer.records.is_empty() {
            tokio::time::sleep(EMPTY_POLL_PAUSE).await;
        }
        Ok(answer.records)
    }
}
