//! The kv-store backend: records shared by every gateway instance, surviving their restarts.
//!
//! ```text
//!   begin     SET idem:<h> <claim: fingerprint, token> NX PX lock_ttl_ms
//!               OK   ─▶ Proceed                (one atomic step: of two racing gateways,
//!               nil  ─▶ GET idem:<h>            exactly one gets OK)
//!                         record ─▶ InProgress / Replay / Mismatch
//!                         nil    ─▶ it expired in between: try the SET again
//!   complete  GET idem:<h>
//!               our claim ─▶ SET idem:<h> <response> PX ttl_ms XX
//!               nothing   ─▶ SET idem:<h> <response> PX ttl_ms NX   (the lock ran out, but
//!                                                                    the request did run)
//!               another's ─▶ ClaimLost, theirs stays
//!   release   PTTL idem:<h>, GET idem:<h>  (one pipeline, in that order)
//!               our claim with >= lock_ttl_ms / 2 left ─▶ DEL idem:<h>
//!               otherwise ─▶ nothing: it expires by itself
//! ```
//!
//! `<h>` is the hex SHA-256 of the scoped key: fixed-length names in their own `idem:`
//! namespace, whatever the client sent. Records are laid out as `record.rs` documents. Expiry
//! is the kv-store's, by its clock: the gateway's `now_ns` plays no part in it.
//!
//! # Without compare-and-set
//!
//! The kv-store has no compare-and-set (no `WATCH`, no scripts), so `complete` and `release`
//! check that the claim is still ours with a `GET` and act with a second command. Between the
//! two, our claim can only disappear by expiring, and another gateway can only claim the key
//! after that. What each residual race costs:
//!
//! - `complete`: our claim expires between the `GET` and the `SET ... XX`, another gateway
//!   claims the key, and our `SET` overwrites its claim with our response. No request runs
//!   because of this: the other request was admitted by the expiry, which had already broken
//!   "one effect" (the lock was shorter than our request, see the module doc of
//!   `idempotency`). The race only decides which of the two outcomes retries replay, and the
//!   other gateway's `complete` then reports [`StoreError::ClaimLost`].
//! - `release`: a `DEL` that lands after our claim expired and another gateway claimed the key
//!   would delete *their* claim and let a third request run beside theirs. That would be a new
//!   duplicate, so it is avoided rather than accepted: the `PTTL` is read before the `GET` on
//!   the same key, and a claim that was ours at the `GET` was ours at the `PTTL` too (a key
//!   that is our claim has been so since we set it), so it still has at least the `PTTL` to
//!   live when the `DEL` is sent. The `DEL` goes only with half the lock's life left; the race
//!   needs the `DEL` to take longer than that (30 s by default) to arrive. A claim older than
//!   that is left to expire: retries see 409 a little longer, which is safe.

use std::sync::Arc;

use bytes::Bytes;
use kv_store::client::Client;
use kv_store::resp::reply::Reply;
use sha2::{Digest, Sha256};

use super::local::answer;
use super::record::{Record, Token, new_token};
use super::{Begin, Claim, ClaimBackend, IdempotencyConfig, StoreError, StoredResponse};

/// Prefix of every key this store writes in the kv-store.
pub const KEY_PREFIX: &str = "idem:";
/// Times `begin` tries to claim a key that keeps expiring between its `SET` and its `GET`.
/// After that it answers [`Begin::InProgress`], which is always safe (the client retries).
pub const MAX_BEGIN_ATTEMPTS: usize = 3;

/// The kv backend. Clones share the client and its connections.
#[derive(Debug, Clone)]
pub struct KvStore {
    client: Arc<Client>,
    ttl_ms: Bytes,
    lock_ttl_ms: Bytes,
    /// `release` deletes a claim only with at least this long left to live, ms.
    release_margin_ms: i64,
    max_body_bytes: usize,
}

impl KvStore {
    pub fn new(config: &IdempotencyConfig, client: Client) -> KvStore {
        KvStore {
            client: Arc::new(client),
            ttl_ms: Bytes::from(config.ttl_ms.to_string()),
            lock_ttl_ms: Bytes::from(config.lock_ttl_ms.to_string()),
            release_margin_ms: i64::try_from(config.lock_ttl_ms / 2).unwrap_or(i64::MAX),
            max_body_bytes: config.max_body_bytes,
        }
    }

    /// The kv-store key a scoped idempotency key is kept under.
    pub fn kv_key(key: &str) -> String {
        let digest = Sha256::digest(key.as_bytes());
        let mut name = String::with_capacity(KEY_PREFIX.len() + 64);
        name.push_str(KEY_PREFIX);
        for byte in digest {
            name.push_str(&format!("{byte:02x}"));
        }
        name
    }

    pub(super) async fn begin(
        &self,
        key: &str,
        fingerprint: [u8; 32],
        now_ns: u64,
    ) -> Result<Begin, StoreError> {
        let name = Bytes::from(KvStore::kv_key(key));
        for _ in 0..MAX_BEGIN_ATTEMPTS {
            let token = new_token(now_ns);
            let claim = Record::Claim { fingerprint, token }.encode();
            let set: [&[u8]; 6] = [b"SET", &name, &claim, b"NX", b"PX", &self.lock_ttl_ms];
            if self.set(&set).await? {
                return Ok(Begin::Proceed(Claim {
                    backend: ClaimBackend::Kv {
                        store: self.clone(),
                        key: name,
                    },
                    fingerprint,
                    token,
                    max_body_bytes: self.max_body_bytes,
                }));
            }
            if let Some(record) = self.get(&name).await? {
                return Ok(answer(&record, &fingerprint));
            }
        }
        Ok(Begin::InProgress)
    }

    pub(super) async fn complete(
        &self,
        name: &Bytes,
        token: Token,
        fingerprint: [u8; 32],
        response: StoredResponse,
    ) -> Result<(), StoreError> {
        let record = Record::Completed {
            fingerprint,
            response,
        }
        .encode();
        match self.get(name).await? {
            Some(Record::Claim { token: ours, .. }) if ours == token => {
                let replace: [&[u8]; 6] = [b"SET", name, &record, b"PX", &self.ttl_ms, b"XX"];
                if self.set(&replace).await? {
                    return Ok(());
                }
                // Our claim expired after the GET: store the outcome if the key is still free.
            }
            Some(_) => return Err(StoreError::ClaimLost),
            None => {}
        }
        let create: [&[u8]; 6] = [b"SET", name, &record, b"PX", &self.ttl_ms, b"NX"];
        if self.set(&create).await? {
            Ok(())
        } else {
            Err(StoreError::ClaimLost)
        }
    }

    pub(super) async fn release(&self, name: &Bytes, token: Token) -> Result<(), StoreError> {
        let pttl = vec![Bytes::from_static(b"PTTL"), name.clone()];
        let get = vec![Bytes::from_static(b"GET"), name.clone()];
        let mut replies = self.client.pipeline(vec![pttl, get]).await?.into_iter();
        let (Some(ttl), Some(value)) = (replies.next(), replies.next()) else {
            return Err(unexpected("PTTL", &Reply::Null));
        };
        let left_ms = match ttl {
            Reply::Integer(ms) => ms,
            other => return Err(unexpected("PTTL", &other)),
        };
        let ours = matches!(
            decode(value)?,
            Some(Record::Claim { token: theirs, .. }) if theirs == token
        );
        if ours && left_ms >= self.release_margin_ms {
            match self.client.command(&[&b"DEL"[..], &name[..]]).await? {
                Reply::Integer(_) => {}
                other => return Err(unexpected("DEL", &other)),
            }
        }
        Ok(())
    }

    /// Runs a conditional `SET`: true if it was applied, false if its condition refused it.
    async fn set(&self, args: &[&[u8]]) -> Result<bool, StoreError> {
        match self.client.command(args).await? {
            Reply::Simple(ok) if ok == "OK" => Ok(true),
            Reply::Null => Ok(false),
            other => Err(unexpected("SET", &other)),
        }
    }

    async fn get(&self, name: &Bytes) -> Result<Option<Record>, StoreError> {
        decode(self.client.command(&[&b"GET"[..], &name[..]]).await?)
    }
}

/// A `GET` reply as a record: `None` for no key.
fn decode(reply: Reply) -> Result<Option<Record>, StoreError> {
    match reply {
        Reply::Null => Ok(None),
        Reply::Bulk(bytes) => Record::decode(&bytes).map(Some),
        other => Err(unexpected("GET", &other)),
    }
}

fn unexpected(command: &'static str, reply: &Reply) -> StoreError {
    StoreError::KvReply {
        command,
        reply: format!("{reply:?}"),
    }
}
