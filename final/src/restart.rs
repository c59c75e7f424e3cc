//! `--restart`: a detached container's monitor runs it again when it ends,
//! as Docker's restart policies say.
//!
//! Docker's daemon does this; berth has no daemon, so the container's own
//! monitor does: when the tiny program saw the container end, it runs
//! `berth monitor-finish`, which records the exit ([`crate::run::conclude`])
//! and then asks [`keep_restarting`] whether to run it again. If so, the
//! same process waits out the back-off, runs the container again on the
//! same execute path as the first run, and becomes the tiny waiter again.
//! It keeps its PID (and start time) all along, so the record's `monitor`
//! names it the whole time: `rm -f` finds it and kills it, in the back-off
//! too, and whoever finds it dead cleans up what the record lists.
//!
//! The user's `stop` and `kill` leave a mark (`stopped-by-user`, see
//! [`crate::record::Containers::mark_stopped_by_user`]); a monitor that
//! finds it does not run the container again, until `berth start`.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use stage01_chroot::Error;

use crate::Engine;
use crate::record::{Record, Status};

/// Docker's restart policies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum RestartPolicy {
    /// Never run it again (the default).
    #[default]
    No,
    /// Run it again when it ends with a code other than 0, at most
    /// `max_retries` times (0: no limit).
    OnFailure { max_retries: u32 },
    /// Run it again however it ends, unless the user stopped it.
    Always,
    /// As `Always` for berth: the two differ in Docker only when its daemon
    /// starts (it starts `always` containers again, not stopped
    /// `unless-stopped` ones), and berth has no daemon to start.
    UnlessStopped,
}

impl FromStr for RestartPolicy {
    type Err = String;

    fn from_str(text: &str) -> Result<RestartPolicy, String> {
        let (name, count) = match text.split_once(':') {
            Some((name, count)) => (name, Some(count)),
            None => (text, None),
        };
        let policy = match (name, count) {
            ("no", None) => RestartPolicy::No,
            ("always", None) => RestartPolicy::Always,
            ("unless-stopped", None) => RestartPolicy::UnlessStopped,
            ("on-failure", None) => RestartPolicy::OnFailure { max_retries: 0 },
            ("on-failure", Some(count)) => RestartPolicy::OnFailure {
                max_retries: count.parse().map_err(|_| {
                    format!("--restart {text}: {count:?} is not a count of retries")
                })?,
            },
            ("no" | "always" | "unless-stopped", Some(_)) => {
                return Err(format!(
                    "--restart {text}: only on-failure takes a count of retries"
                ));
            }
            _ => {
                return Err(format!(
                    "--restart {text}: use no, on-failure[:N], always or unless-stopped"
                ));
            }
        };
        Ok(policy)
    }
}

impl fmt::Display for RestartPolicy {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            RestartPolicy::No => write!(f, "no"),
            RestartPolicy::OnFailure { max_retries: 0 } => write!(f, "on-failure"),
            RestartPolicy::OnFailure { max_retries } => write!(f, "on-failure:{max_retries}"),
            RestartPolicy::Always => write!(f, "always"),
            RestartPolicy::UnlessStopped => write!(f, "unless-stopped"),
        }
    }
}

impl TryFrom<String> for RestartPolicy {
    type Error = String;
    fn try_from(text: String) -> Result<RestartPolicy, String> {
        text.parse()
    }
}

impl From<RestartPolicy> for String {
    fn from(policy: RestartPolicy) -> String {
        policy.to_string()
    }
}

impl RestartPolicy {
    /// Whether a container that ended with `code`, already run again
    /// `restarts` times, should run again (the user's stop aside).
    pub fn wants_restart(self, code: u8, restarts: u32) -> bool {
        match self {
            RestartPolicy::No => false,
            RestartPolicy::Always | RestartPolicy::UnlessStopped => true,
            RestartPolicy::OnFailure { max_retries } => {
                code != 0 && (max_retries == 0 || restarts < max_retries)
            }
        }
    }
}

/// Docker's back-off: 100 ms before the first restart, doubled before each
/// next one, at most a minute; back to 100 ms once a run lasted 10 s.
pub fn next_delay(previous_ms: u64, ran_for: Duration) -> u64 {
    const FIRST_MS: u64 = 100;
    const MOST_MS: u64 = 60_000;
    if previous_ms == 0 || ran_for >= Duration::from_secs(10) {
        return FIRST_MS;
    }
    (previous_ms * 2).min(MOST_MS)
}

/// How often a monitor in its back-off looks whether the user stopped or
/// removed the container.
const LOOK_EVERY: Duration = Duration::from_millis(50);

/// The monitor's part once a run has ended with `code` and is recorded:
/// while the policy says so, wait out the back-off and run the container
/// again. Returns the last exit code once it is not run again. (A run
/// whose monitor becomes the tiny waiter does not come back here: the
/// tiny program runs `berth monitor-finish` again when it ends.)
pub fn keep_restarting(engine: &Engine, id: &str, mut code: u8) -> Result<u8, Error> {
    while let Some(record) = next_run(engine, id, code)? {
        code = match crate::run::execute(engine, record, crate::run::Ready::Nobody) {
            Ok(code) => code,
            // It could not start (its network removed, say): as Docker,
            // a failed start counts as a run that failed.
            Err(err) => {
                eprintln!("berth: warning: restart {id}: {err}");
                err.exit_code()
            }
        };
    }
    Ok(code)
}

/// The record to run again after the back-off, or `None` if it is not to
/// run again (its policy, the user's stop, or it was removed).
fn next_run(engine: &Engine, id: &str, code: u8) -> Result<Option<Record>, Error> {
    let delay = {
        let _lock = engine.containers.lock()?;
        let Some(mut record) = engine.containers.get(id)? else {
            return Ok(None);
        };
        let restarts = record.state.restart_count;
        if !record.spec.restart.wants_restart(code, restarts)
            || engine.containers.stopped_by_user(id)
        {
            return Ok(None);
        }
        let ran_for = record
            .state
            .finished
            .unwrap_or(0)
            .saturating_sub(record.state.started.unwrap_or(0));
        let delay = next_delay(record.state.restart_delay_ms, Duration::from_secs(ran_for));
        record.state.restarting = true;
        record.state.restart_delay_ms = delay;
        engine.containers.save_state(&record)?;
        Duration::from_millis(delay)
    };
    // The back-off, looking out for `stop` and `rm`.
    let deadline = Instant::now() + delay;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let _lock = engine.containers.lock()?;
        let Some(mut record) = engine.containers.get(id)? else {
            return Ok(None); // removed
        };
        if engine.containers.stopped_by_user(id) {
            record.state.restarting = false;
            engine.containers.save_state(&record)?;
            return Ok(None);
        }
        if left.is_zero() {
            // Run it again: made afresh, as `berth start` does, counted.
            record.state.status = record
                .state
                .status
                .become_(Status::Created, &format!("container {id}"))?;
            record.state.restarting = false;
            record.state.restart_count += 1;
            record.state.exit_code = None;
            record.state.oom_killed = false;
            engine.containers.save_state(&record)?;
            return Ok(Some(record));
        }
        drop(_lock);
        std::thread::sleep(left.min(LOOK_EVERY));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_as_docker_writes_them() {
        for text in [
            "no",
            "always",
            "unless-stopped",
            "on-failure",
            "on-failure:3",
        ] {
            let policy: RestartPolicy = text.parse().unwrap();
            assert_eq!(policy.to_string(), text);
        }
        for bad in ["sometimes", "always:2", "on-failure:x", "on-failure:-1"] {
            assert!(bad.parse::<RestartPolicy>().is_err(), "{bad}");
        }
    }

    #[test]
    fn who_runs_again() {
        let on_failure_2 = RestartPolicy::OnFailure { max_retries: 2 };
        assert!(on_failure_2.wants_restart(1, 0) && on_failure_2.wants_restart(1, 1));
        assert!(!on_failure_2.wants_restart(1, 2), "two restarts, no more");
        assert!(
            !on_failure_2.wants_restart(0, 0),
            "success is not a failure"
        );
        assert!(RestartPolicy::OnFailure { max_retries: 0 }.wants_restart(3, 1000));
        assert!(RestartPolicy::Always.wants_restart(0, 1000));
        assert!(!RestartPolicy::No.wants_restart(1, 0));
    }

    #[test]
    fn back_off_doubles_to_a_minute_and_resets_after_ten_seconds() {
        let quick = Duration::from_secs(1);
        assert_eq!(next_delay(0, quick), 100);
        assert_eq!(next_delay(100, quick), 200);
        assert_eq!(next_delay(400, quick), 800);
        assert_eq!(next_delay(51_200, quick), 60_000);
        assert_eq!(next_delay(60_000, quick), 60_000);
        assert_eq!(next_delay(60_000, Duration::from_secs(10)), 100);
    }
}
