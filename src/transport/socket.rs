//! The socket layer: every read and write of a client connection goes
//! through here, so the I/O path can be swapped without touching grammar,
//! routing or reply order.
//!
//! Today it is glommio's `TcpStream`. The performance notes (README) say why
//! a per-core io_uring ring of our own may replace it: glommio re-arms a
//! one-shot poll after each partial read, which costs a poll completion per
//! unpipelined request.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;

pub struct Socket {
    stream: TcpStream,
}

impl Socket {
    pub fn new(stream: TcpStream, idle_timeout: Option<Duration>) -> io::Result<Socket> {
        stream.set_nodelay(true)?;
        stream.set_read_timeout(idle_timeout)?;
        Ok(Socket { stream })
    }

    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.stream.peer_addr().ok()
    }

    /// Reads what is available into `buf`; 0 means the peer closed. A read
    /// that waits past the idle timeout fails with `TimedOut`.
    pub async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.stream.read(buf).await
    }

    pub async fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.stream.write_all(buf).await
    }

    pub async fn close(mut self) {
        let _ = self.stream.close().await;
    }
}
