//! Request smuggling: every ambiguous way to frame a request body is refused with 400, and the
//! connection is closed afterwards, so that no byte after the refused head can be read as a
//! second request.

mod support;

use http1::server::ServerConfig;
use http1::{Request, Response, StatusCode};
use support::{bounded, exchange_raw, start, status_of};

/// Sends `fields` in a POST head followed by a body that, under another reading of the
/// framing, would contain a second request; expects 400 and a closed connection.
async fn assert_refused(fields: &str) {
    let server = start(ServerConfig::default(), |_req: Request| async {
        Response::text(StatusCode::OK, "served\n")
    })
    .await;
    let raw = format!(
        "POST / HTTP/1.1\r\nHost: x\r\n{fields}\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
    );
    // `exchange_raw` returns only once the server has closed the connection.
    let response = exchange_raw(server.addr, raw.as_bytes()).await;
    assert_eq!(status_of(&response), 400, "{fields:?}");
    let text = String::from_utf8_lossy(&response);
    assert!(text.contains("connection: close"), "{text}");
    assert!(!text.contains("served"), "a request was served: {text}");
}

#[tokio::test]
async fn transfer_encoding_with_content_length() {
    bounded(assert_refused(
        "Content-Length: 5\r\nTransfer-Encoding: chunked",
    ))
    .await;
    bounded(assert_refused(
        "Transfer-Encoding: chunked\r\nContent-Length: 5",
    ))
    .await;
}

#[tokio::test]
async fn differing_content_lengths() {
    bounded(assert_refused("Content-Length: 5\r\nContent-Length: 6")).await;
    bounded(assert_refused("Content-Length: 5, 6")).await;
}

#[tokio::test]
async fn last_transfer_coding_not_chunked() {
    bounded(assert_refused("Transfer-Encoding: chunked, identity")).await;
    bounded(assert_refused("Transfer-Encoding: identity")).await;
}

#[tokio::test]
async fn quoted_transfer_encoding() {
    bounded(assert_refused("Transfer-Encoding: \"chunked\"")).await;
}

#[tokio::test]
async fn transfer_encoding_with_parameters() {
    bounded(assert_refused("Transfer-Encoding: chunked;q=1")).await;
}

#[tokio::test]
async fn transfer_encoding_xchunked() {
    bounded(assert_refused("Transfer-Encoding: xchunked")).await;
}

#[tokio::test]
async fn chunked_twice() {
    bounded(assert_refused("Transfer-Encoding: chunked, chunked")).await;
    bounded(assert_refused(
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked",
    ))
    .await;
}

#[tokio::test]
async fn vertical_tab_in_transfer_encoding() {
    bounded(assert_refused("Transfer-Encoding: \x0bchunked")).await;
    bounded(assert_refused("Transfer-Encoding: chunked\x0b")).await;
}

#[tokio::test]
async fn nul_in_a_header_value() {
    bounded(assert_refused("X-A: a\0b\r\nTransfer-Encoding: chunked")).await;
}

#[tokio::test]
async fn bare_cr_in_a_header() {
    bounded(assert_refused("X-A: a\rTransfer-Encoding: chunked")).await;
}

#[tokio::test]
async fn bare_lf_in_a_header() {
    bounded(assert_refused("X-A: a\nTransfer-Encoding: chunked")).await;
}

#[tokio::test]
async fn space_before_the_colon() {
    bounded(assert_refused("Transfer-Encoding : chunked")).await;
}

#[tokio::test]
async fn transfer_encoding_in_http10() {
    bounded(async {
        let server = start(ServerConfig::default(), |_req: Request| async {
            Response::text(StatusCode::OK, "served\n")
        })
        .await;
        // The client asks to keep the connection, and what a chunked reading would take for the
        // end of the body is followed by a second request: refusing is not enough, the
        // connection must close before anything after the head is read as a request.
        let raw =
            b"POST / HTTP/1.0\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n\
                    0\r\n\r\nGET /smuggled HTTP/1.0\r\n\r\n";
        let response = exchange_raw(server.addr, raw).await;
        assert_eq!(status_of(&response), 400);
        let text = String::from_utf8_lossy(&response);
        assert_eq!(text.matches("HTTP/1.1 ").count(), 1, "{text}");
    })
    .await;
}
