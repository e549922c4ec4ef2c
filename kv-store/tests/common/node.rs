//! Driving a node in-process, without the network: commands go straight to the command
//! executor, as a connection would send them, so time and scheduling are the test's.

use bytes::Bytes;
use kv_store::clock::Clock;
use kv_store::command::{self, Ctx};
use kv_store::config::Config;
use kv_store::node::Node;
use kv_store::resp::Frame;
use kv_store::server::Session;

/// A node over `dir` with a manual clock at `now_ms`.
pub fn open(dir: &std::path::Path, now_ms: u64) -> (Node, Clock) {
    let config = Config {
        data_dir: dir.to_owned(),
        ..Config::default()
    };
    let clock = Clock::manual(now_ms);
    (Node::open(&config, clock.clone()).unwrap(), clock)
}

/// Runs one command as a client would, logging its records; returns the reply and the records
/// (each a RESP array, as text).
pub fn run(node: &Node, session: &mut Session, args: &[&str]) -> (Frame, Vec<String>) {
    let shared = node.shared();
    let args: Vec<Bytes> = args
        .iter()
        .map(|a| Bytes::copy_from_slice(a.as_bytes()))
        .collect();
    let mut records = Vec::new();
    let reply = {
        let mut state = shared.lock();
        let mut ctx = Ctx::new(&mut state, session, shared, shared.clock.now_ms());
        let reply = command::execute(&mut ctx, &args, &mut records);
        if !records.is_empty() {
            shared.log().submit(records.clone());
        }
        reply
    };
    let text = records
        .iter()
        .map(|r| String::from_utf8_lossy(r).into_owned())
        .collect();
    (reply, text)
}

pub fn bulk(text: &str) -> Frame {
    Frame::bulk(text.to_owned())
}
