//! The command table: every command's name, arity, flags and key positions, as `COMMAND`
//! reports them. Cluster clients read the key positions to route commands, so they must be
//! right; `redis-cli` reads the rest for its hints.

use std::sync::LazyLock;

use super::Handler;

/// Flags, as bits; their names are Redis's `COMMAND INFO` flags.
pub const WRITE: u16 = 1;
pub const READONLY: u16 = 1 << 1;
pub const DENYOOM: u16 = 1 << 2;
pub const ADMIN: u16 = 1 << 3;
pub const NOSCRIPT: u16 = 1 << 4;
pub const LOADING: u16 = 1 << 5;
pub const STALE: u16 = 1 << 6;
pub const FAST: u16 = 1 << 7;
pub const NO_AUTH: u16 = 1 << 8;
pub const RANDOM: u16 = 1 << 9;

const FLAG_NAMES: [(u16, &str); 10] = [
    (WRITE, "write"),
    (READONLY, "readonly"),
    (DENYOOM, "denyoom"),
    (ADMIN, "admin"),
    (NOSCRIPT, "noscript"),
    (LOADING, "loading"),
    (STALE, "stale"),
    (FAST, "fast"),
    (NO_AUTH, "no_auth"),
    (RANDOM, "random"),
];

/// One command's description.
#[derive(Debug)]
pub struct Spec {
    /// Lower case, as `COMMAND` reports it.
    pub name: &'static str,
    /// Exact argument count including the name, or, if negative, the minimum (Redis's rule).
    pub arity: i32,
    pub flags: u16,
    /// Position of the first key (0: no keys), of the last (-1: the last argument, -2: the one
    /// before), and the step between keys (2 for `MSET k v k v`).
    pub first_key: i32,
    pub last_key: i32,
    pub step: i32,
    /// Redis's command group (`string`, `list`, `connection`, ...) for `COMMAND DOCS`.
    pub group: &'static str,
    pub summary: &'static str,
    pub handler: Handler,
}

impl Spec {
    pub fn arity_ok(&self, argc: usize) -> bool {
        let argc = argc as i64;
        let arity = i64::from(self.arity);
        if arity >= 0 {
            argc == arity
        } else {
            argc >= -arity
        }
    }

    pub fn no_auth(&self) -> bool {
        self.flags & NO_AUTH != 0
    }

    pub fn is_write(&self) -> bool {
        self.flags & WRITE != 0
    }

    pub fn denies_oom(&self) -> bool {
        self.flags & DENYOOM != 0
    }

    pub fn flag_names(&self) -> impl Iterator<Item = &'static str> + '_ {
        FLAG_NAMES
            .iter()
            .filter(|(bit, _)| self.flags & bit != 0)
            .map(|(_, name)| *name)
    }

    /// Positions of the keys in a call with `argc` arguments.
    pub fn key_positions(&self, argc: usize) -> impl Iterator<Item = usize> {
        let argc = argc as i32;
        let first = self.first_key;
        let last = if self.last_key < 0 {
            argc + self.last_key
        } else {
            self.last_key.min(argc - 1)
        };
        let step = self.step.max(1) as usize;
        let range = if first <= 0 || last < first {
            0..0
        } else {
            first as usize..last as usize + 1
        };
        range.step_by(step)
    }
}

macro_rules! spec {
    ($name:literal, $arity:expr, $flags:expr, $first:expr, $last:expr, $step:expr, $group:literal, $handler:path, $summary:literal) => {
        Spec {
            name: $name,
            arity: $arity,
            flags: $flags,
            first_key: $first,
            last_key: $last,
            step: $step,
            group: $group,
            summary: $summary,
            handler: $handler,
        }
    };
}

use super::*;

const W: u16 = WRITE | DENYOOM;
const WF: u16 = WRITE | DENYOOM | FAST;
const R: u16 = READONLY;
const RF: u16 = READONLY | FAST;
const CONN: u16 = NOSCRIPT | LOADING | STALE | FAST;

static TABLE: &[Spec] = &[
    // connection
    spec!(
        "ping",
        -1,
        FAST,
        0,
        0,
        0,
        "connection",
        ping::ping,
        "Returns the server's liveliness response."
    ),
    spec!(
        "echo",
        2,
        FAST,
        0,
        0,
        0,
        "connection",
        echo::echo,
        "Returns the given string."
    ),
    spec!(
        "hello",
        -1,
        CONN | NO_AUTH,
        0,
        0,
        0,
        "connection",
        hello::hello,
        "Handshakes with the server: protocol version, authentication, name."
    ),
    spec!(
        "auth",
        -2,
        CONN | NO_AUTH,
        0,
        0,
        0,
        "connection",
        auth::auth,
        "Authenticates the connection."
    ),
    spec!(
        "client",
        -2,
        NOSCRIPT | LOADING | STALE,
        0,
        0,
        0,
        "connection",
        client::client,
        "Connection commands: ID, SETNAME, GETNAME, SETINFO, INFO, LIST."
    ),
    spec!(
        "select",
        2,
        CONN,
        0,
        0,
        0,
        "connection",
        select::select,
        "Changes the selected database (only 0 exists)."
    ),
    spec!(
        "quit",
        -1,
        CONN | NO_AUTH,
        0,
        0,
        0,
        "connection",
        quit::quit,
        "Closes the connection."
    ),
    spec!(
        "reset",
        1,
        CONN | NO_AUTH,
        0,
        0,
        0,
        "connection",
        reset::reset,
        "Resets the connection."
    ),
    // server
    spec!(
        "command",
        -1,
        LOADING | STALE,
        0,
        0,
        0,
        "server",
        command_info::command,
        "Returns information about commands: COUNT, INFO, DOCS, GETKEYS."
    ),
    spec!(
        "info",
        -1,
        LOADING | STALE,
        0,
        0,
        0,
        "server",
        info::info,
        "Returns information and statistics about the server."
    ),
    spec!(
        "config",
        -2,
        ADMIN | NOSCRIPT | LOADING | STALE,
        0,
        0,
        0,
        "server",
        config::config,
        "Reads (GET) and changes (SET) configuration parameters."
    ),
    spec!(
        "dbsize",
        1,
        RF,
        0,
        0,
        0,
        "server",
        dbsize::dbsize,
        "Returns the number of keys."
    ),
    spec!(
        "flushdb",
        -1,
        WRITE,
        0,
        0,
        0,
        "server",
        flush::flushdb,
        "Removes every key."
    ),
    spec!(
        "flushall",
        -1,
        WRITE,
        0,
        0,
        0,
        "server",
        flush::flushall,
        "Removes every key."
    ),
    spec!(
        "time",
        1,
        LOADING | STALE | FAST | RANDOM,
        0,
        0,
        0,
        "server",
        time::time,
        "Returns the server time."
    ),
    // generic
    spec!(
        "del",
        -2,
        WRITE,
        1,
        -1,
        1,
        "generic",
        del::del,
        "Deletes keys."
    ),
    spec!(
        "unlink",
        -2,
        WRITE | FAST,
        1,
        -1,
        1,
        "generic",
        del::unlink,
        "Deletes keys."
    ),
    spec!(
        "exists",
        -2,
        RF,
        1,
        -1,
        1,
        "generic",
        exists::exists,
        "Counts how many of the keys exist."
    ),
    spec!(
        "type",
        2,
        RF,
        1,
        1,
        1,
        "generic",
        key_type::key_type,
        "Returns the type of a key's value."
    ),
    spec!(
        "rename",
        3,
        WRITE,
        1,
        2,
        1,
        "generic",
        rename::rename,
        "Renames a key, overwriting the destination."
    ),
    spec!(
        "expire",
        -3,
        WF,
        1,
        1,
        1,
        "generic",
        expire::expire,
        "Sets a key's time to live in seconds."
    ),
    spec!(
        "pexpire",
        -3,
        WF,
        1,
        1,
        1,
        "generic",
        expire::pexpire,
        "Sets a key's time to live in milliseconds."
    ),
    spec!(
        "expireat",
        -3,
        WF,
        1,
        1,
        1,
        "generic",
        expire::expireat,
        "Sets a key's expiry as a Unix time in seconds."
    ),
    spec!(
        "pexpireat",
        -3,
        WF,
        1,
        1,
        1,
        "generic",
        expire::pexpireat,
        "Sets a key's expiry as a Unix time in milliseconds."
    ),
    spec!(
        "ttl",
        2,
        RF,
        1,
        1,
        1,
        "generic",
        ttl::ttl,
        "Returns a key's time to live in seconds."
    ),
    spec!(
        "pttl",
        2,
        RF,
        1,
        1,
        1,
        "generic",
        ttl::pttl,
        "Returns a key's time to live in milliseconds."
    ),
    spec!(
        "persist",
        2,
        WRITE | FAST,
        1,
        1,
        1,
        "generic",
        persist::persist,
        "Removes a key's expiry."
    ),
    spec!(
        "scan",
        -2,
        READONLY,
        0,
        0,
        0,
        "generic",
        scan::scan,
        "Iterates over the keys."
    ),
    spec!(
        "keys",
        2,
        READONLY,
        0,
        0,
        0,
        "generic",
        keys::keys,
        "Returns the keys that match a pattern."
    ),
    // strings
    spec!(
        "get",
        2,
        RF,
        1,
        1,
        1,
        "string",
        get::get,
        "Returns a key's string value."
    ),
    spec!(
        "set",
        -3,
        W,
        1,
        1,
        1,
        "string",
        set::set,
        "Sets a key's string value, with options for expiry and conditions."
    ),
    spec!(
        "setnx",
        3,
        WF,
        1,
        1,
        1,
        "string",
        setnx::setnx,
        "Sets a key's value only if the key does not exist."
    ),
    spec!(
        "setex",
        4,
        W,
        1,
        1,
        1,
        "string",
        setex::setex,
        "Sets a key's value and time to live in seconds."
    ),
    spec!(
        "psetex",
        4,
        W,
        1,
        1,
        1,
        "string",
        setex::psetex,
        "Sets a key's value and time to live in milliseconds."
    ),
    spec!(
        "getset",
        3,
        WF,
        1,
        1,
        1,
        "string",
        getset::getset,
        "Sets a key's value and returns the previous one."
    ),
    spec!(
        "getdel",
        2,
        WF,
        1,
        1,
        1,
        "string",
        getdel::getdel,
        "Returns a key's value and deletes the key."
    ),
    spec!(
        "getex",
        -2,
        WF,
        1,
        1,
        1,
        "string",
        getex::getex,
        "Returns a key's value and changes its expiry."
    ),
    spec!(
        "mget",
        -2,
        RF,
        1,
        -1,
        1,
        "string",
        mget::mget,
        "Returns the values of several keys."
    ),
    spec!(
        "mset",
        -3,
        W,
        1,
        -1,
        2,
        "string",
        mset::mset,
        "Sets several keys."
    ),
    spec!(
        "msetnx",
        -3,
        W,
        1,
        -1,
        2,
        "string",
        msetnx::msetnx,
        "Sets several keys only if none exists."
    ),
    spec!(
        "incr",
        2,
        WF,
        1,
        1,
        1,
        "string",
        incr::incr,
        "Increments a key's integer value by one."
    ),
    spec!(
        "decr",
        2,
        WF,
        1,
        1,
        1,
        "string",
        incr::decr,
        "Decrements a key's integer value by one."
    ),
    spec!(
        "incrby",
        3,
        WF,
        1,
        1,
        1,
        "string",
        incr::incrby,
        "Increments a key's integer value."
    ),
    spec!(
        "decrby",
        3,
        WF,
        1,
        1,
        1,
        "string",
        incr::decrby,
        "Decrements a key's integer value."
    ),
    spec!(
        "incrbyfloat",
        3,
        WF,
        1,
        1,
        1,
        "string",
        incrbyfloat::incrbyfloat,
        "Increments a key's floating-point value."
    ),
    spec!(
        "append",
        3,
        WF,
        1,
        1,
        1,
        "string",
        append::append,
        "Appends to a key's string value."
    ),
    spec!(
        "strlen",
        2,
        RF,
        1,
        1,
        1,
        "string",
        strlen::strlen,
        "Returns the length of a key's string value."
    ),
    spec!(
        "getrange",
        4,
        R,
        1,
        1,
        1,
        "string",
        getrange::getrange,
        "Returns a substring of a key's value."
    ),
    spec!(
        "setrange",
        4,
        W,
        1,
        1,
        1,
        "string",
        setrange::setrange,
        "Overwrites part of a key's value at an offset."
    ),
    // hashes
    spec!(
        "hset",
        -4,
        WF,
        1,
        1,
        1,
        "hash",
        hset::hset,
        "Sets fields of a hash."
    ),
    spec!(
        "hmset",
        -4,
        WF,
        1,
        1,
        1,
        "hash",
        hset::hmset,
        "Sets fields of a hash (deprecated form of HSET)."
    ),
    spec!(
        "hget",
        3,
        RF,
        1,
        1,
        1,
        "hash",
        hget::hget,
        "Returns the value of a hash field."
    ),
    spec!(
        "hmget",
        -3,
        RF,
        1,
        1,
        1,
        "hash",
        hmget::hmget,
        "Returns the values of several hash fields."
    ),
    spec!(
        "hgetall",
        2,
        READONLY,
        1,
        1,
        1,
        "hash",
        hgetall::hgetall,
        "Returns every field and value of a hash."
    ),
    spec!(
        "hdel",
        -3,
        WRITE | FAST,
        1,
        1,
        1,
        "hash",
        hdel::hdel,
        "Deletes fields of a hash."
    ),
    spec!(
        "hlen",
        2,
        RF,
        1,
        1,
        1,
        "hash",
        hlen::hlen,
        "Returns the number of fields in a hash."
    ),
    spec!(
        "hexists",
        3,
        RF,
        1,
        1,
        1,
        "hash",
        hexists::hexists,
        "Tells whether a hash field exists."
    ),
    spec!(
        "hincrby",
        4,
        WF,
        1,
        1,
        1,
        "hash",
        hincrby::hincrby,
        "Increments a hash field's integer value."
    ),
    // lists
    spec!(
        "lpush",
        -3,
        WF,
        1,
        1,
        1,
        "list",
        lpush::lpush,
        "Prepends elements to a list."
    ),
    spec!(
        "rpush",
        -3,
        WF,
        1,
        1,
        1,
        "list",
        lpush::rpush,
        "Appends elements to a list."
    ),
    spec!(
        "lpop",
        -2,
        WRITE | FAST,
        1,
        1,
        1,
        "list",
        lpop::lpop,
        "Removes and returns the first elements of a list."
    ),
    spec!(
        "rpop",
        -2,
        WRITE | FAST,
        1,
        1,
        1,
        "list",
        lpop::rpop,
        "Removes and returns the last elements of a list."
    ),
    spec!(
        "lrange",
        4,
        R,
        1,
        1,
        1,
        "list",
        lrange::lrange,
        "Returns a range of a list's elements."
    ),
    spec!(
        "llen",
        2,
        RF,
        1,
        1,
        1,
        "list",
        llen::llen,
        "Returns the length of a list."
    ),
    spec!(
        "lindex",
        3,
        R,
        1,
        1,
        1,
        "list",
        lindex::lindex,
        "Returns a list element by its index."
    ),
    // sets
    spec!(
        "sadd",
        -3,
        WF,
        1,
        1,
        1,
        "set",
        sadd::sadd,
        "Adds members to a set."
    ),
    spec!(
        "srem",
        -3,
        WRITE | FAST,
        1,
        1,
        1,
        "set",
        srem::srem,
        "Removes members from a set."
    ),
    spec!(
        "smembers",
        2,
        READONLY,
        1,
        1,
        1,
        "set",
        smembers::smembers,
        "Returns every member of a set."
    ),
    spec!(
        "sismember",
        3,
        RF,
        1,
        1,
        1,
        "set",
        sismember::sismember,
        "Tells whether a member belongs to a set."
    ),
    spec!(
        "scard",
        2,
        RF,
        1,
        1,
        1,
        "set",
        scard::scard,
        "Returns the number of members in a set."
    ),
    spec!(
        "spop",
        -2,
        WRITE | FAST | RANDOM,
        1,
        1,
        1,
        "set",
        spop::spop,
        "Removes and returns random members of a set."
    ),
    // sorted sets
    spec!(
        "zadd",
        -4,
        WF,
        1,
        1,
        1,
        "sorted-set",
        zadd::zadd,
        "Adds members to a sorted set, or updates their scores."
    ),
    spec!(
        "zscore",
        3,
        RF,
        1,
        1,
        1,
        "sorted-set",
        zscore::zscore,
        "Returns a member's score."
    ),
    spec!(
        "zincrby",
        4,
        WF,
        1,
        1,
        1,
        "sorted-set",
        zincrby::zincrby,
        "Increments a member's score."
    ),
    spec!(
        "zrange",
        -4,
        READONLY,
        1,
        1,
        1,
        "sorted-set",
        zrange::zrange,
        "Returns members by rank or score range."
    ),
    spec!(
        "zrank",
        -3,
        RF,
        1,
        1,
        1,
        "sorted-set",
        zrank::zrank,
        "Returns a member's rank, lowest score first."
    ),
    spec!(
        "zrevrank",
        -3,
        RF,
        1,
        1,
        1,
        "sorted-set",
        zrank::zrevrank,
        "Returns a member's rank, highest score first."
    ),
    spec!(
        "zrem",
        -3,
        WRITE | FAST,
        1,
        1,
        1,
        "sorted-set",
        zrem::zrem,
        "Removes members from a sorted set."
    ),
    spec!(
        "zcard",
        2,
        RF,
        1,
        1,
        1,
        "sorted-set",
        zcard::zcard,
        "Returns the number of members in a sorted set."
    ),
    spec!(
        "zpopmin",
        -2,
        WRITE | FAST,
        1,
        1,
        1,
        "sorted-set",
        zpopmin::zpopmin,
        "Removes and returns the members with the lowest scores."
    ),
    spec!(
        "zpopmax",
        -2,
        WRITE | FAST,
        1,
        1,
        1,
        "sorted-set",
        zpopmin::zpopmax,
        "Removes and returns the members with the highest scores."
    ),
];

/// Looked up once per command, so with foldhash rather than SipHash: the keys are the table's
/// own names, fixed at start-up, so there is no flooding to resist here.
static BY_NAME: LazyLock<foldhash::HashMap<&'static str, &'static Spec>> =
    LazyLock::new(|| TABLE.iter().map(|spec| (spec.name, spec)).collect());

/// Every command, in table order.
pub fn table() -> &'static [Spec] {
    TABLE
}

/// The command named `name`, in any letter case.
pub fn lookup(name: &[u8]) -> Option<&'static Spec> {
    let mut lower = [0u8; 16];
    if name.len() > lower.len() {
        return None;
    }
    for (to, from) in lower.iter_mut().zip(name) {
        *to = from.to_ascii_lowercase();
    }
    let name = std::str::from_utf8(&lower[..name.len()]).ok()?;
    BY_NAME.get(name).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_ignores_case() {
        assert_eq!(lookup(b"GeT").map(|s| s.name), Some("get"));
        assert!(lookup(b"nosuchcommand").is_none());
        assert!(lookup(&[b'a'; 40]).is_none());
    }

    #[test]
    fn key_positions_follow_first_last_step() {
        let positions = |name: &str, argc| {
            lookup(name.as_bytes())
                .unwrap()
                .key_positions(argc)
                .collect::<Vec<_>>()
        };
        assert_eq!(positions("get", 2), [1]);
        assert_eq!(positions("mset", 5), [1, 3]);
        assert_eq!(positions("del", 4), [1, 2, 3]);
        assert_eq!(positions("rename", 3), [1, 2]);
        assert!(positions("ping", 1).is_empty());
    }

    #[test]
    fn arity_follows_redis_rules() {
        let get = lookup(b"get").unwrap();
        assert!(get.arity_ok(2) && !get.arity_ok(3));
        let del = lookup(b"del").unwrap();
        assert!(del.arity_ok(2) && del.arity_ok(9) && !del.arity_ok(1));
    }
}
