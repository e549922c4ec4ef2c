//! The wire protocol byte by byte: inline commands, pipelining, protocol errors and every
//! request limit. A protocol error closes that connection only; the server and its data are
//! unaffected.

mod common;

use std::io::Write;

use common::{Server, closed_by_peer, exchange, raw, read_at_least};

#[test]
fn inline_commands_work_as_telnet_sends_them() {
    let server = Server::start("kv-proto-inline", &[]);
    let mut stream = raw(server.addr);
    assert_eq!(exchange(&mut stream, b"PING\r\n", 7), b"+PONG\r\n");
    assert_eq!(
        exchange(&mut stream, b"SET k \"two words\"\n", 5),
        b"+OK\r\n"
    );
    assert_eq!(
        exchange(&mut stream, b"GET k\r\n", 15),
        b"$9\r\ntwo words\r\n"
    );
    assert_eq!(
        exchange(&mut stream, b"\r\nECHO 'it\\'s'\r\n", 10),
        b"$4\r\nit's\r\n"
    );
}

#[test]
fn a_pipelined_batch_is_answered_in_order() {
    let server = Server::start("kv-proto-pipeline", &[]);
    let mut stream = raw(server.addr);
    let mut batch = Vec::new();
    let mut expected = Vec::new();
    for i in 1..=200 {
        batch.extend_from_slice(b"*2\r\n$4\r\nINCR\r\n$1\r\nn\r\n");
        expected.extend_from_slice(format!(":{i}\r\n").as_bytes());
    }
    batch.extend_from_slice(b"PING\r\n");
    expected.extend_from_slice(b"+PONG\r\n");
    assert_eq!(exchange(&mut stream, &batch, expected.len()), expected);
}

#[test]
fn a_protocol_error_closes_only_that_connection() {
    let server = Server::start("kv-proto-error", &[]);
    let mut good = raw(server.addr);
    assert_eq!(exchange(&mut good, b"SET k v\r\n", 5), b"+OK\r\n");

    let cases: [(&[u8], &str); 5] = [
        (
            b"*1\r\n$abc\r\n",
            "-ERR Protocol error: invalid bulk length\r\n",
        ),
        (
            b"*x\r\n",
            "-ERR Protocol error: invalid multibulk length\r\n",
        ),
        (
            b"*1\r\n:5\r\n",
            "-ERR Protocol error: expected '$', got ':'\r\n",
        ),
        (
            b"SET \"unbalanced\r\n",
            "-ERR Protocol error: unbalanced quotes in request\r\n",
        ),
        (
            b"*1\r\n$1\r\nxyz\r\n",
            "-ERR Protocol error: bulk string not followed by CRLF\r\n",
        ),
    ];
    for (bytes, error) in cases {
        let mut bad = raw(server.addr);
        // A valid command before the bad bytes is still answered, first.
        let mut sent = b"PING\r\n".to_vec();
        sent.extend_from_slice(bytes);
        let reply = exchange(&mut bad, &sent, 7 + error.len());
        assert_eq!(String::from_utf8_lossy(&reply), format!("+PONG\r\n{error}"));
        assert!(
            closed_by_peer(&mut bad),
            "connection left open after {error}"
        );
    }
    assert_eq!(exchange(&mut good, b"GET k\r\n", 7), b"$1\r\nv\r\n");
}

/// Writes a config file in the server's data directory and returns its path.
fn config_file(dir: &harness::DataDir, text: &str) -> String {
    let path = dir.join("kv.toml");
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn request_limits_answer_errors_and_close() {
    let dir = harness::DataDir::new("kv-proto-limits");
    let config = config_file(
        &dir,
        "proto_max_bulk_len = 2097152\nmax_array_len = 16\nmax_inline_len = 1024\n\
         client_query_buffer_limit = 1048576\n",
    );
    let server = Server::start_in(dir, &["--config", &config]);
    let cases: [(Vec<u8>, &str); 3] = [
        (
            b"*2\r\n$3\r\nGET\r\n$2097153\r\n".to_vec(),
            "-ERR Protocol error: invalid bulk length\r\n",
        ),
        (
            b"*17\r\n".to_vec(),
            "-ERR Protocol error: invalid multibulk length\r\n",
        ),
        (
            vec![b'A'; 2000],
            "-ERR Protocol error: too big inline request\r\n",
        ),
    ];
    for (bytes, error) in cases {
        let mut stream = raw(server.addr);
        let reply = exchange(&mut stream, &bytes, error.len());
        assert_eq!(String::from_utf8_lossy(&reply), error);
        assert!(closed_by_peer(&mut stream));
    }
    // A bulk string within proto_max_bulk_len but larger than the query buffer limit: the
    // connection is told and closed once more than the limit is buffered.
    let mut stream = raw(server.addr);
    let mut request = b"*2\r\n$4\r\nECHO\r\n$2000000\r\n".to_vec();
    request.extend_from_slice(&vec![b'x'; 1_100_000]);
    let _ = stream.write_all(&request);
    let expected =
        "-ERR query buffer limit exceeded (1048576 bytes, client-query-buffer-limit)\r\n";
    let reply = read_at_least(&mut stream, expected.len());
    assert_eq!(String::from_utf8_lossy(&reply), expected);
    assert!(closed_by_peer(&mut stream));
    let mut fresh = raw(server.addr);
    assert_eq!(exchange(&mut fresh, b"PING\r\n", 7), b"+PONG\r\n");
}

#[test]
fn clients_past_maxclients_are_told_and_closed() {
    let server = Server::start("kv-proto-maxclients", &["--maxclients", "2"]);
    let mut first = raw(server.addr);
    let mut second = raw(server.addr);
    assert_eq!(exchange(&mut first, b"PING\r\n", 7), b"+PONG\r\n");
    assert_eq!(exchange(&mut second, b"PING\r\n", 7), b"+PONG\r\n");
    let mut third = raw(server.addr);
    let reply = read_at_least(&mut third, 37);
    assert_eq!(
        String::from_utf8_lossy(&reply),
        "-ERR max number of clients reached\r\n"
    );
    assert!(closed_by_peer(&mut third));
    drop(first);
    // The slot is free again once the server has seen the close.
    let deadline = std::time::Instant::now() + common::READ_TIMEOUT;
    loop {
        let mut fourth = raw(server.addr);
        if exchange(&mut fourth, b"PING\r\n", 7) == b"+PONG\r\n" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the freed slot was never reused"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
