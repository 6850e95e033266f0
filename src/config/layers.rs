//! The value sources, lowest to highest priority: defaults → TOML file → env → CLI, as in
//! AnyCable-Go (its features/file_config.testfile checks the same order).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use super::flags::{find_flag, FlagDef, Kind, FLAGS};
use super::value::{parse_go_bool, parse_go_int, parse_text, split_list, Value, ValueError};
use super::ConfigError;

/// Merged raw values of every flag, plus which ones a user source (file/env/CLI) set.
#[derive(Debug, Clone)]
pub(crate) struct Raw {
    values: HashMap<&'static str, Value>,
    user_set: HashSet<&'static str>,
}

impl Raw {
    /// Every flag at its table default.
    pub(crate) fn defaults() -> Self {
        let values = FLAGS
            .iter()
            .map(|f| {
                // Defaults are static table data; a bad one is a programming error caught by tests.
                let value = parse_text(f.kind, f.default)
                    .unwrap_or_else(|e| panic!("bad default {:?} for {}: {e}", f.default, f.name));
                (f.name, value)
            })
            .collect();
        Raw {
            values,
            user_set: HashSet::new(),
        }
    }

    pub(crate) fn set(&mut self, flag: &'static FlagDef, value: Value) {
        self.values.insert(flag.name, value);
        self.user_set.insert(flag.name);
    }

    /// The value of a flag from the table (internal names only).
    pub(crate) fn get(&self, name: &str) -> &Value {
        self.values
            .get(name)
            .unwrap_or_else(|| panic!("flag {name} is not in the flag table"))
    }

    pub(crate) fn str(&self, name: &str) -> &str {
        match self.get(name) {
            Value::Str(s) => s,
            other => panic!("flag {name} is not a string: {other:?}"),
        }
    }

    pub(crate) fn list(&self, name: &str) -> &[String] {
        match self.get(name) {
            Value::List(items) => items,
            other => panic!("flag {name} is not a list: {other:?}"),
        }
    }

    pub(crate) fn bool(&self, name: &str) -> bool {
        match self.get(name) {
            Value::Bool(b) => *b,
            other => panic!("flag {name} is not a bool: {other:?}"),
        }
    }

    pub(crate) fn int(&self, name: &str) -> i64 {
        match self.get(name) {
            Value::Int(i) => *i,
            other => panic!("flag {name} is not an int: {other:?}"),
        }
    }

    /// True when the file, an env var or the CLI set the flag (even to its default value).
    pub(crate) fn is_set(&self, name: &str) -> bool {
        self.user_set.contains(name)
    }
}

/// What the command line asked for.
#[derive(Debug, Default)]
pub(crate) struct Cli {
    pub values: Vec<(&'static FlagDef, Value)>,
    pub help: bool,
    pub version: bool,
}

impl Cli {
    fn last(&self, name: &str) -> Option<&Value> {
        self.values
            .iter()
            .rev()
            .find(|(f, _)| f.name == name)
            .map(|(_, v)| v)
    }

    pub(crate) fn flag_bool(&self, name: &str) -> bool {
        matches!(self.last(name), Some(Value::Bool(true)))
    }

    pub(crate) fn flag_str(&self, name: &str) -> Option<&str> {
        match self.last(name) {
            Some(Value::Str(s)) => Some(s),
            _ => None,
        }
    }
}

/// Parses `--name=value`, `--name value`, `-name`, `--flag`, `--flag=false` (Go `flag` syntax).
pub(crate) fn parse_cli(args: &[String]) -> Result<Cli, ConfigError> {
    let mut cli = Cli::default();
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        if arg == "--" {
            // Go stops parsing here; the reference ignores the rest, we refuse silently dropped flags.
            return match iter.next() {
                Some(extra) => Err(ConfigError::UnexpectedArgument(extra.clone())),
                None => Ok(cli),
            };
        }
        let body = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-'));
        let body = match body {
            Some(b) if !b.is_empty() && !b.starts_with('-') && !b.starts_with('=') => b,
            _ => return Err(ConfigError::UnexpectedArgument(arg.clone())),
        };
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (body, None),
        };
        match name {
            "h" | "help" => {
                cli.help = true;
                continue;
            }
            "v" | "version" => {
                cli.version = true;
                continue;
            }
            _ => {}
        }
        let flag = find_flag(name).ok_or_else(|| ConfigError::UnknownFlag(name.to_string()))?;
        let text = match (flag.kind, inline) {
            (_, Some(v)) => v.to_string(),
            (Kind::Bool, None) => "true".to_string(),
            (_, None) => iter
                .next()
                .cloned()
                .ok_or_else(|| ConfigError::MissingValue(name.to_string()))?,
        };
        let value = parse_text(flag.kind, &text).map_err(|reason| ConfigError::InvalidValue {
            origin: format!("flag --{}", flag.name),
            value: text.clone(),
            reason: reason.to_string(),
        })?;
        cli.values.push((flag, value));
    }
    Ok(cli)
}

pub(crate) fn apply_cli(raw: &mut Raw, cli: &Cli) {
    for (flag, value) in &cli.values {
        raw.set(flag, value.clone());
    }
}

/// Env vars per urfave/cli: the first of a flag's env vars that exists wins; an empty bool means
/// false, an empty int is ignored, an empty string/list counts as set.
pub(crate) fn apply_env(raw: &mut Raw, env: &HashMap<String, String>) -> Result<(), ConfigError> {
    for flag in FLAGS {
        let Some((var, text)) = flag
            .env
            .iter()
            .find_map(|var| env.get(*var).map(|v| (*var, v)))
        else {
            continue;
        };
        let invalid = |reason: ValueError| ConfigError::InvalidValue {
            origin: format!("environment variable {var}"),
            value: text.clone(),
            reason: reason.to_string(),
        };
        let value = match flag.kind {
            Kind::Bool if text.is_empty() => Value::Bool(false),
            Kind::Bool => Value::Bool(parse_go_bool(text).map_err(invalid)?),
            Kind::Int if text.is_empty() => continue,
            Kind::Int => Value::Int(parse_go_int(text).map_err(invalid)?),
            kind => parse_text(kind, text).map_err(invalid)?,
        };
        raw.set(flag, value);
    }
    Ok(())
}

/// The file to load: `--config-path` (relative to `cwd`), else `./anycable.toml`, else
/// `/etc/anycable/anycable.toml`; `None` with `--ignore-config-path` or when nothing exists.
pub(crate) fn config_file(cli: &Cli, cwd: &Path) -> Option<PathBuf> {
    if cli.flag_bool("ignore-config-path") {
        return None;
    }
    match cli.flag_str("config-path") {
        // An empty path means "no file", as in the reference.
        Some("") => return None,
        Some(path) => return Some(cwd.join(path)),
        None => {}
    }
    [
        cwd.join("anycable.toml"),
        PathBuf::from("/etc/anycable/anycable.toml"),
    ]
    .into_iter()
    .find(|p| p.is_file())
}

/// Reads the TOML file and copies every known key into `raw`. Unknown keys are ignored.
pub(crate) fn apply_file(raw: &mut Raw, path: &Path) -> Result<(), ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::ReadFile {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let parse_error = |reason: String| ConfigError::ParseToml {
        path: path.to_path_buf(),
        reason,
    };
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| parse_error(e.to_string()))?;
    for flag in FLAGS {
        let Some(key) = flag.toml else { continue };
        if let Some(item) = lookup(&table, key) {
            let value = from_toml(flag.kind, item)
                .map_err(|reason| parse_error(format!("key {key}: {reason}")))?;
            raw.set(flag, value);
        }
    }
    Ok(())
}

/// Finds a dotted key; each segment matches exactly first, then case-insensitively (as BurntSushi/toml).
fn lookup<'a>(table: &'a toml::Table, key: &str) -> Option<&'a toml::Value> {
    let mut segments = key.split('.').peekable();
    let mut current = table;
    while let Some(segment) = segments.next() {
        let item = current.get(segment).or_else(|| {
            current
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(segment))
                .map(|(_, v)| v)
        })?;
        if segments.peek().is_none() {
            return Some(item);
        }
        current = item.as_table()?;
    }
    None
}

/// A TOML value of the wrong type for its key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected {expected}, found {found}")]
struct TypeMismatch {
    expected: &'static str,
    found: &'static str,
}

fn from_toml(kind: Kind, item: &toml::Value) -> Result<Value, TypeMismatch> {
    let expected = |expected: &'static str, found: &'static str| TypeMismatch { expected, found };
    let found = item.type_str();
    match (kind, item) {
        (Kind::Bool, toml::Value::Boolean(b)) => Ok(Value::Bool(*b)),
        (Kind::Int, toml::Value::Integer(i)) => Ok(Value::Int(*i)),
        (Kind::Str, toml::Value::String(s)) => Ok(Value::Str(s.clone())),
        // Accept both shapes for lists: the reference uses strings for some keys, arrays for others.
        (Kind::List { sep, .. }, toml::Value::String(s)) => Ok(Value::List(split_list(s, sep))),
        (Kind::List { .. }, toml::Value::Array(items)) => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| expected("strings", i.type_str()))
            })
            .collect::<Result<_, _>>()
            .map(Value::List),
        (Kind::Map, toml::Value::Table(t)) => t
            .iter()
            .map(|(k, v)| {
                v.as_str()
                    .map(|s| (k.clone(), s.to_string()))
                    .ok_or_else(|| expected("string values", v.type_str()))
            })
            .collect::<Result<_, _>>()
            .map(Value::Map),
        (Kind::Bool, _) => Err(expected("a boolean", found)),
        (Kind::Int, _) => Err(expected("an integer", found)),
        (Kind::Str, _) => Err(expected("a string", found)),
        (Kind::List { .. }, _) => Err(expected("an array of strings", found)),
        (Kind::Map, _) => Err(expected("a table", found)),
    }
}
