//! Where links live: the [`Store`] trait, the embedded store on sled and the shared store on
//! the workspace's kv-store.
//!
//! The trait is the boundary between the service and its storage: the embedded store
//! ([`SledStore`], the default, one process) and the kv-store ([`KvStore`], several instances
//! sharing it) answer the same calls. Each method is one step a backend can make atomic on its
//! own:
//!
//! | call | sled (`embedded.rs`) | kv-store (`kv.rs`) |
//! |---|---|---|
//! | `create` | transaction: insert only if absent | `SET link v NX` |
//! | `replace` | transaction: overwrite only if present | `SET link v XX` |
//! | `list` | a range scan of the links tree | `ZRANGE codes (after + BYLEX LIMIT`, then `MGET` |
//! | `lease_ids` | `update_and_fetch` on one counter, then flush | `INCRBY` |
//! | `add_clicks` | one transaction per batch | `INCRBY` per code, pipelined |
//! | `remove_expired` | the expiry index, in batches | `PXAT` expires links by itself; the sweep clears their index entries |
//!
//! Methods return futures because a networked store needs them; the sled store answers from
//! memory or its page cache, and waits only for flushes (group-committed by `flusher.rs`).

mod embedded;
mod flusher;
mod kv;

use std::future::Future;
use std::ops::Range;

use serde::{Deserialize, Serialize};
use thiserror::Error;

pub use embedded::{DEFAULT_CACHE_BYTES, SledStore};
pub use kv::KvStore;

/// A short link as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    /// The short code: a generated 7-character base62 code or a custom alias. The store key.
    pub code: String,
    /// Where the link redirects to; checked by [`crate::target::check`] before it is stored.
    pub url: String,
    /// When the link was created, Unix milliseconds.
    pub created_at_ms: u64,
    /// When the link stops redirecting, Unix milliseconds; `None` never.
    pub expires_at_ms: Option<u64>,
    /// 301 (permanent, cacheable by browsers) instead of the default 302.
    pub permanent: bool,
}

impl Link {
    /// Whether the link has expired at `now_ms`.
    pub fn is_expired(&self, now_ms: u64) -> bool {
        self.expires_at_ms.is_some_and(|at| at <= now_ms)
    }
}

/// The stored form of a [`Link`] without its key, behind a version byte.
#[derive(Serialize, Deserialize)]
struct Record {
    url: String,
    created_at_ms: u64,
    expires_at_ms: Option<u64>,
    permanent: bool,
}

/// The version byte in front of every stored [`Record`].
const RECORD_VERSION: u8 = 1;

impl Link {
    fn encode(&self) -> Vec<u8> {
        let record = Record {
            url: self.url.clone(),
            created_at_ms: self.created_at_ms,
            expires_at_ms: self.expires_at_ms,
            permanent: self.permanent,
        };
        let mut bytes = vec![RECORD_VERSION];
        // Serialising owned strings and integers into a Vec cannot fail.
        bytes.extend(postcard::to_stdvec(&record).expect("a link record serialises"));
        bytes
    }

    fn decode(code: &str, bytes: &[u8]) -> Result<Link, StoreError> {
        let corrupt = |reason: String| StoreError::Corrupt {
            code: code.to_owned(),
            reason,
        };
        match bytes.split_first() {
            Some((&RECORD_VERSION, rest)) => {
                let record: Record =
                    postcard::from_bytes(rest).map_err(|e| corrupt(e.to_string()))?;
                Ok(Link {
                    code: code.to_owned(),
                    url: record.url,
                    created_at_ms: record.created_at_ms,
                    expires_at_ms: record.expires_at_ms,
                    permanent: record.permanent,
                })
            }
            Some((version, _)) => Err(corrupt(format!("unknown record version {version}"))),
            None => Err(corrupt("empty record".into())),
        }
    }
}

/// Why a store operation failed. None of these is the client's fault: the API answers 5xx.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("embedded store: {0}")]
    Sled(#[from] sled::Error),
    #[error("embedded store flush: {0}")]
    Flush(String),
    #[error("kv-store: {0}")]
    Kv(String),
    #[error("no randomness for the id key: {0}")]
    Random(String),
    #[error("stored record for `{code}` is unreadable: {reason}")]
    Corrupt { code: String, reason: String },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Storage for links, click counts and the id counter.
///
/// Invariant every implementation keeps: a code maps to at most one link, and `create` never
/// overwrites; so a code, once handed to a client, keeps meaning the link it was created for
/// until that link is deleted or swept after expiring.
pub trait Store: Send + Sync + 'static {
    /// Stores `link` if its code is free. `false`: the code is taken, nothing was written.
    /// Durable when it returns `true`.
    fn create(&self, link: &Link) -> impl Future<Output = Result<bool>> + Send;

    /// The link with this code, expired or not.
    fn get(&self, code: &str) -> impl Future<Output = Result<Option<Link>>> + Send;

    /// Overwrites the link with `link.code` if it exists. `false`: there is none. Durable when
    /// it returns.
    fn replace(&self, link: &Link) -> impl Future<Output = Result<bool>> + Send;

    /// Deletes the link and its click count. `false`: there was none. Durable when it returns.
    fn delete(&self, code: &str) -> impl Future<Output = Result<bool>> + Send;

    /// Up to `limit` links in code order, starting after `after` (exclusive): a cursor that
    /// stays valid while links are added and removed.
    fn list(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Link>>> + Send;

    /// Takes `count` ids from the shared counter: a range no other call ever returns. Durable
    /// before it returns, so a restart cannot hand the same range out again.
    fn lease_ids(&self, count: u64) -> impl Future<Output = Result<Range<u64>>> + Send;

    /// The key of the id scramble ([`crate::id::Feistel`]), made at random by the first caller
    /// and the same for every later one.
    fn id_key(&self) -> impl Future<Output = Result<u64>> + Send;

    /// Adds click counts; counts for codes that no longer exist are dropped. Durable when it
    /// returns.
    fn add_clicks(&self, counts: &[(String, u64)]) -> impl Future<Output = Result<()>> + Send;

    /// The click count of a code (0 if none was recorded).
    fn clicks(&self, code: &str) -> impl Future<Output = Result<u64>> + Send;

    /// The click counts of several codes, in order; a networked store reads them in one
    /// round trip rather than one each.
    fn clicks_of(&self, codes: &[&str]) -> impl Future<Output = Result<Vec<u64>>> + Send {
        async move {
            let mut counts = Vec::with_capacity(codes.len());
            for code in codes {
                counts.push(self.clicks(code).await?);
            }
            Ok(counts)
        }
    }

    /// Deletes up to `max` links that expired before `before_ms`; returns how many. A store
    /// that expires keys by itself removes what it keeps about the links it dropped, and
    /// returns how many those were.
    fn remove_expired(
        &self,
        before_ms: u64,
        max: usize,
    ) -> impl Future<Output = Result<usize>> + Send;
}
