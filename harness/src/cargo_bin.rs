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
//! nextest; a workspace binary that starts others (the cluster launcher, under `cargo run`) at
//! `<target-dir>/<profile>/<name>`. Walking up from `std::env::current_exe()` gives both without
//! any configuration, and respects `CARGO_TARGET_DIR` because the caller was built there.
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
/// build fails; the message then includes cargo's stderr. [`try_cargo_bins`] returns these as
/// errors instead.
pub fn cargo_bin(name: &str) -> PathBuf {
    try_cargo_bins(&[name], false)
        .unwrap_or_else(|e| panic!("{e}"))
        .remove(0)
}

/// Builds several workspace binaries in one cargo invocation (so they compile in parallel) and
/// returns their paths in the order of `names`. With `show_progress`, cargo's own output goes
/// to this process's stderr, for a person waiting on a first build; otherwise it is captured
/// and becomes part of the error if the build fails.
///
/// The error says what went wrong: an unexpected executable layout, cargo not found, or the
/// failed build (with cargo's stderr when it was captured).
pub fn try_cargo_bins(names: &[&str], show_progress: bool) -> Result<Vec<PathBuf>, String> {
    let (target_dir, profile_dir) = target_layout()?;
    let mut built = BUILT.lock().unwrap_or_else(PoisonError::into_inner);
    let built = built.get_or_insert_with(HashSet::new);
    let missing: Vec<&str> = names
        .iter()
        .copied()
        .filter(|name| !built.contains(*name))
        .collect();
    if !missing.is_empty() {
        build(&missing, &target_dir, &profile_dir, show_progress)?;
        built.extend(missing.iter().map(|name| name.to_string()));
    }
    Ok(names
        .iter()
        .map(|name| profile_dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX)))
        .collect())
}

/// Returns `(<target-dir>, <target-dir>/<profile>)` for the running executable: a test in
/// `<profile>/deps/`, or a binary in `<profile>/`.
fn target_layout() -> Result<(PathBuf, PathBuf), String> {
    let exe = std::env::current_exe()
        .map_err(|e| format!("cargo_bin: cannot locate the running executable: {e}"))?;
    let parent = exe.parent();
    let profile_dir = match parent.filter(|dir| dir.ends_with("deps")) {
        Some(deps) => deps.parent(),
        None => parent,
    };
    let target_dir = profile_dir.and_then(Path::parent);
    match (target_dir, profile_dir) {
        (Some(target), Some(profile)) => Ok((target.to_owned(), profile.to_owned())),
        _ => Err(format!(
            "cargo_bin: expected the executable at <target>/<profile>/deps/<name> or \
             <target>/<profile>/<name>, found {}",
            exe.display()
        )),
    }
}

fn build(
    names: &[&str],
    target_dir: &Path,
    profile_dir: &Path,
    show_progress: bool,
) -> Result<(), String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(&cargo);
    command.args(["build", "--workspace"]);
    if !show_progress {
        command.arg("--quiet");
    }
    for name in names {
        command.args(["--bin", name]);
    }
    command
        .arg("--target-dir")
        .arg(target_dir)
        // Run from the harness's own directory, which is inside the workspace: the caller's
        // working directory may be anywhere, and `--workspace` makes `--bin` look in every member.
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    match profile_dir.file_name().and_then(|p| p.to_str()) {
        Some("debug") => {}
        Some("release") => {
            command.arg("--release");
        }
        Some(custom) => {
            command.args(["--profile", custom]);
        }
        None => {
            return Err(format!(
                "cargo_bin: unreadable profile directory {}",
                profile_dir.display()
            ));
        }
    }
    if show_progress {
        command.stderr(std::process::Stdio::inherit());
    }
    let output = command
        .output()
        .map_err(|e| format!("cargo_bin: cannot run {cargo:?}: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "cargo_bin: `{command:?}` failed with {}:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(())
}
