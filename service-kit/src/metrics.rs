//! Prometheus metrics: one registry per server, a few checked constructors, text exposition.
//!
//! A server creates one [`Registry`] at start-up, registers its metrics through it, keeps the
//! returned handles in its state, and the admin endpoint serves [`Registry::encode`] at
//! `GET /metrics` in the text exposition format, version 0.0.4:
//!
//! ```text
//! # HELP kv_commands_total Commands executed, by command name.
//! # TYPE kv_commands_total counter
//! kv_commands_total{command="get"} 7
//! # HELP kv_command_duration_seconds Time to execute one command.
//! # TYPE kv_command_duration_seconds histogram
//! kv_command_duration_seconds_bucket{le="0.001"} 6
//! kv_command_duration_seconds_bucket{le="+Inf"} 7
//! kv_command_duration_seconds_sum 0.0042
//! kv_command_duration_seconds_count 7
//! ```
//!
//! # Naming conventions, enforced at registration
//!
//! Following <https://prometheus.io/docs/practices/naming/>, a name is rejected with
//! [`MetricsError::BadName`] unless:
//!
//! - it is lower-case `snake_case` starting with a letter, prefixed by the server
//!   (`kv_`, `broker_`, `proxy_`, ...); colons are reserved for recording rules;
//! - counters end in `_total`, and nothing else does;
//! - units are base units, spelt out, plural, last before `_total`: `_seconds`, `_bytes`.
//!   Scaled units (`ms`, `milliseconds`, `kb`, `mib`, ...) are refused: dashboards divide,
//!   names do not.
//!
//! # Labels: bounded values only
//!
//! Every distinct label value creates a new time series, kept in memory by the server and by
//! Prometheus forever. So label values must come from a small set fixed by the code: a
//! command name, a method, a status *class* (`2xx`), a partition number. Never a key, a URL
//! path, a client address or a user id. The registry cannot check values, so this rule is
//! the reviewer's to enforce; label *names* are checked like metric names.
//!
//! # Why the `prometheus` crate
//!
//! It is the client maintained by the TiKV project (`tikv/rust-prometheus`) and used in
//! production by TiKV. Its `TextEncoder` writes the 0.0.4 text format directly. With default
//! features off, the `protobuf` dependency and the protobuf encoder are compiled out (a plain
//! Rust data model replaces the generated protobuf types), leaving a small tree (`fnv`, `lazy_static`, `memchr`, `parking_lot`, `thiserror`, `cfg-if`). Process
//! metrics (`process_cpu_seconds_total`, ...) need its `process` feature, which pulls in
//! `procfs`; servers do not enable it for now.

use bytes::Bytes;
use prometheus::{HistogramOpts, Opts, TextEncoder};
use thiserror::Error;

pub use prometheus::{
    Gauge, Histogram, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
};

/// The `Content-Type` of [`Registry::encode`]'s body.
pub const CONTENT_TYPE: &str = prometheus::TEXT_FORMAT;

/// Buckets for request and command latencies, in seconds: 100 µs to 10 s, roughly ×2.5 apart.
pub const LATENCY_SECONDS_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Buckets for payload sizes, in bytes: 64 B to 16 MiB, ×4 apart.
pub const SIZE_BYTES_BUCKETS: &[f64] = &[
    64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0, 16777216.0,
];

/// Unit spellings that are not base units, as `_`-separated words of a name.
const SCALED_UNITS: &[&str] = &[
    "ns",
    "nanoseconds",
    "us",
    "micros",
    "microseconds",
    "ms",
    "millis",
    "milliseconds",
    "minutes",
    "hours",
    "days",
    "kb",
    "kib",
    "kilobytes",
    "mb",
    "mib",
    "megabytes",
    "gb",
    "gib",
    "gigabytes",
];

/// Label names the exposition format itself uses.
const RESERVED_LABELS: &[&str] = &["le", "quantile"];

/// Why a metric could not be registered.
#[derive(Debug, Error)]
pub enum MetricsError {
    /// The metric or label name breaks the conventions in the module doc.
    #[error("bad metric name `{name}`: {reason}")]
    BadName {
        /// The offending metric or label name.
        name: String,
        /// The convention it breaks.
        reason: &'static str,
    },
    /// The `prometheus` crate refused it: a duplicate name, unsorted buckets.
    #[error("cannot register metric `{name}`: {source}")]
    Rejected {
        /// The metric name.
        name: String,
        /// The crate's reason.
        source: prometheus::Error,
    },
}

/// What kind of metric a name is checked for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Other,
}

/// A server's metrics registry. Cloning is cheap and shares the same metrics.
#[derive(Clone, Debug, Default)]
pub struct Registry {
    inner: prometheus::Registry,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a counter; `name` must end in `_total`.
    pub fn counter(&self, name: &str, help: &str) -> Result<IntCounter, MetricsError> {
        check_name(name, Kind::Counter)?;
        self.register(name, IntCounter::with_opts(Opts::new(name, help)))
    }

    /// Registers a family of counters, one per combination of `labels` values.
    pub fn counter_vec(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> Result<IntCounterVec, MetricsError> {
        check_name(name, Kind::Counter)?;
        check_labels(labels)?;
        self.register(name, IntCounterVec::new(Opts::new(name, help), labels))
    }

    /// Registers a gauge: a value that goes up and down (open connections, queue depth).
    pub fn gauge(&self, name: &str, help: &str) -> Result<IntGauge, MetricsError> {
        check_name(name, Kind::Other)?;
        self.register(name, IntGauge::with_opts(Opts::new(name, help)))
    }

    /// Registers a gauge with a fractional value (a ratio, a load factor). Prefer
    /// counters where a rate can be computed from them; use this for a value that only the
    /// server can compute.
    pub fn float_gauge(&self, name: &str, help: &str) -> Result<Gauge, MetricsError> {
        check_name(name, Kind::Other)?;
        self.register(name, Gauge::with_opts(Opts::new(name, help)))
    }

    /// Registers a family of gauges, one per combination of `labels` values.
    pub fn gauge_vec(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> Result<IntGaugeVec, MetricsError> {
        check_name(name, Kind::Other)?;
        check_labels(labels)?;
        self.register(name, IntGaugeVec::new(Opts::new(name, help), labels))
    }

    /// Registers a histogram with these bucket upper bounds (strictly increasing; `+Inf` is
    /// implied), such as [`LATENCY_SECONDS_BUCKETS`].
    pub fn histogram(
        &self,
        name: &str,
        help: &str,
        buckets: &[f64],
    ) -> Result<Histogram, MetricsError> {
        check_name(name, Kind::Other)?;
        let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
        self.register(name, Histogram::with_opts(opts))
    }

    /// Registers a family of histograms, one per combination of `labels` values.
    pub fn histogram_vec(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
        buckets: &[f64],
    ) -> Result<HistogramVec, MetricsError> {
        check_name(name, Kind::Other)?;
        check_labels(labels)?;
        let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
        self.register(name, HistogramVec::new(opts, labels))
    }

    /// Every registered metric in the text format: `(content type, body)`. Metric families
    /// are sorted by name; a labelled family with no series yet is left out.
    pub fn encode(&self) -> (&'static str, Bytes) {
        let mut body = String::new();
        // Writing into a String cannot fail, and `gather` drops the empty families that are
        // the encoder's only other error; log rather than panic should that ever change.
        if let Err(err) = TextEncoder::new().encode_utf8(&self.inner.gather(), &mut body) {
            tracing::error!(%err, "cannot encode metrics");
        }
        (CONTENT_TYPE, Bytes::from(body))
    }

    fn register<M>(&self, name: &str, metric: prometheus::Result<M>) -> Result<M, MetricsError>
    where
        M: prometheus::core::Collector + Clone + 'static,
    {
        let rejected = |source| MetricsError::Rejected {
            name: name.to_owned(),
            source,
        };
        let metric = metric.map_err(rejected)?;
        self.inner
            .register(Box::new(metric.clone()))
            .map_err(rejected)?;
        Ok(metric)
    }
}

fn check_name(name: &str, kind: Kind) -> Result<(), MetricsError> {
    check_snake_case(name)?;
    let bad = |reason| {
        Err(MetricsError::BadName {
            name: name.to_owned(),
            reason,
        })
    };
    let is_total = name.ends_with("_total");
    if kind == Kind::Counter && !is_total {
        return bad("counter names end in `_total`");
    }
    if kind == Kind::Other && is_total {
        return bad("only counter names end in `_total`");
    }
    if name.split('_').any(|word| SCALED_UNITS.contains(&word)) {
        return bad("use base units spelt out: `_seconds`, `_bytes`");
    }
    Ok(())
}

fn check_labels(labels: &[&str]) -> Result<(), MetricsError> {
    for &label in labels {
        check_snake_case(label)?;
        if RESERVED_LABELS.contains(&label) {
            return Err(MetricsError::BadName {
                name: label.to_owned(),
                reason: "`le` and `quantile` are reserved for histogram and summary series",
            });
        }
    }
    Ok(())
}

fn check_snake_case(name: &str) -> Result<(), MetricsError> {
    let mut chars = name.chars();
    let starts_with_letter = chars.next().is_some_and(|c| c.is_ascii_lowercase());
    let rest_is_snake = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if starts_with_letter && rest_is_snake {
        return Ok(());
    }
    Err(MetricsError::BadName {
        name: name.to_owned(),
        reason: "names are lower-case snake_case starting with a letter",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(registry: &Registry) -> String {
        let (content_type, body) = registry.encode();
        assert_eq!(content_type, "text/plain; version=0.0.4");
        String::from_utf8(body.to_vec()).unwrap()
    }

    fn lines(text: &str) -> Vec<&str> {
        text.lines().collect()
    }

    #[test]
    fn counters_and_gauges_are_exposed_with_type_and_help() {
        let registry = Registry::new();
        let accepted = registry
            .counter("kv_connections_accepted_total", "Connections accepted.")
            .unwrap();
        let open = registry
            .gauge("kv_connections_open", "Connections open now.")
            .unwrap();
        accepted.inc_by(3);
        open.set(2);

        let text = body(&registry);
        let lines = lines(&text);
        assert!(lines.contains(&"# HELP kv_connections_accepted_total Connections accepted."));
        assert!(lines.contains(&"# TYPE kv_connections_accepted_total counter"));
        assert!(lines.contains(&"kv_connections_accepted_total 3"));
        assert!(lines.contains(&"# TYPE kv_connections_open gauge"));
        assert!(lines.contains(&"kv_connections_open 2"));
    }

    #[test]
    fn a_float_gauge_keeps_its_fraction() {
        let registry = Registry::new();
        let ratio = registry
            .float_gauge("cache_hit_ratio", "Hits over lookups.")
            .unwrap();
        ratio.set(0.75);
        let text = body(&registry);
        assert!(
            lines(&text).contains(&"# TYPE cache_hit_ratio gauge"),
            "{text}"
        );
        assert!(lines(&text).contains(&"cache_hit_ratio 0.75"), "{text}");
    }

    #[test]
    fn a_histogram_has_cumulative_buckets_sum_and_count() {
        let registry = Registry::new();
        let latency = registry
            .histogram("kv_command_duration_seconds", "Command time.", &[0.1, 1.0])
            .unwrap();
        latency.observe(0.05);
        latency.observe(0.5);
        latency.observe(5.0);

        let text = body(&registry);
        let lines = lines(&text);
        assert!(lines.contains(&"# TYPE kv_command_duration_seconds histogram"));
        assert!(lines.contains(&"kv_command_duration_seconds_bucket{le=\"0.1\"} 1"));
        assert!(lines.contains(&"kv_command_duration_seconds_bucket{le=\"1\"} 2"));
        assert!(lines.contains(&"kv_command_duration_seconds_bucket{le=\"+Inf\"} 3"));
        assert!(lines.contains(&"kv_command_duration_seconds_sum 5.55"));
        assert!(lines.contains(&"kv_command_duration_seconds_count 3"));
    }

    #[test]
    fn labelled_families_emit_one_series_per_label_value() {
        let registry = Registry::new();
        let commands = registry
            .counter_vec("kv_commands_total", "Commands by name.", &["command"])
            .unwrap();
        let queued = registry
            .gauge_vec("broker_queue_depth_records", "Queue depth.", &["partition"])
            .unwrap();
        let sizes = registry
            .histogram_vec(
                "broker_batch_size_bytes",
                "Batch sizes.",
                &["direction"],
                SIZE_BYTES_BUCKETS,
            )
            .unwrap();
        commands.with_label_values(&["get"]).inc();
        commands.with_label_values(&["set"]).inc_by(2);
        queued.with_label_values(&["0"]).set(5);
        sizes.with_label_values(&["in"]).observe(100.0);

        let text = body(&registry);
        let lines = lines(&text);
        assert!(lines.contains(&"kv_commands_total{command=\"get\"} 1"));
        assert!(lines.contains(&"kv_commands_total{command=\"set\"} 2"));
        assert!(lines.contains(&"broker_queue_depth_records{partition=\"0\"} 5"));
        assert!(lines.contains(&"broker_batch_size_bytes_bucket{direction=\"in\",le=\"256\"} 1"));
    }

    #[test]
    fn naming_conventions_are_enforced() {
        let registry = Registry::new();
        let refused = [
            registry.counter("kv_commands", "no _total").err(),
            registry.gauge("kv_open_total", "a gauge with _total").err(),
            registry
                .histogram("kv_latency_ms", "scaled unit", LATENCY_SECONDS_BUCKETS)
                .err(),
            registry.gauge("kv_cache_mib", "scaled unit").err(),
            registry.gauge("KvOpen", "not snake_case").err(),
            registry.gauge("kv:open", "colon").err(),
            registry
                .counter_vec("kv_errors_total", "bad label", &["Kind"])
                .err(),
        ];
        for err in refused {
            assert!(matches!(err, Some(MetricsError::BadName { .. })), "{err:?}");
        }
        assert!(body(&registry).is_empty(), "nothing refused was registered");
    }

    #[test]
    fn the_prometheus_crate_checks_are_reported_too() {
        let registry = Registry::new();
        registry.counter("kv_commands_total", "first").unwrap();
        let duplicate = registry.counter("kv_commands_total", "again");
        assert!(matches!(duplicate, Err(MetricsError::Rejected { .. })));
        let unsorted = registry.histogram("kv_wait_seconds", "unsorted", &[1.0, 0.5]);
        assert!(matches!(unsorted, Err(MetricsError::Rejected { .. })));
        let reserved = registry.histogram_vec("kv_run_seconds", "le label", &["le"], &[1.0]);
        assert!(matches!(reserved, Err(MetricsError::BadName { .. })));
    }

    #[test]
    fn clones_share_the_same_metrics() {
        let registry = Registry::new();
        let counter = registry.clone().counter("kv_hits_total", "Hits.").unwrap();
        counter.inc();
        assert!(lines(&body(&registry)).contains(&"kv_hits_total 1"));
    }

    #[test]
    fn default_buckets_are_strictly_increasing() {
        for buckets in [LATENCY_SECONDS_BUCKETS, SIZE_BYTES_BUCKETS] {
            assert!(buckets.windows(2).all(|pair| pair[0] < pair[1]));
        }
    }
}
