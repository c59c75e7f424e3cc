//! The `network` commands of stage 05, which the engine offers as they are.

use clap::Subcommand;
use stage01_chroot::Error;

use crate::network::Networks;
use crate::subnet::Subnet;

/// `network create|ls|rm`, shared by stage 05 and the engine.
#[derive(Debug, Clone, Subcommand)]
pub enum NetworkCommand {
    /// Define a network (a bridge, a subnet, NAT to the world).
    Create {
        #[arg(value_name = "NAME")]
        name: String,
        /// Its IPv4 subnet, e.g. 10.88.0.0/24 (default: a free /24 in 10.78-127.x).
        #[arg(long, value_name = "CIDR")]
        subnet: Option<Subnet>,
    },
    /// List networks.
    Ls,
    /// Remove a network no container uses, with its bridge and rules.
    Rm {
        #[arg(value_name = "NAME")]
        name: String,
    },
}

/// Carry out a `network` command, printing what it made, lists or removed.
pub fn network_command(networks: &Networks, command: NetworkCommand) -> Result<u8, Error> {
    match command {
        NetworkCommand::Create { name, subnet } => {
            let network = networks.create(&name, subnet)?;
            println!("{}\t{}\t{}", network.name, network.subnet, network.bridge);
            Ok(0)
        }
        NetworkCommand::Ls => {
            let list = networks.list()?;
            let width = list.iter().map(|n| n.name.len()).max().unwrap_or(0).max(12);
            println!(
                "{:<width$} {:<18} {:<15} CONTAINERS",
                "NAME", "SUBNET", "BRIDGE"
            );
            for network in list {
                let users = networks.ipam(&network).leases()?.len();
                println!(
                    "{:<width$} {:<18} {:<15} {users}",
                    network.name,
                    network.subnet.to_string(),
                    network.bridge
                );
            }
            Ok(0)
        }
        NetworkCommand::Rm { name } => {
            networks.remove(&name)?;
            println!("{name}");
            Ok(0)
        }
    }
}
