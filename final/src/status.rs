//! A container's status: one for the engine's containers and the
//! runtime's, with the moves the lifecycle allows between them.

use serde::{Deserialize, Serialize};
use stage01_chroot::Error;

// ANCHOR: status
/// Where a container is in its lifecycle, in the runtime spec's words
/// (and runc's `paused`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Being made; what is made so far is written down as it goes.
    Creating,
    /// Made, its first process waiting to be let go (or, for the engine,
    /// a container not run yet).
    Created,
    Running,
    /// Frozen, every process of it (the cgroup's freezer).
    Paused,
    /// Ended. (Records berth wrote before it had one status say `exited`.)
    #[serde(alias = "exited")]
    Stopped,
}

impl Status {
    /// The moves the lifecycle allows. A stopped container of the engine
    /// may be made again (`berth start`).
    pub fn may_become(self, next: Status) -> bool {
        use Status::*;
        matches!(
            (self, next),
            (Creating, Created | Stopped)
                | (Created, Running | Stopped)
                | (Running, Paused | Stopped)
                | (Paused, Running | Stopped)
                | (Stopped, Creating | Created)
        )
    }
    // ANCHOR_END: status

    /// `next`, if the lifecycle allows it from here; an error naming both
    /// if not.
    pub fn become_(self, next: Status, what: &str) -> Result<Status, Error> {
        match self.may_become(next) {
            true => Ok(next),
            false => Err(Error::Other(format!(
                "{what} is {}: it can't become {}",
                self.name(),
                next.name()
            ))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Status::{self, *};

    #[test]
    fn the_lifecycle_goes_one_way_round() {
        assert!(Creating.may_become(Created) && Created.may_become(Running));
        assert!(Running.may_become(Paused) && Paused.may_become(Running));
        assert!(Running.may_become(Stopped) && Stopped.may_become(Created));
        assert!(
            !Created.may_become(Paused),
            "only a running container pauses"
        );
        assert!(
            !Stopped.may_become(Running),
            "a stopped one is made again first"
        );
        assert!(!Running.may_become(Created));
        let err = Stopped.become_(Running, "container x").unwrap_err();
        assert_eq!(
            err.to_string(),
            "container x is stopped: it can't become running"
        );
    }

    #[test]
    fn records_that_say_exited_read_as_stopped() {
        let read: Status = serde_json::from_str("\"exited\"").unwrap();
        assert_eq!(read, Stopped);
        assert_eq!(serde_json::to_string(&Stopped).unwrap(), "\"stopped\"");
    }
}
