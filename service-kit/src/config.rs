//! Configuration: one TOML file, a few flags every server shares, and a start-up check.
//!
//! A server's configuration is a plain struct. Each value comes from the first of these that
//! sets it:
//!
//! ```text
//!   command-line flag   --listen 127.0.0.1:7000           (CommonArgs::apply_to)
//!   config file         [server] listen = "..."           (config::load)
//!   default             Config::default()
//! ```
//!
//! Then [`Validate::validate`] checks the result once, before anything binds a socket, and
//! names the field that is wrong. A binary prints that error on one line and exits with
//! [`EXIT_USAGE`], the code clap itself uses for a bad flag.
//!
//! # How "file over default" works
//!
//! [`load`] serialises `Config::default()` to a TOML table, lays the file's table over it key
//! by key (tables merge recursively; any other value, arrays included, is replaced whole), and
//! deserialises the result. So a file that sets only `[server] log_level` keeps *this server's*
//! default `listen`, not some generic one: defaults live in exactly one place, the server's
//! `Default` impl, and structs reached through tables need no `#[serde(default)]` attributes.
//! Structs inside an array or a map are the exception: the default has no entry to lay a file's
//! entry over (an array is replaced whole, a map key may be new), so a struct that appears as an
//! element (a proxy's routes, a map of clusters) needs `#[serde(default)]` for the fields a file
//! may leave out. The price of the merge is that a
//! `Config` must also implement `Serialize`, and two limits of TOML show through: an `Option`
//! whose default is `Some` cannot be unset by the file (TOML has no null), and a `u64` default
//! above `i64::MAX` cannot be written at all ([`ConfigError::Defaults`]).
//!
//! Put `#[serde(deny_unknown_fields)]` on every config struct: a misspelt key (`listne`) is
//! then an error naming the key instead of a setting silently ignored.
//!
//! # The pattern in a server
//!
//! ```
//! use clap::Parser;
//! use serde::{Deserialize, Serialize};
//! use service_kit::config::{self, CommonArgs, ConfigError, ServerConfig, Validate};
//!
//! #[derive(Debug, Serialize, Deserialize)]
//! #[serde(deny_unknown_fields)]
//! struct Config {
//!     server: ServerConfig,
//!     /// Most keys a client may store; a named limit with a documented default.
//!     max_keys: u64,
//! }
//!
//! impl Default for Config {
//!     fn default() -> Self {
//!         let listen = ([127, 0, 0, 1], 6379).into();
//!         let admin = ([127, 0, 0, 1], 9379).into();
//!         Config { server: ServerConfig::new(listen, admin), max_keys: 1_000_000 }
//!     }
//! }
//!
//! impl Validate for Config {
//!     fn validate(&self) -> Result<(), ConfigError> {
//!         self.server.validate()?;
//!         if self.max_keys == 0 {
//!             return Err(ConfigError::invalid("max_keys", "must be at least 1"));
//!         }
//!         Ok(())
//!     }
//! }
//!
//! #[derive(Parser)]
//! struct Cli {
//!     #[command(flatten)]
//!     common: CommonArgs,
//! }
//!
//! fn configure(cli: &Cli) -> Result<Config, ConfigError> {
//!     let mut config: Config = config::load(cli.common.config.as_deref())?;
//!     cli.common.apply_to(&mut config.server);
//!     config.validate()?;
//!     Ok(config)
//! }
//!
//! let cli = Cli::parse_from(["kv-store", "--listen", "127.0.0.1:7000"]);
//! let config = configure(&cli).unwrap_or_else(|err| {
//!     eprintln!("kv-store: {err}");
//!     std::process::exit(config::EXIT_USAGE);
//! });
//! assert_eq!(config.server.listen.port(), 7000);
//! assert_eq!(config.server.admin_listen.port(), 9379);
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use serde::Serialize;
use serde::de::DeserializeOwned;
use thiserror::Error;

use crate::logging::{self, LogFormat};

/// Exit code for a bad flag or config value (the code clap uses for usage errors).
pub const EXIT_USAGE: i32 = 2;

/// Largest config file [`load`] reads. Config files are hand-written and small; a larger file
/// is almost certainly the wrong path (a log, a data file), so it is refused before reading.
pub const MAX_CONFIG_FILE_BYTES: u64 = 1024 * 1024;

/// Default `log_level`: INFO and above from every crate.
pub const DEFAULT_LOG_LEVEL: &str = "info";

/// Default `shutdown_timeout_ms`: how long in-flight work may run after SIGTERM. Kept well
/// under the 30 s that Kubernetes and systemd wait before they send SIGKILL.
pub const DEFAULT_SHUTDOWN_TIMEOUT_MS: u64 = 10_000;

/// Largest accepted `shutdown_timeout_ms` (10 minutes). A longer drain is a mistake: the
/// process manager will have killed the process long before.
pub const MAX_SHUTDOWN_TIMEOUT_MS: u64 = 600_000;

/// A configuration that can check itself. Servers implement it for their `Config` and call
/// [`ServerConfig::validate`] from it.
pub trait Validate {
    /// Checks every value and the relations between them; the error names the first bad field.
    fn validate(&self) -> Result<(), ConfigError>;
}

/// Why a configuration could not be loaded or is not acceptable. Each message fits on one line.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be opened or read.
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The file is larger than [`MAX_CONFIG_FILE_BYTES`].
    #[error("config file {} is {len} bytes, over the {max}-byte limit", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        len: u64,
        /// [`MAX_CONFIG_FILE_BYTES`].
        max: u64,
    },
    /// The file is not valid TOML, or a key is unknown or has the wrong type.
    #[error("config file {}: {message}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong and where: a line and column, or the dotted key (`in server.listen`).
        message: String,
    },
    /// The defaults of a `Config` type cannot be written as TOML. This is a bug in the server,
    /// not in the user's file (for example a `u64` default above `i64::MAX`).
    #[error("config defaults cannot be represented as TOML: {0}")]
    Defaults(toml::ser::Error),
    /// A value parsed but is not acceptable.
    #[error("invalid value for `{field}`: {reason}")]
    Invalid {
        /// The key, as written in the file (and, for shared keys, the flag without `--`).
        field: String,
        /// Why, phrased so that the user knows what to change.
        reason: String,
    },
}

impl ConfigError {
    /// Shorthand for [`ConfigError::Invalid`], for `Validate` impls.
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// Settings every server has, to embed in its `Config` (conventionally as `server`).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address of the server's own protocol (RESP, HTTP, the broker protocol).
    pub listen: SocketAddr,
    /// Address of the admin endpoint (`/metrics`, `/healthz`, `/readyz`). Must differ from
    /// `listen` unless both use port 0.
    pub admin_listen: SocketAddr,
    /// Log rendering on stderr. Default: text.
    pub log_format: LogFormat,
    /// A `tracing` filter directive such as `info` or `warn,http1=debug`.
    /// Default: [`DEFAULT_LOG_LEVEL`].
    pub log_level: String,
    /// Milliseconds in-flight work may take to finish after a shutdown signal, at most
    /// [`MAX_SHUTDOWN_TIMEOUT_MS`]; 0 cuts it off at once. Default:
    /// [`DEFAULT_SHUTDOWN_TIMEOUT_MS`].
    pub shutdown_timeout_ms: u64,
}

impl ServerConfig {
    /// The shared settings with this server's addresses and the documented defaults for the rest.
    pub fn new(listen: SocketAddr, admin_listen: SocketAddr) -> Self {
        ServerConfig {
            listen,
            admin_listen,
            log_format: LogFormat::default(),
            log_level: DEFAULT_LOG_LEVEL.to_owned(),
            shutdown_timeout_ms: DEFAULT_SHUTDOWN_TIMEOUT_MS,
        }
    }

    /// `shutdown_timeout_ms` as a `Duration`, for [`Shutdown::drain`](crate::shutdown::Shutdown::drain).
    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_millis(self.shutdown_timeout_ms)
    }
}

impl Validate for ServerConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.listen == self.admin_listen && self.listen.port() != 0 {
            return Err(ConfigError::invalid(
                "admin_listen",
                format!("{} is also `listen`; use another port", self.admin_listen),
            ));
        }
        if let Err(err) = logging::parse_filter(&self.log_level) {
            return Err(ConfigError::invalid("log_level", err.to_string()));
        }
        if self.shutdown_timeout_ms > MAX_SHUTDOWN_TIMEOUT_MS {
            return Err(ConfigError::invalid(
                "shutdown_timeout_ms",
                format!(
                    "{} is over the maximum of {MAX_SHUTDOWN_TIMEOUT_MS}",
                    self.shutdown_timeout_ms
                ),
            ));
        }
        Ok(())
    }
}

/// A setting that must never be printed, such as a password: in TOML a plain string, in `Debug`
/// output `<redacted>`, so that a config logged or shown in a panic does not carry it.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value itself, for the one place that uses it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The flags every server shares. Add them to a binary's CLI with `#[command(flatten)]`.
///
/// Every field is optional: an absent flag leaves the file's (or the default) value alone.
#[derive(Args, Clone, Debug, Default, PartialEq)]
pub struct CommonArgs {
    /// Read settings from this TOML file; flags given on the command line override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address for the server's protocol, e.g. 127.0.0.1:6379.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Address for the admin endpoint (/metrics, /healthz, /readyz).
    #[arg(long, value_name = "ADDR")]
    pub admin_listen: Option<SocketAddr>,
    /// Log output format on stderr.
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
    /// Log filter: a level (info, debug, ...) or directives like `warn,http1=debug`.
    #[arg(long, value_name = "FILTER", value_parser = parse_log_level)]
    pub log_level: Option<String>,
    /// Milliseconds in-flight work may take to finish after SIGINT/SIGTERM.
    #[arg(long, value_name = "MS")]
    pub shutdown_timeout_ms: Option<u64>,
}

impl CommonArgs {
    /// Overwrites the settings that were given as flags; flags win over the file.
    pub fn apply_to(&self, server: &mut ServerConfig) {
        if let Some(listen) = self.listen {
            server.listen = listen;
        }
        if let Some(admin_listen) = self.admin_listen {
            server.admin_listen = admin_listen;
        }
        if let Some(format) = self.log_format {
            server.log_format = format;
        }
        if let Some(level) = &self.log_level {
            server.log_level.clone_from(level);
        }
        if let Some(timeout) = self.shutdown_timeout_ms {
            server.shutdown_timeout_ms = timeout;
        }
    }
}

/// Checks `--log-level` while clap parses, so a bad filter is reported against the flag.
fn parse_log_level(directive: &str) -> Result<String, logging::LogError> {
    logging::parse_filter(directive).map(|_| directive.to_owned())
}

/// `--data-dir DIR`, flattened only into servers that store data.
#[derive(Args, Clone, Debug, Default, PartialEq)]
pub struct DataDirArg {
    /// Directory for the server's durable data (logs, snapshots); created if missing.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

impl DataDirArg {
    /// Overwrites `data_dir` if the flag was given.
    pub fn apply_to(&self, data_dir: &mut PathBuf) {
        if let Some(dir) = &self.data_dir {
            data_dir.clone_from(dir);
        }
    }
}

/// Loads a `Config`: its `Default`, with the TOML file at `path` (if any) laid over it.
///
/// Flags are applied by the caller afterwards, and validation after that: see the module doc.
pub fn load<C>(path: Option<&Path>) -> Result<C, ConfigError>
where
    C: Default + Serialize + DeserializeOwned,
{
    let Some(path) = path else {
        return Ok(C::default());
    };
    let text = read_limited(path)?;
    let parse_error = |message: String| ConfigError::Parse {
        path: path.to_owned(),
        message,
    };
    let file: toml::Table =
        toml::from_str(&text).map_err(|err| parse_error(describe(&err, &text)))?;
    let mut merged = toml::Table::try_from(C::default()).map_err(ConfigError::Defaults)?;
    overlay(&mut merged, file);
    merged
        .try_into()
        .map_err(|err: toml::de::Error| parse_error(one_line(&err.to_string())))
}

fn read_limited(path: &Path) -> Result<String, ConfigError> {
    let read_error = |source| ConfigError::Read {
        path: path.to_owned(),
        source,
    };
    let len = std::fs::metadata(path).map_err(read_error)?.len();
    if len > MAX_CONFIG_FILE_BYTES {
        return Err(ConfigError::TooLarge {
            path: path.to_owned(),
            len,
            max: MAX_CONFIG_FILE_BYTES,
        });
    }
    std::fs::read_to_string(path).map_err(read_error)
}

/// Lays `file` over `base`: tables merge key by key, every other value replaces the default.
fn overlay(base: &mut toml::Table, file: toml::Table) {
    for (key, value) in file {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(base_table)), toml::Value::Table(file_table)) => {
                overlay(base_table, file_table);
            }
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// A syntax error as "line L, column C: message", one line instead of toml's caret diagram.
fn describe(err: &toml::de::Error, text: &str) -> String {
    let message = one_line(err.message());
    let Some(span) = err.span() else {
        return message;
    };
    let before = text.get(..span.start).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.chars().rev().take_while(|&c| c != '\n').count() + 1;
    format!("line {line}, column {column}: {message}")
}

fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use clap::Parser;
    use serde::Deserialize;

    use super::*;

    #[test]
    fn a_secret_reads_as_a_string_and_never_prints() {
        #[derive(Debug, serde::Deserialize)]
        struct WithSecret {
            password: Secret,
        }
        let parsed: WithSecret = toml::from_str(r#"password = "hunter2""#).unwrap();
        assert_eq!(parsed.password.expose(), "hunter2");
        let shown = format!("{parsed:?}");
        assert!(
            !shown.contains("hunter2") && shown.contains("<redacted>"),
            "{shown}"
        );
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct TestConfig {
        server: ServerConfig,
        data_dir: PathBuf,
        max_connections: u32,
    }

    impl Default for TestConfig {
        fn default() -> Self {
            TestConfig {
                server: ServerConfig::new(
                    ([127, 0, 0, 1], 6379).into(),
                    ([127, 0, 0, 1], 9379).into(),
                ),
                data_dir: PathBuf::from("data"),
                max_connections: 1024,
            }
        }
    }

    impl Validate for TestConfig {
        fn validate(&self) -> Result<(), ConfigError> {
            self.server.validate()?;
            if self.max_connections == 0 {
                return Err(ConfigError::invalid(
                    "max_connections",
                    "must be at least 1",
                ));
            }
            Ok(())
        }
    }

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        common: CommonArgs,
        #[command(flatten)]
        data: DataDirArg,
    }

    fn file_with(text: &str) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(text.as_bytes()).unwrap();
        file
    }

    fn configure(args: &[&str]) -> Result<TestConfig, ConfigError> {
        let cli = Cli::try_parse_from(args).unwrap();
        let mut config: TestConfig = load(cli.common.config.as_deref())?;
        cli.common.apply_to(&mut config.server);
        cli.data.apply_to(&mut config.data_dir);
        config.validate()?;
        Ok(config)
    }

    #[test]
    fn without_file_or_flags_the_defaults_apply() {
        let config = configure(&["server"]).unwrap();
        assert_eq!(config, TestConfig::default());
    }

    #[test]
    fn flag_beats_file_and_file_beats_default() {
        let file = file_with(
            "max_connections = 10\n\
             [server]\n\
             listen = \"127.0.0.1:7000\"\n\
             log_level = \"debug\"\n",
        );
        let path = file.path().to_str().unwrap();
        let config =
            configure(&["server", "--config", path, "--listen", "127.0.0.1:8000"]).unwrap();
        // The flag wins over the file.
        assert_eq!(config.server.listen, "127.0.0.1:8000".parse().unwrap());
        // The file wins over the default, also inside a partially written section.
        assert_eq!(config.server.log_level, "debug");
        assert_eq!(config.max_connections, 10);
        // Keys the file leaves out keep this server's defaults.
        assert_eq!(
            config.server.admin_listen,
            "127.0.0.1:9379".parse().unwrap()
        );
        assert_eq!(
            config.server.shutdown_timeout_ms,
            DEFAULT_SHUTDOWN_TIMEOUT_MS
        );
        assert_eq!(config.data_dir, PathBuf::from("data"));
    }

    #[test]
    fn every_shared_flag_overrides_its_field() {
        let config = configure(&[
            "server",
            "--admin-listen",
            "127.0.0.1:9999",
            "--log-format",
            "json",
            "--log-level",
            "warn,http1=debug",
            "--shutdown-timeout-ms",
            "250",
            "--data-dir",
            "/var/lib/kv",
        ])
        .unwrap();
        assert_eq!(config.server.admin_listen.port(), 9999);
        assert_eq!(config.server.log_format, LogFormat::Json);
        assert_eq!(config.server.log_level, "warn,http1=debug");
        assert_eq!(config.server.shutdown_timeout(), Duration::from_millis(250));
        assert_eq!(config.data_dir, PathBuf::from("/var/lib/kv"));
    }

    #[test]
    fn an_unknown_key_is_an_error_naming_the_key_and_file() {
        let file = file_with("[server]\nlistne = \"127.0.0.1:1\"\n");
        let err = load::<TestConfig>(Some(file.path())).unwrap_err();
        let message = err.to_string();
        assert!(matches!(err, ConfigError::Parse { .. }));
        assert!(message.contains("unknown field `listne`"), "{message}");
        assert!(message.contains("server"), "{message}");
        assert!(
            message.contains(&file.path().display().to_string()),
            "{message}"
        );
        assert!(!message.contains('\n'), "{message}");
    }

    #[test]
    fn a_wrongly_typed_value_names_its_dotted_key() {
        let file = file_with("[server]\nlisten = \"not an address\"\n");
        let message = load::<TestConfig>(Some(file.path()))
            .unwrap_err()
            .to_string();
        assert!(message.contains("server.listen"), "{message}");
    }

    #[test]
    fn a_syntax_error_gives_line_and_column() {
        let file = file_with("max_connections = 10\n[server\n");
        let message = load::<TestConfig>(Some(file.path()))
            .unwrap_err()
            .to_string();
        assert!(message.contains("line 2, column"), "{message}");
        assert!(!message.contains('\n'), "{message}");
    }

    #[test]
    fn a_missing_file_is_a_read_error_naming_it() {
        let err = load::<TestConfig>(Some(Path::new("/nonexistent/kv.toml"))).unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }));
        assert!(err.to_string().contains("/nonexistent/kv.toml"));
    }

    #[test]
    fn an_oversized_file_is_refused_before_reading() {
        let big = "# padding\n".repeat((MAX_CONFIG_FILE_BYTES / 10 + 1) as usize);
        let file = file_with(&big);
        let err = load::<TestConfig>(Some(file.path())).unwrap_err();
        assert!(matches!(err, ConfigError::TooLarge { .. }), "{err}");
    }

    #[test]
    fn validation_names_the_bad_field() {
        let mut config = TestConfig::default();
        config.server.shutdown_timeout_ms = MAX_SHUTDOWN_TIMEOUT_MS + 1;
        let message = config.validate().unwrap_err().to_string();
        assert!(
            message.starts_with("invalid value for `shutdown_timeout_ms`"),
            "{message}"
        );

        let mut config = TestConfig::default();
        config.server.admin_listen = config.server.listen;
        let message = config.validate().unwrap_err().to_string();
        assert!(
            message.starts_with("invalid value for `admin_listen`"),
            "{message}"
        );

        let mut config = TestConfig::default();
        config.server.log_level = "info,http1=loud".into();
        let message = config.validate().unwrap_err().to_string();
        assert!(
            message.starts_with("invalid value for `log_level`"),
            "{message}"
        );

        let file = file_with("max_connections = 0\n");
        let path = file.path().to_str().unwrap();
        let message = configure(&["server", "--config", path])
            .unwrap_err()
            .to_string();
        assert_eq!(
            message,
            "invalid value for `max_connections`: must be at least 1"
        );
    }

    #[test]
    fn both_addresses_on_port_zero_is_allowed_for_tests() {
        let mut config = TestConfig::default();
        config.server.listen = "127.0.0.1:0".parse().unwrap();
        config.server.admin_listen = "127.0.0.1:0".parse().unwrap();
        assert!(config.validate().is_ok());
    }

    #[test]
    fn a_bad_log_level_flag_is_rejected_by_clap_naming_the_flag() {
        let Err(err) = Cli::try_parse_from(["server", "--log-level", "info,x=loud"]) else {
            panic!("a bad filter must not parse");
        };
        assert!(err.to_string().contains("--log-level"), "{err}");
    }
}
