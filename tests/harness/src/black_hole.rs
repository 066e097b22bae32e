//! A TCP proxy on 127.0.0.1 that can turn into a black hole: a silent network, as when a NAT
//! drops its connection table or a partition drops packets without a reset.
//!
//! While [`BlackHole::silence`] is in force, nothing is forwarded and nothing is closed: bytes
//! sent either way vanish, on the connections open then and on those opened meanwhile. After
//! [`BlackHole::restore`], new connections are forwarded again, but the ones the silence caught
//! stay dead (a dropped NAT entry does not come back): a client recovers only by giving up on
//! them (timeouts) and connecting anew.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{
        TcpListener, TcpStream,
        tcp::{OwnedReadHalf, OwnedWriteHalf},
    },
    sync::watch,
};

/// What the proxy does with traffic now.
#[derive(Debug, Clone, Copy, Default)]
struct Mode {
    silent: bool,
    /// Silences so far: a connection opened before the latest one is dead.
    silences: u64,
}

/// The running proxy. Stops (and drops every connection) when dropped.
pub struct BlackHole {
    addr: SocketAddr,
    mode: Arc<watch::Sender<Mode>>,
    forwarded: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for BlackHole {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl BlackHole {
    /// Starts forwarding from a port on 127.0.0.1 to `upstream`.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<BlackHole> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let mode = Arc::new(watch::channel(Mode::default()).0);
        let forwarded = Arc::new(AtomicUsize::new(0));
        let (m, f) = (mode.clone(), forwarded.clone());
        let task = tokio::spawn(async move {
            // Each connection's task ends with it; aborting this one drops the listener only,
            // so the connections are kept in a set that goes with it.
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                connections.spawn(connection(client, upstream, m.subscribe(), f.clone()));
            }
        });
        Ok(BlackHole {
            addr,
            mode,
            forwarded,
            task,
        })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// From now on nothing is forwarded; every open connection is dead for good.
    pub fn silence(&self) {
        self.mode.send_modify(|m| {
            m.silent = true;
            m.silences += 1;
        });
    }

    /// New connections are forwarded again (those the silence caught stay dead).
    pub fn restore(&self) {
        self.mode.send_modify(|m| m.silent = false);
    }

    /// Connections forwarded to the upstream so far.
    pub fn forwarded(&self) -> usize {
        self.forwarded.load(Ordering::SeqCst)
    }
}

async fn connection(
    client: TcpStream,
    upstream: SocketAddr,
    mode: watch::Receiver<Mode>,
    forwarded: Arc<AtomicUsize>,
) {
    let born = *mode.borrow();
    let (client_read, client_write) = client.into_split();
    if born.silent {
        // Accepted into the silence: never connected, never answered.
        return swallow(client_read).await;
    }
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    forwarded.fetch_add(1, Ordering::SeqCst);
    let (server_read, server_write) = server.into_split();
    let alive = move || mode.borrow().silences == born.silences;
    let up = pump(client_read, server_write, alive.clone());
    let down = pump(server_read, client_write, alive.clone());
    tokio::pin!(up, down);
    tokio::select! {
        // The client hung up: so does the proxy.
        _ = &mut up => {}
        // The server hung up: passed on only while the connection is alive (a dead one's close
        // would be a reset the network never delivers); a dead one waits for the client.
        _ = &mut down => if !alive() { up.await },
    }
}

/// Copies `from` to `to` while `alive`; after that, reads and drops. Ends at `from`'s end.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, alive: impl Fn() -> bool) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) if alive() => {
                if to.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
            Ok(_) => {}
        }
    }
}

/// Reads and drops everything until the peer goes.
async fn swallow(mut from: OwnedReadHalf) {
    let mut buf = vec![0u8; 16 * 1024];
    while matches!(from.read(&mut buf).await, Ok(n) if n > 0) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// An echo server on 127.0.0.1.
    async fn echo() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        addr
    }

    async fn round_trip(s: &mut TcpStream) -> bool {
        s.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        let read = tokio::time::timeout(Duration::from_millis(500), s.read_exact(&mut buf));
        matches!(read.await, Ok(Ok(4)))
    }

    #[tokio::test]
    async fn a_silenced_connection_stays_dead_and_new_ones_work_after_restore() {
        let proxy = BlackHole::start(echo().await).await.unwrap();
        let mut old = TcpStream::connect(proxy.addr()).await.unwrap();
        assert!(round_trip(&mut old).await, "forwarded");
        proxy.silence();
        assert!(!round_trip(&mut old).await, "silent");
        let mut during = TcpStream::connect(proxy.addr()).await.unwrap();
        assert!(
            !round_trip(&mut during).await,
            "silent for new connections too"
        );
        proxy.restore();
        assert!(!round_trip(&mut old).await, "the old connection stays dead");
        let mut new = TcpStream::connect(proxy.addr()).await.unwrap();
        assert!(round_trip(&mut new).await, "a new connection works");
        assert_eq!(proxy.forwarded(), 2);
    }
}
