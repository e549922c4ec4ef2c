//! Paths to freshly built workspace binaries.
//!
//! `cargo test -p kv-store` builds the crate's tests but not necessarily the binaries that an
//! integration test wants to start (another package's binary is never built by it, and even the
//! package's own may be stale under some runners). So the test asks for a binary by name and the
//! harness runs `cargo build --bin NAME` itself, once per name per test process, in the same
//! profile and target directory as the test, then returns `target/<profile>/NAME`.
//!
//! # Where the profile and target directory come from
//!
//! A test binary lives at `<target-dir>/<profile>/deps/<test>-<hash>`, under both `cargo test` and
//! nextest. Walking up from `std::env::current_exe()` gives both without any configuration, and
//! respects `CARGO_TARGET_DIR` because the test was built there.
//!
//! Limits: cross-compiled layouts (`target/<triple>/<profile>`) are not recognised; the binary is
//! then built for the host into `<target-dir>/<triple>` as if that were the target directory.
//!
//! # Why running cargo from a test is safe
//!
//! Cargo holds its build lock while compiling, not while the tests run, so the nested
//! `cargo build` neither deadlocks nor waits for the outer command. Two tests asking for binaries
//! at once are serialised here (and would be by cargo's lock anyway).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, PoisonError};

/// Names already built by this test process. The lock is held for the whole build, so a second
/// test asking for the same name waits and then finds it built.
static BUILT: Mutex<Option<HashSet<String>>> = Mutex::new(None);

/// Builds the workspace binary `name` if needed and returns its path.
///
/// Uses the `CARGO` environment variable (set by cargo for the tests it runs) or else `cargo` from
/// `PATH`. Builds with `--release` when the test itself is a release build, and with
/// `--profile P` for a custom profile.
///
/// # Panics
///
/// If the layout of the test executable's path is not `<target>/<profile>/deps/<exe>`, or the
/// build fails; the message then includes cargo's stderr.
pub fn cargo_bin(name: &str) -> PathBuf {
    let (target_dir, profile_dir) = target_layout();
    let mut built = BUILT.lock().unwrap_or_else(PoisonError::into_inner);
    let built = built.get_or_insert_with(HashSet::new);
    if !built.contains(name) {
        build(name, &target_dir, &profile_dir);
        built.insert(name.to_owned());
    }
    profile_dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX))
}

/// Returns `(<target-dir>, <target-dir>/<profile>)` for the running test executable.
fn target_layout() -> (PathBuf, PathBuf) {
    let exe = std::env::current_exe().expect("cargo_bin: cannot locate the test executable");
    let deps = exe.parent().filter(|dir| dir.ends_with("deps"));
    let profile_dir = deps.and_then(Path::parent);
    let target_dir = profile_dir.and_then(Path::parent);
    match (target_dir, profile_dir) {
        (Some(target), Some(profile)) => (target.to_owned(), profile.to_owned()),
        _ => panic!(
            "cargo_bin: expected the test executable at <target>/<profile>/deps/<name>, found {}",
            exe.display()
        ),
    }
}

fn build(name: &str, target_dir: &Path, profile_dir: &Path) {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(&cargo);
    command
        .args(["build", "--quiet", "--workspace", "--bin", name])
        .arg("--target-dir")
        .arg(target_dir)
        // Run from the harness's own directory, which is inside the workspace: the test's working
        // directory is its package, and `--workspace` makes `--bin` look in every member.
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    match profile_dir.file_name().and_then(|p| p.to_str()) {
        Some("debug") => {}
        Some("release") => {
            command.arg("--release");
        }
        Some(custom) => {
            command.args(["--profile", custom]);
        }
        None => panic!(
            "cargo_bin: unreadable profile directory {}",
            profile_dir.display()
        ),
    }
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cargo_bin: cannot run {cargo:?}: {e}"));
    if !output.status.success() {
        panic!(
            "cargo_bin: `{command:?}` failed with {}:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
