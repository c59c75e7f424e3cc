//! The command-line shape every stage shares: `ROOTFS CMD [ARGS...]`.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Command;

/// What to run and where. Later stages `#[command(flatten)]` this and add
/// their own options in front of it.
#[derive(Debug, Clone, clap::Args)]
pub struct ContainerArgs {
    /// Directory to use as the container's root filesystem
    /// (make one with `berth-mkrootfs DIR`).
    #[arg(value_name = "ROOTFS")]
    pub rootfs: PathBuf,

    /// Command to run inside, looked up in the container's PATH, then its
    /// arguments. Everything after ROOTFS belongs to the command, even
    /// options such as `-c`.
    #[arg(
        value_name = "CMD",
        required = true,
        num_args = 1..,
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub command: Vec<OsString>,
}

/// The PATH a container starts with (the same default Docker uses).
pub const CONTAINER_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

impl ContainerArgs {
    /// The program to run (the first word of CMD).
    pub fn program(&self) -> &OsString {
        &self.command[0]
    }

    /// A `Command` for CMD with a container's environment instead of ours:
    /// the host's variables (its PATH, HOME, secrets) don't leak in.
    pub fn to_command(&self) -> Command {
        let mut command = Command::new(self.program());
        command
            .args(&self.command[1..])
            .env_clear()
            .envs(default_env());
        command
    }
}

/// The environment a container starts with: Docker's PATH, root's HOME, and
/// the caller's TERM so that terminal programs still draw properly.
pub fn default_env() -> Vec<(OsString, OsString)> {
    let mut env = vec![
        ("PATH".into(), CONTAINER_PATH.into()),
        ("HOME".into(), "/root".into()),
    ];
    if let Some(term) = std::env::var_os("TERM") {
        env.push(("TERM".into(), term));
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        container: ContainerArgs,
    }

    #[test]
    fn options_after_rootfs_belong_to_the_command() {
        let cli = Cli::parse_from(["x", "/rootfs", "/bin/sh", "-c", "exit 3"]);
        assert_eq!(cli.container.rootfs, PathBuf::from("/rootfs"));
        assert_eq!(cli.container.command, ["/bin/sh", "-c", "exit 3"]);
    }

    #[test]
    fn a_command_is_required() {
        assert!(Cli::try_parse_from(["x", "/rootfs"]).is_err());
    }

    #[test]
    fn the_host_environment_does_not_leak_in() {
        let cli = Cli::parse_from(["x", "/rootfs", "env"]);
        let command = cli.container.to_command();
        let vars: Vec<_> = command.get_envs().map(|(k, _)| k.to_owned()).collect();
        assert!(vars.contains(&"PATH".into()));
        assert!(!vars.contains(&"USER".into()));
    }
}
