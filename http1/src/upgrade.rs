//! Protocol upgrades (`101 Switching Protocols`, RFC 9110 section 15.2.2) and CONNECT tunnels:
//! after the 101 the connection stops being HTTP and is handed over as a raw byte stream.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::oneshot;

use crate::error::{Error, Result};

/// Any byte stream a connection runs over (TCP, TLS, a test duplex).
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

/// A connection that left HTTP. `read_buf` holds bytes the HTTP layer had already read past
/// the end of the 101 exchange; they come first, before anything read from `io`.
pub struct Upgraded {
    pub io: Box<dyn Io>,
    pub read_buf: Bytes,
}

impl std::fmt::Debug for Upgraded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upgraded")
            .field("read_buf_len", &self.read_buf.len())
            .finish()
    }
}

/// Resolves to the [`Upgraded`] connection once the 101 has been written (server) or read
/// (client). Fails with [`Error::Closed`] if the connection did not switch protocols.
#[derive(Debug)]
pub struct OnUpgrade {
    rx: oneshot::Receiver<Upgraded>,
}

/// The connection's half of [`OnUpgrade`].
#[derive(Debug)]
pub(crate) struct UpgradeSender {
    tx: oneshot::Sender<Upgraded>,
}

pub(crate) fn pending() -> (UpgradeSender, OnUpgrade) {
    let (tx, rx) = oneshot::channel();
    (UpgradeSender { tx }, OnUpgrade { rx })
}

impl UpgradeSender {
    /// Hands the connection over. If nobody waits any more the connection is dropped (closed).
    pub(crate) fn send(self, upgraded: Upgraded) {
        let _ = self.tx.send(upgraded);
    }
}

impl Future for OnUpgrade {
    type Output = Result<Upgraded>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx)
            .poll(cx)
            .map(|r| r.map_err(|_| Error::Closed))
    }
}
