//! Checks shared by the fuzz targets: what must hold of anything a parser accepted, whichever
//! wire format it came from.

use anycable_rs::protocol::{broadcast_frame, Command, Payload};
use serde_json::value::RawValue;

/// Whether `text` is one JSON value by the grammar. `serde_json::Value` is not the test: it
/// refuses numbers beyond f64 (`1e400`), which are valid JSON that clients read fine.
pub fn is_json(text: &str) -> bool {
    serde_json::from_str::<&RawValue>(text).is_ok()
}

/// What must hold of every decoded client command, whatever codec produced it: the parts
/// forwarded verbatim to other clients (whisper data, presence info) are JSON, and so is the
/// frame built from them.
pub fn check_command(command: &Command) {
    match command {
        Command::Whisper { identifier, data } => {
            assert!(is_json(data), "whisper data is not JSON: {data:?}");
            let frame = broadcast_frame(identifier, &Payload::from_json(data), None, None);
            assert!(is_json(&frame), "whisper frame is not JSON: {frame:?}");
        }
        Command::Subscribe {
            presence: Some(presence),
            ..
        }
        | Command::Join { presence, .. } => {
            if let Some(info) = &presence.info {
                assert!(is_json(info), "presence info is not JSON: {info:?}");
            }
        }
        _ => {}
    }
}
