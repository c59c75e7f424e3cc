//! config.json's `linux.resources` (parsed with the `oci-spec` crate) as
//! stage 03's [`Resources`], and the devices every container may use.

use oci_spec::runtime::{LinuxDevice, LinuxResources, LinuxThrottleDevice};
use stage03_cgroups::Resources;
use stage03_cgroups::resources::{
    BlockIo, Cpu, DeviceRule, Hugepage, InterfacePriority, Memory, Network, Rdma, Throttle,
    WeightDevice,
};

// ANCHOR: resources_of
/// Each setting of the spec, one line each; stage 03 refuses, by name,
/// what this host's cgroups can't do.
pub(crate) fn resources_of(spec: Option<&LinuxResources>) -> Resources {
    let mut resources = Resources::default();
    if let Some(r) = spec {
        let throttles = |list: &Option<Vec<LinuxThrottleDevice>>| {
            list.iter()
                .flatten()
                .map(|t| Throttle {
                    major: t.major(),
                    minor: t.minor(),
                    rate: t.rate(),
                })
                .collect()
        };
        if let Some(m) = r.memory() {
            resources.memory = Memory {
                limit: m.limit(),
                reservation: m.reservation(),
                swap: m.swap(),
                kernel: m.kernel(),
                kernel_tcp: m.kernel_tcp(),
                swappiness: m.swappiness(),
                disable_oom_killer: m.disable_oom_killer(),
                check_before_update: m.check_before_update().unwrap_or(false),
            };
        }
        if let Some(c) = r.cpu() {
            resources.cpu = Cpu {
                shares: c.shares(),
                quota: c.quota(),
                period: c.period(),
                burst: c.burst(),
                realtime_runtime: c.realtime_runtime(),
                realtime_period: c.realtime_period(),
                cpus: c.cpus().clone(),
                mems: c.mems().clone(),
                idle: c.idle(),
            };
        }
        resources.pids = r.pids().as_ref().map(|p| p.limit());
        if let Some(b) = r.block_io() {
            resources.block_io = BlockIo {
                weight: b.weight(),
                leaf_weight: b.leaf_weight(),
                weight_devices: b
                    .weight_device()
                    .iter()
                    .flatten()
                    .map(|d| WeightDevice {
                        major: d.major(),
                        minor: d.minor(),
                        weight: d.weight(),
                        leaf_weight: d.leaf_weight(),
                    })
                    .collect(),
                throttle_read_bps: throttles(b.throttle_read_bps_device()),
                throttle_write_bps: throttles(b.throttle_write_bps_device()),
                throttle_read_iops: throttles(b.throttle_read_iops_device()),
                throttle_write_iops: throttles(b.throttle_write_iops_device()),
            };
        }
        resources.hugepages = r
            .hugepage_limits()
            .iter()
            .flatten()
            .map(|h| Hugepage {
                page_size: h.page_size().clone(),
                limit: h.limit(),
            })
            .collect();
        if let Some(n) = r.network() {
            resources.network = Network {
                class_id: n.class_id(),
                priorities: n
                    .priorities()
                    .iter()
                    .flatten()
                    .map(|p| InterfacePriority {
                        interface: p.name().clone(),
                        priority: p.priority(),
                    })
                    .collect(),
            };
        }
        resources.devices = r
            .devices()
            .iter()
            .flatten()
            .map(|d| DeviceRule {
                allow: d.allow(),
                kind: d
                    .typ()
                    .unwrap_or_default()
                    .as_str()
                    .chars()
                    .next()
                    .unwrap_or('a'),
                major: d.major(),
                minor: d.minor(),
                access: d.access().clone().unwrap_or_default(),
            })
            .collect();
        resources.rdma = r
            .rdma()
            .iter()
            .flatten()
            .map(|(device, limit)| Rdma {
                device: device.clone(),
                hca_handles: limit.hca_handles(),
                hca_objects: limit.hca_objects(),
            })
            .collect();
        resources.unified = r
            .unified()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect();
    }
    resources
}
// ANCHOR_END: resources_of

/// The devices berth binds into every container's /dev, and the nodes the
/// spec asks for (`linux.devices`), allowed after the spec's own rules (as
/// runc does), so that a spec that denies everything first still leaves a
/// working /dev/null.
pub(crate) fn with_default_devices(mut resources: Resources, nodes: &[LinuxDevice]) -> Resources {
    if resources.devices.is_empty() {
        return resources; // nothing restricted: nothing to add
    }
    let char_device = |major: i64, minor: Option<i64>| DeviceRule {
        allow: true,
        kind: 'c',
        major: Some(major),
        minor,
        access: "rwm".into(),
    };
    resources.devices.extend([
        char_device(1, Some(3)), // null
        char_device(1, Some(5)), // zero
        char_device(1, Some(7)), // full
        char_device(1, Some(8)), // random
        char_device(1, Some(9)), // urandom
        char_device(5, Some(0)), // tty
        char_device(5, Some(2)), // ptmx
        char_device(136, None),  // the pseudo-terminals in /dev/pts
    ]);
    // A FIFO (`p`) is no device: the cgroup has no say over it.
    let devices = nodes.iter().filter_map(|node| {
        let kind = match node.typ().as_str() {
            "b" => 'b',
            "c" | "u" => 'c',
            _ => return None,
        };
        Some(DeviceRule {
            allow: true,
            kind,
            major: Some(node.major()),
            minor: Some(node.minor()),
            access: "rwm".into(),
        })
    });
    resources.devices.extend(devices);
    resources
}
