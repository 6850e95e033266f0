//! The configuration reference (`docs/configuration.md`) rendered from the flag table, so the page
//! cannot describe a flag, env var, TOML key or default the server does not have. The page's
//! hand-written introduction sits above [`GENERATED_MARKER`]; everything below it is [`render`]'s
//! output, and `tests/config_reference.rs` fails when the two drift.

use std::fmt::Write;

use super::flags::{FlagDef, Kind, FLAGS};

/// The line in `docs/configuration.md` after which the page is generated.
pub const GENERATED_MARKER: &str =
    "<!-- Generated from src/config/flags.rs below this line: edit the table there, then run `UPDATE_DOCS=1 cargo test --test config_reference`. -->";

/// The generated part of the page: the flags grouped as `--help` groups them (hidden ones
/// included, marked), then the settings only the TOML file can set.
pub fn render() -> String {
    let mut out = String::new();
    out.push_str("## Flags\n\n");
    out.push_str(concat!(
        "Groups and order follow `--help`. Every flag can also be given as its environment variable\n",
        "(the first one listed wins when several are set) and, where a key is listed, in the TOML\n",
        "file. Marks: *hidden* (accepted, not listed by `--help`), *deprecated* (accepted, a newer\n",
        "setting replaces it), *not implemented yet* (the server refuses to start when it is set to\n",
        "anything but its default), *secret* (never echoed in messages).\n",
    ));
    let mut group = None;
    for flag in FLAGS.iter().filter(|f| !f.file_only) {
        if group != Some(flag.group) {
            group = Some(flag.group);
            let _ = write!(
                out,
                "\n### {}\n\n| Flag | Environment | TOML key | Type | Default | Meaning |\n|---|---|---|---|---|---|\n",
                heading(flag.group)
            );
        }
        let env: Vec<String> = flag.env.iter().map(|v| code(v)).collect();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} |",
            code(&format!("--{}", flag.name)),
            or_dash(env.join(", ")),
            or_dash(flag.toml.map(code).unwrap_or_default()),
            kind(flag.kind),
            default(flag),
            meaning(flag),
        );
    }
    out.push_str(concat!(
        "\n## File-only settings\n\n",
        "These have no flag and no environment variable; set them in the TOML file (`section.key`\n",
        "is `key` in the `[section]` table).\n\n",
        "| TOML key | Type | Default | Meaning |\n|---|---|---|---|\n",
    ));
    for flag in FLAGS.iter().filter(|f| f.file_only) {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            code(flag.toml.unwrap_or(flag.name)),
            kind(flag.kind),
            default(flag),
            meaning(flag),
        );
    }
    out
}

/// `--help` prints the first group without a heading.
fn heading(group: &str) -> &str {
    if group == "(ungrouped)" {
        "General"
    } else {
        group
    }
}

fn kind(kind: Kind) -> String {
    match kind {
        Kind::Bool => "boolean".to_string(),
        Kind::Int => "integer".to_string(),
        Kind::Str => "string".to_string(),
        Kind::List { sep, toml_array } => {
            let in_file = if toml_array {
                "array"
            } else {
                "comma-separated string"
            };
            format!("list (`{sep}`-separated; TOML: {in_file})")
        }
        Kind::Map => "map (`k:v,k:v`; TOML: table)".to_string(),
    }
}

fn default(flag: &FlagDef) -> String {
    or_dash(if flag.default.is_empty() {
        String::new()
    } else {
        code(flag.default)
    })
}

fn meaning(flag: &FlagDef) -> String {
    let mut text = escape(flag.usage);
    let marks: Vec<&str> = [
        (flag.hidden && !flag.file_only, "hidden"),
        (flag.deprecated, "deprecated"),
        (!flag.feature.is_built(), "not implemented yet"),
        (flag.secret, "secret"),
    ]
    .into_iter()
    .filter_map(|(on, mark)| on.then_some(mark))
    .collect();
    if !marks.is_empty() {
        let _ = write!(text, " *({})*", marks.join(", "));
    }
    text
}

fn code(text: &str) -> String {
    format!("`{}`", text.replace('|', "\\|"))
}

/// Backslash-escapes what Markdown would read as markup in a help text (`*suffix`, `<path>`).
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '\\' | '*' | '<' | '|' | '[' | ']' | '`') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn or_dash(text: String) -> String {
    if text.is_empty() {
        "–".to_string()
    } else {
        text
    }
}
