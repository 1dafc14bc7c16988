//! The machine the planner plans for: the cache sizes that decide what stays close to a
//! core and which CPUs share them, read once from the operating system (or taken from
//! `LSTM_KERNELS_MACHINE`, so that tests and benches can act as another machine).
//!
//! Linux: sysfs (`/sys/devices/system/cpu/cpuN/cache/indexK/`) for every CPU of the
//! process's affinity mask, keeping the smallest size of each level (on a CPU whose
//! cores differ, such as performance and efficiency cores, the plan must fit the
//! smaller); other x86_64 systems: CPUID (leaf 4 on Intel, `0x8000_001D` on AMD); macOS:
//! `sysctl` (`hw.l1dcachesize`, `hw.l2cachesize`, `hw.l3cachesize`). What cannot be read
//! is [`Machine::FALLBACK`]'s.

use std::sync::OnceLock;

/// The environment variable that replaces the detected caches:
/// `l1d=48K,l2=2M,l3=32M,l2_shared=1,l3_shared=8,cpus=4` (any subset; sizes in bytes or
/// with `K`/`M`; `*_shared` is how many CPUs share one such cache, `cpus` how many the
/// process may run on).
pub(crate) const MACHINE_VAR: &str = "LSTM_KERNELS_MACHINE";

/// Cache sizes of one core, in bytes, and how many CPUs share each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Machine {
    /// The L1 data cache.
    pub l1d_bytes: usize,
    /// The L2 cache.
    pub l2_bytes: usize,
    /// The last-level (L3) cache; 0 when there is none.
    pub l3_bytes: usize,
    /// CPUs sharing one L2 (1 on the x86 server CPUs the crate is tuned on; 2 with SMT
    /// siblings both in the mask; 4 on some Arm clusters and Intel E-core modules).
    pub l2_shared: usize,
    /// CPUs sharing one L3.
    pub l3_shared: usize,
    /// CPUs this process may run on (its affinity mask): more threads than this only
    /// wait for each other at every barrier.
    pub cpus: usize,
}

impl Machine {
    /// What a CPU whose caches cannot be read is assumed to have.
    pub const FALLBACK: Machine = Machine {
        l1d_bytes: 32 * 1024,
        l2_bytes: 512 * 1024,
        l3_bytes: 0,
        l2_shared: 1,
        l3_shared: 1,
        cpus: 1024,
    };

    /// This machine's caches, read once per process (see the module's doc), with
    /// `LSTM_KERNELS_MACHINE`'s values in place of the detected ones.
    pub fn detect() -> Machine {
        static DETECTED: OnceLock<Machine> = OnceLock::new();
        *DETECTED.get_or_init(|| {
            let detected = Machine {
                cpus: process_cpus(),
                ..os::read().unwrap_or(Machine::FALLBACK)
            };
            match std::env::var(MACHINE_VAR) {
                Ok(spec) => detected.with_overrides(&spec).unwrap_or_else(|e| {
                    eprintln!("lstm-kernels: ignoring {MACHINE_VAR}: {e}");
                    detected
                }),
                Err(_) => detected,
            }
        })
    }

    /// L2 bytes one thread can count on when every CPU sharing an L2 runs a thread.
    pub fn l2_per_thread(&self) -> usize {
        self.l2_bytes / self.l2_shared.max(1)
    }

    /// `self` with the values `spec` (`l1d=48K,l2=1M,...`) gives.
    fn with_overrides(mut self, spec: &str) -> Result<Machine, String> {
        for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (key, value) = item
                .split_once('=')
                .ok_or_else(|| format!("`{item}` is not key=value"))?;
            let bytes = || parse_size(value).ok_or_else(|| format!("`{value}` is not a size"));
            let count = || {
                value
                    .parse::<usize>()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or_else(|| format!("`{value}` is not a CPU count"))
            };
            match key {
                "l1d" => self.l1d_bytes = bytes()?,
                "l2" => self.l2_bytes = bytes()?,
                "l3" => self.l3_bytes = bytes()?,
                "l2_shared" => self.l2_shared = count()?,
                "l3_shared" => self.l3_shared = count()?,
                "cpus" => self.cpus = count()?,
                other => {
                    return Err(format!(
                        "unknown key `{other}` (l1d, l2, l3, l2_shared, l3_shared, cpus)"
                    ))
                }
            }
        }
        Ok(self)
    }
}

/// One cache as an operating system describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cache {
    /// 1, 2, 3.
    level: u32,
    /// Data or unified (instruction caches are left out by the readers).
    bytes: usize,
    /// CPUs sharing it (of the process's mask where the reader knows the mask).
    shared: usize,
}

/// The machine the caches of several CPUs make: per level the smallest size, and the
/// largest sharing (the plan must fit the tightest core).
fn combine(cpus: &[Vec<Cache>]) -> Option<Machine> {
    let level = |l: u32| -> Option<(usize, usize)> {
        let found: Vec<Cache> = cpus
            .iter()
            .filter_map(|c| c.iter().find(|x| x.level == l).copied())
            .collect();
        let bytes = found.iter().map(|c| c.bytes).min()?;
        let shared = found.iter().map(|c| c.shared).max()?;
        Some((bytes, shared.max(1)))
    };
    let (l1d_bytes, _) = level(1)?;
    let (l2_bytes, l2_shared) = level(2)?;
    let (l3_bytes, l3_shared) = level(3).unwrap_or((0, 1));
    Some(Machine {
        l1d_bytes,
        l2_bytes,
        l3_bytes,
        l2_shared,
        l3_shared,
        cpus: cpus.len().max(1),
    })
}

/// `48K`, `2M`, `1G` or a plain byte count.
fn parse_size(s: &str) -> Option<usize> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last()? {
        (i, 'K' | 'k') => (&s[..i], 1 << 10),
        (i, 'M' | 'm') => (&s[..i], 1 << 20),
        (i, 'G' | 'g') => (&s[..i], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<usize>().ok()?.checked_mul(mult)
}

/// A Linux CPU list (`0-3,8,10-11`) as CPU numbers.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))] // sysfs lists only
fn parse_cpu_list(s: &str) -> Option<Vec<usize>> {
    let mut cpus = Vec::new();
    for part in s.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (a.parse::<usize>().ok()?, b.parse::<usize>().ok()?);
                if b < a || b - a > 1 << 16 {
                    return None;
                }
                cpus.extend(a..=b);
            }
            None => cpus.push(part.parse().ok()?),
        }
    }
    Some(cpus)
}

/// The CPUs the calling thread may run on (its affinity mask, which `taskset` and
/// cgroups set), in increasing order; empty where that cannot be read.
#[cfg(target_os = "linux")]
pub(crate) fn allowed_cpus() -> Vec<usize> {
    // SAFETY: `cpu_set_t` is plain bits, for which all zeros is a valid (empty) set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: the kernel writes at most `size_of::<cpu_set_t>()` bytes into `set`.
    let got =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if got != 0 {
        return Vec::new();
    }
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: `c` is below CPU_SETSIZE, the capacity of the set.
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .collect()
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn allowed_cpus() -> Vec<usize> {
    Vec::new()
}

/// How many CPUs this process may run on: its affinity mask, or every CPU where the mask
/// cannot be read.
fn process_cpus() -> usize {
    match allowed_cpus().len() {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
}

#[cfg(target_os = "linux")]
mod os {
    use super::{combine, parse_cpu_list, parse_size, Cache, Machine};

    /// The data and unified caches sysfs lists for `cpu`, sharing counted within
    /// `allowed`.
    fn caches_of(cpu: usize, allowed: &[usize]) -> Vec<Cache> {
        let dir = format!("/sys/devices/system/cpu/cpu{cpu}/cache");
        let read = |index: usize, file: &str| {
            std::fs::read_to_string(format!("{dir}/index{index}/{file}")).ok()
        };
        (0..16)
            .map_while(|i| read(i, "level").map(|level| (i, level)))
            .filter_map(|(i, level)| {
                let kind = read(i, "type")?;
                if kind.trim() == "Instruction" {
                    return None;
                }
                let shared = read(i, "shared_cpu_list")
                    .and_then(|s| parse_cpu_list(&s))
                    .map_or(1, |l| l.iter().filter(|c| allowed.contains(c)).count());
                Some(Cache {
                    level: level.trim().parse().ok()?,
                    bytes: parse_size(&read(i, "size")?)?,
                    shared: shared.max(1),
                })
            })
            .collect()
    }

    /// The caches of every CPU of the affinity mask (cpu0's where it cannot be read).
    pub(super) fn read() -> Option<Machine> {
        let allowed = match super::allowed_cpus() {
            mask if mask.is_empty() => vec![0],
            mask => mask,
        };
        let cpus: Vec<Vec<Cache>> = allowed.iter().map(|&c| caches_of(c, &allowed)).collect();
        combine(&cpus).or_else(super::cpuid::read)
    }
}

#[cfg(target_os = "macos")]
mod os {
    use super::Machine;

    fn sysctl(name: &str) -> Option<usize> {
        let name = std::ffi::CString::new(name).ok()?;
        let mut value: u64 = 0;
        let mut len = std::mem::size_of::<u64>();
        // SAFETY: `value` and `len` are valid for the call, which writes at most `len`
        // bytes into `value`; no new value is set.
        let rc = unsafe {
            libc::sysctlbyname(
                name.as_ptr(),
                (&mut value as *mut u64).cast(),
                &mut len,
                std::ptr::null_mut(),
                0,
            )
        };
        (rc == 0 && value > 0).then_some(value as usize)
    }

    pub(super) fn read() -> Option<Machine> {
        Some(Machine {
            cpus: Machine::FALLBACK.cpus,
            l1d_bytes: sysctl("hw.l1dcachesize")?,
            l2_bytes: sysctl("hw.l2cachesize")?,
            l3_bytes: sysctl("hw.l3cachesize").unwrap_or(0),
            // Apple's clusters share their L2; the per-level CPU counts need more keys
            // than every macOS version has, so this is the cluster size of the M1-M4.
            l2_shared: sysctl("hw.perflevel0.cpusperl2").unwrap_or(4),
            l3_shared: 1,
        })
    }
}

#[cfg(not(any(target_os = "linux", target_os = "macos")))]
mod os {
    use super::Machine;

    pub(super) fn read() -> Option<Machine> {
        super::cpuid::read()
    }
}

/// The caches from CPUID (x86_64), for systems without sysfs.
mod cpuid {
    use super::Machine;
    #[cfg(target_arch = "x86_64")]
    use super::{combine, Cache};

    /// Deterministic cache parameters: Intel leaf 4, else AMD's `0x8000_001D` (same
    /// layout; AMD leaves leaf 4 empty).
    #[cfg(target_arch = "x86_64")]
    pub(super) fn read() -> Option<Machine> {
        use std::arch::x86_64::__cpuid_count;
        // SAFETY: CPUID exists on every x86_64 CPU; leaf 0 and 0x8000_0000 give the
        // highest leaves, checked before the cache leaves are asked for. (Newer Rust
        // declares the intrinsic safe; the block keeps the crate's MSRV building.)
        #[allow(unused_unsafe)]
        let (max, max_ext) =
            unsafe { (__cpuid_count(0, 0).eax, __cpuid_count(0x8000_0000, 0).eax) };
        let mut caches = Vec::new();
        for leaf in [4, 0x8000_001D] {
            let supported = if leaf == 4 { max >= 4 } else { max_ext >= leaf };
            if supported && caches.is_empty() {
                caches = cache_leaf(leaf);
            }
        }
        combine(&[caches])
    }

    /// The data and unified caches one deterministic-cache-parameters leaf lists.
    #[cfg(target_arch = "x86_64")]
    fn cache_leaf(leaf: u32) -> Vec<Cache> {
        let mut caches = Vec::new();
        for sub in 0..16 {
            // SAFETY: the caller checked that the CPU has `leaf`.
            #[allow(unused_unsafe)]
            let r = unsafe { std::arch::x86_64::__cpuid_count(leaf, sub) };
            let kind = r.eax & 0x1f;
            if kind == 0 {
                break;
            }
            if kind == 2 {
                continue; // instruction cache
            }
            let ways = ((r.ebx >> 22) & 0x3ff) as usize + 1;
            let parts = ((r.ebx >> 12) & 0x3ff) as usize + 1;
            let line = (r.ebx & 0xfff) as usize + 1;
            let sets = r.ecx as usize + 1;
            caches.push(Cache {
                level: (r.eax >> 5) & 0x7,
                bytes: ways * parts * line * sets,
                shared: ((r.eax >> 14) & 0xfff) as usize + 1,
            });
        }
        caches
    }

    #[cfg(not(target_arch = "x86_64"))]
    pub(super) fn read() -> Option<Machine> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_cpu_lists_parse() {
        assert_eq!(parse_size("48K"), Some(48 * 1024));
        assert_eq!(parse_size("2M"), Some(2 << 20));
        assert_eq!(parse_size("266240K"), Some(266240 << 10));
        assert_eq!(parse_size("512"), Some(512));
        assert_eq!(parse_size("big"), None);
        assert_eq!(parse_size(""), None);
        assert_eq!(parse_size("99999999999999999999G"), None);
        assert_eq!(
            parse_cpu_list("0-3,8,10-11\n"),
            Some(vec![0, 1, 2, 3, 8, 10, 11])
        );
        assert_eq!(parse_cpu_list("3-1"), None);
        assert_eq!(parse_cpu_list("x"), None);
    }

    #[test]
    fn the_tightest_core_decides() {
        let cache = |level, bytes, shared| Cache {
            level,
            bytes,
            shared,
        };
        // A performance core (2 MiB L2 of its own) and an efficiency core (4 sharing
        // 4 MiB): the plan must fit the smaller L2 and the wider sharing.
        let p = vec![
            cache(1, 48 << 10, 1),
            cache(2, 2 << 20, 1),
            cache(3, 30 << 20, 8),
        ];
        let e = vec![
            cache(1, 32 << 10, 1),
            cache(2, 4 << 20, 4),
            cache(3, 30 << 20, 8),
        ];
        let m = combine(&[p.clone(), e]).unwrap();
        assert_eq!(
            m,
            Machine {
                l1d_bytes: 32 << 10,
                l2_bytes: 2 << 20,
                l3_bytes: 30 << 20,
                l2_shared: 4,
                l3_shared: 8,
                cpus: 2,
            }
        );
        assert_eq!(m.l2_per_thread(), 512 << 10);
        // No L3: 0 bytes; no L2: nothing to plan with.
        assert_eq!(combine(&[p[..2].to_vec()]).unwrap().l3_bytes, 0);
        assert_eq!(combine(&[p[..1].to_vec()]), None);
    }

    #[test]
    fn the_override_replaces_what_it_names() {
        let zen4 = Machine::FALLBACK
            .with_overrides("l1d=32K, l2=1M,l3=32M,l3_shared=8,cpus=2")
            .unwrap();
        assert_eq!(
            zen4,
            Machine {
                l1d_bytes: 32 << 10,
                l2_bytes: 1 << 20,
                l3_bytes: 32 << 20,
                l2_shared: 1,
                l3_shared: 8,
                cpus: 2,
            }
        );
        for bad in ["l2", "l2=big", "l4=1M", "l2_shared=0"] {
            assert!(Machine::FALLBACK.with_overrides(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn this_machine_reads_as_a_cpu_with_caches() {
        // Whatever the CPU, a detected machine has an L1d and an L2, the L2 at least as
        // large as the L1d, and sharing counts of at least 1.
        let m = Machine::detect();
        assert!(
            m.l1d_bytes >= 16 << 10 && m.l2_bytes >= m.l1d_bytes,
            "{m:?}"
        );
        assert!(m.l2_shared >= 1 && m.l3_shared >= 1 && m.cpus >= 1, "{m:?}");
        #[cfg(target_arch = "x86_64")]
        {
            let c = cpuid::read().expect("CPUID describes the caches");
            assert!(
                c.l1d_bytes >= 16 << 10 && c.l2_bytes >= c.l1d_bytes,
                "{c:?}"
            );
        }
    }
}
