//! What the fuzz targets in `fuzz/` need and the public modules do not already offer: the
//! parsers that sit behind private modules. Re-exports only; not an API (hidden from the docs).

pub use crate::transport::sse::request::{
    from_body as sse_from_body, from_query as sse_from_query, raw_mode as sse_raw_mode,
    PlainTurboName,
};
pub use crate::transport::ws::codec::{
    DecodeError as FrameError, Decoder as FrameDecoder, Message as FrameMessage,
};
