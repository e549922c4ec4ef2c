//! The shared store: links in the workspace's kv-store, so that several url-shortener
//! instances serve one set of links.
//!
//! # Layout
//!
//! Every key is under `shortener:`, so the store can be shared with other components (the
//! gateway keeps its rate-limit counters and idempotency keys in it too).
//!
//! | key | type | value |
//! |---|---|---|
//! | `shortener:link:{code}` | string | the same record as the embedded store's (version byte, postcard) |
//! | `shortener:clicks:{code}` | string | the click count, an integer; it expires with its link |
//! | `shortener:codes` | sorted set, every score 0 | the codes, so that `ZRANGE BYLEX` lists them in code order |
//! | `shortener:expiring` | sorted set | the codes of links with an expiry, scored by `expires_at` |
//! | `shortener:next_id` | string | the id counter: `INCRBY` leases a block |
//! | `shortener:id_key` | string | the Feistel key, set once with `SET NX` |
//!
//! # What is atomic, and what is not
//!
//! The kv-store runs each command atomically but has no transactions (no `MULTI`, no
//! scripts), so each call makes its one decisive step a single command and orders the rest
//! around it:
//!
//! | call | the decisive command | then |
//! |---|---|---|
//! | `create` | `SET link v NX [PXAT t]`: of racing creators exactly one gets `OK` | `SET clicks 0 [PXAT t]` (over a previous life's count), `ZADD codes`, `ZADD expiring` |
//! | `replace` | `SET link v XX [PXAT t]` | the count's expiry set to the link's, `expiring` updated |
//! | `delete` | `DEL link` | `DEL clicks`, `ZREM codes`, `ZREM expiring`; then, if a create of the same code slipped in, its entries are put back |
//! | `lease_ids` | `INCRBY next_id n`: blocks are disjoint across instances | |
//! | `add_clicks` | `INCRBY clicks n` (which keeps the count's expiry) for codes whose link exists | |
//!
//! Only the link writers (create, replace) set a count's expiry, so a click batch cannot race
//! a change of the link's expiry. The index entries are bookkeeping: a code in `codes` whose
//! link is gone (expired by the store, or a crash in the middle of a delete) is skipped by
//! `list` and removed, and a removal is checked afterwards so that a create racing it keeps
//! its entry. The one gap: a crash between a create's `SET` and its `ZADD` leaves a link that
//! redirects, can be read, changed and deleted, but is not listed.
//!
//! # Expiry
//!
//! The store expires keys itself: a link with `expires_at` is written with
//! `PXAT expires_at + retention`, so it answers 410 for `expired_retention_seconds` and then
//! disappears (404), as with the embedded store's sweep. What the sweep (`remove_expired`)
//! does here is keep the indexes small: it reads `expiring` up to the cut-off and removes the
//! entries of links that are gone. The kv-store's clock decides when the key goes, the
//! service's clock when the link stops redirecting; they differ only by the hosts' clock skew.
//!
//! # Durability
//!
//! A call returns once the kv-store has acknowledged it, which is as durable as the
//! kv-store's `--fsync` makes it: `always` (fsync before the reply) gives the embedded
//! store's promise that an acknowledged link survives a crash; the default `everysec` may
//! lose the last second. A call that fails may still have been applied in part (a pipeline
//! the store ran before the connection broke): callers treat a failed `add_clicks` as
//! possibly applied.

use std::ops::Range;
use std::time::Duration;

use bytes::Bytes;
use kv_store::client::{Client, ClientConfig};
use kv_store::resp::reply::Reply;
use rand::TryRng;
use rand::rngs::SysRng;

use super::{Link, Result, Store, StoreError};

/// Codes read from the index per round trip while listing.
const LIST_BATCH: usize = 256;
/// Codes per pipeline of `add_clicks` and `clicks_of`: a batch of 100,000 codes is sent as
/// many round trips, each well within the client's time limit.
const CODES_PER_PIPELINE: usize = 1000;

const CODES: &str = "shortener:codes";
const EXPIRING: &str = "shortener:expiring";
const NEXT_ID: &str = "shortener:next_id";
const ID_KEY: &str = "shortener:id_key";

/// Links in the kv-store. Cheap to share behind an `Arc`; the client pools connections.
#[derive(Debug)]
pub struct KvStore {
    client: Client,
    /// How long past its expiry a link is kept (answering 410).
    retention_ms: u64,
}

impl KvStore {
    /// A store on the kv-store of `config`. Connects lazily: a store that is down makes each
    /// call fail (the API answers 503) until it is back.
    pub fn new(config: ClientConfig, retention: Duration) -> KvStore {
        KvStore {
            client: Client::new(config),
            retention_ms: retention.as_millis() as u64,
        }
    }

    /// Checks that the store answers, for start-up: a wrong address or password is reported
    /// at once rather than on the first request.
    pub async fn ping(&self) -> Result<()> {
        match self.client.command(&["PING"]).await.map_err(kv)? {
            Reply::Error(message) => Err(StoreError::Kv(message)),
            _ => Ok(()),
        }
    }

    async fn run(&self, commands: Vec<Vec<Bytes>>) -> Result<Vec<Reply>> {
        let count = commands.len();
        let replies = self.client.pipeline(commands).await.map_err(kv)?;
        if let Some(Reply::Error(message)) = replies.iter().find(|r| matches!(r, Reply::Error(_))) {
            return Err(StoreError::Kv(message.clone()));
        }
        if replies.len() != count {
            return Err(StoreError::Kv(format!(
                "{} replies to {count} commands",
                replies.len()
            )));
        }
        Ok(replies)
    }

    async fn one(&self, command: Vec<Bytes>) -> Result<Reply> {
        let mut replies = self.run(vec![command]).await?;
        Ok(replies.pop().unwrap_or(Reply::Null))
    }

    /// When the store is to drop the link: `expires_at + retention`.
    fn drop_at_ms(&self, link: &Link) -> Option<u64> {
        link.expires_at_ms
            .map(|at| at.saturating_add(self.retention_ms))
    }

    /// `SET link:{code} record NX|XX [PXAT t]`.
    fn set(&self, link: &Link, condition: &str) -> Vec<Bytes> {
        let mut command = args(&["SET", &link_key(&link.code)]);
        command.push(Bytes::from(link.encode()));
        command.push(Bytes::copy_from_slice(condition.as_bytes()));
        if let Some(at) = self.drop_at_ms(link) {
            command.extend(args(&["PXAT", &at.to_string()]));
        }
        command
    }

    /// `MGET keys`: one reply per key, in order (`Null` for a missing one).
    async fn mget(&self, keys: impl Iterator<Item = String>) -> Result<Vec<Reply>> {
        let mut get = args(&["MGET"]);
        get.extend(keys.map(Bytes::from));
        let asked = get.len() - 1;
        match self.one(get).await? {
            Reply::Array(found) if found.len() == asked => Ok(found),
            other => Err(unexpected("MGET", &other)),
        }
    }

    /// The entry of `link` in `expiring`: added (or moved) when it expires, else removed.
    fn expiring_entry(link: &Link) -> Vec<Bytes> {
        match link.expires_at_ms {
            Some(at) => args(&["ZADD", EXPIRING, &at.to_string(), &link.code]),
            None => args(&["ZREM", EXPIRING, &link.code]),
        }
    }

    /// For each of `codes`, whether its link exists.
    async fn existing(&self, codes: &[&str]) -> Result<Vec<bool>> {
        if codes.is_empty() {
            return Ok(Vec::new());
        }
        let checks = codes
            .iter()
            .map(|code| args(&["EXISTS", &link_key(code)]))
            .collect();
        let replies = self.run(checks).await?;
        replies
            .iter()
            .map(|reply| Ok(integer("EXISTS", reply)? == 1))
            .collect()
    }

    /// Removes index entries of links that are gone, then puts back those of links a create
    /// made in the meantime (create writes the link before its entries).
    async fn drop_entries(&self, codes: &[&str]) -> Result<()> {
        if codes.is_empty() {
            return Ok(());
        }
        let mut from_codes = args(&["ZREM", CODES]);
        from_codes.extend(args(codes));
        let mut from_expiring = args(&["ZREM", EXPIRING]);
        from_expiring.extend(args(codes));
        self.run(vec![from_codes, from_expiring]).await?;
        let found = self.mget(codes.iter().map(|code| link_key(code))).await?;
        let mut back = Vec::new();
        for (code, reply) in codes.iter().zip(&found) {
            if let Reply::Bulk(bytes) = reply {
                let link = Link::decode(code, bytes)?;
                back.push(args(&["ZADD", CODES, "0", code]));
                if link.expires_at_ms.is_some() {
                    back.push(Self::expiring_entry(&link));
                }
            }
        }
        if !back.is_empty() {
            self.run(back).await?;
        }
        Ok(())
    }
}

fn link_key(code: &str) -> String {
    format!("shortener:link:{code}")
}

fn clicks_key(code: &str) -> String {
    format!("shortener:clicks:{code}")
}

fn args(parts: &[&str]) -> Vec<Bytes> {
    parts
        .iter()
        .map(|p| Bytes::copy_from_slice(p.as_bytes()))
        .collect()
}

fn kv(error: kv_store::client::ClientError) -> StoreError {
    StoreError::Kv(error.to_string())
}

fn unexpected(what: &str, reply: &Reply) -> StoreError {
    StoreError::Kv(format!("unexpected reply to {what}: {reply:?}"))
}

/// An integer reply, or a bulk holding one (`GET` of a counter).
fn integer(what: &str, reply: &Reply) -> Result<i64> {
    match reply {
        Reply::Integer(n) => Ok(*n),
        other => other
            .as_bytes()
            .and_then(|b| std::str::from_utf8(b).ok()?.parse().ok())
            .ok_or_else(|| unexpected(what, other)),
    }
}

/// The members of an array reply, as strings.
fn strings(what: &str, reply: &Reply) -> Result<Vec<String>> {
    match reply {
        Reply::Array(items) | Reply::Set(items) => items
            .iter()
            .map(|item| {
                item.as_bytes()
                    .and_then(|b| String::from_utf8(b.to_vec()).ok())
                    .ok_or_else(|| unexpected(what, item))
            })
            .collect(),
        other => Err(unexpected(what, other)),
    }
}

impl Store for KvStore {
    async fn create(&self, link: &Link) -> Result<bool> {
        match self.one(self.set(link, "NX")).await? {
            Reply::Null => return Ok(false),
            Reply::Simple(_) => {}
            other => return Err(unexpected("SET NX", &other)),
        }
        let mut count = args(&["SET", &clicks_key(&link.code), "0"]);
        if let Some(at) = self.drop_at_ms(link) {
            count.extend(args(&["PXAT", &at.to_string()]));
        }
        let mut steps = vec![count, args(&["ZADD", CODES, "0", &link.code])];
        if link.expires_at_ms.is_some() {
            steps.push(Self::expiring_entry(link));
        }
        self.run(steps).await?;
        Ok(true)
    }

    async fn get(&self, code: &str) -> Result<Option<Link>> {
        match self.one(args(&["GET", &link_key(code)])).await? {
            Reply::Null => Ok(None),
            Reply::Bulk(bytes) => Ok(Some(Link::decode(code, &bytes)?)),
            other => Err(unexpected("GET", &other)),
        }
    }

    async fn replace(&self, link: &Link) -> Result<bool> {
        match self.one(self.set(link, "XX")).await? {
            Reply::Null => return Ok(false),
            Reply::Simple(_) => {}
            other => return Err(unexpected("SET XX", &other)),
        }
        let count = match self.drop_at_ms(link) {
            Some(at) => args(&["PEXPIREAT", &clicks_key(&link.code), &at.to_string()]),
            None => args(&["PERSIST", &clicks_key(&link.code)]),
        };
        self.run(vec![count, Self::expiring_entry(link)]).await?;
        Ok(true)
    }

    async fn delete(&self, code: &str) -> Result<bool> {
        let replies = self
            .run(vec![
                args(&["DEL", &link_key(code)]),
                args(&["DEL", &clicks_key(code)]),
            ])
            .await?;
        self.drop_entries(&[code]).await?;
        Ok(integer("DEL", &replies[0])? == 1)
    }

    async fn list(&self, after: Option<&str>, limit: usize) -> Result<Vec<Link>> {
        let mut links = Vec::with_capacity(limit.min(1024));
        let mut from = after.map_or("-".to_owned(), |code| format!("({code}"));
        while links.len() < limit {
            let want = (limit - links.len()).min(LIST_BATCH);
            let range = args(&[
                "ZRANGE",
                CODES,
                &from,
                "+",
                "BYLEX",
                "LIMIT",
                "0",
                &want.to_string(),
            ]);
            let codes = strings("ZRANGE", &self.one(range).await?)?;
            let Some(last) = codes.last() else {
                break;
            };
            from = format!("({last}");
            let found = self.mget(codes.iter().map(|code| link_key(code))).await?;
            let mut gone = Vec::new();
            for (code, reply) in codes.iter().zip(&found) {
                match reply {
                    Reply::Bulk(bytes) => links.push(Link::decode(code, bytes)?),
                    Reply::Null => gone.push(code.as_str()),
                    other => return Err(unexpected("MGET", other)),
                }
            }
            self.drop_entries(&gone).await?;
            if codes.len() < want {
                break;
            }
        }
        Ok(links)
    }

    async fn lease_ids(&self, count: u64) -> Result<Range<u64>> {
        let reply = self
            .one(args(&["INCRBY", NEXT_ID, &count.to_string()]))
            .await?;
        let end =
            u64::try_from(integer("INCRBY", &reply)?).map_err(|_| unexpected("INCRBY", &reply))?;
        let start = end
            .checked_sub(count)
            .ok_or_else(|| unexpected("INCRBY", &reply))?;
        Ok(start..end)
    }

    async fn id_key(&self) -> Result<u64> {
        let candidate = SysRng
            .try_next_u64()
            .map_err(|e| StoreError::Random(e.to_string()))?;
        // Of racing first callers one `SET NX` wins; the `GET` behind it, on the same
        // connection, reads the winner's key for every caller.
        let replies = self
            .run(vec![
                args(&["SET", ID_KEY, &candidate.to_string(), "NX"]),
                args(&["GET", ID_KEY]),
            ])
            .await?;
        replies[1]
            .as_bytes()
            .and_then(|b| std::str::from_utf8(b).ok()?.parse().ok())
            .ok_or_else(|| unexpected("GET id_key", &replies[1]))
    }

    async fn add_clicks(&self, counts: &[(String, u64)]) -> Result<()> {
        for chunk in counts.chunks(CODES_PER_PIPELINE) {
            let codes: Vec<&str> = chunk.iter().map(|(code, _)| code.as_str()).collect();
            let exists = self.existing(&codes).await?;
            // A count missing beside an existing link (a crash in the middle of its create)
            // is made again by `INCRBY`, without the link's expiry: it only outlives it.
            let writes: Vec<Vec<Bytes>> = chunk
                .iter()
                .zip(exists)
                .filter(|(_, exists)| *exists)
                .map(|((code, n), _)| args(&["INCRBY", &clicks_key(code), &n.to_string()]))
                .collect();
            if !writes.is_empty() {
                self.run(writes).await?;
            }
        }
        Ok(())
    }

    async fn clicks(&self, code: &str) -> Result<u64> {
        match self.one(args(&["GET", &clicks_key(code)])).await? {
            Reply::Null => Ok(0),
            reply => Ok(integer("GET clicks", &reply)?.max(0) as u64),
        }
    }

    async fn clicks_of(&self, codes: &[&str]) -> Result<Vec<u64>> {
        let mut counts = Vec::with_capacity(codes.len());
        for chunk in codes.chunks(CODES_PER_PIPELINE) {
            for reply in self.mget(chunk.iter().map(|code| clicks_key(code))).await? {
                counts.push(match reply {
                    Reply::Null => 0,
                    reply => integer("MGET clicks", &reply)?.max(0) as u64,
                });
            }
        }
        Ok(counts)
    }

    async fn remove_expired(&self, before_ms: u64, max: usize) -> Result<usize> {
        let due = args(&[
            "ZRANGE",
            EXPIRING,
            "-inf",
            &format!("({before_ms}"),
            "BYSCORE",
            "LIMIT",
            "0",
            &max.to_string(),
        ]);
        let due = strings("ZRANGE", &self.one(due).await?)?;
        let due: Vec<&str> = due.iter().map(String::as_str).collect();
        // The store drops the links themselves; an entry goes once its link has.
        let exists = self.existing(&due).await?;
        let gone: Vec<&str> = due
            .iter()
            .zip(exists)
            .filter(|(_, exists)| !exists)
            .map(|(code, _)| *code)
            .collect();
        self.drop_entries(&gone).await?;
        Ok(gone.len())
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::sync::Arc;

    use kv_store::clock::Clock;
    use kv_store::node::Node;
    use service_kit::shutdown::Shutdown;

    use super::*;

    const RETENTION: Duration = Duration::from_millis(1_000);
    const START_MS: u64 = 1_000_000;

    /// A kv-store node in this process on a manual clock, and a store on it.
    struct Fixture {
        store: KvStore,
        raw: Client,
        clock: Clock,
        addr: SocketAddr,
        _dir: tempfile::TempDir,
        _stop: Shutdown,
    }

    async fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let config = kv_store::config::Config {
            data_dir: dir.path().to_owned(),
            ..kv_store::config::Config::default()
        };
        let clock = Clock::manual(START_MS);
        let node = Node::open(&config, clock.clone()).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Shutdown::new();
        tokio::spawn(node.run(listener, stop.clone()));
        let store = KvStore::new(ClientConfig::new(addr), RETENTION);
        store.ping().await.unwrap();
        Fixture {
            store,
            raw: Client::new(ClientConfig::new(addr)),
            clock,
            addr,
            _dir: dir,
            _stop: stop,
        }
    }

    fn link(code: &str, expires_at_ms: Option<u64>) -> Link {
        Link {
            code: code.to_owned(),
            url: format!("https://example.com/{code}"),
            created_at_ms: START_MS,
            expires_at_ms,
            permanent: false,
        }
    }

    fn codes(links: &[Link]) -> Vec<String> {
        links.iter().map(|l| l.code.clone()).collect()
    }

    #[tokio::test]
    async fn create_never_overwrites_and_exactly_one_racer_wins() {
        let f = fixture().await;
        assert!(f.store.create(&link("abc", None)).await.unwrap());
        let mut other = link("abc", None);
        other.url = "https://other.example/".into();
        assert!(!f.store.create(&other).await.unwrap());
        assert_eq!(f.store.get("abc").await.unwrap(), Some(link("abc", None)));

        let store = Arc::new(f.store);
        let racers: Vec<_> = (0..16)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    let mut mine = link("taken", None);
                    mine.url = format!("https://example.com/{i}");
                    store.create(&mine).await.unwrap()
                })
            })
            .collect();
        let mut wins = 0;
        for racer in racers {
            wins += usize::from(racer.await.unwrap());
        }
        assert_eq!(wins, 1);
    }

    #[tokio::test]
    async fn replace_and_delete_only_touch_existing_links_and_take_the_count_along() {
        let f = fixture().await;
        assert!(!f.store.replace(&link("nope", None)).await.unwrap());
        assert!(!f.store.delete("nope").await.unwrap());

        f.store.create(&link("abc", None)).await.unwrap();
        let mut changed = link("abc", None);
        changed.permanent = true;
        assert!(f.store.replace(&changed).await.unwrap());
        assert_eq!(f.store.get("abc").await.unwrap(), Some(changed));

        f.store
            .add_clicks(&[("abc".into(), 3), ("gone".into(), 5)])
            .await
            .unwrap();
        assert_eq!(f.store.clicks("abc").await.unwrap(), 3);
        assert_eq!(
            f.store.clicks("gone").await.unwrap(),
            0,
            "no link, no count"
        );
        assert!(f.store.delete("abc").await.unwrap());
        assert_eq!(f.store.get("abc").await.unwrap(), None);
        assert_eq!(f.store.clicks("abc").await.unwrap(), 0);
        // A new link under a freed code starts from zero, whatever a late batch left.
        f.raw
            .command(&["SET", "shortener:clicks:abc", "9"])
            .await
            .unwrap();
        f.store.create(&link("abc", None)).await.unwrap();
        assert_eq!(f.store.clicks("abc").await.unwrap(), 0);
    }

    #[tokio::test]
    async fn listing_pages_in_code_order_and_drops_codes_whose_link_is_gone() {
        let f = fixture().await;
        for code in ["ccc", "aaa", "eee", "bbb", "ddd"] {
            f.store.create(&link(code, None)).await.unwrap();
        }
        assert_eq!(codes(&f.store.list(None, 2).await.unwrap()), ["aaa", "bbb"]);
        assert_eq!(
            codes(&f.store.list(Some("bbb"), 2).await.unwrap()),
            ["ccc", "ddd"]
        );
        // A link that vanished without its index entry (expired by the store, or a crash
        // between the two deletes) is skipped, and the page is still filled.
        f.raw.command(&["DEL", "shortener:link:ccc"]).await.unwrap();
        assert_eq!(
            codes(&f.store.list(Some("bbb"), 2).await.unwrap()),
            ["ddd", "eee"]
        );
        let index = f.raw.command(&["ZCARD", CODES]).await.unwrap();
        assert_eq!(index, Reply::Integer(4), "the stale entry was removed");
        assert!(f.store.list(Some("eee"), 2).await.unwrap().is_empty());
        assert_eq!(f.store.list(None, 100).await.unwrap().len(), 4);
    }

    #[tokio::test]
    async fn an_expired_link_is_kept_for_the_retention_then_the_store_drops_it() {
        let f = fixture().await;
        let expires = START_MS + 500;
        f.store.create(&link("soon", Some(expires))).await.unwrap();
        f.store.add_clicks(&[("soon".into(), 2)]).await.unwrap();
        f.clock.advance(500 + 900);
        assert!(
            f.store.get("soon").await.unwrap().is_some(),
            "expired, but within the retention: the API answers 410"
        );
        assert_eq!(f.store.clicks("soon").await.unwrap(), 2);
        f.clock.advance(200);
        assert_eq!(f.store.get("soon").await.unwrap(), None);
        assert_eq!(
            f.store.clicks("soon").await.unwrap(),
            0,
            "the count went too"
        );
        // The sweep clears the index entries of what the store dropped, and only those.
        f.store.create(&link("kept", None)).await.unwrap();
        let now = START_MS + 1_600;
        assert_eq!(f.store.remove_expired(now - 1_000, 10).await.unwrap(), 1);
        for (index, left) in [(CODES, 1), (EXPIRING, 0)] {
            let card = f.raw.command(&["ZCARD", index]).await.unwrap();
            assert_eq!(card, Reply::Integer(left), "{index}");
        }

        // The count's expiry follows the link's through every change.
        let count_ttl = || async {
            let reply = f
                .raw
                .command(&["PTTL", "shortener:clicks:later"])
                .await
                .unwrap();
            integer("PTTL", &reply).unwrap()
        };
        f.store
            .create(&link("later", Some(now + 2000)))
            .await
            .unwrap();
        f.store.add_clicks(&[("later".into(), 1)]).await.unwrap();
        assert_eq!(count_ttl().await, 3000, "2 s to expiry plus the retention");
        assert!(f.store.replace(&link("later", None)).await.unwrap());
        assert_eq!(count_ttl().await, -1);
        assert!(
            f.store
                .replace(&link("later", Some(now + 5000)))
                .await
                .unwrap()
        );
        assert_eq!(count_ttl().await, 6000);
        assert!(f.store.replace(&link("later", None)).await.unwrap());
        f.clock.advance(1_000_000);
        assert!(f.store.get("later").await.unwrap().is_some());
        assert_eq!(f.store.clicks("later").await.unwrap(), 1);
        let counts = f.store.clicks_of(&["later", "kept", "nope"]).await.unwrap();
        assert_eq!(counts, [1, 0, 0]);
    }

    #[tokio::test]
    async fn an_index_entry_removed_while_its_link_is_made_again_is_put_back() {
        let f = fixture().await;
        f.store
            .create(&link("again", Some(START_MS + 10)))
            .await
            .unwrap();
        // As if a list had found the link gone just before a create wrote it again.
        f.store.drop_entries(&["again"]).await.unwrap();
        assert_eq!(codes(&f.store.list(None, 10).await.unwrap()), ["again"]);
        let score = f.raw.command(&["ZSCORE", EXPIRING, "again"]).await.unwrap();
        assert!(
            score.as_bytes().is_some() || matches!(score, Reply::Double(_)),
            "{score:?}"
        );
    }

    #[tokio::test]
    async fn leases_are_disjoint_and_the_id_key_is_set_once() {
        let f = fixture().await;
        assert_eq!(f.store.lease_ids(10).await.unwrap(), 0..10);
        let other = KvStore::new(ClientConfig::new(f.addr), RETENTION);
        assert_eq!(other.lease_ids(5).await.unwrap(), 10..15);
        let key = f.store.id_key().await.unwrap();
        assert_eq!(other.id_key().await.unwrap(), key);
        // Keys above i64::MAX are read back whole.
        f.raw
            .command(&["SET", ID_KEY, &u64::MAX.to_string()])
            .await
            .unwrap();
        assert_eq!(f.store.id_key().await.unwrap(), u64::MAX);
    }

    #[tokio::test]
    async fn a_store_that_does_not_answer_is_an_error_not_an_answer() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let store = KvStore::new(ClientConfig::new(addr), RETENTION);
        assert!(matches!(store.ping().await, Err(StoreError::Kv(_))));
        assert!(matches!(store.get("abc").await, Err(StoreError::Kv(_))));
        assert!(matches!(store.lease_ids(1).await, Err(StoreError::Kv(_))));
    }
}
