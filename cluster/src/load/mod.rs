//! `cluster load`: the URL-shortener case study's workload, at a fixed rate, through the
//! reverse proxy.
//!
//! A few links are created first; then every `1/rate` seconds one request starts, a link
//! creation (`POST /api/v1/links` with the API key and an `Idempotency-Key`, through the
//! gateway) or, for the rest, a redirect of a link created so far (`GET /{code}`, straight to
//! the url-shorteners), until the duration is up.
//!
//! # Open loop, and why latency is measured from the schedule
//!
//! Requests start on the schedule whether or not earlier ones have finished. A closed loop
//! (the next request once the last one answered) slows down when the cluster does, and so
//! hides the very stalls a chaos test is looking for ("coordinated omission"). For the same
//! reason each latency is measured from the moment the request was *due*, not from the moment
//! it was sent: a request held up in the client counts as slow.
//!
//! # Limits
//!
//! At most `max_in_flight` requests at once; one due while that many are out is not sent and
//! is counted as `dropped`, apart from the failures: the client, not the cluster, could not
//! keep up. Codes kept for redirects: [`MAX_CODES`]. Response bodies read: [`MAX_BODY_BYTES`].
//!
//! # What the seed replays
//!
//! Which requests are creations and which redirects, and the draws that pick a redirect's
//! code. Which codes exist to be picked depends also on the order in which creations
//! complete, which the seed does not control.

pub mod histogram;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http1::client::{Client, ClientConfig};
use http1::{Body, HeaderValue, Method, Request, header};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use tokio::sync::Semaphore;
use tokio::time::Instant;

pub use self::histogram::Histogram;
use crate::render::API_KEY_HEADER;

/// Most link codes kept to draw redirects from; past it a new code replaces a random one.
pub const MAX_CODES: usize = 10_000;

/// Largest response body read (a redirect's or a creation's is a few hundred bytes).
pub const MAX_BODY_BYTES: u64 = 64 * 1024;

/// Largest rate accepted, in requests per second.
pub const MAX_RATE: u32 = 1_000_000;

/// Most requests in flight that may be asked for.
pub const MAX_IN_FLIGHT: usize = 100_000;

/// What to run.
#[derive(Clone, Debug)]
pub struct LoadConfig {
    /// The reverse proxy.
    pub target: SocketAddr,
    /// A key of the gateway's write API.
    pub api_key: String,
    /// Requests started per second.
    pub rate: u32,
    pub duration: Duration,
    /// Percentage of requests that create a link; the rest are redirects.
    pub create_percent: u8,
    /// Links created before the timed run, for the first redirects to use.
    pub initial_links: usize,
    pub max_in_flight: usize,
    /// Longest a request may take before it counts as `timeout`.
    pub timeout: Duration,
    /// Drives which requests are creations, and the draws of the codes redirected.
    pub seed: u64,
}

impl LoadConfig {
    /// Checks every field; the error names the flag at fault.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=MAX_RATE).contains(&self.rate) {
            return Err(format!("--rate must be between 1 and {MAX_RATE}"));
        }
        if self.duration.is_zero() {
            return Err("--duration must be positive".into());
        }
        if self.create_percent > 100 {
            return Err("--creates is a percentage, 0 to 100".into());
        }
        if !(1..=MAX_IN_FLIGHT).contains(&self.max_in_flight) {
            return Err(format!(
                "--max-in-flight must be between 1 and {MAX_IN_FLIGHT}"
            ));
        }
        if self.timeout.is_zero() {
            return Err("--timeout must be positive".into());
        }
        if self.initial_links == 0 && self.create_percent < 100 {
            return Err("--initial-links must be positive when there are redirects".into());
        }
        Ok(())
    }
}

/// The two requests of the workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Op {
    Redirect,
    Create,
}

impl Op {
    fn label(self) -> &'static str {
        match self {
            Op::Redirect => "redirects",
            Op::Create => "creations",
        }
    }
}

/// Counts of one kind of request over some time. `sent` counts requests when they start,
/// the outcomes when they end.
#[derive(Clone, Debug, Default)]
pub struct Tally {
    pub sent: u64,
    /// Due but not sent: `max_in_flight` requests were already out.
    pub dropped: u64,
    pub ok: u64,
    /// Failures by kind: a status (`"502"`), `timeout`, `refused`, `closed`, `error`.
    pub errors: BTreeMap<String, u64>,
    /// Latency of every answered request (a success or a status), from when it was due.
    pub latency: Histogram,
}

impl Tally {
    pub fn failed(&self) -> u64 {
        self.errors.values().sum()
    }

    fn merge(&mut self, other: &Tally) {
        self.sent += other.sent;
        self.dropped += other.dropped;
        self.ok += other.ok;
        for (kind, count) in &other.errors {
            *self.errors.entry(kind.clone()).or_default() += count;
        }
        self.latency.merge(&other.latency);
    }
}

/// Tallies per request kind.
#[derive(Clone, Debug, Default)]
pub struct Tallies {
    pub by_op: BTreeMap<Op, Tally>,
}

impl Tallies {
    /// Both kinds together.
    pub fn all(&self) -> Tally {
        let mut all = Tally::default();
        for tally in self.by_op.values() {
            all.merge(tally);
        }
        all
    }

    pub fn of(&self, op: Op) -> Tally {
        self.by_op.get(&op).cloned().unwrap_or_default()
    }

    fn sent(&mut self, op: Op) {
        self.by_op.entry(op).or_default().sent += 1;
    }

    fn dropped(&mut self, op: Op) {
        self.by_op.entry(op).or_default().dropped += 1;
    }

    fn record(&mut self, op: Op, outcome: &Outcome, micros: Option<u64>) {
        let tally = self.by_op.entry(op).or_default();
        match outcome {
            Outcome::Ok => tally.ok += 1,
            failure => *tally.errors.entry(failure.label()).or_default() += 1,
        }
        if let Some(micros) = micros {
            tally.latency.record(micros);
        }
    }

    fn merge(&mut self, other: &Tallies) {
        for (op, tally) in &other.by_op {
            self.by_op.entry(*op).or_default().merge(tally);
        }
    }
}

/// The last second, and everything so far: what the progress line shows.
#[derive(Clone, Debug)]
pub struct Progress {
    pub elapsed: Duration,
    pub last_second: Tallies,
    pub total: Tallies,
    pub in_flight: u64,
}

impl Progress {
    /// One line: the last second's requests started, answers and failures by kind, their
    /// latencies, then the totals.
    pub fn line(&self) -> String {
        let second = self.last_second.all();
        let total = self.total.all();
        let dropped = match total.dropped {
            0 => String::new(),
            n => format!(" dropped {n}"),
        };
        format!(
            "{:>4.0}s  sent {:>6}  ok {:>6}  failed {:>4}{}  p50 {}  p99 {}  | total sent {} ok {} failed {}{dropped}  in flight {}",
            self.elapsed.as_secs_f64(),
            second.sent,
            second.ok,
            second.failed(),
            error_kinds(&second),
            millis(second.latency.quantile(0.5)),
            millis(second.latency.quantile(0.99)),
            total.sent,
            total.ok,
            total.failed(),
            self.in_flight,
        )
    }
}

/// The whole run.
#[derive(Clone, Debug)]
pub struct Report {
    pub config: LoadConfig,
    pub elapsed: Duration,
    pub tallies: Tallies,
    /// Links created before the timed run.
    pub initial_links: usize,
}

impl Report {
    /// A few lines for a person: per kind of request, sent, ok, failures by kind, latencies.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let all = self.tallies.all();
        let _ = writeln!(
            out,
            "load: {} requests sent in {:.1} s ({} asked a second), {} links created first, seed {}",
            all.sent,
            self.elapsed.as_secs_f64(),
            self.config.rate,
            self.initial_links,
            self.config.seed
        );
        if all.dropped > 0 {
            let _ = writeln!(
                out,
                "  {} due requests not sent: {} were in flight (--max-in-flight)",
                all.dropped, self.config.max_in_flight
            );
        }
        let rows = [Op::Redirect, Op::Create]
            .into_iter()
            .map(|op| (op.label(), self.tallies.of(op)))
            .filter(|(_, tally)| tally.sent > 0)
            .chain([("all", all)]);
        for (label, tally) in rows {
            let _ = writeln!(
                out,
                "  {label:<10} sent {:>8}  ok {:>8}  failed {:>6}{}",
                tally.sent,
                tally.ok,
                tally.failed(),
                error_kinds(&tally),
            );
            let latency = &tally.latency;
            let _ = writeln!(
                out,
                "  {:<10} latency p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
                "",
                millis(latency.quantile(0.5)),
                millis(latency.quantile(0.9)),
                millis(latency.quantile(0.99)),
                millis(latency.quantile(0.999)),
                millis(latency.max()),
            );
        }
        out
    }
}

fn error_kinds(tally: &Tally) -> String {
    if tally.errors.is_empty() {
        return String::new();
    }
    let kinds: Vec<String> = tally
        .errors
        .iter()
        .map(|(kind, count)| format!("{kind}: {count}"))
        .collect();
    format!(" ({})", kinds.join(", "))
}

fn millis(micros: u64) -> String {
    format!("{:.1} ms", micros as f64 / 1000.0)
}

/// How one request ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// An answer, but not the expected one.
    Status(u16),
    Timeout,
    /// Connection refused: nothing was sent.
    Refused,
    /// The connection closed or reset before a whole answer.
    Closed,
    Error,
}

impl Outcome {
    fn label(&self) -> String {
        match self {
            Outcome::Ok => "ok".into(),
            Outcome::Status(status) => status.to_string(),
            Outcome::Timeout => "timeout".into(),
            Outcome::Refused => "refused".into(),
            Outcome::Closed => "closed".into(),
            Outcome::Error => "error".into(),
        }
    }

    fn from_error(error: &http1::Error) -> Outcome {
        match error {
            http1::Error::Connect(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                Outcome::Refused
            }
            http1::Error::Timeout(_) => Outcome::Timeout,
            http1::Error::Closed | http1::Error::Io(_) => Outcome::Closed,
            http1::Error::Body(http1::BodyError::Incomplete) => Outcome::Closed,
            _ => Outcome::Error,
        }
    }
}

/// State shared by the scheduler and the request tasks.
struct Shared {
    config: LoadConfig,
    client: Client,
    codes: Mutex<Codes>,
    tallies: Mutex<Tallies>,
    in_flight: AtomicU64,
}

struct Codes {
    codes: Vec<String>,
    rng: StdRng,
}

impl Codes {
    fn add(&mut self, code: String) {
        if self.codes.len() < MAX_CODES {
            self.codes.push(code);
        } else {
            let slot = self.rng.random_range(0..self.codes.len());
            self.codes[slot] = code;
        }
    }

    fn pick(&mut self) -> Option<String> {
        match self.codes.len() {
            0 => None,
            n => Some(self.codes[self.rng.random_range(0..n)].clone()),
        }
    }
}

/// Runs the workload, calling `progress` once a second; returns the whole run's report.
/// Fails only when not one of the initial links could be created (the cluster is not there).
pub async fn run(
    config: LoadConfig,
    mut progress: impl FnMut(&Progress),
) -> Result<Report, String> {
    config.validate()?;
    let client_config = ClientConfig {
        connect_timeout: config.timeout.min(Duration::from_secs(2)),
        response_header_timeout: config.timeout,
        max_idle_per_endpoint: config.max_in_flight,
        ..ClientConfig::default()
    };
    let client = Client::new(client_config)?;
    let mut rng = StdRng::seed_from_u64(config.seed);
    let shared = Arc::new(Shared {
        client,
        codes: Mutex::new(Codes {
            codes: Vec::new(),
            rng: StdRng::seed_from_u64(rng.random()),
        }),
        tallies: Mutex::new(Tallies::default()),
        in_flight: AtomicU64::new(0),
        config,
    });
    let initial_links = create_initial_links(&shared).await?;

    let config = &shared.config;
    let permits = Arc::new(Semaphore::new(config.max_in_flight));
    let total = u64::from(config.rate) * config.duration.as_millis() as u64 / 1000;
    let interval = Duration::from_secs_f64(1.0 / f64::from(config.rate));
    let start = Instant::now();
    let mut next_report = start + Duration::from_secs(1);
    let mut totals = Tallies::default();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..total {
        let due = start + interval.mul_f64(i as f64);
        while next_report <= due {
            tokio::time::sleep_until(next_report).await;
            report(&shared, &mut totals, start, &mut progress);
            next_report += Duration::from_secs(1);
        }
        tokio::time::sleep_until(due).await;
        while tasks.try_join_next().is_some() {}
        let op = match rng.random_range(0..100) < config.create_percent {
            true => Op::Create,
            false => Op::Redirect,
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            lock(&shared.tallies).dropped(op);
            continue;
        };
        lock(&shared.tallies).sent(op);
        let shared = shared.clone();
        tasks.spawn(async move {
            shared.in_flight.fetch_add(1, Ordering::Relaxed);
            let outcome = send(&shared, op, i).await;
            shared.in_flight.fetch_sub(1, Ordering::Relaxed);
            drop(permit);
            let micros = matches!(outcome, Outcome::Ok | Outcome::Status(_))
                .then(|| due.elapsed().as_micros() as u64);
            lock(&shared.tallies).record(op, &outcome, micros);
        });
    }
    // Every request has a deadline, so this ends within `timeout`.
    while tasks.join_next().await.is_some() {}
    report(&shared, &mut totals, start, &mut progress);
    Ok(Report {
        config: shared.config.clone(),
        elapsed: start.elapsed(),
        tallies: totals,
        initial_links,
    })
}

/// Takes the tallies since the last report, adds them to the totals and calls `progress`.
fn report(
    shared: &Shared,
    totals: &mut Tallies,
    start: Instant,
    progress: &mut impl FnMut(&Progress),
) {
    let last_second = std::mem::take(&mut *lock(&shared.tallies));
    totals.merge(&last_second);
    progress(&Progress {
        elapsed: start.elapsed(),
        last_second,
        total: totals.clone(),
        in_flight: shared.in_flight.load(Ordering::Relaxed),
    });
}

async fn create_initial_links(shared: &Shared) -> Result<usize, String> {
    let mut created = 0;
    let mut last_failure = Outcome::Ok;
    let wanted = shared.config.initial_links;
    for n in 0..wanted {
        // Numbered past every timed request, so that no two requests share a key.
        match create(shared, u64::MAX - n as u64).await {
            Outcome::Ok => created += 1,
            failure => last_failure = failure,
        }
    }
    if created == 0 && wanted > 0 {
        return Err(format!(
            "could not create a single link through {} (last attempt: {}); is the cluster up?",
            shared.config.target,
            last_failure.label()
        ));
    }
    Ok(created)
}

async fn send(shared: &Shared, op: Op, n: u64) -> Outcome {
    match op {
        Op::Create => create(shared, n).await,
        Op::Redirect => {
            // Never empty: the run starts with at least one link created.
            let code = lock(&shared.codes).pick();
            match code {
                Some(code) => redirect(shared, &code).await,
                None => Outcome::Error,
            }
        }
    }
}

/// `POST /api/v1/links`; a 201 adds the new code to the pool.
async fn create(shared: &Shared, n: u64) -> Outcome {
    let config = &shared.config;
    let body = format!(
        r#"{{"url": "https://example.com/load/{}/{n}"}}"#,
        config.seed
    );
    let key = format!("load-{}-{n}", config.seed);
    let request = create_request(body, &config.api_key, Some(&key));
    let (status, body) = match exchange(shared, request).await {
        Ok(answer) => answer,
        Err(outcome) => return outcome,
    };
    if status != 201 {
        return Outcome::Status(status);
    }
    let code = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|json| json["code"].as_str().map(str::to_owned));
    match code {
        Some(code) => {
            lock(&shared.codes).add(code);
            Outcome::Ok
        }
        None => Outcome::Error,
    }
}

/// `POST /api/v1/links` with `body` (JSON), as the gateway's write API wants it: the API key,
/// and an `Idempotency-Key` when given.
pub fn create_request(body: String, api_key: &str, idempotency_key: Option<&str>) -> Request {
    let mut request = Request::new(Method::POST, "/api/v1/links", Body::full(Bytes::from(body)))
        .with_header(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )
        .with_header(
            http1::HeaderName::from_static(API_KEY_HEADER),
            header_value(api_key),
        );
    if let Some(key) = idempotency_key {
        request = request.with_header(
            http1::HeaderName::from_static("idempotency-key"),
            header_value(key),
        );
    }
    request
}

/// `GET /{code}`: a 301 or 302 is the success.
async fn redirect(shared: &Shared, code: &str) -> Outcome {
    let request = Request::new(Method::GET, format!("/{code}"), Body::empty());
    match exchange(shared, request).await {
        Ok((301 | 302, _)) => Outcome::Ok,
        Ok((status, _)) => Outcome::Status(status),
        Err(outcome) => outcome,
    }
}

/// Sends a request and reads its answer whole, within the configured timeout.
async fn exchange(shared: &Shared, request: Request) -> Result<(u16, Bytes), Outcome> {
    let exchange = async {
        let response = shared
            .client
            .send(shared.config.target, request)
            .await
            .map_err(|e| Outcome::from_error(&e))?;
        let status = response.status().as_u16();
        let body = response
            .body
            .collect(MAX_BODY_BYTES)
            .await
            .map_err(|e| Outcome::from_error(&e))?;
        Ok((status, body.data))
    };
    tokio::time::timeout(shared.config.timeout, exchange)
        .await
        .unwrap_or(Err(Outcome::Timeout))
}

fn header_value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_progress_line_shows_the_last_second_and_the_totals() {
        let mut last_second = Tallies::default();
        for _ in 0..3 {
            last_second.sent(Op::Redirect);
        }
        last_second.record(Op::Redirect, &Outcome::Ok, Some(1_500));
        last_second.record(Op::Redirect, &Outcome::Status(502), Some(3_000));
        last_second.record(Op::Create, &Outcome::Refused, None);
        let mut total = last_second.clone();
        total.sent(Op::Create);
        total.record(Op::Create, &Outcome::Ok, Some(800));
        total.dropped(Op::Create);
        let line = Progress {
            elapsed: Duration::from_secs(7),
            last_second,
            total,
            in_flight: 2,
        }
        .line();
        assert!(
            line.starts_with("   7s  sent      3  ok      1  failed    2 (502: 1, refused: 1)"),
            "{line}"
        );
        assert!(
            line.contains("| total sent 4 ok 2 failed 2 dropped 1  in flight 2"),
            "{line}"
        );
    }

    #[test]
    fn bad_settings_name_their_flag() {
        let config = LoadConfig {
            target: "127.0.0.1:8080".parse().unwrap(),
            api_key: "k".into(),
            rate: 0,
            duration: Duration::from_secs(1),
            create_percent: 10,
            initial_links: 10,
            max_in_flight: 10,
            timeout: Duration::from_secs(1),
            seed: 1,
        };
        assert!(config.validate().unwrap_err().starts_with("--rate"));
        let config = LoadConfig {
            rate: 10,
            create_percent: 101,
            ..config
        };
        assert!(config.validate().unwrap_err().starts_with("--creates"));
    }
}
