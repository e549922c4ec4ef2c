//! One connection's state: its protocol version, authentication, and what `CLIENT LIST` shows.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;

use crate::resp::Protocol;

/// What other connections may read about this one (`CLIENT LIST`, `CLIENT INFO`).
#[derive(Debug)]
pub struct ClientInfo {
    pub id: u64,
    pub addr: Option<SocketAddr>,
    pub local_addr: Option<SocketAddr>,
    pub created: Instant,
    /// Milliseconds since `created` at the last command, for `idle=`.
    pub last_active_ms: AtomicU64,
    pub details: Mutex<ClientDetails>,
}

/// The parts of [`ClientInfo`] set by commands.
#[derive(Debug, Default, Clone)]
pub struct ClientDetails {
    pub name: Option<Bytes>,
    pub lib_name: Option<Bytes>,
    pub lib_ver: Option<Bytes>,
    pub protocol: Protocol,
    /// Name of the last command run, for `cmd=`.
    pub last_command: &'static str,
}

impl ClientInfo {
    pub fn new(id: u64, addr: Option<SocketAddr>, local_addr: Option<SocketAddr>) -> ClientInfo {
        ClientInfo {
            id,
            addr,
            local_addr,
            created: Instant::now(),
            last_active_ms: AtomicU64::new(0),
            details: Mutex::new(ClientDetails::default()),
        }
    }

    pub fn details(&self) -> std::sync::MutexGuard<'_, ClientDetails> {
        self.details
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn touch(&self) {
        let age = self.created.elapsed().as_millis() as u64;
        self.last_active_ms.store(age, Ordering::Relaxed);
    }

    /// One `CLIENT LIST` line, fields in Redis's order for those we keep.
    pub fn describe(&self) -> String {
        let details = self.details();
        let age = self.created.elapsed();
        let idle_ms =
            (age.as_millis() as u64).saturating_sub(self.last_active_ms.load(Ordering::Relaxed));
        let text = |b: &Option<Bytes>| -> String {
            b.as_deref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default()
        };
        let addr = |a: Option<SocketAddr>| a.map(|a| a.to_string()).unwrap_or_default();
        format!(
            "id={} addr={} laddr={} name={} age={} idle={} flags=N db=0 cmd={} resp={} lib-name={} lib-ver={}",
            self.id,
            addr(self.addr),
            addr(self.local_addr),
            text(&details.name),
            age.as_secs(),
            idle_ms / 1000,
            details.last_command,
            if details.protocol == Protocol::Resp3 {
                3
            } else {
                2
            },
            text(&details.lib_name),
            text(&details.lib_ver),
        )
    }
}

/// The connection's own state, touched only by its task.
#[derive(Debug)]
pub struct Session {
    pub info: Arc<ClientInfo>,
    pub protocol: Protocol,
    pub authenticated: bool,
    /// Set by `QUIT`: answer, then close.
    pub closing: bool,
}

impl Session {
    pub fn new(info: Arc<ClientInfo>) -> Session {
        Session {
            info,
            protocol: Protocol::Resp2,
            authenticated: false,
            closing: false,
        }
    }

    /// A session for work that is no client's (log replay, the expiry sweep).
    pub fn internal() -> Session {
        let mut session = Session::new(Arc::new(ClientInfo::new(0, None, None)));
        session.authenticated = true;
        session
    }

    pub fn set_protocol(&mut self, protocol: Protocol) {
        self.protocol = protocol;
        self.info.details().protocol = protocol;
    }
}
