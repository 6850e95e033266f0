//! `--help` text: visible flags grouped as in the reference's help output.

use std::fmt::Write;

use super::flags::{FlagDef, Kind, FLAGS};
use super::VERSION;

pub(crate) fn render() -> String {
    let mut out = format!(
        "NAME:\n   anycable-go - AnyCable, the real-time server (anycable-rs)\n\nUSAGE:\n   anycable-go [global options]\n   anycable-go doctor [global options]  check the configuration, the machine and the backends\n\n\
         VERSION:\n   {VERSION}\n\nGLOBAL OPTIONS:\n"
    );
    let mut group = "";
    for flag in FLAGS.iter().filter(|f| !f.hidden) {
        if flag.group != group {
            group = flag.group;
            if group != "(ungrouped)" {
                let _ = write!(out, "\n   {group}\n\n");
            }
        }
        let _ = writeln!(out, "   {}", line(flag));
    }
    out.push_str("   --help, -h     show help\n   --version, -v  print the version\n");
    out
}

fn line(flag: &FlagDef) -> String {
    let mut text = match flag.kind {
        Kind::Bool => format!("--{}  {}", flag.name, flag.usage),
        _ => format!("--{} value  {}", flag.name, flag.usage),
    };
    let has_default = match flag.kind {
        Kind::Bool => flag.default == "true",
        Kind::Int => flag.default != "0",
        _ => !flag.default.is_empty(),
    };
    if has_default {
        match flag.kind {
            Kind::Str | Kind::List { .. } => write!(text, " (default: {:?})", flag.default),
            _ => write!(text, " (default: {})", flag.default),
        }
        .unwrap_or_default();
    }
    if !flag.feature.is_built() {
        text.push_str(" (not implemented yet)");
    }
    if !flag.env.is_empty() {
        let vars: Vec<String> = flag.env.iter().map(|v| format!("${v}")).collect();
        let _ = write!(text, " [{}]", vars.join(", "));
    }
    text
}
