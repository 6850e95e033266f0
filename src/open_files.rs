//! The open-files limit (RLIMIT_NOFILE): every connection, listener and backend connection
//! takes one file descriptor, so this limit caps the connections a node can hold.

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

/// The soft and hard open-files limits; `None` means unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFiles {
    pub soft: Option<u64>,
    pub hard: Option<u64>,
}

impl OpenFiles {
    pub fn current() -> OpenFiles {
        let limit = getrlimit(Resource::Nofile);
        OpenFiles {
            soft: limit.current,
            hard: limit.maximum,
        }
    }

    /// Raises the soft limit to the hard one, as the Go runtime does at start (Go ≥ 1.19), so
    /// anycable-rs holds as many connections as AnyCable-Go under the same limits. Returns the
    /// limits in force afterwards (unchanged when the kernel refuses).
    pub fn raise_soft_to_hard() -> OpenFiles {
        let before = OpenFiles::current();
        if before.soft != before.hard {
            let _ = setrlimit(
                Resource::Nofile,
                Rlimit {
                    current: before.hard,
                    maximum: before.hard,
                },
            );
        }
        OpenFiles::current()
    }

    /// The soft limit in words, for logs.
    pub fn soft_text(&self) -> String {
        self.soft
            .map_or_else(|| "unlimited".to_string(), |n| n.to_string())
    }
}
