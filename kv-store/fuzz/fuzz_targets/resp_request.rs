//! Arbitrary bytes as a stream of requests, fed to the RESP parser in pieces of varying size.
//! It must never panic, never consume bytes without returning a command, and must parse the
//! same commands however the stream is cut (the first byte of the input chooses the cuts).

#![no_main]

use bytes::{Bytes, BytesMut};
use kv_store::resp::request::{Limits, parse_command};
use libfuzzer_sys::fuzz_target;

/// Small limits, so that the fuzzer reaches them with short inputs.
fn limits() -> Limits {
    Limits {
        max_bulk_bytes: 512,
        max_array_len: 32,
        max_inline_bytes: 256,
        query_buffer_bytes: 4096,
    }
}

/// Parses `input` delivered in pieces of `step` bytes; the commands, and whether it ended in a
/// protocol error.
fn parse_in_pieces(input: &[u8], step: usize) -> (Vec<Vec<Bytes>>, bool) {
    let limits = limits();
    let mut buf = BytesMut::new();
    let mut commands = Vec::new();
    for piece in input.chunks(step.max(1)) {
        buf.extend_from_slice(piece);
        loop {
            let before = buf.len();
            match parse_command(&mut buf, &limits) {
                Ok(Some(args)) => {
                    assert!(buf.len() < before, "a command was returned without consuming bytes");
                    commands.push(args);
                }
                Ok(None) => {
                    assert_eq!(buf.len(), before, "bytes consumed without a command");
                    break;
                }
                Err(_) => return (commands, true),
            }
        }
    }
    (commands, false)
}

fuzz_target!(|input: &[u8]| {
    let Some((&first, rest)) = input.split_first() else {
        return;
    };
    let whole = parse_in_pieces(rest, rest.len());
    let cut = parse_in_pieces(rest, usize::from(first % 17) + 1);
    // An error may surface at a different point when more bytes are visible at once, but the
    // commands before it are the same.
    if !whole.1 && !cut.1 {
        assert_eq!(whole.0, cut.0);
    }
});
