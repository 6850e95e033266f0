//! Configuration values from every source an operator (or a platform preset) uses: command-line
//! flags, environment variables and the TOML file, all loaded together as at start-up. Values
//! are attached to real flag names from the flag table, so every value parser is reached.
#![no_main]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::OnceLock;

use anycable_rs::config::flags::FLAGS;
use anycable_rs::config::{load, Loaded};
use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
enum Place {
    /// `--name=value`
    Inline,
    /// `--name value`
    Separate,
    /// The flag's environment variable.
    Env,
    /// `key = value` in the TOML file, `value` being TOML text.
    Toml,
}

#[derive(Arbitrary, Debug)]
struct Setting<'a> {
    flag: u16,
    place: Place,
    value: &'a str,
}

/// Environment variables the platform presets look at.
const PRESET_ENV: &[&str] = &[
    "FLY_APP_NAME",
    "FLY_ALLOC_ID",
    "FLY_REGION",
    "ANYCABLE_FLY_RPC_APP_NAME",
    "HEROKU_APP_ID",
    "HEROKU_DYNO_ID",
];

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    settings: Vec<Setting<'a>>,
    /// Arguments as given, flags or not.
    args: Vec<&'a str>,
    presets: Vec<(u8, &'a str)>,
    /// More TOML text (tables, arrays, anything).
    toml: &'a str,
}

/// A directory of this process for the TOML file (the loader reads a path).
fn work_dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("anycable-fuzz-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    })
}

fuzz_target!(|input: Input| {
    let mut args: Vec<String> = Vec::new();
    let mut env = HashMap::new();
    let mut toml = String::new();
    for setting in &input.settings {
        let flag = &FLAGS[usize::from(setting.flag) % FLAGS.len()];
        match setting.place {
            Place::Inline => args.push(format!("--{}={}", flag.name, setting.value)),
            Place::Separate => {
                args.push(format!("--{}", flag.name));
                args.push(setting.value.to_string());
            }
            Place::Env => {
                if let Some(name) = flag.env.first() {
                    env.insert(name.to_string(), setting.value.to_string());
                }
            }
            Place::Toml => {
                if let Some(key) = flag.toml {
                    toml.push_str(&format!("{key} = {}\n", setting.value));
                }
            }
        }
    }
    args.extend(input.args.iter().map(|a| a.to_string()));
    for (name, value) in input.presets {
        let name = PRESET_ENV[usize::from(name) % PRESET_ENV.len()];
        env.insert(name.to_string(), value.to_string());
    }
    toml.push_str(input.toml);
    // The file is ours; the fuzzer does not get to point the loader at other paths.
    if args
        .iter()
        .any(|a| a.contains("config-path") || a.contains("config_path"))
    {
        return;
    }
    env.retain(|name, _| !name.contains("CONFIG_PATH"));
    let dir = work_dir();
    // First, so that a `--` among the fuzzer's arguments does not cut it off.
    let file_arg = if toml.is_empty() {
        "--ignore-config-path".to_string()
    } else {
        let path = dir.join("anycable.toml");
        std::fs::write(&path, &toml).unwrap();
        format!("--config-path={}", path.display())
    };
    args.insert(0, file_arg);
    if let Ok(Loaded::Run(config)) = load(&args, &env, dir) {
        config.unsupported_settings();
    }
});
