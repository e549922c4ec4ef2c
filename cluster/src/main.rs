//! `cluster`: run the workspace's servers together, break them, load them.
//!
//! `cluster up` starts the topology of `cluster.toml` and stays in the foreground, printing
//! every process's output; the other subcommands talk to it from a second terminal through
//! its control API (`cluster/src/control.rs`), except `load`, which talks to the cluster
//! itself. See the crate docs (`cluster/src/lib.rs`) for the map.

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use cluster::control::{self, ControlClient, Operation};
use cluster::load::{self, LoadConfig};
use cluster::render::{API_KEY_HEADER, CONSUMER};
use cluster::topology::Port;
use cluster::{Binaries, Cluster, ClusterStatus, Kind, Options, Topology};

#[derive(Parser)]
#[command(
    name = "cluster",
    version,
    about = "Run every server of the workspace as a local cluster, inject faults, drive load",
    after_help = "Start it with `cluster up` in one terminal; run the others from a second one.\n\
                  Names are process names (url-shortener-1) or kinds (url-shortener: all of them)."
)]
struct Cli {
    /// The topology file; relative paths in it are relative to it.
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        default_value = "cluster.toml"
    )]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the cluster in the foreground; Ctrl-C drains and stops it.
    Up {
        /// Empty the data directory first (links, click counts, broker logs are kept otherwise).
        #[arg(long)]
        fresh: bool,
        /// No ANSI colours in the output (also when NO_COLOR is set or stdout is not a terminal).
        #[arg(long)]
        no_color: bool,
    },
    /// Every process (state, pid, readiness) and every link with a fault on it.
    Status {
        /// The control API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// SIGKILL a process: a crash, no drain.
    Kill { name: String },
    /// SIGSTOP a process: it holds its connections and answers nothing.
    Pause { name: String },
    /// SIGCONT a paused process.
    Resume { name: String },
    /// Stop a process gracefully if it runs (SIGTERM), start it again, wait until it is ready.
    Restart { name: String },
    /// Cut every connection between A and B, both ways, until `heal`.
    Partition { a: String, b: String },
    /// Undo partitions and latency: between A and B, or everywhere.
    Heal {
        a: Option<String>,
        b: Option<String>,
    },
    /// Delay every exchange between A and B (e.g. 200ms, 1s; 0 removes it).
    Latency {
        a: String,
        b: String,
        #[arg(value_parser = parse_duration)]
        delay: Duration,
    },
    /// Drive the URL-shortener workload through the reverse proxy, with a live progress line.
    Load {
        /// Requests started per second (open loop).
        #[arg(long, default_value_t = 100)]
        rate: u32,
        /// How long to run (e.g. 30s, 2m).
        #[arg(long, default_value = "30s", value_parser = parse_duration)]
        duration: Duration,
        /// Percentage of requests that create a link; the others follow redirects.
        #[arg(long, default_value_t = 10)]
        creates: u8,
        /// Links created before the timed run.
        #[arg(long, default_value_t = 20)]
        initial_links: usize,
        /// Most requests in flight; past it a due request is not sent and counts as dropped.
        #[arg(long, default_value_t = 1000)]
        max_in_flight: usize,
        /// A request slower than this counts as a timeout.
        #[arg(long, default_value = "5s", value_parser = parse_duration)]
        timeout: Duration,
        /// Seed of the choice of requests (default: random, printed).
        #[arg(long)]
        seed: Option<u64>,
        /// Where to send the load (default: the reverse proxy of the config).
        #[arg(long, value_name = "IP:PORT")]
        target: Option<SocketAddr>,
        /// Key for the write API (default: the first of the config's api_keys).
        #[arg(long)]
        api_key: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Up { fresh, no_color } => up(&cli.config, fresh, no_color),
        Command::Load {
            rate,
            duration,
            creates,
            initial_links,
            max_in_flight,
            timeout,
            seed,
            target,
            api_key,
        } => topology(&cli.config).and_then(|topology| {
            let target = match target {
                Some(target) => target,
                None => entry_point(&topology)?,
            };
            let config = LoadConfig {
                target,
                api_key: api_key.unwrap_or_else(|| topology.gateway.api_keys[0].clone()),
                rate,
                duration,
                create_percent: creates,
                initial_links,
                max_in_flight,
                timeout,
                seed: seed.unwrap_or_else(random_seed),
            };
            run_load(config)
        }),
        command => control_command(&cli.config, command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("cluster: {message}");
            ExitCode::FAILURE
        }
    }
}

fn topology(path: &Path) -> Result<Topology, String> {
    Topology::load(path, true).map_err(|e| e.to_string())
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a runtime: {e}"))
}

/// `cluster up`.
fn up(config: &Path, fresh: bool, no_color: bool) -> Result<(), String> {
    let topology = topology(config)?;
    if !config.exists() {
        println!(
            "cluster: no {} here: running the default cluster",
            config.display()
        );
    }
    let color =
        !no_color && std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let say = move |line: &str| {
        let prefix = match color {
            true => "\x1b[1mcluster |\x1b[0m",
            false => "cluster |",
        };
        let _ = writeln!(std::io::stdout().lock(), "{prefix} {line}");
    };
    // Bound first, so that a second `up` fails here, before it empties or starts anything.
    let control_listener = std::net::TcpListener::bind(topology.control_listen).map_err(|e| {
        format!(
            "cannot listen on {} ({e}): is a cluster already running? (`cluster status`)",
            topology.control_listen
        )
    })?;
    if fresh && topology.data_dir.exists() {
        std::fs::remove_dir_all(&topology.data_dir)
            .map_err(|e| format!("cannot empty {}: {e}", topology.data_dir.display()))?;
    }
    let binaries = match std::env::var_os("CARGO") {
        Some(_) => {
            say("building the servers (the first build takes several minutes)");
            Binaries::build(true)?
        }
        None => {
            let exe = std::env::current_exe().map_err(|e| e.to_string())?;
            Binaries::in_dir(exe.parent().unwrap_or(Path::new(".")))?
        }
    };
    let started = Instant::now();
    let options = Options {
        echo: true,
        color,
        notices: Arc::new(say),
        seed: random_seed(),
    };
    let cluster = Arc::new(Cluster::start(topology, &binaries, options)?);
    let runtime = runtime()?;
    let demo = runtime.block_on(create_demo_link(cluster.topology()));
    print_banner(&cluster, config, started.elapsed(), demo.as_deref());
    runtime.block_on(async {
        control_listener
            .set_nonblocking(true)
            .map_err(|e| e.to_string())?;
        let listener =
            tokio::net::TcpListener::from_std(control_listener).map_err(|e| e.to_string())?;
        let stop = tokio::sync::Notify::new();
        let serving = control::serve(listener, cluster.clone(), stop.notified());
        tokio::pin!(serving);
        tokio::select! {
            result = &mut serving => return result,
            () = shutdown_signal() => {}
        }
        say("stopping: the entry point first, then inward (Ctrl-C again kills everything now)");
        stop.notify_one();
        let _ = serving.await;
        let draining = tokio::task::spawn_blocking(move || cluster.stop());
        tokio::select! {
            _ = draining => say("stopped"),
            () = shutdown_signal() => {
                say("killing every process");
                // Every child dies with this process (the harness asks the kernel for it).
                std::process::exit(130);
            }
        }
        Ok(())
    })
}

/// SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// Creates the link `hello` so that the printed `curl` works at once; a `409` means an
/// earlier run made it. Returns a warning when neither happened.
async fn create_demo_link(topology: &Topology) -> Option<String> {
    let client = http1::Client::new(http1::ClientConfig {
        response_header_timeout: Duration::from_secs(5),
        ..http1::ClientConfig::default()
    })
    .expect("valid client settings");
    let body = r#"{"url": "https://example.com/", "alias": "hello"}"#;
    let request = load::create_request(body.to_owned(), &topology.gateway.api_keys[0], None);
    match client.send(topology.entry(), request).await {
        Ok(response) if matches!(response.status().as_u16(), 201 | 409) => None,
        Ok(response) => Some(format!(
            "creating the demo link `hello` answered {}",
            response.status()
        )),
        Err(e) => Some(format!("creating the demo link `hello` failed: {e}")),
    }
}

/// How this program is invoked again from a second terminal.
fn invocation(config: &Path) -> String {
    let base = match std::env::var_os("CARGO") {
        Some(_) if cfg!(debug_assertions) => "cargo run --bin cluster --".to_owned(),
        Some(_) => "cargo run --release --bin cluster --".to_owned(),
        None => std::env::current_exe()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| "cluster".into()),
    };
    match config == Path::new("cluster.toml") {
        true => base,
        false => format!("{base} --config {}", config.display()),
    }
}

fn print_banner(cluster: &Cluster, config: &Path, took: Duration, warning: Option<&str>) {
    let topology = cluster.topology();
    let entry = topology.entry();
    let mut out = String::new();
    out.push_str(&format!(
        "\nThe cluster is up: {} processes, ready in {:.1} s.\n\n",
        topology.instances.len(),
        took.as_secs_f64()
    ));
    out.push_str(&format!(
        "  {:<18} {:<18} {}\n",
        "process", "listen", "admin (/metrics, /healthz, /readyz)"
    ));
    for instance in &topology.instances {
        out.push_str(&format!(
            "  {:<18} {:<18} {}\n",
            instance.name,
            instance.listen.to_string(),
            instance.admin_listen
        ));
    }
    out.push_str(&format!(
        "  {:<18} {:<18} (this launcher: `cluster status`, `kill`, ...)\n",
        "control",
        topology.control_listen.to_string()
    ));
    if let Some(warning) = warning {
        out.push_str(&format!("\nwarning: {warning}\n"));
    }
    let key = &topology.gateway.api_keys[0];
    let me = invocation(config);
    out.push_str(&format!(
        "\nTry, from another terminal in this directory:\n\
         \x20 curl -i http://{entry}/hello\n\
         \x20 curl -s -X POST http://{entry}/api/v1/links -H '{API_KEY_HEADER}: {key}' -H 'content-type: application/json' -d '{{\"url\": \"https://example.org/\"}}'\n\
         \x20 curl -s http://{entry}/api/v1/links/hello\n"
    ));
    if let Some(kv) = topology.of(Kind::KvStore).next() {
        out.push_str(&format!(
            "  redis-cli -p {} dbsize            (redis-cli from the redis-tools package)\n",
            kv.listen.port()
        ));
    }
    if let Some(broker) = topology.of(Kind::MessageBroker).next() {
        out.push_str(&format!(
            "  cargo run --release -p message-broker --bin broker-cli -- --broker {} consume clicks --from earliest\n",
            broker.listen
        ));
    }
    out.push_str(&format!(
        "  {me} status\n\
         \x20 {me} load --rate 200 --duration 60s\n\
         \x20 {me} kill url-shortener-1\n\
         \x20 {me} restart url-shortener-1\n\
         \x20 {me} partition api-gateway kv-store\n\
         \x20 {me} latency reverse-proxy url-shortener 300ms\n\
         \x20 {me} heal\n\
         The write API's consumer is `{CONSUMER}`; the generated configs are under {}.\n\
         Ctrl-C here drains and stops the cluster.\n",
        topology.data_dir.display()
    ));
    let _ = writeln!(std::io::stdout().lock(), "{out}");
}

/// The subcommands that go through a running launcher.
fn control_command(config: &Path, command: Command) -> Result<(), String> {
    let topology = topology(config)?;
    let client = ControlClient::new(topology.control_listen);
    let runtime = runtime()?;
    let operation = match command {
        Command::Status { json } => {
            let status = runtime
                .block_on(client.status())
                .map_err(|e| e.to_string())?;
            match json {
                true => println!(
                    "{}",
                    serde_json::to_string_pretty(&status).expect("plain structs serialize")
                ),
                false => print!("{}", status_table(&status)),
            }
            return Ok(());
        }
        Command::Kill { name } => Operation::Kill(name),
        Command::Pause { name } => Operation::Pause(name),
        Command::Resume { name } => Operation::Resume(name),
        Command::Restart { name } => Operation::Restart(name),
        Command::Partition { a, b } => Operation::Partition(a, b),
        Command::Heal { a: None, b: None } => Operation::Heal(None),
        Command::Heal {
            a: Some(a),
            b: Some(b),
        } => Operation::Heal(Some((a, b))),
        Command::Heal { .. } => return Err("heal takes two names, or none for everything".into()),
        Command::Latency { a, b, delay } => Operation::Latency(a, b, delay.as_millis() as u64),
        Command::Up { .. } | Command::Load { .. } => unreachable!("handled in main"),
    };
    let message = runtime
        .block_on(client.command(&operation))
        .map_err(|e| e.to_string())?;
    println!("{message}");
    Ok(())
}

/// The status as a table: every process, then the links that are not plainly up.
fn status_table(status: &ClusterStatus) -> String {
    let mut out = format!(
        "{:<18} {:<9} {:<6} {:>8} {:>8}  {:<18} {}\n",
        "process", "state", "ready", "pid", "restarts", "listen", "last exit"
    );
    for member in &status.members {
        let ready = match member.ready {
            Some(true) => "yes",
            Some(false) => "no",
            None => "-",
        };
        out.push_str(&format!(
            "{:<18} {:<9} {:<6} {:>8} {:>8}  {:<18} {}\n",
            member.name,
            member.state.to_string(),
            ready,
            member.pid,
            member.restarts,
            member.listen.to_string(),
            member.last_exit.as_deref().unwrap_or("")
        ));
    }
    let mut normal = 0;
    let mut faults = String::new();
    for link in &status.links {
        let mut notes = Vec::new();
        if let Some(error) = &link.error {
            notes.push(format!("error: {error}"));
        }
        if link.partitioned {
            notes.push("partitioned".to_owned());
        } else if !link.up {
            notes.push("down (its server is not running)".to_owned());
        }
        if link.latency_ms > 0 {
            notes.push(format!("+{} ms", link.latency_ms));
        }
        match notes.is_empty() {
            true => normal += 1,
            false => faults.push_str(&format!(
                "  {} -> {}{}  {}\n",
                link.client,
                link.server,
                match link.port {
                    Port::Service => "",
                    Port::Admin => " (admin)",
                },
                notes.join(", ")
            )),
        }
    }
    out.push_str(&format!(
        "\nlinks: {} up and clean, {} with a fault\n{faults}",
        normal,
        status.links.len() - normal
    ));
    out
}

/// The reverse proxy's address: the running launcher's word for it (the file may say port 0,
/// a free port chosen at start), or the file's when no launcher answers (a cluster started
/// some other way).
fn entry_point(topology: &Topology) -> Result<SocketAddr, String> {
    let client = ControlClient::new(topology.control_listen);
    if let Ok(status) = runtime()?.block_on(client.status()) {
        let proxy = status
            .members
            .iter()
            .find(|m| m.kind == Kind::ReverseProxy.binary());
        if let Some(proxy) = proxy {
            return Ok(proxy.listen);
        }
    }
    Ok(topology.entry())
}

/// `cluster load`.
fn run_load(config: LoadConfig) -> Result<(), String> {
    println!(
        "load: {}/s for {} s through {} ({}% creations), seed {}",
        config.rate,
        config.duration.as_secs(),
        config.target,
        config.create_percent,
        config.seed
    );
    let report = runtime()?.block_on(load::run(config, |progress| {
        let _ = writeln!(std::io::stdout().lock(), "{}", progress.line());
    }))?;
    print!("{}", report.summary());
    Ok(())
}

/// A seed from the operating system's random source.
fn random_seed() -> u64 {
    use rand::TryRng;
    rand::rngs::SysRng
        .try_next_u64()
        .expect("the OS random source failed")
}

/// `200ms`, `1.5s`, `2m`; a bare number is milliseconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (200ms, 1.5s, 2m)"))?;
    let seconds = match unit {
        "" | "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        _ => return Err(format!("{text:?}: the unit must be ms, s or m")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("{text:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_ms_s_and_m() {
        assert_eq!(parse_duration("200ms"), Ok(Duration::from_millis(200)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("250"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("5h").is_err());
    }
}
