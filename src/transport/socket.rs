//! The socket layer: every accept, read and write of a client connection
//! goes through here, so the I/O path can be swapped without touching
//! grammar, routing or reply order.
//!
//! Two backends, chosen by `--socket-io`:
//! - `uring` (default): a per-core io_uring of our own ([`super::uring`]),
//!   set up with DEFER_TASKRUN, cheaper per unpipelined request;
//! - `glommio`: glommio's own `TcpStream`, kept for comparison and as the
//!   fallback where the ring cannot be set up.
//!
//! Buffers are passed by value and handed back, because an io_uring
//! operation must own its memory until the kernel is done with it.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::rc::Rc;
use std::time::Duration;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};
use socket2::{Domain, Protocol, Socket as Socket2, Type};

use super::tls::TlsStream;
use super::uring::Ring;
use crate::session::Peer;

/// Pending connections the kernel queues per core (net.core.somaxconn caps it).
const LISTEN_BACKLOG: i32 = 1024;

pub struct Listener {
    /// Owns the listening descriptor (the uring path accepts on it directly).
    inner: TcpListener,
    fd: RawFd,
    ring: Option<Rc<Ring>>,
}

impl Listener {
    /// Binds with SO_REUSEPORT (glommio does), so every core can bind the port.
    pub fn bind(addr: SocketAddr, ring: Option<Rc<Ring>>) -> io::Result<Listener> {
        let socket = Socket2::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_reuse_port(true)?;
        socket.set_reuse_address(true)?;
        socket.bind(&addr.into())?;
        socket.listen(LISTEN_BACKLOG)?;
        let fd = socket.into_raw_fd();
        // SAFETY: a listening socket we just created and now hand over.
        let inner = unsafe { TcpListener::from_raw_fd(fd) };
        Ok(Listener { inner, fd, ring })
    }

    pub fn raw_fd(&self) -> RawFd {
        self.fd
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr().map_err(io::Error::from)
    }

    pub async fn accept(&self) -> io::Result<Socket> {
        match &self.ring {
            Some(ring) => {
                let fd = ring.accept(self.fd).await?;
                Socket::uring(fd, ring.clone())
            }
            None => Socket::glommio(self.inner.accept().await.map_err(io::Error::from)?),
        }
    }
}

pub enum Socket {
    Glommio(TcpStream),
    Uring {
        /// Owns the descriptor; used only for options and to close it.
        stream: std::net::TcpStream,
        ring: Rc<Ring>,
    },
    /// TLS on the ring (`--tls-listen`): plaintext in and out, as above.
    Tls(Box<TlsStream>),
}

impl Socket {
    fn glommio(stream: TcpStream) -> io::Result<Socket> {
        stream.set_nodelay(true)?;
        Ok(Socket::Glommio(stream))
    }

    fn uring(fd: OwnedFd, ring: Rc<Ring>) -> io::Result<Socket> {
        let stream = std::net::TcpStream::from(fd);
        stream.set_nodelay(true)?;
        Ok(Socket::Uring { stream, ring })
    }

    /// Wraps a connection accepted on the TLS port in a TLS session; only
    /// the ring's sockets can carry one.
    pub fn into_tls(
        self,
        config: std::sync::Arc<rustls::ServerConfig>,
        handshake_timeout: Duration,
    ) -> io::Result<Socket> {
        match self {
            Socket::Uring { stream, ring } => Ok(Socket::Tls(Box::new(TlsStream::new(
                stream,
                ring,
                config,
                handshake_timeout,
            )?))),
            _ => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "TLS needs the io_uring socket path",
            )),
        }
    }

    /// SHA-256 of the client's verified TLS certificate, if it sent one.
    pub fn client_cert(&self) -> Option<[u8; 32]> {
        match self {
            Socket::Tls(tls) => tls.session().client_cert(),
            _ => None,
        }
    }

    /// A connection another core accepted: on this core's ring, or on
    /// glommio's sockets where the core has none.
    pub fn adopt(fd: OwnedFd, ring: Option<Rc<Ring>>) -> io::Result<Socket> {
        match ring {
            Some(ring) => Socket::uring(fd, ring),
            // SAFETY: a connected TCP socket whose descriptor we own.
            None => Socket::glommio(unsafe { TcpStream::from_raw_fd(fd.into_raw_fd()) }),
        }
    }

    /// Gives up the descriptor, for another core to adopt. glommio's stream
    /// does not let go of its descriptor, so that one is duplicated.
    pub fn into_fd(self) -> io::Result<OwnedFd> {
        match self {
            Socket::Uring { stream, .. } => Ok(stream.into()),
            Socket::Tls(_) => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "a TLS session cannot be handed over",
            )),
            Socket::Glommio(stream) => {
                // SAFETY: dup(2) of a descriptor the stream keeps open.
                let fd = unsafe { libc::dup(stream.as_raw_fd()) };
                if fd < 0 {
                    return Err(io::Error::last_os_error());
                }
                // SAFETY: dup returned a new descriptor, now ours.
                Ok(unsafe { OwnedFd::from_raw_fd(fd) })
            }
        }
    }

    pub fn peer_addr(&self) -> Peer {
        Peer(match self {
            Socket::Glommio(s) => s.peer_addr().ok(),
            Socket::Uring { stream, .. } => stream.peer_addr().ok(),
            Socket::Tls(tls) => tls.stream().peer_addr().ok(),
        })
    }

    pub fn is_tls(&self) -> bool {
        matches!(self, Socket::Tls(_))
    }

    /// When what the socket holds of a unit of its own framing, half
    /// received, began to arrive: a TLS record's; `None` for plain sockets,
    /// whose bytes are all the connection's at once.
    pub fn partial_since(&self) -> Option<Duration> {
        match self {
            Socket::Tls(tls) => tls.partial_since(),
            _ => None,
        }
    }

    /// Reads what is available into `buf[at..]`; 0 means the peer closed. A
    /// read that waits past `timeout` fails with `TimedOut`. A TLS read
    /// that received ciphertext but no plaintext fails with `WouldBlock`:
    /// weigh the deadlines again (`partial_since`), then read again.
    pub async fn read(
        &mut self,
        mut buf: Vec<u8>,
        at: usize,
        timeout: Option<Duration>,
    ) -> (io::Result<usize>, Vec<u8>) {
        match self {
            Socket::Glommio(s) => {
                if let Err(e) = s.set_read_timeout(timeout) {
                    return (Err(e.into()), buf);
                }
                let result = s.read(&mut buf[at..]).await;
                (result, buf)
            }
            Socket::Uring { stream, ring } => ring.recv(stream.as_raw_fd(), buf, at, timeout).await,
            Socket::Tls(tls) => tls.read(buf, at, timeout).await,
        }
    }

    /// Whether `readable` can wait for a request without a buffer lent to
    /// the kernel: a plain socket on this core's ring, or a TLS session
    /// past its handshake that has fed rustls every byte it received.
    /// glommio's sockets read through buffers of their own.
    pub fn waits_unbuffered(&self) -> bool {
        match self {
            Socket::Uring { .. } => true,
            Socket::Tls(tls) => tls.can_release(),
            Socket::Glommio(_) => false,
        }
    }

    /// Waits until there is something to read, holding no buffer (see
    /// `waits_unbuffered`; glommio's sockets return at once). A wait past
    /// `timeout` fails with `TimedOut`.
    pub async fn readable(&self, timeout: Option<Duration>) -> io::Result<()> {
        match self {
            Socket::Uring { stream, ring } => ring.readable(stream.as_raw_fd(), timeout).await,
            Socket::Tls(tls) => tls.readable(timeout).await,
            Socket::Glommio(_) => Ok(()),
        }
    }

    /// Bytes of buffers the socket holds of its own (TLS ciphertext), on
    /// top of the connection's.
    pub fn buffer_bytes(&self) -> usize {
        match self {
            Socket::Tls(tls) => tls.buffer_bytes(),
            _ => 0,
        }
    }

    /// Gives back what a burst of replies grew, between reads.
    pub fn shrink_idle(&mut self) {
        if let Socket::Tls(tls) = self {
            tls.shrink_idle();
        }
    }

    /// Gives back every buffer of its own, between reads, before a wait
    /// in `readable`; false where it cannot (`waits_unbuffered`).
    pub fn release(&mut self) -> bool {
        match self {
            Socket::Tls(tls) => tls.release(),
            Socket::Uring { .. } => true,
            Socket::Glommio(_) => false,
        }
    }

    /// Takes back, after `readable`, the buffers `release` gave up.
    pub fn restore(&mut self) {
        if let Socket::Tls(tls) = self {
            tls.restore();
        }
    }

    /// Writes all of `buf`. A write that makes no progress for `timeout`
    /// (the client reads nothing) fails with `TimedOut`.
    pub async fn write_all(
        &mut self,
        buf: Vec<u8>,
        timeout: Option<Duration>,
    ) -> (io::Result<()>, Vec<u8>) {
        match self {
            Socket::Glommio(s) => {
                if let Err(e) = s.set_write_timeout(timeout) {
                    return (Err(e.into()), buf);
                }
                let result = s.write_all(&buf).await;
                (result, buf)
            }
            Socket::Uring { stream, ring } => ring.send_all(stream.as_raw_fd(), buf, timeout).await,
            Socket::Tls(tls) => tls.write_all(buf, timeout).await,
        }
    }

    /// Whether the peer has reset the connection, so work for it would be
    /// wasted. A peer that only half-closed (sent FIN) may still read its
    /// replies, so that is not gone. One non-blocking system call.
    pub fn peer_reset(&self) -> bool {
        let fd = match self {
            Socket::Glommio(s) => s.as_raw_fd(),
            Socket::Uring { stream, .. } => stream.as_raw_fd(),
            Socket::Tls(tls) => tls.stream().as_raw_fd(),
        };
        let mut byte = 0u8;
        // SAFETY: a one-byte peek into a local; the descriptor is open.
        let n = unsafe {
            libc::recv(
                fd,
                (&mut byte as *mut u8).cast(),
                1,
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        };
        n < 0 && {
            let e = io::Error::last_os_error().raw_os_error();
            e == Some(libc::ECONNRESET) || e == Some(libc::EPIPE)
        }
    }

    /// The descriptor and ring of a plain socket on the ring, which another
    /// core may write a reply to (`envelope::Pen`) while this one reads:
    /// none for TLS, whose records only this core can write, or for
    /// glommio's sockets.
    pub fn lendable(&self) -> Option<(RawFd, Rc<Ring>)> {
        match self {
            Socket::Uring { stream, ring } => Some((stream.as_raw_fd(), ring.clone())),
            _ => None,
        }
    }

    pub async fn close(self) {
        match self {
            Socket::Glommio(mut s) => {
                let _ = s.close().await;
            }
            Socket::Uring { stream, .. } => drop(stream),
            Socket::Tls(tls) => tls.close().await,
        }
    }
}

/// Writes `first`, then `second`, to the socket `fd` as far as it can
/// without waiting (one `sendmsg`, retried only when a signal interrupts
/// it); returns the bytes written, 0 on any error. For a reply written on
/// another core's behalf (`envelope::write_pens`): that core writes the
/// rest, or meets the error itself.
pub fn send_now(fd: RawFd, first: &[u8], second: &[u8]) -> usize {
    let iov = [first, second].map(|b| libc::iovec {
        iov_base: b.as_ptr() as *mut libc::c_void,
        iov_len: b.len(),
    });
    // SAFETY: a zeroed msghdr is valid (no name, no control data).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov.as_ptr() as *mut libc::iovec;
    msg.msg_iovlen = iov.len();
    loop {
        // SAFETY: `msg` points at `iov`, whose buffers live across the call.
        let n = unsafe { libc::sendmsg(fd, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
        if n >= 0 {
            return n as usize;
        }
        if io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return 0;
        }
    }
}
