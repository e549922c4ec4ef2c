//! Expiry with a hand-driven clock: lazy on access, active by sampling, and always a logged
//! `DEL`, so that replaying the log reproduces an expiry whatever the clock says at replay.

mod common;

use common::node::{bulk, open, run};
use kv_store::expiry;
use kv_store::resp::Frame;
use kv_store::server::Session;
use rand::SeedableRng;

const START_MS: u64 = 1_700_000_000_000;

#[tokio::test]
async fn a_key_expires_lazily_when_touched_and_the_expiry_is_logged() {
    let dir = tempfile::tempdir().unwrap();
    let (node, clock) = open(dir.path(), START_MS);
    let mut session = Session::internal();
    let (reply, records) = run(&node, &mut session, &["SET", "k", "v", "PX", "1000"]);
    assert_eq!(reply, Frame::OK);
    // The relative TTL is logged as an absolute deadline.
    assert_eq!(
        records,
        [format!(
            "*5\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n$4\r\nPXAT\r\n$13\r\n{}\r\n",
            START_MS + 1000
        )]
    );

    clock.advance(999);
    assert_eq!(run(&node, &mut session, &["GET", "k"]).0, bulk("v"));
    assert_eq!(
        run(&node, &mut session, &["PTTL", "k"]).0,
        Frame::Integer(1)
    );
    clock.advance(1);
    let (reply, records) = run(&node, &mut session, &["GET", "k"]);
    assert_eq!(reply, Frame::Null);
    assert_eq!(records, ["*2\r\n$3\r\nDEL\r\n$1\r\nk\r\n"]);
    assert_eq!(
        run(&node, &mut session, &["EXISTS", "k"]).0,
        Frame::Integer(0)
    );
    node.close().await.unwrap();

    // Reopened with the clock turned back to before the deadline: the key stays gone, because
    // its expiry is part of the log, not of the clock.
    let (node, _clock) = open(dir.path(), START_MS);
    assert_eq!(run(&node, &mut session, &["GET", "k"]).0, Frame::Null);
    node.close().await.unwrap();
}

#[tokio::test]
async fn expire_options_and_ttl_replies_follow_redis() {
    let dir = tempfile::tempdir().unwrap();
    let (node, clock) = open(dir.path(), START_MS);
    let mut s = Session::internal();
    run(&node, &mut s, &["SET", "k", "v"]);
    assert_eq!(run(&node, &mut s, &["TTL", "k"]).0, Frame::Integer(-1));
    assert_eq!(
        run(&node, &mut s, &["TTL", "missing"]).0,
        Frame::Integer(-2)
    );
    assert_eq!(
        run(&node, &mut s, &["EXPIRE", "k", "100", "XX"]).0,
        Frame::Integer(0)
    );
    assert_eq!(
        run(&node, &mut s, &["EXPIRE", "k", "100", "NX"]).0,
        Frame::Integer(1)
    );
    assert_eq!(
        run(&node, &mut s, &["EXPIRE", "k", "50", "GT"]).0,
        Frame::Integer(0)
    );
    assert_eq!(
        run(&node, &mut s, &["EXPIRE", "k", "50", "LT"]).0,
        Frame::Integer(1)
    );
    let (reply, records) = run(&node, &mut s, &["EXPIRE", "k", "200", "GT"]);
    assert_eq!(reply, Frame::Integer(1));
    let deadline = (START_MS + 200_000).to_string();
    assert_eq!(
        records,
        [format!(
            "*3\r\n$9\r\nPEXPIREAT\r\n$1\r\nk\r\n$13\r\n{deadline}\r\n"
        )]
    );
    clock.advance(100_400);
    assert_eq!(run(&node, &mut s, &["TTL", "k"]).0, Frame::Integer(100));
    assert_eq!(run(&node, &mut s, &["PERSIST", "k"]).0, Frame::Integer(1));
    assert_eq!(run(&node, &mut s, &["TTL", "k"]).0, Frame::Integer(-1));
    let err = run(&node, &mut s, &["EXPIRE", "k", "5", "NX", "XX"]).0;
    assert_eq!(
        err,
        Frame::error("ERR NX and XX, GT or LT options at the same time are not compatible")
    );
    // A deadline already past deletes the key, logged as DEL.
    let (reply, records) = run(&node, &mut s, &["PEXPIREAT", "k", "1"]);
    assert_eq!(reply, Frame::Integer(1));
    assert_eq!(records, ["*2\r\n$3\r\nDEL\r\n$1\r\nk\r\n"]);
    node.close().await.unwrap();
}

#[tokio::test]
async fn the_active_sweep_removes_expired_keys_nobody_touches() {
    let dir = tempfile::tempdir().unwrap();
    let (node, clock) = open(dir.path(), START_MS);
    let mut s = Session::internal();
    for i in 0..200 {
        run(
            &node,
            &mut s,
            &["SET", &format!("short:{i}"), "v", "PX", "100"],
        );
    }
    for i in 0..50 {
        run(
            &node,
            &mut s,
            &["SET", &format!("long:{i}"), "v", "EX", "3600"],
        );
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let budget = std::time::Duration::from_secs(5);
    assert_eq!(
        expiry::sweep_once(node.shared(), &mut rng, budget),
        0,
        "nothing is due yet"
    );
    clock.advance(101);
    let mut expired = 0;
    // Each cycle stops once under a quarter of its sample was expired, as Redis's does; a few
    // cycles (as the server runs ten a second) clear all but a sliver.
    for _ in 0..20 {
        expired += expiry::sweep_once(node.shared(), &mut rng, budget);
    }
    assert!(expired >= 190, "only {expired} of 200 expired keys swept");
    assert_eq!(
        run(&node, &mut s, &["DBSIZE"]).0,
        Frame::Integer(250 - expired as i64)
    );
    // The long-lived keys are untouched.
    assert_eq!(
        run(&node, &mut s, &["EXISTS", "long:0", "long:49"]).0,
        Frame::Integer(2)
    );
    node.close().await.unwrap();
}
