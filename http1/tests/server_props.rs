//! Property tests: however a chunked body is cut into chunks, and however its bytes are cut
//! into reads, the same body comes out; however pipelined requests are cut into reads, the
//! heads taken out of the read buffer are those a copying parse gives, bodies left in place.
//! Proptest prints the smallest failing case and keeps it in `proptest-regressions/` for
//! replay.

mod support;

use bytes::{Bytes, BytesMut};
use http1::decode::{BodyDecoder, Decoded};
use http1::encode;
use http1::server::ServerConfig;
use http1::{BodyKind, HeaderMap, HeaderValue, Limits, Request, Response, StatusCode};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use support::{connect, read_to_close, start};
use tokio::io::AsyncWriteExt;

/// Cuts `body` into pieces whose sizes cycle through `sizes`.
fn cut(body: &[u8], sizes: &[usize]) -> Vec<Bytes> {
    let mut pieces = Vec::new();
    let mut rest = body;
    for &size in sizes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (piece, tail) = rest.split_at(size.min(rest.len()));
        pieces.push(Bytes::copy_from_slice(piece));
        rest = tail;
    }
    pieces
}

fn trailers(with: bool) -> Option<HeaderMap> {
    with.then(|| {
        let mut map = HeaderMap::new();
        map.insert("x-sum", HeaderValue::from_static("42"));
        map
    })
}

/// Echoes the collected body, with the number of trailer fields in a header.
async fn echo(req: Request) -> Response {
    let collected = req.body.collect(1 << 20).await.unwrap();
    let trailer_count = collected.trailers.map_or(0, |t| t.len());
    Response::new(StatusCode::OK, collected.data).with_header(
        "x-trailers".parse().unwrap(),
        HeaderValue::from(trailer_count),
    )
}

#[test]
fn chunked_request_arrives_intact_whatever_the_chunk_and_write_sizes() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let server = runtime.block_on(start(ServerConfig::default(), echo));
    let strategy = (
        proptest::collection::vec(any::<u8>(), 0..3000),
        proptest::collection::vec(1usize..400, 1..8),
        proptest::collection::vec(1usize..200, 1..8),
        any::<bool>(),
    );
    let mut runner = TestRunner::new(Config {
        cases: 48,
        ..Config::default()
    });
    let result = runner.run(&strategy, |(body, chunk_sizes, write_sizes, with_trailers)| {
        let pieces = cut(&body, &chunk_sizes);
        let mut raw =
            b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                .to_vec();
        raw.extend_from_slice(&encode::chunked(&pieces, trailers(with_trailers).as_ref()));
        let response = runtime.block_on(async {
            let mut stream = connect(server.addr).await;
            stream.set_nodelay(true).unwrap();
            let writes = cut(&raw, &write_sizes);
            for write in writes {
                stream.write_all(&write).await.unwrap();
            }
            read_to_close(&mut stream).await
        });
        let (head, received) = split_response(&response);
        prop_assert!(head.starts_with("HTTP/1.1 200 OK"), "{}", head);
        prop_assert_eq!(received, &body[..]);
        let expected_trailers = if with_trailers { "x-trailers: 1" } else { "x-trailers: 0" };
        prop_assert!(head.contains(expected_trailers), "{}", head);
        Ok(())
    });
    result.unwrap();
}

fn split_response(raw: &[u8]) -> (String, &[u8]) {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("no complete head")
        + 4;
    (
        String::from_utf8_lossy(&raw[..end]).into_owned(),
        &raw[end..],
    )
}

/// Decodes `wire` fed in pieces whose sizes cycle through `feeds`; returns the data, the
/// trailers and what was left after the body.
fn decode_in_pieces(wire: &[u8], feeds: &[usize]) -> (Vec<u8>, Option<HeaderMap>, Vec<u8>) {
    let mut decoder = BodyDecoder::new(BodyKind::Chunked, &Limits::default());
    let mut buf = BytesMut::new();
    let mut input = cut(wire, feeds).into_iter();
    let mut data = Vec::new();
    let mut trailers = None;
    loop {
        match decoder.decode(&mut buf).unwrap() {
            Decoded::NeedMore => buf.extend_from_slice(&input.next().expect("ran out of input")),
            Decoded::Data(d) => data.extend_from_slice(&d),
            Decoded::Trailers(t) => trailers = Some(t),
            Decoded::End => break,
        }
    }
    let mut rest = buf.to_vec();
    input.for_each(|piece| rest.extend_from_slice(&piece));
    (data, trailers, rest)
}

proptest! {
    #[test]
    fn decoder_round_trips_encoder_output(
        pieces in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..10),
        feeds in proptest::collection::vec(1usize..50, 1..6),
        with_trailers in any::<bool>(),
    ) {
        let pieces: Vec<Bytes> = pieces.into_iter().map(Bytes::from).collect();
        let expected_trailers = trailers(with_trailers);
        let mut wire = encode::chunked(&pieces, expected_trailers.as_ref()).to_vec();
        wire.extend_from_slice(b"GET /next");
        let (data, trailers, rest) = decode_in_pieces(&wire, &feeds);
        prop_assert_eq!(data, pieces.concat());
        prop_assert_eq!(trailers, expected_trailers);
        prop_assert_eq!(rest, b"GET /next".to_vec());
    }
}

/// A pipelined sequence of requests (some with a body) as one byte string, and what each
/// head should parse to: (target, one field's value, body length).
fn pipeline(requests: &[(u16, usize)]) -> (Vec<u8>, Vec<(String, String, usize)>) {
    let mut wire = Vec::new();
    let mut expected = Vec::new();
    for &(n, body) in requests {
        let target = format!("/r{n}");
        let value = format!("v{}", n.wrapping_mul(7919));
        let head = match body {
            0 => format!("GET {target} HTTP/1.1\r\nHost: h\r\nX-V: {value}\r\n\r\n"),
            _ => format!(
                "POST {target} HTTP/1.1\r\nHost: h\r\nX-V: {value}\r\nContent-Length: {body}\r\n\r\n"
            ),
        };
        wire.extend_from_slice(head.as_bytes());
        wire.extend(std::iter::repeat_n(b'b', body));
        expected.push((target, value, body));
    }
    (wire, expected)
}

proptest! {
    /// However the bytes of pipelined requests are cut into reads, taking heads out of the
    /// read buffer (values sharing it) gives the heads, in order, and leaves each body in the
    /// buffer: the same as parsing copies.
    #[test]
    fn heads_taken_from_the_read_buffer_match_whatever_the_reads(
        requests in proptest::collection::vec((any::<u16>(), prop_oneof![Just(0usize), 1usize..3000]), 1..40),
        reads in proptest::collection::vec(1usize..2000, 1..6),
    ) {
        let (wire, expected) = pipeline(&requests);
        let limits = Limits::default();
        let mut buf = BytesMut::new();
        let mut input = cut(&wire, &reads).into_iter();
        let mut got = Vec::new();
        let mut body_left = 0usize;
        loop {
            if body_left > 0 {
                let n = body_left.min(buf.len());
                prop_assert!(buf[..n].iter().all(|&b| b == b'b'), "body bytes in place");
                let _ = buf.split_to(n);
                body_left -= n;
            }
            if body_left == 0 {
                let copied = http1::head::parse_request(&buf, &limits).unwrap();
                match http1::head::take_request(&mut buf, &limits).unwrap() {
                    Some(parsed) => {
                        let copied = copied.expect("parse_request agrees a head is complete");
                        prop_assert_eq!(&parsed.head.target, &copied.head.target);
                        prop_assert_eq!(&parsed.head.headers, &copied.head.headers);
                        let value = parsed.head.headers["x-v"].to_str().unwrap().to_owned();
                        body_left = match parsed.body {
                            BodyKind::Length(n) => n as usize,
                            _ => 0,
                        };
                        got.push((parsed.head.target.clone(), value, body_left));
                        continue;
                    }
                    None => prop_assert!(copied.is_none()),
                }
            }
            match input.next() {
                Some(piece) => buf.extend_from_slice(&piece),
                None => break,
            }
        }
        prop_assert_eq!(got, expected);
        prop_assert!(buf.is_empty());
    }
}
