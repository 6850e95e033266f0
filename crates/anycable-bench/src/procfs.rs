//! Reading a process's memory and CPU time from /proc.

/// Resident set size in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The kernel's slab memory in KiB (`Slab:` in /proc/meminfo): socket structures, file
/// descriptors, epoll entries. System-wide, so it also counts the benchmark's own sockets.
pub fn kernel_slab_kib() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|l| l.starts_with("Slab:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// CPU time consumed so far, split into user and system seconds.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuTime {
    pub user: f64,
    pub system: f64,
}

impl CpuTime {
    pub fn read(pid: u32) -> Option<CpuTime> {
        CpuTime::from_stat(format!("/proc/{pid}/stat"))
    }

    /// The threads of this process named `name`, together.
    pub fn of_own_threads(name: &str) -> Option<CpuTime> {
        let mut total = CpuTime::default();
        for entry in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
            let task = entry.path();
            let comm = std::fs::read_to_string(task.join("comm")).unwrap_or_default();
            // A thread that ended since the listing has nothing left to count.
            if comm.trim_end() == name {
                if let Some(time) = CpuTime::from_stat(task.join("stat")) {
                    total.user += time.user;
                    total.system += time.system;
                }
            }
        }
        Some(total)
    }

    fn from_stat(path: impl AsRef<std::path::Path>) -> Option<CpuTime> {
        let stat = std::fs::read_to_string(path).ok()?;
        // Fields after the command name (which may contain spaces) start after the last ')'.
        let rest = &stat[stat.rfind(')')? + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // utime and stime are fields 14 and 15 of the whole line, 12 and 13 of `rest`.
        let ticks = rustix::param::clock_ticks_per_second() as f64;
        Some(CpuTime {
            user: fields.get(11)?.parse::<f64>().ok()? / ticks,
            system: fields.get(12)?.parse::<f64>().ok()? / ticks,
        })
    }

    pub fn since(self, earlier: CpuTime) -> CpuTime {
        CpuTime {
            user: self.user - earlier.user,
            system: self.system - earlier.system,
        }
    }

    pub fn total(self) -> f64 {
        self.user + self.system
    }
}
