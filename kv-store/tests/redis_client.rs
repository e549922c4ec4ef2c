//! The server through the `redis` crate, a client nobody here wrote, in RESP2 and RESP3, over a
//! real `kv-store` process.

mod common;

use common::Server;
use redis::{AsyncCommands, Value};

fn server_error_code(err: &redis::RedisError) -> Option<String> {
    err.code().map(str::to_owned)
}

#[tokio::test]
async fn strings_keys_and_errors_in_resp2() {
    let server = Server::start("kv-client-resp2", &[]);
    let mut con = server.connect(false).await;

    let _: () = con.set("greeting", "hello").await.unwrap();
    let value: String = con.get("greeting").await.unwrap();
    assert_eq!(value, "hello");
    assert_eq!(con.incr::<_, _, i64>("counter", 5).await.unwrap(), 5);
    assert_eq!(con.decr::<_, _, i64>("counter", 2).await.unwrap(), 3);
    let values: Vec<Option<String>> = con.mget(&["greeting", "missing", "counter"]).await.unwrap();
    assert_eq!(values, [Some("hello".into()), None, Some("3".into())]);
    assert!(con.expire::<_, bool>("greeting", 100).await.unwrap());
    let ttl: i64 = con.ttl("greeting").await.unwrap();
    assert!((99..=100).contains(&ttl), "{ttl}");
    assert_eq!(
        con.append::<_, _, i64>("greeting", " world").await.unwrap(),
        11
    );
    let range: String = redis::cmd("GETRANGE")
        .arg("greeting")
        .arg(-5)
        .arg(-1)
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(range, "world");

    let _: i64 = con.lpush("list", "a").await.unwrap();
    let err = con.get::<_, String>("list").await.unwrap_err();
    assert_eq!(
        server_error_code(&err).as_deref(),
        Some("WRONGTYPE"),
        "{err}"
    );
    let err = redis::cmd("INCR")
        .arg("greeting")
        .query_async::<i64>(&mut con)
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("value is not an integer or out of range"),
        "{err}"
    );
    let err = redis::cmd("NOSUCHCOMMAND")
        .query_async::<()>(&mut con)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("unknown command 'NOSUCHCOMMAND'"),
        "{err}"
    );

    // SET options: NX refuses an existing key, GET returns the previous value, KEEPTTL keeps it.
    let refused: Option<String> = redis::cmd("SET")
        .arg("greeting")
        .arg("x")
        .arg("NX")
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(refused, None);
    let previous: Option<String> = redis::cmd("SET")
        .arg("greeting")
        .arg("y")
        .arg("GET")
        .arg("KEEPTTL")
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(previous.as_deref(), Some("hello world"));
    assert!(con.ttl::<_, i64>("greeting").await.unwrap() > 0);
    assert_eq!(
        con.del::<_, i64>(&["greeting", "missing", "list"])
            .await
            .unwrap(),
        2
    );
}

#[tokio::test]
async fn collections_in_resp3_use_its_types() {
    let server = Server::start("kv-client-resp3", &[]);
    let mut con = server.connect(true).await;

    let _: () = con
        .hset_multiple("h", &[("f1", "v1"), ("f2", "v2")])
        .await
        .unwrap();
    let all: Value = redis::cmd("HGETALL")
        .arg("h")
        .query_async(&mut con)
        .await
        .unwrap();
    let Value::Map(mut pairs) = all else {
        panic!("HGETALL in RESP3 is a map: {all:?}")
    };
    pairs.sort_by(|a, b| format!("{:?}", a.0).cmp(&format!("{:?}", b.0)));
    assert_eq!(pairs.len(), 2);
    assert_eq!(
        pairs[0],
        (
            Value::BulkString(b"f1".to_vec()),
            Value::BulkString(b"v1".to_vec())
        )
    );

    let _: i64 = con.sadd("s", &["x", "y", "z"]).await.unwrap();
    let members: Value = redis::cmd("SMEMBERS")
        .arg("s")
        .query_async(&mut con)
        .await
        .unwrap();
    assert!(
        matches!(&members, Value::Set(items) if items.len() == 3),
        "{members:?}"
    );

    let _: i64 = con
        .zadd_multiple("z", &[(1.5, "a"), (2.0, "b"), (0.5, "c")])
        .await
        .unwrap();
    let score: Value = redis::cmd("ZSCORE")
        .arg("z")
        .arg("a")
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(score, Value::Double(1.5));
    let ordered: Vec<String> = con.zrange("z", 0, -1).await.unwrap();
    assert_eq!(ordered, ["c", "a", "b"]);
    let by_score: Vec<String> = redis::cmd("ZRANGE")
        .arg("z")
        .arg("(0.5")
        .arg("+inf")
        .arg("BYSCORE")
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(by_score, ["a", "b"]);
    let popped: Value = redis::cmd("ZPOPMIN")
        .arg("z")
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(
        popped,
        Value::Array(vec![Value::BulkString(b"c".to_vec()), Value::Double(0.5)])
    );

    let hello: Value = redis::cmd("HELLO")
        .arg(3)
        .query_async(&mut con)
        .await
        .unwrap();
    let Value::Map(fields) = hello else {
        panic!("HELLO 3 answers a map")
    };
    assert_eq!(fields.len(), 7);
    assert!(
        fields.contains(&(Value::SimpleString("proto".into()), Value::Int(3))),
        "{fields:?}"
    );
    let err = redis::cmd("HELLO")
        .arg(4)
        .query_async::<Value>(&mut con)
        .await
        .unwrap_err();
    assert_eq!(server_error_code(&err).as_deref(), Some("NOPROTO"), "{err}");
}

#[tokio::test]
async fn a_pipeline_of_a_thousand_commands_is_answered_in_order() {
    let server = Server::start("kv-client-pipeline", &[]);
    let mut con = server.connect(false).await;
    let mut pipe = redis::pipe();
    for i in 0..1000 {
        pipe.cmd("RPUSH").arg("numbers").arg(i);
    }
    let lengths: Vec<i64> = pipe.query_async(&mut con).await.unwrap();
    assert_eq!(lengths, (1..=1000).collect::<Vec<i64>>());
    let tail: Vec<i64> = con.lrange("numbers", -3, -1).await.unwrap();
    assert_eq!(tail, [997, 998, 999]);
    let popped: Vec<i64> = redis::cmd("LPOP")
        .arg("numbers")
        .arg(2)
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(popped, [0, 1]);
}

#[tokio::test]
async fn requirepass_is_enforced_for_both_protocols() {
    let server = Server::start("kv-client-auth", &["--requirepass", "s3cret"]);
    let mut anonymous = server.connect(false).await;
    let err = redis::cmd("GET")
        .arg("k")
        .query_async::<Option<String>>(&mut anonymous)
        .await
        .unwrap_err();
    assert_eq!(server_error_code(&err).as_deref(), Some("NOAUTH"), "{err}");
    let err = redis::cmd("AUTH")
        .arg("wrong")
        .query_async::<()>(&mut anonymous)
        .await
        .unwrap_err();
    assert_eq!(
        server_error_code(&err).as_deref(),
        Some("WRONGPASS"),
        "{err}"
    );

    for resp3 in [false, true] {
        let protocol = if resp3 { "?protocol=resp3" } else { "" };
        let url = format!("redis://:s3cret@{}/{protocol}", server.addr);
        let client = redis::Client::open(url).unwrap();
        let mut con = client.get_multiplexed_async_connection().await.unwrap();
        let _: () = con.set("k", "v").await.unwrap();
        assert_eq!(con.get::<_, String>("k").await.unwrap(), "v");
    }
}
