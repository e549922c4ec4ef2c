//! Command semantics through the `redis` crate against a real process: the connection and
//! server commands cluster clients and tools rely on (COMMAND, CLIENT, CONFIG, INFO), key
//! commands, and the collection commands with their Redis replies and errors.

mod common;

use common::Server;
use redis::Value;
use redis::aio::MultiplexedConnection;

async fn query<T: redis::FromRedisValue>(
    con: &mut MultiplexedConnection,
    args: &[&str],
) -> redis::RedisResult<T> {
    let mut cmd = redis::cmd(args[0]);
    for arg in &args[1..] {
        cmd.arg(*arg);
    }
    cmd.query_async(con).await
}

fn bulk(text: &str) -> Value {
    Value::BulkString(text.as_bytes().to_vec())
}

#[tokio::test]
async fn command_client_config_and_info_answer_like_redis() {
    let server = Server::start("kv-cmd-server", &[]);
    let mut con = server.connect(false).await;

    // COMMAND INFO: arity, flags and key positions, which cluster clients route by.
    let info: Value = query(&mut con, &["COMMAND", "INFO", "mset", "nosuch"])
        .await
        .unwrap();
    let Value::Array(specs) = info else {
        panic!("{info:?}")
    };
    let Value::Array(mset) = &specs[0] else {
        panic!("{specs:?}")
    };
    assert_eq!(mset[0], bulk("mset"));
    assert_eq!(&mset[1..2], [Value::Int(-3)]);
    assert_eq!(&mset[3..6], [Value::Int(1), Value::Int(-1), Value::Int(2)]);
    assert_eq!(specs[1], Value::Nil);
    let keys: Vec<String> = query(
        &mut con,
        &["COMMAND", "GETKEYS", "MSET", "a", "1", "b", "2"],
    )
    .await
    .unwrap();
    assert_eq!(keys, ["a", "b"]);
    let count: i64 = query(&mut con, &["COMMAND", "COUNT"]).await.unwrap();
    assert!(count > 70, "{count}");

    // CLIENT.
    assert_eq!(
        query::<Option<String>>(&mut con, &["CLIENT", "GETNAME"])
            .await
            .unwrap(),
        None
    );
    let () = query(&mut con, &["CLIENT", "SETNAME", "tester"])
        .await
        .unwrap();
    assert_eq!(
        query::<String>(&mut con, &["CLIENT", "GETNAME"])
            .await
            .unwrap(),
        "tester"
    );
    let err = query::<()>(&mut con, &["CLIENT", "SETNAME", "two words"])
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("Client names cannot contain spaces"),
        "{err}"
    );
    let list: String = query(&mut con, &["CLIENT", "LIST"]).await.unwrap();
    assert!(
        list.contains("name=tester") && list.contains("cmd=client"),
        "{list}"
    );
    let id: i64 = query(&mut con, &["CLIENT", "ID"]).await.unwrap();
    assert!(list.contains(&format!("id={id} ")), "{list}");

    // CONFIG GET with a pattern, CONFIG SET of a live setting, refusal of a fixed one.
    let config: Vec<String> = query(&mut con, &["CONFIG", "GET", "maxmemory*"])
        .await
        .unwrap();
    assert_eq!(
        config[..4],
        ["maxmemory", "0", "maxmemory-policy", "noeviction"]
    );
    let () = query(
        &mut con,
        &["CONFIG", "SET", "maxmemory-policy", "allkeys-lfu"],
    )
    .await
    .unwrap();
    let policy: Vec<String> = query(&mut con, &["CONFIG", "GET", "maxmemory-policy"])
        .await
        .unwrap();
    assert_eq!(policy, ["maxmemory-policy", "allkeys-lfu"]);
    let err = query::<()>(&mut con, &["CONFIG", "SET", "appendfsync", "always"])
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("Unknown option or number of arguments for CONFIG SET - 'appendfsync'"),
        "{err}"
    );
    let appendonly: Vec<String> = query(&mut con, &["CONFIG", "GET", "appendonly"])
        .await
        .unwrap();
    assert_eq!(appendonly, ["appendonly", "yes"]);

    // INFO sections, DBSIZE, SELECT, TIME, FLUSHALL.
    let () = query(&mut con, &["SET", "k", "v", "EX", "100"])
        .await
        .unwrap();
    let info: String = query(&mut con, &["INFO", "keyspace"]).await.unwrap();
    assert!(info.contains("db0:keys=1,expires=1"), "{info}");
    assert!(!info.contains("# Server"), "{info}");
    let info: String = query(&mut con, &["INFO"]).await.unwrap();
    for section in [
        "# Server",
        "# Clients",
        "# Memory",
        "# Persistence",
        "# Stats",
        "# Keyspace",
    ] {
        assert!(info.contains(section), "{section} missing: {info}");
    }
    assert!(info.contains("redis_version:7."), "{info}");
    assert!(
        info.contains("aof_enabled:1\r\n") && info.contains("wal_last_index:"),
        "{info}"
    );
    assert_eq!(query::<i64>(&mut con, &["DBSIZE"]).await.unwrap(), 1);
    let () = query(&mut con, &["SELECT", "0"]).await.unwrap();
    let err = query::<()>(&mut con, &["SELECT", "1"]).await.unwrap_err();
    assert!(
        err.to_string().contains("DB index is out of range"),
        "{err}"
    );
    let time: Vec<String> = query(&mut con, &["TIME"]).await.unwrap();
    assert!(time[0].parse::<u64>().unwrap() > 1_600_000_000);
    let () = query(&mut con, &["FLUSHALL"]).await.unwrap();
    assert_eq!(query::<i64>(&mut con, &["DBSIZE"]).await.unwrap(), 0);
}

#[tokio::test]
async fn key_commands_scan_and_rename() {
    let server = Server::start("kv-cmd-keys", &[]);
    let mut con = server.connect(false).await;
    for i in 0..300 {
        let () = query(&mut con, &["SET", &format!("user:{i}"), "x"])
            .await
            .unwrap();
    }
    let _: i64 = query(&mut con, &["LPUSH", "user:list", "a"]).await.unwrap();
    let (mut cursor, mut seen) = ("0".to_string(), std::collections::HashSet::new());
    loop {
        let (next, keys): (String, Vec<String>) = query(
            &mut con,
            &[
                "SCAN", &cursor, "MATCH", "user:1*", "COUNT", "25", "TYPE", "string",
            ],
        )
        .await
        .unwrap();
        seen.extend(keys);
        cursor = next;
        if cursor == "0" {
            break;
        }
    }
    // user:1, user:10..19, user:100..199
    assert_eq!(seen.len(), 111);
    let mut keys: Vec<String> = query(&mut con, &["KEYS", "user:2?"]).await.unwrap();
    keys.sort();
    assert_eq!(
        keys,
        (20..30).map(|i| format!("user:{i}")).collect::<Vec<_>>()
    );

    assert_eq!(
        query::<String>(&mut con, &["TYPE", "user:list"])
            .await
            .unwrap(),
        "list"
    );
    assert_eq!(
        query::<String>(&mut con, &["TYPE", "missing"])
            .await
            .unwrap(),
        "none"
    );
    assert_eq!(
        query::<i64>(&mut con, &["EXISTS", "user:1", "user:1", "missing"])
            .await
            .unwrap(),
        2
    );
    let () = query(&mut con, &["EXPIRE", "user:1", "100"])
        .await
        .map(|_: i64| ())
        .unwrap();
    let () = query(&mut con, &["RENAME", "user:1", "renamed"])
        .await
        .unwrap();
    assert!(
        query::<i64>(&mut con, &["TTL", "renamed"]).await.unwrap() > 0,
        "RENAME keeps the TTL"
    );
    let err = query::<()>(&mut con, &["RENAME", "missing", "x"])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no such key"), "{err}");
    assert_eq!(
        query::<i64>(&mut con, &["UNLINK", "renamed", "user:2"])
            .await
            .unwrap(),
        2
    );
}

#[tokio::test]
async fn strings_follow_redis_edge_cases() {
    let server = Server::start("kv-cmd-strings", &[]);
    let mut con = server.connect(false).await;
    assert_eq!(
        query::<i64>(&mut con, &["SETNX", "s", "a"]).await.unwrap(),
        1
    );
    assert_eq!(
        query::<i64>(&mut con, &["SETNX", "s", "b"]).await.unwrap(),
        0
    );
    assert_eq!(
        query::<String>(&mut con, &["GETSET", "s", "c"])
            .await
            .unwrap(),
        "a"
    );
    assert_eq!(
        query::<i64>(&mut con, &["SETRANGE", "s", "3", "xy"])
            .await
            .unwrap(),
        5
    );
    assert_eq!(
        query::<Vec<u8>>(&mut con, &["GET", "s"]).await.unwrap(),
        b"c\0\0xy"
    );
    assert_eq!(query::<i64>(&mut con, &["STRLEN", "s"]).await.unwrap(), 5);
    assert_eq!(
        query::<String>(&mut con, &["GETDEL", "s"]).await.unwrap(),
        "c\0\0xy"
    );
    assert_eq!(
        query::<i64>(&mut con, &["MSETNX", "m1", "1", "m2", "2"])
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        query::<i64>(&mut con, &["MSETNX", "m2", "x", "m3", "3"])
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        query::<String>(&mut con, &["INCRBYFLOAT", "m1", "0.5"])
            .await
            .unwrap(),
        "1.5"
    );
    assert_eq!(
        query::<String>(&mut con, &["INCRBYFLOAT", "m1", "1.5"])
            .await
            .unwrap(),
        "3"
    );
    let () = query(&mut con, &["SET", "max", &i64::MAX.to_string()])
        .await
        .unwrap();
    let err = query::<i64>(&mut con, &["INCR", "max"]).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("increment or decrement would overflow"),
        "{err}"
    );
    let () = query(&mut con, &["PSETEX", "p", "5000", "v"])
        .await
        .unwrap();
    assert!((4000..=5000).contains(&query::<i64>(&mut con, &["PTTL", "p"]).await.unwrap()));
    assert_eq!(
        query::<String>(&mut con, &["GETEX", "p", "PERSIST"])
            .await
            .unwrap(),
        "v"
    );
    assert_eq!(query::<i64>(&mut con, &["TTL", "p"]).await.unwrap(), -1);
    let err = query::<()>(&mut con, &["SET", "k", "v", "EX", "0"])
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("invalid expire time in 'set' command"),
        "{err}"
    );
    let err = query::<()>(&mut con, &["SET", "k", "v", "NX", "XX"])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("syntax error"), "{err}");
    let err = query::<()>(&mut con, &["MSET", "a"]).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("wrong number of arguments for 'mset' command"),
        "{err}"
    );
}

#[tokio::test]
async fn hashes_lists_sets_and_sorted_sets() {
    let server = Server::start("kv-cmd-collections", &[]);
    let mut con = server.connect(false).await;
    assert_eq!(
        query::<i64>(&mut con, &["HSET", "h", "a", "1", "b", "2"])
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        query::<i64>(&mut con, &["HSET", "h", "a", "3"])
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        query::<Vec<Option<String>>>(&mut con, &["HMGET", "h", "a", "z"])
            .await
            .unwrap(),
        [Some("3".into()), None]
    );
    assert_eq!(
        query::<i64>(&mut con, &["HINCRBY", "h", "b", "5"])
            .await
            .unwrap(),
        7
    );
    assert_eq!(query::<i64>(&mut con, &["HLEN", "h"]).await.unwrap(), 2);
    assert_eq!(
        query::<i64>(&mut con, &["HEXISTS", "h", "a"])
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        query::<i64>(&mut con, &["HDEL", "h", "a", "b", "c"])
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        query::<i64>(&mut con, &["EXISTS", "h"]).await.unwrap(),
        0,
        "an emptied hash is removed"
    );

    assert_eq!(
        query::<i64>(&mut con, &["RPUSH", "l", "a", "b", "c", "d"])
            .await
            .unwrap(),
        4
    );
    assert_eq!(
        query::<i64>(&mut con, &["LPUSH", "l", "z"]).await.unwrap(),
        5
    );
    assert_eq!(
        query::<Vec<String>>(&mut con, &["LRANGE", "l", "1", "-2"])
            .await
            .unwrap(),
        ["a", "b", "c"]
    );
    assert_eq!(
        query::<String>(&mut con, &["LINDEX", "l", "-1"])
            .await
            .unwrap(),
        "d"
    );
    assert_eq!(
        query::<Vec<String>>(&mut con, &["RPOP", "l", "2"])
            .await
            .unwrap(),
        ["d", "c"]
    );
    assert_eq!(query::<i64>(&mut con, &["LLEN", "l"]).await.unwrap(), 3);
    assert_eq!(
        query::<Value>(&mut con, &["LPOP", "missing", "2"])
            .await
            .unwrap(),
        Value::Nil
    );
    let err = query::<()>(&mut con, &["LPOP", "l", "-1"])
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("value is out of range, must be positive"),
        "{err}"
    );

    assert_eq!(
        query::<i64>(&mut con, &["SADD", "s", "a", "b", "a"])
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        query::<i64>(&mut con, &["SISMEMBER", "s", "b"])
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        query::<i64>(&mut con, &["SREM", "s", "b", "x"])
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        query::<Vec<String>>(&mut con, &["SMEMBERS", "s"])
            .await
            .unwrap(),
        ["a"]
    );
    assert_eq!(
        query::<String>(&mut con, &["SPOP", "s"]).await.unwrap(),
        "a"
    );
    assert_eq!(query::<i64>(&mut con, &["SCARD", "s"]).await.unwrap(), 0);

    assert_eq!(
        query::<i64>(&mut con, &["ZADD", "z", "1", "a", "2", "b", "3", "c"])
            .await
            .unwrap(),
        3
    );
    assert_eq!(
        query::<i64>(&mut con, &["ZADD", "z", "CH", "GT", "0", "a", "5", "b"])
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        query::<String>(&mut con, &["ZADD", "z", "INCR", "10", "a"])
            .await
            .unwrap(),
        "11"
    );
    assert_eq!(
        query::<Value>(&mut con, &["ZADD", "z", "NX", "INCR", "1", "a"])
            .await
            .unwrap(),
        Value::Nil
    );
    let err = query::<()>(&mut con, &["ZADD", "z", "NX", "XX", "1", "a"])
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("XX and NX options at the same time are not compatible"),
        "{err}"
    );
    let err = query::<()>(&mut con, &["ZADD", "z", "nan", "a"])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not a valid float"), "{err}");
    assert_eq!(
        query::<String>(&mut con, &["ZINCRBY", "z", "-1", "c"])
            .await
            .unwrap(),
        "2"
    );
    assert_eq!(
        query::<i64>(&mut con, &["ZRANK", "z", "a"]).await.unwrap(),
        2
    );
    assert_eq!(
        query::<i64>(&mut con, &["ZREVRANK", "z", "a"])
            .await
            .unwrap(),
        0
    );
    let ranged: Vec<String> = query(
        &mut con,
        &[
            "ZRANGE",
            "z",
            "+inf",
            "(2",
            "BYSCORE",
            "REV",
            "LIMIT",
            "0",
            "1",
            "WITHSCORES",
        ],
    )
    .await
    .unwrap();
    assert_eq!(ranged, ["a", "11"]);
    assert_eq!(
        query::<Vec<String>>(&mut con, &["ZRANGE", "z", "0", "-1", "REV"])
            .await
            .unwrap(),
        ["a", "b", "c"]
    );
    assert_eq!(
        query::<Vec<String>>(&mut con, &["ZPOPMIN", "z", "2"])
            .await
            .unwrap(),
        ["c", "2", "b", "5"]
    );
    assert_eq!(
        query::<i64>(&mut con, &["ZREM", "z", "a"]).await.unwrap(),
        1
    );
    assert_eq!(query::<i64>(&mut con, &["ZCARD", "z"]).await.unwrap(), 0);

    // BYLEX: a sorted set of equal scores as an ordered index.
    let _: i64 = query(
        &mut con,
        &[
            "ZADD", "idx", "0", "b", "0", "a", "0", "c", "0", "bb", "0", "d",
        ],
    )
    .await
    .unwrap();
    let lex = |args: &'static [&'static str]| {
        let mut call = vec!["ZRANGE", "idx"];
        call.extend_from_slice(args);
        call
    };
    for (args, expected) in [
        (&["-", "+", "BYLEX"][..], &["a", "b", "bb", "c", "d"][..]),
        (&["(b", "+", "BYLEX", "LIMIT", "0", "2"], &["bb", "c"]),
        (&["[b", "(c", "BYLEX"], &["b", "bb"]),
        (&["+", "[bb", "BYLEX", "REV"], &["d", "c", "bb"]),
        (&["-", "+", "BYLEX", "LIMIT", "1", "2"], &["b", "bb"]),
        (&["[c", "[b", "BYLEX"], &[]),
        (&["(b", "(b", "BYLEX"], &[]),
        (&["+", "-", "BYLEX"], &[]),
    ] {
        let got: Vec<String> = query(&mut con, &lex(args)).await.unwrap();
        assert_eq!(got, expected, "{args:?}");
    }
    for (args, message) in [
        (&["a", "+", "BYLEX"][..], "not valid string range item"),
        (
            &["-", "+", "BYLEX", "WITHSCORES"],
            "WITHSCORES not supported",
        ),
    ] {
        let err = query::<Value>(&mut con, &lex(args)).await.unwrap_err();
        assert!(err.to_string().contains(message), "{args:?}: {err}");
    }

    // WRONGTYPE across types, where Redis gives it.
    let () = query(&mut con, &["SET", "str", "x"]).await.unwrap();
    for call in [
        &["HGET", "str", "f"][..],
        &["LLEN", "str"],
        &["SADD", "str", "m"],
        &["ZSCORE", "str", "m"],
    ] {
        let err = query::<Value>(&mut con, call).await.unwrap_err();
        assert_eq!(err.code(), Some("WRONGTYPE"), "{call:?}: {err}");
    }
}

#[tokio::test]
async fn a_password_set_at_run_time_applies_to_new_connections() {
    let server = Server::start("kv-cmd-requirepass", &[]);
    let mut before = server.connect(false).await;
    let () = query(&mut before, &["CONFIG", "SET", "requirepass", "pw"])
        .await
        .unwrap();
    let () = query(&mut before, &["SET", "a", "1"]).await.unwrap();

    let mut after = server.connect(false).await;
    let err = query::<Option<String>>(&mut after, &["GET", "a"])
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("NOAUTH"), "{err}");
    let () = query(&mut after, &["AUTH", "pw"]).await.unwrap();
    assert_eq!(
        query::<String>(&mut after, &["GET", "a"]).await.unwrap(),
        "1"
    );
    let reset: String = query(&mut after, &["RESET"]).await.unwrap();
    assert_eq!(reset, "RESET");
    let err = query::<Option<String>>(&mut after, &["GET", "a"])
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Some("NOAUTH"),
        "RESET must de-authenticate: {err}"
    );
}
