//! Progress lines on stderr: which phase a scenario is in, with the seconds since it started, so
//! that a long run shows where it is (and where it hangs). stdout keeps the figures, and with
//! `--json` the JSON document, for whatever reads them.

use std::fmt::Display;
use std::time::Instant;

pub struct Progress {
    scenario: &'static str,
    started: Instant,
}

impl Progress {
    pub fn new(scenario: &'static str) -> Progress {
        Progress {
            scenario,
            started: Instant::now(),
        }
    }

    pub fn phase(&self, what: impl Display) {
        eprintln!(
            "[{:>6.1} s] {}: {what}",
            self.started.elapsed().as_secs_f64(),
            self.scenario
        );
    }
}
