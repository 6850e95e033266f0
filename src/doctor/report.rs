//! What the checks found, and how it is printed: one line per finding, grouped by topic, each
//! problem with the change that fixes it.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Works as configured (said so the reader knows it was checked).
    Ok,
    /// Works, but probably not as meant; does not fail the run.
    Warning,
    /// Will not work: the run exits non-zero.
    Problem,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub level: Level,
    pub text: String,
    /// What to change, for warnings and problems.
    pub fix: Option<String>,
}

impl Finding {
    pub fn ok(text: impl Into<String>) -> Finding {
        Finding {
            level: Level::Ok,
            text: text.into(),
            fix: None,
        }
    }

    pub fn warning(text: impl Into<String>, fix: impl Into<String>) -> Finding {
        Finding {
            level: Level::Warning,
            text: text.into(),
            fix: Some(fix.into()),
        }
    }

    pub fn problem(text: impl Into<String>, fix: impl Into<String>) -> Finding {
        Finding {
            level: Level::Problem,
            text: text.into(),
            fix: Some(fix.into()),
        }
    }
}

/// The findings of one topic ("Secrets", "Backends", ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub title: &'static str,
    pub findings: Vec<Finding>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub sections: Vec<Section>,
}

impl Report {
    pub fn add(&mut self, title: &'static str, findings: Vec<Finding>) {
        if !findings.is_empty() {
            self.sections.push(Section { title, findings });
        }
    }

    pub fn count(&self, level: Level) -> usize {
        self.sections
            .iter()
            .flat_map(|s| &s.findings)
            .filter(|f| f.level == level)
            .count()
    }

    pub fn has_problems(&self) -> bool {
        self.count(Level::Problem) > 0
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for section in &self.sections {
            writeln!(f, "{}", section.title)?;
            for finding in &section.findings {
                let label = match finding.level {
                    Level::Ok => "ok     ",
                    Level::Warning => "WARNING",
                    Level::Problem => "PROBLEM",
                };
                writeln!(f, "  {label} {}", finding.text)?;
                if let Some(fix) = &finding.fix {
                    writeln!(f, "          -> {fix}")?;
                }
            }
        }
        let (problems, warnings) = (self.count(Level::Problem), self.count(Level::Warning));
        let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
        write!(
            f,
            "{}, {}",
            plural(problems, "problem"),
            plural(warnings, "warning")
        )
    }
}
