//! `docs/configuration.md` must match the flag table: its part below the marker is rendered from
//! `src/config/flags.rs`. `UPDATE_DOCS=1 cargo test --test config_reference` rewrites that part
//! (the hand-written introduction above the marker is kept).

use std::path::PathBuf;

use anycable_rs::config::flags::FLAGS;
use anycable_rs::config::reference::{render, GENERATED_MARKER};

const REGENERATE: &str = "UPDATE_DOCS=1 cargo test --test config_reference";

fn page_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/configuration.md")
}

#[test]
fn configuration_page_matches_the_flag_table() {
    let path = page_path();
    let page = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let Some((intro, _)) = page.split_once(GENERATED_MARKER) else {
        panic!(
            "docs/configuration.md has lost its marker line; put it back under the introduction:\n{GENERATED_MARKER}"
        );
    };
    let expected = format!("{intro}{GENERATED_MARKER}\n\n{}", render());
    if page == expected {
        return;
    }
    if std::env::var_os("UPDATE_DOCS").is_some_and(|v| v == "1") {
        std::fs::write(&path, &expected)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        eprintln!("docs/configuration.md regenerated from src/config/flags.rs");
        return;
    }
    let (have, want): (Vec<&str>, Vec<&str>) = (page.lines().collect(), expected.lines().collect());
    let first_difference = (0..have.len().max(want.len()))
        .find(|&i| have.get(i) != want.get(i))
        .unwrap_or(have.len());
    let line = |lines: &[&str]| {
        lines
            .get(first_difference)
            .copied()
            .unwrap_or("(end of file)")
            .to_string()
    };
    panic!(
        "docs/configuration.md is stale: run `{REGENERATE}`\n\
         first difference at line {}:\n  page:       {}\n  flag table: {}",
        first_difference + 1,
        line(&have),
        line(&want),
    );
}

/// The comparison above only proves the page equals the renderer's output; this proves the
/// renderer leaves nothing out.
#[test]
fn reference_lists_every_flag_env_var_and_toml_key() {
    let page = render();
    for flag in FLAGS {
        if !flag.file_only {
            let name = format!("`--{}`", flag.name);
            assert!(page.contains(&name), "{name} missing from the reference");
        }
        for var in flag.env {
            assert!(page.contains(&format!("`{var}`")), "{var} missing");
        }
        if let Some(key) = flag.toml {
            assert!(page.contains(&format!("`{key}`")), "TOML key {key} missing");
        }
    }
    let rows = page.lines().filter(|l| l.starts_with("| `")).count();
    assert_eq!(
        rows,
        FLAGS.len(),
        "one table row per flag and file-only setting"
    );
}
