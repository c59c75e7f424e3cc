//! `berth network connect` and `disconnect`: a container on several
//! networks, like a computer with more than one network card.
//!
//! Each network a container is on is one more veth pair from that network's
//! bridge into the container's network namespace, called `eth1`, `eth2`...
//! inside (see stage 05's `attach`). Only the first, `eth0`, carries the
//! default route and the published ports; another network's subnet is
//! reached through its own interface, which its address implies. Peers on
//! every network find the container by name in their `/etc/hosts`, and it
//! finds them.
//!
//! The container's record lists its networks (`spec`) and what each
//! attachment made on the host (`state.plugged`, written before it is
//! made, as `run` does). A running container is plugged in or out at
//! once; a stopped one joins its networks when it next starts.

use std::fs::File;
use std::path::Path;

use nix::sched::{CloneFlags, setns, unshare};
use nix::unistd::{Pid, chroot, fchdir};
use stage01_chroot::Error;
use stage02_namespaces::mounts;
use stage02_namespaces::userns::{MountAttr, detached_copy};
use stage05_networks::attach::{MAX_SLOTS, Plug, attach, veth_name};
use stage05_networks::hosts::NameFiles;
use stage05_networks::network::Network;

use crate::Engine;
use crate::control;
use crate::record::{Plugged, Record};

/// `berth network connect NETWORK CONTAINER`.
pub fn connect(engine: &Engine, network_name: &str, record: &Record) -> Result<(), Error> {
    let network = engine.networks.get(network_name)?;
    // Under the containers' lock from here: its monitor, as it finishes,
    // takes the lock to clean up what the record lists.
    let _lock = engine.containers.lock()?;
    let mut current = engine.containers.load(&record.id)?;
    let name = current.display_name().to_string();
    if current.spec.networks().contains(&network.name.as_str()) {
        return Err(Error::Other(format!(
            "container {name} is already on network {}",
            network.name
        )));
    }
    if current.is_running() {
        undo_a_killed_connect(engine, &mut current, &network.name)?;
        own_hosts_file(engine, &current)?;
        plug_in_now(engine, &mut current, &network)?;
    } else if current.monitor_alive() && !current.state.restarting {
        return Err(Error::Other(format!(
            "container {name} is starting: connect it once it runs"
        )));
    }
    // (Else it joins when it next starts.)
    match current.spec.network == "none" {
        true => current.spec.network = network.name.clone(), // its first
        false => current.spec.connected.push(network.name.clone()),
    }
    engine.containers.save(&current)
}

/// A `connect` killed halfway left its attachment listed but the network
/// not yet in the spec: unplug what it made before trying again.
fn undo_a_killed_connect(engine: &Engine, record: &mut Record, network: &str) -> Result<(), Error> {
    while let Some(i) = (record.state.plugged.iter()).position(|p| p.network == network) {
        control::unplug_network(engine, &record.id, &record.state.plugged[i])?;
        record.state.plugged.remove(i);
        engine.containers.save_state(record)?;
    }
    Ok(())
}

// ANCHOR: own_hosts_file
/// A running container on one network reads that network's hosts file as
/// its /etc/hosts (see stage 05's hosts.rs). About to be on two, it needs a
/// file of its own, listing the peers of both: made on the host, then bound
/// over /etc/hosts in its mount namespace (its old bind mount stays under it).
fn own_hosts_file(engine: &Engine, record: &Record) -> Result<(), Error> {
    let files = NameFiles::in_dir(&engine.containers.dirs(&record.id).dir);
    if !files.is_shared() {
        return Ok(());
    }
    let (init, _) = control::running(engine, record)?;
    files.unshare(|new| bind_into(init.pid, new, "/etc/hosts"))?;
    let networks: Vec<Network> = (record.state.plugged.iter())
        .filter_map(|p| engine.networks.existing(&p.network).transpose())
        .collect::<Result<_, _>>()?;
    engine.networks.list_private(&networks, &record.id)
}

/// Bind host file `file` over `target` inside the mount namespace of
/// process `pid`: a copy of the file's mount, attached nowhere yet
/// (`open_tree`), which a thread that entered that namespace attaches.
fn bind_into(pid: i32, file: &Path, target: &'static str) -> Result<(), Error> {
    let attributes = MountAttr {
        propagation: libc::MS_PRIVATE,
        ..MountAttr::default()
    };
    let made = detached_copy(file, attributes)
        .map_err(|e| Error::io("copy the mount of", file, e.into()))?;
    let path = format!("/proc/{pid}/ns/mnt");
    let namespace = File::open(&path).map_err(|e| Error::io("open", &path, e))?;
    let root_path = format!("/proc/{pid}/root");
    let root = File::open(&root_path).map_err(|e| Error::io("open", &root_path, e))?;
    let thread = std::thread::spawn(move || {
        // A thread shares its root and working directory with the process;
        // it must have its own before it can enter a mount namespace.
        unshare(CloneFlags::CLONE_FS).map_err(|e| Error::io("unshare", "CLONE_FS", e.into()))?;
        setns(&namespace, CloneFlags::CLONE_NEWNS)
            .map_err(|e| Error::io("setns", &path, e.into()))?;
        // Entering leaves us at the namespace's first root, not at the
        // container's (it pivoted): take the root its process sees.
        fchdir(&root).map_err(|e| Error::io("fchdir", &root_path, e.into()))?;
        chroot(".").map_err(|e| Error::io("chroot", &root_path, e.into()))?;
        mounts::attach(&made, Path::new(target))
    });
    thread
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}
// ANCHOR_END: own_hosts_file

/// Plug the running container into `network` as its next free interface.
fn plug_in_now(engine: &Engine, record: &mut Record, network: &Network) -> Result<(), Error> {
    let (init, _) = control::running(engine, record)?;
    let monitor = record
        .state
        .monitor
        .expect("a running container has a monitor");
    let slot = (0..MAX_SLOTS)
        .find(|slot| record.state.plugged.iter().all(|p| p.slot != *slot))
        .ok_or_else(|| {
            Error::Other(format!(
                "a container can be on {MAX_SLOTS} networks at most"
            ))
        })?;
    // Written down first, as `run` does: whoever cleans up after the
    // container unplugs what its record lists.
    record.state.plugged.push(Plugged {
        network: network.name.clone(),
        veth: veth_name(&record.id, slot),
        ports: false, // published ports are on eth0
        slot,
        address: None,
    });
    engine.containers.save_state(record)?;
    let plug = Plug {
        program: "berth",
        networks: &engine.networks,
        network: Some(network),
        id: &record.id,
        name: record.name.as_deref(),
        publish: &[],
        containers: engine.containers.dir(),
        // The lease lives as long as the container's monitor, not as this
        // command: the monitor is who unplugs it when the container ends.
        lease_owner: monitor.pid,
    };
    match attach(&plug, network, slot, Pid::from_raw(init.pid)) {
        Ok(attachment) => {
            let address = attachment.address();
            attachment.keep();
            let plugged = record.state.plugged.iter_mut().find(|p| p.slot == slot);
            plugged.expect("written above").address = Some(address);
            if slot == 0 {
                record.state.address = Some(address);
            }
            Ok(())
        }
        Err(err) => {
            // `attach` undid what it had made.
            record.state.plugged.retain(|p| p.slot != slot);
            engine.containers.save_state(record)?;
            Err(err)
        }
    }
}

/// `berth network disconnect NETWORK CONTAINER`.
pub fn disconnect(engine: &Engine, network_name: &str, record: &Record) -> Result<(), Error> {
    let _lock = engine.containers.lock()?;
    let mut current = engine.containers.load(&record.id)?;
    let name = current.display_name().to_string();
    if !current.spec.networks().contains(&network_name) {
        return Err(Error::Other(format!(
            "container {name} is not on network {network_name} (see: berth inspect {name})"
        )));
    }
    if current.monitor_alive() && !current.is_running() && !current.state.restarting {
        return Err(Error::Other(format!(
            "container {name} is starting: disconnect it once it runs"
        )));
    }
    // Running: unplug it now. (A stopped one's leftovers, if its monitor
    // was killed, stay listed for the cleanup: they need its pair's name.)
    let position = (current.state.plugged.iter()).position(|p| p.network == network_name);
    if let Some(position) = position.filter(|_| current.is_running()) {
        control::unplug_network(engine, &current.id, &current.state.plugged[position])?;
        let gone = current.state.plugged.remove(position);
        if gone.slot == 0 {
            current.state.address = None; // no eth0, no default route
        }
        engine.containers.save_state(&current)?;
    }
    let spec = &mut current.spec;
    match spec.network == network_name {
        // Its next network becomes its first (at its next start: eth0).
        true => match spec.connected.is_empty() {
            true => spec.network = "none".into(),
            false => spec.network = spec.connected.remove(0),
        },
        false => spec.connected.retain(|n| n != network_name),
    }
    engine.containers.save(&current)
}
