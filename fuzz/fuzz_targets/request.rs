//! Arbitrary bytes as a request: the head parser, then the body decoder over what follows.
//! Neither may panic, and neither may claim to have consumed more than it was given.

#![no_main]

use bytes::BytesMut;
use http1::Limits;
use http1::decode::{BodyDecoder, Decoded};
use http1::head::parse_request;
use libfuzzer_sys::fuzz_target;

/// Small limits, so that the fuzzer reaches them with short inputs.
fn limits() -> Limits {
    Limits {
        max_request_line_bytes: 256,
        max_header_bytes: 1024,
        max_headers: 16,
        max_body_bytes: 4096,
        max_chunk_line_bytes: 64,
        max_trailer_bytes: 256,
        ..Limits::default()
    }
}

fuzz_target!(|input: &[u8]| {
    let limits = limits();
    let Ok(Some(parsed)) = parse_request(input, &limits) else {
        return;
    };
    assert!(parsed.consumed <= input.len());
    let rest = &input[parsed.consumed..];
    // The first byte of what follows the head decides how it is fed: all at once, or in
    // pieces of 1 to 16 bytes, which exercises every state boundary of the decoder.
    let step = rest.first().map_or(rest.len(), |&b| usize::from(b % 17));
    let step = if step == 0 { rest.len().max(1) } else { step };
    let mut decoder = BodyDecoder::new(parsed.body, &limits);
    let mut buf = BytesMut::new();
    let mut fed = 0;
    let mut body_bytes = 0usize;
    loop {
        let before = buf.len();
        let at_eof = fed == rest.len();
        let step_result = if at_eof {
            decoder.decode_eof(&mut buf)
        } else {
            decoder.decode(&mut buf)
        };
        assert!(buf.len() <= before, "the decoder grew its input");
        match step_result {
            Err(_) | Ok(Decoded::End) => break,
            Ok(Decoded::Data(data)) => {
                body_bytes += data.len();
                assert!(body_bytes <= fed, "more body than input");
                assert!(body_bytes as u64 <= limits.max_body_bytes);
            }
            Ok(Decoded::Trailers(_)) => {}
            Ok(Decoded::NeedMore) if at_eof => panic!("NeedMore at end of input"),
            Ok(Decoded::NeedMore) => {
                let end = (fed + step).min(rest.len());
                buf.extend_from_slice(&rest[fed..end]);
                fed = end;
            }
        }
    }
});
