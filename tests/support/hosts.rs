//! Names of a test's own in `/etc/hosts` (the tests run as root), for `dns:///` targets whose
//! addresses change. Other lines are never touched: each edit rewrites the file with only this
//! name's lines changed and replaces it atomically (a rename), so a concurrent lookup of any
//! name sees the old file or the new one, never a partial one. Edits of the file by parallel
//! tests are serialised with a lock on a file of their own.

use std::fs::{File, OpenOptions};
use std::io::Write;

const HOSTS: &str = "/etc/hosts";
const LOCK: &str = "/tmp/anycable-rs-tests-etc-hosts.lock";

/// A unique host name resolved through `/etc/hosts`; its lines are removed on drop.
pub struct HostsName {
    pub name: String,
}

impl HostsName {
    pub fn new(prefix: &str) -> HostsName {
        HostsName {
            name: format!("{}.anycable-rs.test", super::unique(prefix)),
        }
    }

    /// Makes the name resolve to exactly `addresses`.
    pub fn resolve_to(&self, addresses: &[&str]) {
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(LOCK)
            .expect("open the /etc/hosts lock");
        lock.lock().expect("lock /etc/hosts edits");
        let current = std::fs::read_to_string(HOSTS).expect("read /etc/hosts");
        let suffix = format!(" {}", self.name);
        let mut text: String = current
            .lines()
            .filter(|line| !line.ends_with(&suffix))
            .map(|line| format!("{line}\n"))
            .collect();
        for address in addresses {
            text.push_str(&format!("{address}{suffix}\n"));
        }
        let staged = format!("{HOSTS}.{}", self.name);
        let mut file = File::create(&staged).expect("stage /etc/hosts");
        file.write_all(text.as_bytes()).expect("write /etc/hosts");
        file.sync_all().expect("sync /etc/hosts");
        let mode = std::fs::metadata(HOSTS).expect("/etc/hosts").permissions();
        std::fs::set_permissions(&staged, mode).expect("keep the mode of /etc/hosts");
        std::fs::rename(&staged, HOSTS).expect("replace /etc/hosts");
    }
}

impl Drop for HostsName {
    fn drop(&mut self) {
        self.resolve_to(&[]);
    }
}
