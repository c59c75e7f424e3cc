//! The options of `run` that come from the image stage, for every stage
//! after it to flatten into its own `run`.

use std::ffi::OsString;
use std::path::PathBuf;

use stage02_namespaces::hostname;
use stage03_cgroups::limits::LimitArgs;

use crate::image::Overrides;

#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub limits: LimitArgs,
    /// When the container ends, print what its cgroup measured on stderr.
    #[arg(long)]
    pub stats: bool,
    /// Hostname inside (default: the container's name or random ID).
    #[arg(long, value_name = "NAME", value_parser = hostname::parse)]
    pub hostname: Option<String>,
    /// Replace the image's Entrypoint (its Cmd is dropped too).
    #[arg(long, value_name = "PROGRAM")]
    pub entrypoint: Option<String>,
    /// Set an environment variable: KEY=VALUE, or KEY to pass ours on.
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Working directory inside (default: the image's WorkingDir, or /).
    #[arg(short, long, value_name = "DIR")]
    pub workdir: Option<PathBuf>,
    /// Run as USER[:GROUP], names from the image's /etc/passwd (default: the image's User, or root).
    #[arg(short, long, value_name = "USER")]
    pub user: Option<String>,
    /// The image, as pulled.
    #[arg(value_name = "IMAGE")]
    pub image: String,
    /// Command and arguments, replacing the image's Cmd.
    #[arg(
        value_name = "CMD",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub command: Vec<OsString>,
}

impl RunArgs {
    /// What the command line changes about the image's defaults.
    pub fn overrides(&self) -> Overrides {
        Overrides {
            entrypoint: self.entrypoint.clone(),
            command: self.command.clone(),
            env: self.env.clone(),
            workdir: self.workdir.clone(),
            user: self.user.clone(),
        }
    }
}
