//! config.json's `hooks`: programs the caller wants run at points of the
//! lifecycle, each handed the container's state (JSON) on its stdin. A
//! network plugin, say, moves an interface into the container's network
//! namespace, found through the state's `pid`.
//!
//! In the runtime's namespaces: `prestart` and `createRuntime` once
//! `create` has made the container (init is set up and waits),
//! `poststart` once `start` has let it go, `poststop` after `delete`. In
//! the container's, run by its init: `createContainer` just before
//! `pivot_root` (the host's paths still reach, as the spec wants), and
//! `startContainer` once through the gate, before the command.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use stage01_chroot::Error;

/// One hook, as the spec writes it.
#[derive(Debug, Clone)]
pub(crate) struct Hook {
    path: PathBuf,
    args: Vec<String>,
    env: Vec<String>,
    timeout: Option<u64>,
}

impl Hook {
    pub(crate) fn from_spec(hook: &oci_spec::runtime::Hook) -> Hook {
        Hook {
            path: hook.path().clone(),
            args: hook.args().clone().unwrap_or_default(),
            env: hook.env().clone().unwrap_or_default(),
            timeout: hook.timeout().and_then(|t| u64::try_from(t).ok()),
        }
    }
}

/// config.json's `hooks`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Hooks {
    pub(crate) prestart: Vec<Hook>,
    pub(crate) create_runtime: Vec<Hook>,
    pub(crate) create_container: Vec<Hook>,
    pub(crate) start_container: Vec<Hook>,
    pub(crate) poststart: Vec<Hook>,
    pub(crate) poststop: Vec<Hook>,
}

// ANCHOR: run_hooks
/// Run `hooks` in order, each with `state` on its stdin; the first that
/// fails (non-zero exit, or still running after its timeout) stops the rest.
pub(crate) fn run(point: &str, hooks: &[Hook], state: &impl serde::Serialize) -> Result<(), Error> {
    for hook in hooks {
        run_one(hook, state)
            .map_err(|why| Error::Other(format!("{point} hook {}: {why}", hook.path.display())))?;
    }
    Ok(())
}

fn run_one(hook: &Hook, state: &impl serde::Serialize) -> Result<(), String> {
    let mut command = Command::new(&hook.path);
    if let Some((arg0, args)) = hook.args.split_first() {
        std::os::unix::process::CommandExt::arg0(&mut command, arg0);
        command.args(args);
    }
    command.env_clear().stdin(Stdio::piped());
    for pair in &hook.env {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        command.env(key, value);
    }
    let mut child = command
        .spawn()
        .map_err(|e| format!("could not start: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        let text = serde_json::to_string(state).unwrap_or_default();
        let _ = stdin.write_all(text.as_bytes()); // a hook may not read it
    }
    let deadline = hook
        .timeout
        .map(|seconds| Instant::now() + Duration::from_secs(seconds));
    loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            return match status.success() {
                true => Ok(()),
                false => Err(format!("failed ({status})")),
            };
        }
        if deadline.is_some_and(|deadline| Instant::now() > deadline) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "still running after {} s",
                hook.timeout.unwrap_or(0)
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
// ANCHOR_END: run_hooks
