//! config.json's `hooks`: programs the caller wants run at points of the
//! lifecycle, each handed the container's state (JSON) on its stdin. A
//! network plugin, say, moves an interface into the container's network
//! namespace, found through the state's `pid`.
//!
//! berth runs the hooks that run in the runtime's namespaces: `prestart`
//! and `createRuntime` once `create` has made the container (init is set
//! up and waits), `poststart` once `start` has let it go, `poststop` after
//! `delete`. The two that run inside the container's namespaces
//! (`createContainer`, `startContainer`) are refused by name (see
//! `config`).

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Deserialize;
use stage01_chroot::Error;

/// One hook, as the spec writes it.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Hook {
    path: PathBuf,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: Vec<String>,
    #[serde(default)]
    timeout: Option<u64>,
}

/// config.json's `hooks`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Hooks {
    #[serde(default)]
    pub(crate) prestart: Vec<Hook>,
    #[serde(default)]
    pub(crate) create_runtime: Vec<Hook>,
    #[serde(default)]
    pub(crate) create_container: Vec<Hook>,
    #[serde(default)]
    pub(crate) start_container: Vec<Hook>,
    #[serde(default)]
    pub(crate) poststart: Vec<Hook>,
    #[serde(default)]
    pub(crate) poststop: Vec<Hook>,
}

// ANCHOR: run_hooks
/// Run `hooks` in order, each with `state` on its stdin; the first that
/// fails (non-zero exit, or still running after its timeout) stops the rest.
pub(crate) fn run(point: &str, hooks: &[Hook], state: &serde_json::Value) -> Result<(), Error> {
    for hook in hooks {
        run_one(hook, state)
            .map_err(|why| Error::Other(format!("{point} hook {}: {why}", hook.path.display())))?;
    }
    Ok(())
}

fn run_one(hook: &Hook, state: &serde_json::Value) -> Result<(), String> {
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
        let _ = stdin.write_all(state.to_string().as_bytes()); // a hook may not read it
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
