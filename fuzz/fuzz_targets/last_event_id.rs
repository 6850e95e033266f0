//! The `Last-Event-ID` header of an SSE reconnection (`<offset>/<epoch>/<stream>`), which
//! becomes a history request.
#![no_main]

use anycable_rs::fuzzing::{sse_from_query, PlainTurboName};
use anycable_rs::transport::sse::RequestError;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|id: &str| {
    match sse_from_query(Some("stream=room"), Some(id), PlainTurboName::Refused) {
        Ok(subscribe) => {
            let Some(history) = subscribe.history else {
                // Ids with fewer than three parts are ignored.
                assert!(id.splitn(3, '/').count() < 3, "{id:?}");
                return;
            };
            let streams = history.streams.expect("a resumed stream");
            let (stream, position) = streams.iter().next().unwrap();
            assert_eq!(streams.len(), 1);
            assert!(
                id.ends_with(&format!("/{}/{stream}", position.epoch)),
                "{id:?}"
            );
        }
        Err(error) => assert_eq!(error, RequestError::BadLastEventId(id.to_string())),
    }
});
