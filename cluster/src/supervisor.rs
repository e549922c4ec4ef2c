//! Starting, watching, faulting and stopping the cluster's processes.
//!
//! ```text
//!   start:  links (all down) ─▶ tier 0: kv-store, message-broker ─▶ tier 1: url-shorteners
//!           ─▶ tier 2: api-gateways ─▶ tier 3: reverse-proxy      (each tier spawned at once,
//!           then every member waited for on GET /readyz; a member's links come up when it is ready)
//!
//!   member states:
//!                   ready               pause              resume
//!     starting ───────────▶ running ───────────▶ paused ───────────▶ running
//!        │ not ready            │  kill (SIGKILL), from running or paused
//!        │                      ├───────────────────────────────────────▶ killed
//!        │                      │  restart or stop: SIGTERM, drain
//!        │                      ├─────────────▶ stopping ───────────────▶ stopped
//!        │                      │  dies by itself (running or paused; seen by the watcher)
//!        └──────────────────────┴───────────────────────────────────────▶ exited
//!
//!     restart: killed, stopped, exited ─▶ starting; with restart = "on-failure", an exited
//!     member is started again by itself, after RESTART_DELAY, doubling up to RESTART_DELAY_MAX
//!     while it fails to start
//!
//!   stop:   tiers in reverse: SIGTERM, up to STOP_TIMEOUT to drain, then SIGKILL
//! ```
//!
//! Every operation is synchronous and returns once done (a restart, once the member is ready
//! again). A member's `process` lock is held for a whole operation, so operations on one
//! member happen one at a time; its `inner` lock, which guards what `status` shows, is held
//! only for moments, so `status` never waits on a slow restart. A watcher thread notices
//! members that exit by themselves. Once the cluster is stopping, nothing starts a process.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use harness::Process;
use serde::{Deserialize, Serialize};

use crate::links::{Link, LinkStatus};
use crate::render;
use crate::topology::{Instance, Kind, Port, RestartPolicy, Topology};

/// Longest a member may take to answer `GET /readyz` with 200 after it is spawned.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Longest a member may take to drain and exit after SIGTERM before it gets SIGKILL.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// Pause before a member that exited by itself is started again (`restart = "on-failure"`).
pub const RESTART_DELAY: Duration = Duration::from_secs(1);

/// Longest pause between two attempts to start a member that keeps failing to start.
pub const RESTART_DELAY_MAX: Duration = Duration::from_secs(30);

/// How often the watcher looks for members that exited by themselves.
const WATCH_INTERVAL: Duration = Duration::from_millis(100);

/// Pause between two readiness probes.
const READY_POLL_INTERVAL: Duration = Duration::from_millis(25);

/// Longest single readiness or status probe.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// Lines of a member's output quoted when it fails to start.
const FAILURE_LOG_LINES: usize = 30;

/// Where each kind's binary is.
#[derive(Clone, Debug)]
pub struct Binaries {
    paths: BTreeMap<Kind, PathBuf>,
}

impl Binaries {
    /// Builds every server with cargo, in the caller's profile and target directory (see
    /// `harness::try_cargo_bins`): for the launcher under `cargo run`, and for tests.
    pub fn build(show_progress: bool) -> Result<Binaries, String> {
        let names = Kind::ALL.map(Kind::binary);
        let paths = harness::try_cargo_bins(&names, show_progress)?;
        Ok(Binaries {
            paths: Kind::ALL.into_iter().zip(paths).collect(),
        })
    }

    /// The servers in `dir` (beside an installed launcher); fails naming the first missing.
    pub fn in_dir(dir: &Path) -> Result<Binaries, String> {
        let mut paths = BTreeMap::new();
        for kind in Kind::ALL {
            let path = dir.join(format!("{}{}", kind.binary(), std::env::consts::EXE_SUFFIX));
            if !path.is_file() {
                return Err(format!(
                    "{} not found (build every server with `cargo build --release --bins`)",
                    path.display()
                ));
            }
            paths.insert(kind, path);
        }
        Ok(Binaries { paths })
    }

    fn of(&self, kind: Kind) -> &Path {
        &self.paths[&kind]
    }
}

/// How [`Cluster::start`] presents the processes.
pub struct Options {
    /// Echo every process's output as it arrives, each line after `name | `.
    pub echo: bool,
    /// Colour those prefixes (ANSI), one colour per process.
    pub color: bool,
    /// Told what happens: members ready, exiting, restarting. One line each.
    pub notices: Arc<dyn Fn(&str) + Send + Sync>,
    /// Seeds the links' latency jitter.
    pub seed: u64,
}

impl Options {
    /// Nothing echoed, notices to stderr: for tests, whose harness captures stderr.
    pub fn quiet() -> Options {
        Options {
            echo: false,
            color: false,
            notices: Arc::new(|line| eprintln!("cluster: {line}")),
            seed: 0,
        }
    }
}

/// What a member is doing, as far as the launcher knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Starting,
    Running,
    Paused,
    /// Draining after SIGTERM, on its way to `stopped`.
    Stopping,
    Stopped,
    /// By `kill`.
    Killed,
    /// By itself.
    Exited,
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            State::Starting => "starting",
            State::Running => "running",
            State::Paused => "paused",
            State::Stopping => "stopping",
            State::Stopped => "stopped",
            State::Killed => "killed",
            State::Exited => "exited",
        })
    }
}

impl State {
    /// Whether the process is alive (a paused one is).
    fn is_alive(self) -> bool {
        matches!(
            self,
            State::Starting | State::Running | State::Paused | State::Stopping
        )
    }
}

/// One member as `cluster status` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberStatus {
    pub name: String,
    pub kind: String,
    pub pid: u32,
    pub state: State,
    /// `GET /readyz` answered 200 just now; `None` when it was not asked (not alive).
    pub ready: Option<bool>,
    /// Starts after the first.
    pub restarts: u32,
    /// How the last incarnation ended, once one has.
    pub last_exit: Option<String>,
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
}

/// Everything `cluster status` shows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterStatus {
    pub members: Vec<MemberStatus>,
    pub links: Vec<LinkStatus>,
}

/// Why an operation was refused or failed; the text is for a person.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    /// The request names nothing, or asks what the member's state does not allow.
    #[error("{0}")]
    Refused(String),
    /// It was tried and went wrong.
    #[error("{0}")]
    Failed(String),
}

/// The running cluster. Dropping it kills every process (SIGKILL); [`Cluster::stop`] drains
/// them in order first. Shared between threads behind an `Arc` (the control API's handlers).
pub struct Cluster {
    shared: Arc<Shared>,
    watcher: Mutex<Option<JoinHandle<()>>>,
}

struct Shared {
    topology: Topology,
    members: Vec<Member>,
    links: Vec<Link>,
    notices: Arc<dyn Fn(&str) + Send + Sync>,
    stopping: AtomicBool,
}

struct Member {
    instance: Instance,
    /// Held for a whole operation on the member, so that one runs at a time.
    process: Mutex<Process>,
    /// What `status` reads; held only for moments.
    inner: Mutex<Inner>,
}

struct Inner {
    state: State,
    pid: u32,
    restarts: u32,
    last_exit: Option<String>,
}

impl Cluster {
    /// Starts every instance of `topology`, tier by tier, each tier once the previous one is
    /// ready. On failure the processes started so far are killed and the error says which
    /// member failed, how, and what it printed last.
    pub fn start(
        topology: Topology,
        binaries: &Binaries,
        options: Options,
    ) -> Result<Cluster, String> {
        let links = match topology.fault_links {
            true => start_links(&topology, options.seed),
            false => Vec::new(),
        };
        let route = |client: &str, server: &str, port: Port| -> SocketAddr {
            let link = links
                .iter()
                .find(|l| l.client == client && l.server == server && l.port == port);
            match (link, topology.instance(server)) {
                (Some(link), _) => link.listen_addr(),
                (None, Some(server)) if port == Port::Admin => server.admin_listen,
                (None, Some(server)) => server.listen,
                (None, None) => unreachable!("routes lead to instances of the topology"),
            }
        };
        let width = topology.instances.iter().map(|i| i.name.len()).max();
        let mut members: Vec<Member> = Vec::new();
        let stopping = AtomicBool::new(false);
        let tiers = topology.instances.iter().map(|i| i.kind.tier()).max();
        for tier in 0..=tiers.unwrap_or(0) {
            let first_of_tier = members.len();
            for (index, instance) in topology.instances.iter().enumerate() {
                if instance.kind.tier() != tier {
                    continue;
                }
                let mut spec =
                    render::process_spec(&topology, instance, binaries.of(instance.kind), &route)
                        .map_err(|e| format!("{}: cannot write its config: {e}", instance.name))?;
                if options.echo {
                    let prefix = format!("{:width$} | ", instance.name, width = width.unwrap_or(0));
                    spec = spec.echo(paint(&prefix, index, options.color));
                }
                let process = Process::spawn(spec).map_err(|e| e.to_string())?;
                members.push(Member {
                    instance: instance.clone(),
                    inner: Mutex::new(Inner {
                        state: State::Starting,
                        pid: process.pid(),
                        restarts: 0,
                        last_exit: None,
                    }),
                    process: Mutex::new(process),
                });
            }
            let started = Instant::now();
            for member in &members[first_of_tier..] {
                wait_ready(member, &mut lock(&member.process), &stopping)?;
                let pid = {
                    let mut inner = member.lock();
                    inner.state = State::Running;
                    inner.pid
                };
                set_server_up(&links, &member.instance.name, true);
                (options.notices)(&format!(
                    "{} ready on {} in {} ms (pid {pid})",
                    member.instance.name,
                    member.instance.listen,
                    started.elapsed().as_millis(),
                ));
            }
        }
        let shared = Arc::new(Shared {
            topology,
            members,
            links,
            notices: options.notices,
            stopping,
        });
        let watcher = {
            let shared = shared.clone();
            thread::Builder::new()
                .name("cluster-watcher".into())
                .spawn(move || watch(&shared))
                .map_err(|e| format!("cannot start the watcher thread: {e}"))?
        };
        Ok(Cluster {
            shared,
            watcher: Mutex::new(Some(watcher)),
        })
    }

    pub fn topology(&self) -> &Topology {
        &self.shared.topology
    }

    /// Every member and link, with each alive member's readiness probed now.
    pub fn status(&self) -> ClusterStatus {
        let members = self
            .shared
            .members
            .iter()
            .map(|member| {
                let (pid, state, restarts, last_exit) = {
                    let inner = member.lock();
                    (
                        inner.pid,
                        inner.state,
                        inner.restarts,
                        inner.last_exit.clone(),
                    )
                };
                let admin = member.instance.admin_listen;
                let ready = state.is_alive().then(|| {
                    harness::http_get_status(admin, "/readyz", PROBE_TIMEOUT)
                        .is_ok_and(|s| s == 200)
                });
                MemberStatus {
                    name: member.instance.name.clone(),
                    kind: member.instance.kind.to_string(),
                    pid,
                    state,
                    ready,
                    restarts,
                    last_exit,
                    listen: member.instance.listen,
                    admin_listen: admin,
                }
            })
            .collect();
        let links = self.shared.links.iter().map(Link::status).collect();
        ClusterStatus { members, links }
    }

    /// SIGKILL: a crash, no drain, no flush.
    pub fn kill(&self, name: &str) -> Result<String, OpError> {
        let member = self.member(name)?;
        let mut process = lock(&member.process);
        let state = member.lock().state;
        if !state.is_alive() {
            return Err(refused_state(name, state));
        }
        // Refuse new connections first, as the dead process's own port will.
        self.shared.set_server_up(name, false);
        let status = process.kill().map_err(failed)?;
        member.set(State::Killed, Some(describe(status)));
        Ok(format!("{name} killed (SIGKILL)"))
    }

    /// SIGSTOP: the process keeps its sockets but answers nothing, like a long GC pause.
    pub fn pause(&self, name: &str) -> Result<String, OpError> {
        let member = self.member(name)?;
        let mut process = lock(&member.process);
        let state = member.lock().state;
        if state != State::Running {
            return Err(refused_state(name, state));
        }
        process.pause().map_err(failed)?;
        member.lock().state = State::Paused;
        Ok(format!(
            "{name} paused (SIGSTOP): connections to it hang until `cluster resume {name}`"
        ))
    }

    /// SIGCONT after a pause.
    pub fn resume(&self, name: &str) -> Result<String, OpError> {
        let member = self.member(name)?;
        let mut process = lock(&member.process);
        let state = member.lock().state;
        if state != State::Paused {
            return Err(refused_state(name, state));
        }
        process.resume().map_err(failed)?;
        member.lock().state = State::Running;
        Ok(format!("{name} resumed (SIGCONT)"))
    }

    /// Stops the member gracefully if it runs (SIGTERM, drain), starts it again with the same
    /// flags, ports and data, and returns once it is ready.
    pub fn restart(&self, name: &str) -> Result<String, OpError> {
        let member = self.member(name)?;
        let shared = &self.shared;
        let mut process = lock(&member.process);
        let alive = member.lock().state.is_alive();
        let stopped = match alive {
            true => Some(shared.stop_member(member, &mut process)),
            false => None,
        };
        shared
            .start_member(member, &mut process)
            .map_err(OpError::Failed)?;
        Ok(match stopped {
            Some(how) => format!("{name} restarted ({how}) and ready"),
            None => format!("{name} started and ready"),
        })
    }

    /// Cuts every link between the members `a` and `b` pick (names or kinds), both ways.
    pub fn partition(&self, a: &str, b: &str) -> Result<String, OpError> {
        let links = self.links_between(a, b)?;
        for link in &links {
            link.set_partitioned(true).map_err(failed)?;
        }
        Ok(format!(
            "partitioned {a} from {b}: {} link(s) cut",
            links.len()
        ))
    }

    /// Heals the links between `a` and `b` (partition and latency), or every link with `None`.
    pub fn heal(&self, between: Option<(&str, &str)>) -> Result<String, OpError> {
        let links = match between {
            Some((a, b)) => self.links_between(a, b)?,
            None => {
                self.check_fault_links()?;
                self.shared.links.iter().collect()
            }
        };
        for link in &links {
            link.set_latency(0).map_err(failed)?;
            link.set_partitioned(false).map_err(failed)?;
        }
        Ok(format!("healed {} link(s)", links.len()))
    }

    /// Adds `latency_ms` to every exchange on the links between `a` and `b`; 0 removes it.
    pub fn latency(&self, a: &str, b: &str, latency_ms: u64) -> Result<String, OpError> {
        let links = self.links_between(a, b)?;
        for link in &links {
            link.set_latency(latency_ms).map_err(failed)?;
        }
        Ok(format!(
            "{latency_ms} ms added to every exchange between {a} and {b} ({} link(s))",
            links.len()
        ))
    }

    /// Drains and stops every member, the entry point first (the reverse of the start order),
    /// so that no member is asked to serve by one that outlives it. Nothing starts after it.
    pub fn stop(&self) {
        self.stop_watching();
        let shared = &self.shared;
        let tiers = shared.members.iter().map(|m| m.instance.kind.tier());
        for tier in (0..=tiers.max().unwrap_or(0)).rev() {
            // One tier's members drain at once.
            thread::scope(|scope| {
                for member in &shared.members {
                    if member.instance.kind.tier() != tier {
                        continue;
                    }
                    scope.spawn(move || {
                        let mut process = lock(&member.process);
                        let alive = member.lock().state.is_alive();
                        if alive {
                            let how = shared.stop_member(member, &mut process);
                            shared.notice(&format!("{} stopped ({how})", member.instance.name));
                        }
                    });
                }
            });
        }
    }

    /// Marks the cluster as stopping and ends the watcher, so that what happens next is
    /// neither reported as unexpected nor undone by a restart.
    fn stop_watching(&self) {
        self.shared.stopping.store(true, Ordering::Relaxed);
        let watcher = lock(&self.watcher).take();
        if let Some(watcher) = watcher {
            let _ = watcher.join();
        }
    }

    fn member(&self, name: &str) -> Result<&Member, OpError> {
        self.shared
            .members
            .iter()
            .find(|m| m.instance.name == name)
            .ok_or_else(|| {
                let names: Vec<_> = self
                    .shared
                    .members
                    .iter()
                    .map(|m| &m.instance.name)
                    .collect();
                OpError::Refused(format!(
                    "no process is called {name:?}; the processes are {names:?}"
                ))
            })
    }

    fn check_fault_links(&self) -> Result<(), OpError> {
        match self.shared.topology.fault_links {
            true => Ok(()),
            false => Err(OpError::Refused(
                "the cluster runs without fault links ([cluster] fault_links = false)".into(),
            )),
        }
    }

    fn links_between(&self, a: &str, b: &str) -> Result<Vec<&Link>, OpError> {
        let topology = &self.shared.topology;
        let (left, right) = (topology.select(a), topology.select(b));
        for (selector, picked) in [(a, &left), (b, &right)] {
            if picked.is_empty() {
                return Err(OpError::Refused(format!(
                    "{selector:?} names no process and no kind of process"
                )));
            }
        }
        self.check_fault_links()?;
        let links: Vec<&Link> = self
            .shared
            .links
            .iter()
            .filter(|link| link.joins(&left, &right))
            .collect();
        if links.is_empty() {
            return Err(OpError::Refused(format!(
                "{a} and {b} do not talk to each other: no link between them"
            )));
        }
        Ok(links)
    }
}

impl Shared {
    /// SIGTERM, then SIGKILL past [`STOP_TIMEOUT`]; says how it went. The caller holds the
    /// member's process lock. The member ends `stopped`, or `exited` if it had already died.
    fn stop_member(&self, member: &Member, process: &mut Process) -> String {
        member.lock().state = State::Stopping;
        // Stop new connections now, as the server's own listener does on SIGTERM.
        self.set_server_up(&member.instance.name, false);
        let (state, status, how) = match process.terminate(STOP_TIMEOUT) {
            Ok(harness::Termination::Exited(status)) => (
                State::Stopped,
                Some(status),
                format!("SIGTERM, drained, {}", describe(status)),
            ),
            Ok(harness::Termination::Killed(status)) => (
                State::Stopped,
                Some(status),
                format!(
                    "SIGTERM, still running after {} s, then SIGKILL",
                    STOP_TIMEOUT.as_secs()
                ),
            ),
            // It died just before (and the watcher had not seen it yet).
            Err(_) => {
                let status = process.wait_exit(Duration::ZERO).ok().flatten();
                let how = status.map_or_else(|| "exited".to_owned(), describe);
                (State::Exited, status, format!("it had already {how}"))
            }
        };
        member.set(state, status.map(describe));
        how
    }

    /// Spawns the member again and waits until it is ready. The caller holds its process
    /// lock. Refused once the cluster is stopping.
    fn start_member(&self, member: &Member, process: &mut Process) -> Result<(), String> {
        if self.stopping.load(Ordering::Relaxed) {
            return Err("the cluster is stopping".into());
        }
        process.restart().map_err(|e| e.to_string())?;
        {
            let mut inner = member.lock();
            inner.state = State::Starting;
            inner.pid = process.pid();
            inner.restarts += 1;
        }
        if let Err(e) = wait_ready(member, process, &self.stopping) {
            let status = match process.is_running() {
                true => process.kill().ok(),
                false => process.wait_exit(Duration::ZERO).ok().flatten(),
            };
            member.set(State::Exited, status.map(describe));
            return Err(e);
        }
        member.lock().state = State::Running;
        self.set_server_up(&member.instance.name, true);
        Ok(())
    }

    fn set_server_up(&self, name: &str, up: bool) {
        set_server_up(&self.links, name, up);
    }

    fn notice(&self, line: &str) {
        (self.notices)(line);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop_watching();
        // The processes are killed as their handles drop with the last `Arc<Shared>`.
    }
}

impl Member {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        lock(&self.inner)
    }

    fn set(&self, state: State, last_exit: Option<String>) {
        let mut inner = self.lock();
        inner.state = state;
        inner.last_exit = last_exit;
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn start_links(topology: &Topology, seed: u64) -> Vec<Link> {
    topology
        .connections()
        .into_iter()
        .enumerate()
        .map(|(i, (client, server, port))| {
            let instance = topology.instance(&server).expect("a named server");
            let addr = match port {
                Port::Service => instance.listen,
                Port::Admin => instance.admin_listen,
            };
            Link::start(&client, &server, port, addr, seed.wrapping_add(i as u64))
        })
        .collect()
}

/// Raises or lowers every link to `name`. A link that cannot listen again says so in
/// `cluster status`.
fn set_server_up(links: &[Link], name: &str, up: bool) {
    for link in links.iter().filter(|l| l.server == name) {
        let _ = link.set_server_up(up);
    }
}

/// Polls the member's `/readyz` until it answers 200; fails early if the process exits or
/// the cluster starts stopping (which is what `harness::Process::wait_ready` cannot know).
fn wait_ready(member: &Member, process: &mut Process, stopping: &AtomicBool) -> Result<(), String> {
    let deadline = Instant::now() + READY_TIMEOUT;
    let admin = member.instance.admin_listen;
    let name = &member.instance.name;
    loop {
        if !process.is_running() {
            let status = process.wait_exit(Duration::ZERO).ok().flatten();
            let how = status.map_or_else(|| "exited".to_owned(), describe);
            return Err(format!(
                "{name} {how} before it was ready; its last lines:\n{}",
                tail(&process.log(), FAILURE_LOG_LINES)
            ));
        }
        if stopping.load(Ordering::Relaxed) {
            return Err(format!("{name}: the cluster is stopping"));
        }
        let last = match harness::http_get_status(admin, "/readyz", PROBE_TIMEOUT) {
            Ok(200) => return Ok(()),
            Ok(status) => format!("GET /readyz answered {status}"),
            Err(e) => format!("GET /readyz: {e}"),
        };
        if Instant::now() >= deadline {
            return Err(format!(
                "{name} was not ready on {admin} after {} s (last probe: {last}); its last lines:\n{}",
                READY_TIMEOUT.as_secs(),
                tail(&process.log(), FAILURE_LOG_LINES)
            ));
        }
        thread::sleep(READY_POLL_INTERVAL);
    }
}

/// The watcher: reports members that exit by themselves and restarts them if asked to.
fn watch(shared: &Arc<Shared>) {
    while !shared.stopping.load(Ordering::Relaxed) {
        for (index, member) in shared.members.iter().enumerate() {
            // A member under an operation is that operation's business.
            let mut process = match member.process.try_lock() {
                Ok(process) => process,
                Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
                Err(TryLockError::WouldBlock) => continue,
            };
            let state = member.lock().state;
            if !matches!(state, State::Running | State::Paused) || process.is_running() {
                continue;
            }
            let status = process.wait_exit(Duration::ZERO).ok().flatten();
            drop(process);
            let how = status.map_or_else(|| "exited".to_owned(), describe);
            member.set(State::Exited, Some(how.clone()));
            let name = &member.instance.name;
            shared.set_server_up(name, false);
            let policy = member.instance.restart;
            let next = match policy {
                RestartPolicy::No => format!("`cluster restart {name}` starts it again"),
                RestartPolicy::OnFailure => {
                    format!("restarting in {} s", RESTART_DELAY.as_secs())
                }
            };
            shared.notice(&format!("{name} {how} unexpectedly; {next}"));
            if policy == RestartPolicy::OnFailure {
                let shared = shared.clone();
                let _ = thread::Builder::new()
                    .name(format!("cluster-restart {name}"))
                    .spawn(move || restart_after_failure(&shared, index));
            }
        }
        thread::sleep(WATCH_INTERVAL);
    }
}

/// Starts an exited member again, waiting longer after each failed start, until it is ready,
/// someone else starts or stops it, or the cluster stops.
fn restart_after_failure(shared: &Shared, index: usize) {
    let member = &shared.members[index];
    let name = &member.instance.name;
    let mut delay = RESTART_DELAY;
    loop {
        thread::sleep(delay);
        let mut process = lock(&member.process);
        // Checked under the lock: `stop` takes it too, so it never misses a start.
        let state = member.lock().state;
        if shared.stopping.load(Ordering::Relaxed) || state != State::Exited {
            return;
        }
        match shared.start_member(member, &mut process) {
            Ok(()) => return shared.notice(&format!("{name} restarted and ready")),
            Err(e) => {
                delay = (delay * 2).min(RESTART_DELAY_MAX);
                shared.notice(&format!(
                    "restarting {e}\n(trying again in {} s)",
                    delay.as_secs()
                ));
            }
        }
    }
}

fn refused_state(name: &str, state: State) -> OpError {
    let hint = match state {
        State::Paused => format!(" (`cluster resume {name}` first)"),
        State::Killed | State::Exited | State::Stopped => {
            format!(" (`cluster restart {name}` starts it)")
        }
        _ => String::new(),
    };
    OpError::Refused(format!("{name} is {state}{hint}"))
}

fn failed(error: harness::Error) -> OpError {
    OpError::Failed(error.to_string())
}

/// `exited with status 0`, `killed by signal 9 (SIGKILL)`.
fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;

    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}{}", signal_name(signal)),
        (None, None) => format!("ended ({status})"),
    }
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        9 => " (SIGKILL)",
        15 => " (SIGTERM)",
        6 => " (SIGABRT)",
        11 => " (SIGSEGV)",
        _ => "",
    }
}

fn tail(log: &str, lines: usize) -> String {
    let all: Vec<&str> = log.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The prefix in the colour of member `index`, when colours are on.
fn paint(prefix: &str, index: usize, color: bool) -> String {
    /// Cyan, yellow, green, magenta, blue, red, then their bright forms.
    const PALETTE: [u8; 12] = [36, 33, 32, 35, 34, 31, 96, 93, 92, 95, 94, 91];
    match color {
        true => format!("\x1b[{}m{prefix}\x1b[0m", PALETTE[index % PALETTE.len()]),
        false => prefix.to_owned(),
    }
}
