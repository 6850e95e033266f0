//! Publications as publishers send them: the `/_broadcast` and `/api/publish` body, a Redis
//! Pub/Sub or Streams payload, a NATS message (all go through `publication::parse`). What is
//! accepted must frame into JSON for clients and survive the node-to-node wire form.
#![no_main]

use anycable_rs::protocol::{broadcast_frame, FramePosition, Payload};
use anycable_rs::publication::{parse, Inbound};
use anycable_rs_fuzz::is_json;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    let Ok(inbound) = parse(body) else {
        return;
    };
    match &inbound {
        Inbound::Publications(publications) => {
            for publication in publications {
                let payload = Payload::from_data(&publication.data);
                assert!(is_json(payload.as_json()), "{:?}", publication.data);
                let position = publication.epoch.as_deref().map(|epoch| FramePosition {
                    stream: &publication.stream,
                    epoch,
                    offset: publication.offset.unwrap_or(0),
                });
                let frame = broadcast_frame(
                    &publication.stream,
                    &payload,
                    publication.meta.broadcast_type.as_deref(),
                    position,
                );
                assert!(is_json(&frame), "{frame:?}");
                // Between nodes each publication travels on its own, serialized.
                if !publication.stream.is_empty() {
                    let wire = serde_json::to_string(publication).unwrap();
                    assert_eq!(
                        parse(wire.as_bytes()).unwrap(),
                        Inbound::Publications(vec![publication.clone()])
                    );
                }
            }
        }
        Inbound::Command(command) => {
            assert_eq!(parse(command.to_json().as_bytes()).unwrap(), inbound);
        }
    }
});
