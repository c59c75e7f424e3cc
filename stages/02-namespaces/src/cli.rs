//! The options stage 02 adds in front of `ROOTFS CMD [ARGS...]`.

use crate::hostname;

#[derive(Debug, Clone, clap::Args)]
pub struct NamespaceArgs {
    /// Hostname inside the container (default: a random 12-hex-digit name,
    /// like a Docker container ID).
    #[arg(long, value_name = "NAME", value_parser = hostname::parse)]
    pub hostname: Option<String>,

    /// Also make a user namespace: root inside is the unprivileged host user
    /// 100000, and container IDs 0-65535 are host IDs 100000-165535. The
    /// rootfs is seen through an idmapped mount, so that its files, owned
    /// by host root, are root's inside (or, where the file system can't do
    /// that, the container gets a copy of it with shifted owners).
    #[arg(long)]
    pub userns: bool,
}
