//! Client commands in the JSON codec (`actioncable-v1-json`, `actioncable-v1-ext-json`), as a
//! WebSocket text or binary message delivers them. Another codec gets its own
//! `command_<codec>.rs`: decode, then the same `check_command`.
#![no_main]

use anycable_rs::protocol::decode;
use anycable_rs_fuzz::check_command;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|frame: &[u8]| {
    if let Ok(command) = decode(frame) {
        check_command(&command);
    }
});
