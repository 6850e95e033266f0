//! Unit tests of the configuration module.

mod support;

mod cli;
mod env;
mod legacy;
mod precedence;
mod presets;
mod print;
mod secrets;
mod table;
mod unsupported;
