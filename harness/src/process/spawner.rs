//! Starting children so that they die with the test process.
//!
//! [`crate::Process`] kills its child on drop, but a drop never runs when the test process itself
//! is killed (a runner's timeout, Ctrl-C, an abort). On Linux the child therefore asks the kernel,
//! between `fork` and `exec`, to send it SIGKILL when its parent dies (`PR_SET_PDEATHSIG`).
//!
//! # Why a dedicated thread spawns every child
//!
//! "Parent" in `PR_SET_PDEATHSIG` means the *thread* that forked, not the process: the signal
//! fires when that thread exits. Test threads exit at the end of each test, and tokio's blocking
//! pool threads exit when idle, either of which would kill a server that is still in use (a
//! `Process` may move between threads). So every child is forked by one long-lived thread that
//! runs until the process ends, and callers hand it their `Command` over a bounded channel and
//! wait for the `Child`.
//!
//! # A process group of its own
//!
//! Each child also gets its own process group. A terminal's Ctrl-C sends SIGINT to the whole
//! foreground group; without this, every server would get it at the same moment as the test or
//! the cluster launcher that started them, and they could not be stopped in order (the
//! launcher drains the proxy before the services behind it). Signals the harness sends go to
//! the child's pid, so they are unaffected.

use std::io;
use std::process::{Child, Command};
use std::sync::OnceLock;
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::thread;

/// Spawn requests that may wait for the spawner thread. Each caller blocks until its child is
/// started, so more than this many only means callers briefly wait to enqueue.
const SPAWN_QUEUE_MAX: usize = 16;

struct SpawnRequest {
    command: Command,
    reply: SyncSender<io::Result<Child>>,
}

static SPAWNER: OnceLock<SyncSender<SpawnRequest>> = OnceLock::new();

/// Spawns `command` from the long-lived spawner thread, arranging on Linux that the child is
/// killed if this process dies.
pub(crate) fn spawn(mut command: Command) -> io::Result<Child> {
    die_with_parent(&mut command);
    own_process_group(&mut command);
    let spawner = SPAWNER.get_or_init(start_spawner);
    let (reply, reply_rx) = mpsc::sync_channel(1);
    spawner
        .send(SpawnRequest { command, reply })
        .map_err(|_| io::Error::other("the harness spawner thread is gone"))?;
    reply_rx
        .recv()
        .map_err(|_| io::Error::other("the harness spawner thread dropped a request"))?
}

fn start_spawner() -> SyncSender<SpawnRequest> {
    let (sender, requests) = mpsc::sync_channel(SPAWN_QUEUE_MAX);
    thread::Builder::new()
        .name("harness-spawner".into())
        .spawn(move || serve(requests))
        .expect("cannot start the harness spawner thread");
    sender
}

fn serve(requests: Receiver<SpawnRequest>) {
    for mut request in requests {
        // The requester may have given up (it never does today); the child is then dropped,
        // which std documents as leaving it running, so kill it rather than orphan it.
        let result = request.command.spawn();
        if let Err(mpsc::SendError(Ok(mut child))) = request.reply.send(result) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[cfg(unix)]
fn own_process_group(command: &mut Command) {
    use std::os::unix::process::CommandExt;

    command.process_group(0);
}

#[cfg(not(unix))]
fn own_process_group(_command: &mut Command) {}

#[cfg(target_os = "linux")]
fn die_with_parent(command: &mut Command) {
    use std::os::unix::process::CommandExt;

    let parent = std::process::id() as libc::pid_t;
    let in_child = move || {
        // SAFETY: runs in the forked child before exec, where only async-signal-safe calls are
        // allowed; prctl, getppid and _exit are, and no memory is allocated.
        unsafe {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died between fork and prctl; the signal would then never come.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
        }
        Ok(())
    };
    // SAFETY: the closure obeys pre_exec's contract (see above) and captures only a pid_t.
    unsafe {
        command.pre_exec(in_child);
    }
}

#[cfg(not(target_os = "linux"))]
fn die_with_parent(_command: &mut Command) {
    // No portable equivalent: elsewhere a child outlives a test process that is killed.
}
