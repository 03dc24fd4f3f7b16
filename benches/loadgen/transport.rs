//! How a connection's bytes reach the server: the [`Transport`] trait, its
//! plain-TCP implementation, and opening sockets (blocking at start, non-blocking
//! when `--reconnect-every` reopens one mid-run).
//!
//! A connection is generic over its transport, so plain TCP compiles to the
//! same socket calls as before TLS existed: every TLS-only step is a no-op or
//! a constant for `TcpStream` and disappears. It never knows a command.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

/// A finished handshake, counted once per connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handshake {
    /// Certificates, key exchange, signatures: what a new client pays.
    Full,
    /// Resumed from a session ticket or id (`--tls-resume`).
    Resumed,
}

/// Plaintext in and out over one socket. `read` and `write` follow
/// `std::io` (`Ok(0)` from `read` is the end of the stream, `WouldBlock`
/// means try again on the next readiness event).
pub trait Transport: Sized {
    /// What opening a connection needs besides the socket (nothing for TCP,
    /// the client configuration and server name for TLS).
    type Ctx: Sync;

    /// Wraps a socket that is connected or connecting (non-blocking).
    fn open(stream: TcpStream, ctx: &Self::Ctx) -> io::Result<Self>;

    /// Swaps in a fresh socket and session, keeping the buffers it owns.
    fn reopen(&mut self, stream: TcpStream, ctx: &Self::Ctx) -> io::Result<()>;

    fn fd(&self) -> RawFd;

    /// Plaintext received into `buf`.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize>;

    /// Whether `read` holds back plaintext (or bytes it has not yet
    /// decrypted) that it can return without waiting for the socket.
    fn has_buffered(&self) -> bool;

    /// Takes plaintext to send; it may stay buffered below (see `flush`).
    fn write(&mut self, buf: &[u8]) -> io::Result<usize>;

    /// Sends what the layer below holds (TLS records, handshake messages);
    /// `Ok` even when the socket is full and some stays.
    fn flush(&mut self) -> io::Result<()>;

    /// Whether the layer below still holds bytes for the socket.
    fn has_unsent(&self) -> bool;

    /// Whether `write` can take plaintext once the socket drains; false
    /// while a TLS handshake is under way (only the server's answer moves
    /// it on, so waiting for writability would spin).
    fn write_ready(&self) -> bool;

    /// `Some` once, when the connection's handshake has finished.
    fn take_handshake(&mut self) -> Option<Handshake>;

    /// What was negotiated (TLS version, cipher suite, key exchange), for
    /// the run's summary; `None` for plain TCP or before the handshake.
    fn describe(&self) -> Option<String> {
        None
    }

    /// Ends the connection politely where the protocol has a way (TLS
    /// close_notify), without waiting.
    fn close(&mut self);
}

impl Transport for TcpStream {
    type Ctx = ();

    fn open(stream: TcpStream, _: &()) -> io::Result<TcpStream> {
        Ok(stream)
    }

    fn reopen(&mut self, stream: TcpStream, _: &()) -> io::Result<()> {
        *self = stream;
        Ok(())
    }

    #[inline]
    fn fd(&self) -> RawFd {
        self.as_raw_fd()
    }

    #[inline]
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        Read::read(self, buf)
    }

    #[inline]
    fn has_buffered(&self) -> bool {
        false
    }

    #[inline]
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Write::write(self, buf)
    }

    #[inline]
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }

    #[inline]
    fn has_unsent(&self) -> bool {
        false
    }

    #[inline]
    fn write_ready(&self) -> bool {
        true
    }

    #[inline]
    fn take_handshake(&mut self) -> Option<Handshake> {
        None
    }

    fn close(&mut self) {
        let _ = self.shutdown(std::net::Shutdown::Both);
    }
}

/// A connected socket for the start of a run: blocking connect (so a server
/// that is not there fails the run at once), then non-blocking.
pub fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_nodelay(true)?;
    stream.set_nonblocking(true)?;
    Ok(stream)
}

/// A socket whose connect is under way (non-blocking), for reconnects in
/// the middle of a run: the event loop must not wait for one handshake.
/// Until it is established, writes answer `WouldBlock` and epoll reports it
/// writable once it is, so the caller treats it as a connected socket.
pub fn connect_nonblocking(addr: SocketAddr) -> io::Result<TcpStream> {
    use socket2::{Domain, Protocol, Socket, Type};
    let sock = Socket::new(
        Domain::for_address(addr),
        Type::STREAM.nonblocking(),
        Some(Protocol::TCP),
    )?;
    sock.set_nodelay(true)?;
    match sock.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(sock.into())
}
