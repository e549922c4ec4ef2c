//! A real server process (`bench`'s `http-hello`) crashed, frozen, stopped and restarted.

use std::net::SocketAddr;
use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use harness::{Error, Process, ProcessSpec, Termination, cargo_bin, free_addr, http_get_status};

/// Upper bound for a freshly spawned server to answer `/readyz`.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Upper bound for one request to a running server.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

struct Hello {
    process: Process,
    listen: SocketAddr,
    admin: SocketAddr,
}

/// Starts `http-hello` on two fresh ports and waits until it is ready.
fn start_hello(name: &str) -> Hello {
    let (listen, admin) = (free_addr(), free_addr());
    let spec = ProcessSpec::new(name, cargo_bin("http-hello"))
        .arg("--listen")
        .arg(listen.to_string())
        .arg("--admin-listen")
        .arg(admin.to_string());
    let mut process = Process::spawn(spec).unwrap();
    process.wait_ready(admin, READY_TIMEOUT).unwrap();
    Hello {
        process,
        listen,
        admin,
    }
}

fn pid_is_alive(pid: u32) -> bool {
    // SAFETY: signal 0 only checks for existence and permission; it delivers nothing.
    unsafe { libc::kill(pid as libc::pid_t, 0) == 0 }
}

#[test]
fn a_killed_server_restarts_on_the_same_address_with_a_new_pid() {
    let Hello {
        mut process,
        listen,
        admin,
    } = start_hello("hello-kill");
    assert_eq!(http_get_status(listen, "/", REQUEST_TIMEOUT).unwrap(), 200);
    let first_pid = process.pid();

    let status = process.kill().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    assert!(!process.is_running());
    assert!(matches!(process.kill(), Err(Error::NotRunning { .. })));

    process.restart().unwrap();
    process.wait_ready(admin, READY_TIMEOUT).unwrap();
    assert_ne!(process.pid(), first_pid);
    assert!(process.is_running());
    assert_eq!(http_get_status(listen, "/", REQUEST_TIMEOUT).unwrap(), 200);
    assert!(process.log().contains("[hello-kill] (harness: spawned pid"));
}

#[test]
fn restart_refuses_while_the_server_still_runs() {
    let mut hello = start_hello("hello-still-running");
    let refused = hello.process.restart();
    assert!(matches!(refused, Err(Error::StillRunning { .. })));
}

#[test]
fn a_paused_server_times_out_and_answers_once_resumed() {
    let mut hello = start_hello("hello-pause");
    hello.process.pause().unwrap();
    assert!(
        hello.process.is_running(),
        "a stopped process is still alive"
    );
    let frozen = http_get_status(hello.listen, "/", Duration::from_millis(300));
    assert!(frozen.is_err(), "a SIGSTOPped server answered: {frozen:?}");

    hello.process.resume().unwrap();
    assert_eq!(
        http_get_status(hello.listen, "/", REQUEST_TIMEOUT).unwrap(),
        200
    );
}

#[test]
fn terminate_returns_the_exit_status() {
    let mut hello = start_hello("hello-term");
    let termination = hello.process.terminate(Duration::from_secs(10)).unwrap();
    let Termination::Exited(status) = termination else {
        panic!("needed SIGKILL: {termination:?}")
    };
    // http-hello drains on SIGTERM and exits 0, as every server here does.
    assert!(status.success(), "{status}");
    assert!(!hello.process.is_running());
}

#[test]
fn a_dropped_process_leaves_no_live_pid() {
    let hello = start_hello("hello-drop");
    let pid = hello.process.pid();
    assert!(pid_is_alive(pid));
    drop(hello);
    assert!(!pid_is_alive(pid), "pid {pid} survived its handle");
}

#[test]
fn waiting_fails_early_with_the_output_of_a_server_that_exits() {
    let admin = free_addr();
    let spec = ProcessSpec::new("hello-bad-flag", cargo_bin("http-hello")).arg("--bogus-flag");
    let mut process = Process::spawn(spec).unwrap();
    match process.wait_ready(admin, READY_TIMEOUT) {
        Err(Error::ExitedEarly { status, log, .. }) => {
            assert!(!status.success());
            assert!(log.contains("--bogus-flag"), "log:\n{log}");
        }
        other => panic!("expected ExitedEarly, got {other:?}"),
    }
}

#[test]
fn wait_exit_reports_an_exit_that_came_before_the_call() {
    let spec = ProcessSpec::new("exits-at-once", "/bin/sh").args(["-c", "exit 3"]);
    let mut process = Process::spawn(spec).unwrap();
    // Let it exit first, and make the harness notice (and reap) it before `wait_exit`.
    let deadline = std::time::Instant::now() + REQUEST_TIMEOUT;
    while process.is_running() {
        assert!(std::time::Instant::now() < deadline, "sh did not exit");
        std::thread::sleep(Duration::from_millis(10));
    }
    let status = process.wait_exit(Duration::ZERO).unwrap();
    assert_eq!(status.and_then(|s| s.code()), Some(3));
}

#[test]
fn wait_port_sees_the_listening_socket() {
    let mut hello = start_hello("hello-port");
    hello
        .process
        .wait_port(hello.listen, READY_TIMEOUT)
        .unwrap();
    assert_eq!(
        http_get_status(hello.admin, "/readyz", REQUEST_TIMEOUT).unwrap(),
        200
    );
}

#[test]
fn spawning_a_missing_program_is_an_error() {
    let spec = ProcessSpec::new("missing", "/nonexistent/harness-test-binary");
    assert!(matches!(Process::spawn(spec), Err(Error::Spawn { .. })));
}

/// Set only in the child process of `a_server_dies_with_a_killed_test_process`.
const ORPHAN_CHILD_ENV: &str = "HARNESS_ORPHAN_CHILD";

/// The body of the child process run by `a_server_dies_with_a_killed_test_process`: starts a
/// server, reports its pid, and waits to be SIGKILLed, so that no `Drop` ever runs.
#[test]
fn child_starts_a_server_and_waits_to_be_killed() {
    if std::env::var_os(ORPHAN_CHILD_ENV).is_none() {
        return;
    }
    let hello = start_hello("hello-orphan");
    println!("server pid: {}", hello.process.pid());
    std::thread::sleep(Duration::from_secs(60));
}

/// True if `pid` runs, as opposed to not existing or being a zombie (exited, not yet reaped by
/// whichever process inherited it).
fn pid_runs(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name: "1234 (http-hello) S ...".
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => false,
    }
}

/// Waits up to `timeout` to reap `pid` (a child of this process); true once reaped.
#[cfg(target_os = "linux")]
fn reap(pid: u32, timeout: Duration) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        let mut status = 0;
        // SAFETY: waitpid writes only to `status`, a live local.
        let reaped = unsafe { libc::waitpid(pid as libc::pid_t, &mut status, libc::WNOHANG) };
        if reaped == pid as libc::pid_t {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[cfg(target_os = "linux")]
#[test]
fn a_server_dies_with_a_killed_test_process() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    // Orphans are adopted by the nearest "subreaper" instead of PID 1, so the server, once its
    // test process is gone, becomes our child: we can reap it (no zombie left behind in a
    // container whose PID 1 never reaps) and know for sure that it died.
    // SAFETY: this prctl option takes an integer and touches no memory.
    assert_eq!(unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1) }, 0);
    let mut test_process = Command::new(std::env::current_exe().unwrap())
        .args([
            "child_starts_a_server_and_waits_to_be_killed",
            "--exact",
            "--nocapture",
        ])
        .env(ORPHAN_CHILD_ENV, "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(test_process.stdout.take().unwrap());
    let server_pid: u32 = stdout
        .lines()
        .map_while(Result::ok)
        .find_map(|line| line.strip_prefix("server pid: ").map(str::to_owned))
        .expect("the child reports its server's pid")
        .parse()
        .unwrap();
    assert!(pid_runs(server_pid));

    test_process.kill().unwrap();
    test_process.wait().unwrap();
    if !reap(server_pid, Duration::from_secs(10)) {
        // SAFETY: kill(2) has no memory preconditions; the unreaped pid is our adopted child.
        unsafe { libc::kill(server_pid as libc::pid_t, libc::SIGKILL) };
        reap(server_pid, Duration::from_secs(10));
        panic!("server {server_pid} outlived its test process");
    }
}
