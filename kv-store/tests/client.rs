//! The crate's own async client against a real server: RESP3 types, pipelines, connection
//! reuse, authentication, and server errors kept in place within a pipeline.

mod common;

use bytes::Bytes;
use common::Server;
use kv_store::client::{Client, ClientConfig, ClientError};
use kv_store::resp::reply::Reply;

fn args(words: &[&str]) -> Vec<Bytes> {
    words
        .iter()
        .map(|w| Bytes::copy_from_slice(w.as_bytes()))
        .collect()
}

#[tokio::test]
async fn pipelines_reuse_one_connection_and_keep_errors_in_place() {
    let server = Server::start("kv-own-client", &[]);
    let client = Client::new(ClientConfig::new(server.addr));
    assert_eq!(
        client.command(&["SET", "k", "v"]).await.unwrap(),
        Reply::Simple("OK".into())
    );
    assert_eq!(
        client.command(&["GET", "k"]).await.unwrap(),
        Reply::Bulk(Bytes::from_static(b"v"))
    );

    let replies = client
        .pipeline(vec![
            args(&["INCR", "n"]),
            args(&["INCR", "k"]),
            args(&["HSET", "h", "f", "1"]),
            args(&["HGETALL", "h"]),
        ])
        .await
        .unwrap();
    assert_eq!(replies[0], Reply::Integer(1));
    assert_eq!(
        replies[1],
        Reply::Error("ERR value is not an integer or out of range".into())
    );
    assert_eq!(replies[2], Reply::Integer(1));
    assert_eq!(
        replies[3],
        Reply::Map(vec![(
            Reply::Bulk(Bytes::from_static(b"f")),
            Reply::Bulk(Bytes::from_static(b"1"))
        )])
    );

    for _ in 0..50 {
        client.command(&["PING"]).await.unwrap();
    }
    assert_eq!(client.idle_connections(), 1);
    let info = client.command(&["INFO", "stats"]).await.unwrap();
    let text = String::from_utf8_lossy(info.as_bytes().unwrap()).into_owned();
    assert!(text.contains("total_connections_received:1\r\n"), "{text}");
}

#[tokio::test]
async fn the_handshake_authenticates_and_a_wrong_password_is_reported() {
    let server = Server::start("kv-own-client-auth", &["--requirepass", "pw"]);
    let mut config = ClientConfig::new(server.addr);
    config.password = Some("pw".into());
    let client = Client::new(config.clone());
    assert_eq!(
        client.command(&["DBSIZE"]).await.unwrap(),
        Reply::Integer(0)
    );

    config.password = Some("wrong".into());
    let err = Client::new(config.clone())
        .command(&["DBSIZE"])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ClientError::Handshake { message, .. } if message.starts_with("WRONGPASS")),
        "{err}"
    );

    config.resp3 = false;
    config.password = None;
    let reply = Client::new(config).command(&["DBSIZE"]).await.unwrap();
    assert_eq!(
        reply,
        Reply::Error("NOAUTH Authentication required.".into())
    );
}
