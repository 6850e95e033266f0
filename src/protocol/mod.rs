//! The Action Cable wire protocol (`actioncable-v1-json`), with no IO.
//!
//! Client frames decode into [`Command`]; server messages encode from [`Reply`] or, for
//! broadcasts, from a [`Payload`] that is prepared once per publication and then framed once per
//! channel identifier (see [`broadcast_frame`]).

mod command;
mod reply;
mod text_frame;

pub use command::{decode, Command, DecodeError, HistoryRequest, PresenceRequest, StreamPosition};
pub use reply::{
    broadcast_frame, DisconnectReason, FramePosition, Payload, Reply, TRY_AGAIN_LATER,
};
pub use text_frame::TextFrame;

/// The base Action Cable protocol.
pub const BASE_PROTOCOL: &str = "actioncable-v1-json";
/// AnyCable's extended protocol: session restore, history, pongs.
pub const EXTENDED_PROTOCOL: &str = "actioncable-v1-ext-json";
/// Sub-protocols this server negotiates.
pub const SUPPORTED_SUBPROTOCOLS: &[&str] = &[BASE_PROTOCOL, EXTENDED_PROTOCOL];
