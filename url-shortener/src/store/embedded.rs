//! The embedded store: sled, in the server's data directory.
//!
//! # Layout
//!
//! | tree | key | value |
//! |---|---|---|
//! | `links` | code (UTF-8) | version byte 1, then the postcard `Record` |
//! | `expiry` | expires_at_ms (8 bytes, big-endian) then code | empty |
//! | `clicks` | code | count (8 bytes, big-endian) |
//! | `meta` | `next_id` | the id counter (8 bytes, big-endian) |
//! | `meta` | `id_key` | the Feistel key (8 bytes, big-endian) |
//!
//! Big-endian integers sort bytewise in numeric order, so the expiry index is a range scan
//! from the oldest expiry. Invariant: a link has an `expiry` entry exactly when it has an
//! expiry, under its current `expires_at_ms`; every write that changes a link changes both in
//! one transaction.
//!
//! # Durability
//!
//! sled writes to its page cache and flushes in the background every 500 ms. Writes that a
//! client is told about (create, replace, delete) and id leases wait for a flush by
//! [`Flusher`] (one thread, concurrent writers share each fsync), so an acknowledged link
//! survives `kill -9`. Click batches are flushed too (one flush per batch, about one a second), so
//! a count the API has shown survives a crash.

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use rand::TryRng;
use rand::rngs::SysRng;
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};

use super::flusher::Flusher;
use super::{Link, Result, Store, StoreError};

/// Default size of sled's page cache, in bytes (sled's own default is 1 GiB).
pub const DEFAULT_CACHE_BYTES: u64 = 64 * 1024 * 1024;

const NEXT_ID: &[u8] = b"next_id";
const ID_KEY: &[u8] = b"id_key";

/// Links in sled. Cheap to clone; clones share the database.
#[derive(Clone, Debug)]
pub struct SledStore {
    flusher: Arc<Flusher>,
    links: sled::Tree,
    expiry: sled::Tree,
    clicks: sled::Tree,
    meta: sled::Tree,
}

impl SledStore {
    /// Opens (or creates) the store in `dir`, with a page cache of `cache_bytes`.
    pub fn open(dir: &Path, cache_bytes: u64) -> Result<SledStore> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(cache_bytes)
            .open()?;
        Self::from_db(db)
    }

    /// A store that lives in memory and a temporary directory, removed on drop; for tests.
    pub fn temporary() -> Result<SledStore> {
        Self::from_db(sled::Config::new().temporary(true).open()?)
    }

    fn from_db(db: sled::Db) -> Result<SledStore> {
        Ok(SledStore {
            links: db.open_tree("links")?,
            expiry: db.open_tree("expiry")?,
            clicks: db.open_tree("clicks")?,
            meta: db.open_tree("meta")?,
            flusher: Arc::new(Flusher::start(db).map_err(|e| StoreError::Sled(e.into()))?),
        })
    }

    async fn flush(&self) -> Result<()> {
        self.flusher.flush().await
    }

    /// Writes `link` to `links` and `expiry`, replacing `old` (the stored version, if any).
    fn write(&self, link: &Link, require_absent: bool) -> Result<bool> {
        let result = (&self.links, &self.expiry).transaction(|(links, expiry)| {
            let key = link.code.as_bytes();
            let old = links.get(key)?;
            if old.is_some() == require_absent {
                return Ok(false);
            }
            if let Some(old) = old {
                let old =
                    Link::decode(&link.code, &old).map_err(ConflictableTransactionError::Abort)?;
                if let Some(at) = old.expires_at_ms {
                    expiry.remove(expiry_key(at, &old.code))?;
                }
            }
            links.insert(key, link.encode())?;
            if let Some(at) = link.expires_at_ms {
                expiry.insert(expiry_key(at, &link.code), &[][..])?;
            }
            Ok(true)
        });
        unwrap_transaction(result)
    }

    fn remove(&self, code: &str, only_if_expires_at: Option<u64>) -> Result<bool> {
        let result =
            (&self.links, &self.expiry, &self.clicks).transaction(|(links, expiry, clicks)| {
                let Some(old) = links.get(code.as_bytes())? else {
                    return Ok(false);
                };
                let old = Link::decode(code, &old).map_err(ConflictableTransactionError::Abort)?;
                if only_if_expires_at.is_some() && old.expires_at_ms != only_if_expires_at {
                    return Ok(false);
                }
                if let Some(at) = old.expires_at_ms {
                    expiry.remove(expiry_key(at, code))?;
                }
                links.remove(code.as_bytes())?;
                clicks.remove(code.as_bytes())?;
                Ok(true)
            });
        unwrap_transaction(result)
    }
}

fn expiry_key(at_ms: u64, code: &str) -> Vec<u8> {
    let mut key = at_ms.to_be_bytes().to_vec();
    key.extend_from_slice(code.as_bytes());
    key
}

fn unwrap_transaction<T>(result: Result<T, TransactionError<StoreError>>) -> Result<T> {
    result.map_err(|e| match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => StoreError::Sled(e),
    })
}

fn read_u64(bytes: &[u8]) -> u64 {
    bytes.try_into().map_or(0, u64::from_be_bytes)
}

fn code_of(key: &[u8]) -> Result<String> {
    String::from_utf8(key.to_vec()).map_err(|_| StoreError::Corrupt {
        code: String::from_utf8_lossy(key).into_owned(),
        reason: "key is not UTF-8".into(),
    })
}

impl Store for SledStore {
    async fn create(&self, link: &Link) -> Result<bool> {
        let created = self.write(link, true)?;
        if created {
            self.flush().await?;
        }
        Ok(created)
    }

    async fn get(&self, code: &str) -> Result<Option<Link>> {
        match self.links.get(code.as_bytes())? {
            Some(bytes) => Ok(Some(Link::decode(code, &bytes)?)),
            None => Ok(None),
        }
    }

    async fn replace(&self, link: &Link) -> Result<bool> {
        let replaced = self.write(link, false)?;
        if replaced {
            self.flush().await?;
        }
        Ok(replaced)
    }

    async fn delete(&self, code: &str) -> Result<bool> {
        let deleted = self.remove(code, None)?;
        if deleted {
            self.flush().await?;
        }
        Ok(deleted)
    }

    async fn list(&self, after: Option<&str>, limit: usize) -> Result<Vec<Link>> {
        let range = match after {
            Some(after) => self.links.range::<&[u8], _>((
                std::ops::Bound::Excluded(after.as_bytes()),
                std::ops::Bound::Unbounded,
            )),
            None => self.links.iter(),
        };
        let mut links = Vec::with_capacity(limit.min(1024));
        for entry in range.take(limit) {
            let (key, value) = entry?;
            links.push(Link::decode(&code_of(&key)?, &value)?);
        }
        Ok(links)
    }

    async fn lease_ids(&self, count: u64) -> Result<Range<u64>> {
        let end = self
            .meta
            .update_and_fetch(NEXT_ID, |old| {
                let next = old.map_or(0, read_u64).saturating_add(count);
                Some(next.to_be_bytes().to_vec())
            })?
            .map_or(0, |v| read_u64(&v));
        self.flush().await?;
        Ok(end - count..end)
    }

    async fn id_key(&self) -> Result<u64> {
        if let Some(key) = self.meta.get(ID_KEY)? {
            return Ok(read_u64(&key));
        }
        let candidate = SysRng
            .try_next_u64()
            .map_err(|e| StoreError::Random(e.to_string()))?;
        // Two first callers race; whichever swap wins, both read the winner's key.
        let _ = self.meta.compare_and_swap(
            ID_KEY,
            None as Option<&[u8]>,
            Some(&candidate.to_be_bytes()[..]),
        )?;
        self.flush().await?;
        let key = self.meta.get(ID_KEY)?.map_or(candidate, |k| read_u64(&k));
        Ok(key)
    }

    async fn add_clicks(&self, counts: &[(String, u64)]) -> Result<()> {
        let result = (&self.links, &self.clicks).transaction(|(links, clicks)| {
            for (code, n) in counts {
                if links.get(code.as_bytes())?.is_none() {
                    continue;
                }
                let old = clicks.get(code.as_bytes())?.map_or(0, |v| read_u64(&v));
                clicks.insert(code.as_bytes(), &old.saturating_add(*n).to_be_bytes()[..])?;
            }
            Ok(())
        });
        unwrap_transaction(result)?;
        self.flush().await
    }

    async fn clicks(&self, code: &str) -> Result<u64> {
        Ok(self
            .clicks
            .get(code.as_bytes())?
            .map_or(0, |v| read_u64(&v)))
    }

    async fn remove_expired(&self, before_ms: u64, max: usize) -> Result<usize> {
        let due: Vec<(u64, String)> = self
            .expiry
            .range(..before_ms.to_be_bytes().to_vec())
            .take(max)
            .map(|entry| {
                let (key, _) = entry?;
                let (at, code) = key.split_at(8);
                Ok((read_u64(at), code_of(code)?))
            })
            .collect::<Result<_>>()?;
        let mut removed = 0;
        for (at, code) in &due {
            if self.remove(code, Some(*at))? {
                removed += 1;
            } else {
                // No link with this expiry: an index entry the invariant says cannot exist.
                // Dropping it keeps one stray entry from stalling every later sweep.
                self.expiry.remove(expiry_key(*at, code))?;
            }
        }
        if removed > 0 {
            self.flush().await?;
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(code: &str, expires_at_ms: Option<u64>) -> Link {
        Link {
            code: code.to_owned(),
            url: format!("https://example.com/{code}"),
            created_at_ms: 1_000,
            expires_at_ms,
            permanent: false,
        }
    }

    #[tokio::test]
    async fn create_never_overwrites() {
        let store = SledStore::temporary().unwrap();
        assert!(store.create(&link("abc", None)).await.unwrap());
        let mut other = link("abc", None);
        other.url = "https://other.example/".into();
        assert!(!store.create(&other).await.unwrap());
        assert_eq!(store.get("abc").await.unwrap(), Some(link("abc", None)));
    }

    #[tokio::test]
    async fn replace_and_delete_only_touch_existing_links() {
        let store = SledStore::temporary().unwrap();
        assert!(!store.replace(&link("nope", None)).await.unwrap());
        assert!(!store.delete("nope").await.unwrap());
        assert_eq!(store.get("nope").await.unwrap(), None);

        store.create(&link("abc", Some(50))).await.unwrap();
        let mut changed = link("abc", Some(90));
        changed.permanent = true;
        assert!(store.replace(&changed).await.unwrap());
        assert_eq!(store.get("abc").await.unwrap(), Some(changed));
        assert!(store.delete("abc").await.unwrap());
        assert_eq!(store.get("abc").await.unwrap(), None);
        assert!(store.expiry.is_empty(), "the index follows the links");
    }

    #[tokio::test]
    async fn listing_pages_through_every_link_in_code_order() {
        let store = SledStore::temporary().unwrap();
        for code in ["ccc", "aaa", "eee", "bbb", "ddd"] {
            store.create(&link(code, None)).await.unwrap();
        }
        let first = store.list(None, 2).await.unwrap();
        let codes = |links: &[Link]| links.iter().map(|l| l.code.clone()).collect::<Vec<_>>();
        assert_eq!(codes(&first), ["aaa", "bbb"]);
        let second = store.list(Some("bbb"), 2).await.unwrap();
        assert_eq!(codes(&second), ["ccc", "ddd"]);
        // A cursor whose link was deleted still continues after it.
        store.delete("ddd").await.unwrap();
        assert_eq!(codes(&store.list(Some("ddd"), 2).await.unwrap()), ["eee"]);
        assert!(store.list(Some("eee"), 2).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn leases_are_disjoint_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path(), DEFAULT_CACHE_BYTES).unwrap();
        assert_eq!(store.lease_ids(10).await.unwrap(), 0..10);
        assert_eq!(store.lease_ids(5).await.unwrap(), 10..15);
        let key = store.id_key().await.unwrap();
        assert_eq!(store.id_key().await.unwrap(), key);
        drop(store);
        let store = SledStore::open(dir.path(), DEFAULT_CACHE_BYTES).unwrap();
        assert_eq!(store.lease_ids(10).await.unwrap(), 15..25);
        assert_eq!(store.id_key().await.unwrap(), key);
    }

    #[tokio::test]
    async fn clicks_add_up_and_go_with_their_link() {
        let store = SledStore::temporary().unwrap();
        store.create(&link("abc", None)).await.unwrap();
        let batch = [("abc".to_owned(), 3), ("gone".to_owned(), 7)];
        store.add_clicks(&batch).await.unwrap();
        store.add_clicks(&batch[..1]).await.unwrap();
        assert_eq!(store.clicks("abc").await.unwrap(), 6);
        assert_eq!(
            store.clicks("gone").await.unwrap(),
            0,
            "no count for a missing link"
        );
        store.delete("abc").await.unwrap();
        store.create(&link("abc", None)).await.unwrap();
        assert_eq!(
            store.clicks("abc").await.unwrap(),
            0,
            "a new link starts from zero"
        );
    }

    #[tokio::test]
    async fn the_sweep_removes_only_links_expired_before_the_cutoff() {
        let store = SledStore::temporary().unwrap();
        store.create(&link("old", Some(100))).await.unwrap();
        store.create(&link("older", Some(50))).await.unwrap();
        store.create(&link("later", Some(300))).await.unwrap();
        store.create(&link("never", None)).await.unwrap();
        assert_eq!(store.remove_expired(200, 1).await.unwrap(), 1);
        assert_eq!(store.get("older").await.unwrap(), None, "oldest first");
        assert_eq!(store.remove_expired(200, 10).await.unwrap(), 1);
        assert_eq!(store.get("old").await.unwrap(), None);
        assert!(store.get("later").await.unwrap().is_some());
        assert!(store.get("never").await.unwrap().is_some());
        assert_eq!(store.remove_expired(200, 10).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn a_stray_index_entry_does_not_stall_the_sweep() {
        let store = SledStore::temporary().unwrap();
        store
            .expiry
            .insert(expiry_key(10, "ghost"), &[][..])
            .unwrap();
        store.create(&link("real", Some(20))).await.unwrap();
        assert_eq!(store.remove_expired(100, 1).await.unwrap(), 0);
        assert_eq!(store.remove_expired(100, 1).await.unwrap(), 1);
        assert!(store.expiry.is_empty());
    }
}
