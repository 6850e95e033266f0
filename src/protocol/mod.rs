//! The Action Cable wire protocol (`actioncable-v1-json`), with no IO.
//!
//! Client frames decode into [`Command`]; server messages encode from [`Reply`] or, for
//! broadcasts, from a [`Payload`] that is prepared once per publication and then framed once per
//! channel identifier (see [`broadcast_frame`]).

mod command;
mod reply;

pub use command::{decode, Command, DecodeError};
pub use reply::{broadcast_frame, DisconnectReason, Payload, Reply};

/// Sub-protocols this server negotiates, in no particular order.
pub const SUPPORTED_SUBPROTOCOLS: &[&str] = &["actioncable-v1-json"];
