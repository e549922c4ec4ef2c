//! Structured logging to stderr through `tracing`.
//!
//! Every server logs the same way: events go to **stderr** (stdout stays free for tools that
//! print data), either as human-readable text or as one JSON object per line for a log shipper.
//! Which events are kept is decided by one filter directive in `tracing`'s `EnvFilter` syntax:
//!
//! ```text
//! info                         everything at INFO and above
//! warn,kv_store=debug          WARN everywhere, DEBUG inside the kv_store crate
//! info,kv_store::raft=trace    TRACE for one module
//! ```
//!
//! # Why `RUST_LOG` is not read
//!
//! The directive comes from `--log-level`, else the config file's `log_level`, else
//! [`DEFAULT_LOG_LEVEL`](crate::config::DEFAULT_LOG_LEVEL). `RUST_LOG` is deliberately ignored:
//! the precedence chain "flag over file over default" would otherwise have a hidden fourth link,
//! and a `RUST_LOG` left exported in a shell would silently change what a server (or a test
//! that spawns one) prints. Anything `RUST_LOG` can express, `--log-level` accepts verbatim.
//!
//! # Installing twice
//!
//! A process has one global subscriber. [`init`] installs it and returns
//! [`LogError::AlreadyInitialized`] (never panics) if one is already there, which happens
//! when several tests in one binary start servers. Callers that do not care can ignore that
//! variant.

use std::io::IsTerminal;

use thiserror::Error;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::ParseError;

/// How log events are rendered on stderr.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One human-readable line per event, coloured when stderr is a terminal.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Why logging could not be set up.
#[derive(Debug, Error)]
pub enum LogError {
    /// The filter directive does not parse.
    #[error("invalid log filter `{directive}`: {source}")]
    BadFilter {
        /// The directive as given.
        directive: String,
        /// The parser's explanation.
        source: ParseError,
    },
    /// The filter directive is empty; an empty filter would silently log nothing useful.
    #[error("empty log filter; use a level such as `info`, or `off` to disable logging")]
    EmptyFilter,
    /// A global subscriber is already installed in this process (by an earlier [`init`]).
    #[error("a global tracing subscriber is already installed")]
    AlreadyInitialized,
}

/// Parses a filter directive such as `info` or `warn,http1=debug`.
///
/// Config validation calls this too, so that a bad `log_level` is reported with the other
/// config errors, before anything starts.
pub fn parse_filter(directive: &str) -> Result<EnvFilter, LogError> {
    if directive.trim().is_empty() {
        return Err(LogError::EmptyFilter);
    }
    EnvFilter::builder()
        .parse(directive)
        .map_err(|source| LogError::BadFilter {
            directive: directive.to_owned(),
            source,
        })
}

/// Installs the process-wide subscriber: `format` output on stderr, filtered by `directive`.
///
/// Returns [`LogError::AlreadyInitialized`] if a subscriber is already installed; the existing
/// one stays in place.
pub fn init(format: LogFormat, directive: &str) -> Result<(), LogError> {
    let filter = parse_filter(directive)?;
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    let installed = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        LogFormat::Json => builder.json().with_current_span(true).try_init(),
    };
    installed.map_err(|_| LogError::AlreadyInitialized)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_levels_and_per_target_directives() {
        for directive in [
            "info",
            "off",
            "warn,http1=debug",
            "info,kv_store::raft=trace",
        ] {
            assert!(parse_filter(directive).is_ok(), "{directive} should parse");
        }
    }

    #[test]
    fn rejects_a_bad_directive_with_its_text() {
        let err = parse_filter("info,http1=loud").unwrap_err();
        assert!(matches!(err, LogError::BadFilter { .. }));
        assert!(err.to_string().contains("info,http1=loud"), "{err}");
        assert!(matches!(parse_filter("  "), Err(LogError::EmptyFilter)));
    }

    #[test]
    fn init_twice_is_an_error_not_a_panic() {
        // This is the only test in the crate that installs the global subscriber. It filters
        // everything out so the test output stays clean.
        let first = init(LogFormat::Json, "off");
        let second = init(LogFormat::Text, "off");
        assert!(first.is_ok(), "{first:?}");
        assert!(matches!(second, Err(LogError::AlreadyInitialized)));
    }

    #[test]
    fn init_reports_a_bad_filter_before_installing_anything() {
        assert!(matches!(
            init(LogFormat::Text, "=="),
            Err(LogError::BadFilter { .. })
        ));
    }

    #[test]
    fn format_names_match_the_flag_and_the_file() {
        use clap::ValueEnum;
        assert_eq!(LogFormat::from_str("json", false), Ok(LogFormat::Json));
        let parsed: std::collections::BTreeMap<String, LogFormat> =
            toml::from_str("f = \"text\"").unwrap();
        assert_eq!(parsed["f"], LogFormat::Text);
    }
}
