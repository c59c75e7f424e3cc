//! `--memory`, `--cpus`, `--pids-limit`: parsed and checked before anything
//! is created, so a typo never leaves a half-made container behind.

/// The limits of one container. `None` means "no limit".
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Limits {
    /// Bytes of memory, swap not allowed beyond it.
    pub memory: Option<u64>,
    /// CPU bandwidth: `quota` microseconds of CPU time per `period`.
    pub cpu: Option<CpuQuota>,
    /// Most processes (and threads) at once.
    pub pids: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuQuota {
    pub quota_us: u64,
    pub period_us: u64,
}

/// The scheduler period we divide: 100 ms, the kernel's default.
pub const CPU_PERIOD_US: u64 = 100_000;

/// Below this a container can't even start its shell (Docker's minimum too).
pub const MIN_MEMORY: u64 = 6 * 1024 * 1024;

/// The pids limit counts the container's init too: below two processes it
/// could never start its command.
pub const MIN_PIDS: u64 = 2;

#[derive(Debug, Clone, clap::Args)]
pub struct LimitArgs {
    /// Memory limit, e.g. 64m, 1g, 1.5g or plain bytes (k, m, g are powers
    /// of 1024). No swap is allowed beyond it. Over it, the kernel's OOM
    /// killer ends the container.
    #[arg(long, value_name = "SIZE", value_parser = parse_memory)]
    pub memory: Option<u64>,

    /// CPUs the container may use, e.g. 0.5 for half of one CPU, 2 for two.
    #[arg(long, value_name = "N", value_parser = parse_cpus)]
    pub cpus: Option<CpuQuota>,

    /// Most processes the container may have at once, its init included
    /// (contains fork bombs). At least 2: init and the command.
    #[arg(long, value_name = "N", value_parser = parse_pids)]
    pub pids_limit: Option<u64>,
}

impl From<&LimitArgs> for Limits {
    fn from(args: &LimitArgs) -> Self {
        Limits {
            memory: args.memory,
            cpu: args.cpus,
            pids: args.pids_limit,
        }
    }
}

/// `64m`, `1g`, `1.5g`, `512k`, `100000000`, also `64mb` / `64MiB`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let lower = text.trim().to_ascii_lowercase();
    let split = lower
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(lower.len());
    let (number, unit) = lower.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size; write it like 64m, 1g or 1048576"))?;
    let multiplier: u64 = match unit {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => {
            return Err(format!(
                "{text:?}: unknown unit {unit:?}; use b, k, m, g or t"
            ));
        }
    };
    let bytes = value * multiplier as f64;
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(format!("{text:?} is too large"));
    }
    Ok(bytes as u64)
}

fn parse_memory(text: &str) -> Result<u64, String> {
    let bytes = parse_size(text)?;
    if bytes < MIN_MEMORY {
        return Err(format!(
            "{text:?} is below the minimum memory limit of 6 MiB"
        ));
    }
    Ok(bytes)
}

/// `0.5` -> 50 ms of CPU time per 100 ms period.
pub fn parse_cpus(text: &str) -> Result<CpuQuota, String> {
    let cpus: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a number of CPUs; write it like 0.5 or 2"))?;
    let available = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    if !(0.01..=available).contains(&cpus) {
        return Err(format!(
            "{text:?}: the range of CPUs is from 0.01 to {available} on this machine"
        ));
    }
    let quota_us = (cpus * CPU_PERIOD_US as f64).round() as u64;
    Ok(CpuQuota {
        quota_us,
        period_us: CPU_PERIOD_US,
    })
}

fn parse_pids(text: &str) -> Result<u64, String> {
    match text.trim().parse::<u64>() {
        Ok(n) if n >= MIN_PIDS => Ok(n),
        Ok(_) => Err(format!(
            "{text:?} is not a process count a container can start with: --pids-limit \
             must be at least {MIN_PIDS}, as the container's init and its command \
             are a process each"
        )),
        Err(_) => Err(format!(
            "{text:?} is not a process count; give a whole number of at least {MIN_PIDS}"
        )),
    }
}

/// `67108864` -> "64 MiB", for messages.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if value.fract() == 0.0 {
        format!("{value} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_in_the_usual_notations() {
        assert_eq!(parse_size("64m"), Ok(64 << 20));
        assert_eq!(parse_size("64M"), Ok(64 << 20));
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert_eq!(parse_size("1.5g"), Ok(3 << 29));
        assert_eq!(parse_size("512k"), Ok(512 << 10));
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
    }

    #[test]
    fn bad_sizes_say_what_is_wrong() {
        assert!(parse_size("64x").unwrap_err().contains("unknown unit"));
        assert!(parse_size("lots").unwrap_err().contains("is not a size"));
        assert!(parse_size("-5m").is_err());
        assert!(parse_size("").is_err());
        assert!(parse_memory("1m").unwrap_err().contains("minimum"));
    }

    #[test]
    fn cpus_become_quota_per_period() {
        assert_eq!(
            parse_cpus("0.5"),
            Ok(CpuQuota {
                quota_us: 50_000,
                period_us: 100_000
            })
        );
        assert_eq!(
            parse_cpus("1"),
            Ok(CpuQuota {
                quota_us: 100_000,
                period_us: 100_000
            })
        );
        assert!(parse_cpus("0").is_err());
        assert!(parse_cpus("1000").unwrap_err().contains("range of CPUs"));
        assert!(parse_cpus("half").is_err());
    }

    #[test]
    fn pids_limit_leaves_room_for_init_and_the_command() {
        assert_eq!(parse_pids("20"), Ok(20));
        assert_eq!(parse_pids("2"), Ok(2));
        let one = parse_pids("1").unwrap_err();
        assert!(one.contains("--pids-limit must be at least 2"), "{one}");
        assert!(parse_pids("0").is_err());
        assert!(parse_pids("-1").is_err());
        assert!(parse_pids("many").is_err());
    }

    #[test]
    fn sizes_print_for_humans() {
        assert_eq!(format_size(64 << 20), "64 MiB");
        assert_eq!(format_size(3 << 29), "1.5 GiB");
        assert_eq!(format_size(100), "100 B");
    }
}
