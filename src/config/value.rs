//! Untyped flag values and the Go-compatible text parsers used for CLI and env input.

use std::collections::BTreeMap;

use super::flags::Kind;

/// A flag value before it is copied into the typed [`super::Config`].
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Bool(bool),
    Int(i64),
    Str(String),
    List(Vec<String>),
    Map(BTreeMap<String, String>),
}

impl Value {
    /// Renders the value as CLI text (used in messages).
    pub(crate) fn to_text(&self, kind: Kind) -> String {
        match self {
            Value::Bool(b) => b.to_string(),
            Value::Int(i) => i.to_string(),
            Value::Str(s) => s.clone(),
            Value::List(items) => {
                let sep = match kind {
                    Kind::List { sep, .. } => sep,
                    _ => ',',
                };
                items.join(&sep.to_string())
            }
            Value::Map(map) => map
                .iter()
                .map(|(k, v)| format!("{k}:{v}"))
                .collect::<Vec<_>>()
                .join(","),
        }
    }
}

/// Why CLI/env text is not a value of its flag's kind. The text is the input (or the part of
/// it) that was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ValueError {
    #[error("expected a boolean (true/false, 1/0, t/f)")]
    NotBool,
    #[error("expected an integer, got {0:?}")]
    NotInt(String),
    #[error("{0:?} is out of range")]
    OutOfRange(String),
    #[error("expected key:value pairs, got {0:?}")]
    NotPair(String),
}

/// Parses CLI/env text according to the flag kind.
pub(crate) fn parse_text(kind: Kind, text: &str) -> Result<Value, ValueError> {
    match kind {
        Kind::Bool => parse_go_bool(text).map(Value::Bool),
        Kind::Int => parse_go_int(text).map(Value::Int),
        Kind::Str => Ok(Value::Str(text.to_string())),
        Kind::List { sep, .. } => Ok(Value::List(split_list(text, sep))),
        Kind::Map => parse_pairs(text).map(Value::Map),
    }
}

/// Go's `strconv.ParseBool`.
pub(crate) fn parse_go_bool(text: &str) -> Result<bool, ValueError> {
    match text {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(ValueError::NotBool),
    }
}

/// Go's `strconv.ParseInt(text, 0, 64)`: optional sign, `0x`/`0o`/`0b` prefixes, a bare leading `0`
/// means octal, and `_` digit separators are allowed between digits.
pub(crate) fn parse_go_int(text: &str) -> Result<i64, ValueError> {
    let invalid = || ValueError::NotInt(text.to_string());
    let (negative, body) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let lower = body.to_ascii_lowercase();
    let (radix, digits, prefixed) = if let Some(rest) = lower.strip_prefix("0x") {
        (16, rest.to_string(), true)
    } else if let Some(rest) = lower.strip_prefix("0o") {
        (8, rest.to_string(), true)
    } else if let Some(rest) = lower.strip_prefix("0b") {
        (2, rest.to_string(), true)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, lower[1..].to_string(), true)
    } else {
        (10, lower.clone(), false)
    };
    // Underscores must separate digits (a prefix counts as a digit, as in Go literals).
    if digits.contains("__") || digits.ends_with('_') || (!prefixed && digits.starts_with('_')) {
        return Err(invalid());
    }
    let digits = digits.trim_start_matches('_').replace('_', "");
    if digits.is_empty() {
        return Err(invalid());
    }
    let magnitude = u64::from_str_radix(&digits, radix).map_err(|_| invalid())?;
    if negative {
        if magnitude > i64::MAX as u64 + 1 {
            return Err(ValueError::OutOfRange(text.to_string()));
        }
        Ok((-(magnitude as i128)) as i64)
    } else {
        i64::try_from(magnitude).map_err(|_| ValueError::OutOfRange(text.to_string()))
    }
}

/// Splits a list flag; empty items are dropped so that `""` means an empty list.
pub(crate) fn split_list(text: &str, sep: char) -> Vec<String> {
    text.split(sep)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// Parses `k:v,k:v` (metrics tags).
pub(crate) fn parse_pairs(text: &str) -> Result<BTreeMap<String, String>, ValueError> {
    split_list(text, ',')
        .into_iter()
        .map(|pair| match pair.split_once(':') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(ValueError::NotPair(pair)),
        })
        .collect()
}
