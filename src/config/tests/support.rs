//! Helpers: isolated temp dirs, env maps, loading shortcuts.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::config::{load, Config, ConfigError, Loaded};

/// A fresh empty directory under the system temp dir (removed on drop).
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let dir =
            std::env::temp_dir().join(format!("anycable-rs-config-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).expect("write temp file");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// Loads in an empty cwd.
pub fn try_load(list: &[&str], pairs: &[(&str, &str)]) -> Result<Loaded, ConfigError> {
    let dir = TempDir::new();
    load(&args(list), &env(pairs), &dir.0)
}

/// Loads in an empty cwd and expects a runnable config.
pub fn run(list: &[&str], pairs: &[(&str, &str)]) -> Config {
    match try_load(list, pairs) {
        Ok(Loaded::Run(cfg)) => *cfg,
        other => panic!("expected a config for {list:?}, got {other:?}"),
    }
}

pub fn error(list: &[&str], pairs: &[(&str, &str)]) -> String {
    match try_load(list, pairs) {
        Err(e) => e.to_string(),
        other => panic!("expected an error for {list:?}, got {other:?}"),
    }
}
