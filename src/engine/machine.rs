//! The machine the planner plans for: the cache sizes that decide what stays close to a
//! core, read once from the operating system.

use std::sync::OnceLock;

/// Cache sizes of one core, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Machine {
    /// The L1 data cache.
    pub l1d_bytes: usize,
    /// The L2 cache (private to a core on every CPU the crate has been tuned on).
    pub l2_bytes: usize,
}

impl Machine {
    /// What a CPU whose caches cannot be read is assumed to have.
    pub const FALLBACK: Machine = Machine {
        l1d_bytes: 32 * 1024,
        l2_bytes: 512 * 1024,
    };

    /// This machine's caches as cpu0 reports them (Linux's sysfs), read once per process;
    /// [`Machine::FALLBACK`]'s for a size that cannot be read.
    pub fn detect() -> Machine {
        static DETECTED: OnceLock<Machine> = OnceLock::new();
        *DETECTED.get_or_init(|| Machine {
            l1d_bytes: cache_bytes(0).unwrap_or(Machine::FALLBACK.l1d_bytes),
            l2_bytes: cache_bytes(2).unwrap_or(Machine::FALLBACK.l2_bytes),
        })
    }
}

/// The size of cpu0's cache `index` (0: L1d, 2: L2 on Linux), from a sysfs text such as
/// `48K` or `2048K`.
fn cache_bytes(index: usize) -> Option<usize> {
    let path = format!("/sys/devices/system/cpu/cpu0/cache/index{index}/size");
    parse_size(std::fs::read_to_string(path).ok()?.trim())
}

/// `48K`, `2M` or a plain byte count.
fn parse_size(s: &str) -> Option<usize> {
    let (num, mult) = match s.strip_suffix('K') {
        Some(n) => (n, 1024),
        None => match s.strip_suffix('M') {
            Some(n) => (n, 1024 * 1024),
            None => (s, 1),
        },
    };
    num.parse::<usize>().ok().map(|n| n * mult)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysfs_sizes_parse() {
        assert_eq!(parse_size("48K"), Some(48 * 1024));
        assert_eq!(parse_size("2M"), Some(2 << 20));
        assert_eq!(parse_size("512"), Some(512));
        assert_eq!(parse_size("big"), None);
    }
}
