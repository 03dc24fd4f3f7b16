//! The sockets of `/metrics`: the accept loop, the workers that serve
//! connections, the connection cap and the timeouts.
//!
//! Owns every bound a metrics client meets: at most [`MAX_CONNECTIONS`]
//! open at once, and [`PER_ADDRESS`] from one client address (past either a
//! connection is closed unread), a head of at most
//! [`HEAD_LIMIT`](super::http::HEAD_LIMIT) read within [`READ_TIMEOUT`], a
//! reply written within [`WRITE_TIMEOUT`], and one request per connection.
//! A failure closes that one connection, or pauses the accept loop when the
//! process is out of descriptors; it never panics and never ends the loop.
//! Never parses HTTP itself ([`super::http`]) and never renders metrics.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};

use super::http::{self, Parsed, Reply, Request, HEAD_LIMIT};
use crate::auth_throttle::client_address;

/// Threads serving connections, started once with the endpoint. A fixed
/// pool, so nothing a client does starts a thread (or fails to, out of
/// memory or descriptors); a slow client holds one worker for at most
/// [`READ_TIMEOUT`] + [`WRITE_TIMEOUT`], so a scrape beside a few slow
/// clients is still served by another, and behind many it waits in the
/// queue at most that long.
pub const WORKERS: usize = 4;

/// Metrics connections open at once: being served, or queued for a worker.
/// One Prometheus server and a few people with curl need far fewer; past it
/// a new connection is closed before anything is read, so the endpoint
/// holds at most this many descriptors (and its listener).
pub const MAX_CONNECTIONS: usize = 16;

/// Metrics connections one client address (an IPv4 address, or an IPv6
/// /64, which one host can fill) may hold at once. Prometheus holds one per
/// target while it scrapes. A client that holds connections open from one
/// address then keeps at most this many workers busy, and a scrape from
/// another address is served, not closed unread at the cap.
pub const PER_ADDRESS: usize = 2;

/// How long a client has to send its whole request head, from when a
/// worker takes the connection. Prometheus sends it at once.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a client has to take the whole reply. Prometheus's own scrape
/// timeout is 10 s by default.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the accept loop rests when the process (or the host) is out of
/// descriptors: connections wait in the listen backlog meanwhile, instead
/// of the loop spinning on the same error.
const OUT_OF_FDS_PAUSE: Duration = Duration::from_millis(100);

/// Answers a parsed request (`mod.rs`'s routing and rendering).
pub type Handler = Arc<dyn Fn(&Request<'_>) -> Reply + Send + Sync>;

/// Starts the workers and the accept loop on threads of their own.
pub fn start(listener: TcpListener, handler: Handler) -> io::Result<()> {
    // Queued connections are the ones past the workers' own, so that open
    // connections never exceed the cap.
    let (queue, waiting) = crossbeam_channel::bounded::<Held>(MAX_CONNECTIONS - WORKERS);
    for worker in 0..WORKERS {
        let waiting = waiting.clone();
        let handler = handler.clone();
        std::thread::Builder::new()
            .name(format!("ferrocache-metrics-{worker}"))
            .spawn(move || work(waiting, handler))?;
    }
    std::thread::Builder::new()
        .name("ferrocache-metrics".into())
        .spawn(move || accept_loop(listener, queue))?;
    Ok(())
}

/// A connection and its place in its address's count, given back when it
/// is dropped.
type Held = (TcpStream, Slot);

fn accept_loop(listener: TcpListener, queue: Sender<Held>) {
    let addresses = Arc::new(Addresses::default());
    loop {
        match listener.accept() {
            Ok((stream, peer)) => {
                let Some(slot) = addresses.take(&peer) else {
                    crate::throttled_warn!(
                        peer = %peer,
                        cap = PER_ADDRESS,
                        "metrics connection closed: too many open from its address"
                    );
                    continue;
                };
                if !admit(&queue, (stream, slot)) {
                    return;
                }
            }
            Err(e) if out_of_descriptors(&e) => {
                crate::throttled_warn!(error = %e, "cannot accept a metrics connection");
                std::thread::sleep(OUT_OF_FDS_PAUSE);
            }
            // ECONNABORTED and the like: that one connection is gone.
            Err(e) => crate::throttled_info!(error = %e, "cannot accept a metrics connection"),
        }
    }
}

/// Hands a connection to the workers, or closes it unread at the cap.
/// False once no worker is left to serve it.
fn admit(queue: &Sender<Held>, held: Held) -> bool {
    match queue.try_send(held) {
        Ok(()) => true,
        // Full: every worker is busy and the queue holds the rest of the
        // cap. Dropping closes it unread.
        Err(TrySendError::Full(_)) => {
            crate::throttled_warn!(
                cap = MAX_CONNECTIONS,
                "metrics connection closed: too many open"
            );
            true
        }
        // The workers are gone only if they panicked, and a panic ends the
        // process: nothing left to serve.
        Err(TrySendError::Disconnected(_)) => false,
    }
}

/// Open metrics connections per client address (as
/// [`client_address`] counts clients). Only the metrics threads touch it,
/// a few times per scrape.
#[derive(Default)]
struct Addresses(Mutex<HashMap<IpAddr, usize>>);

/// One open connection's place in [`Addresses`].
struct Slot {
    addresses: Arc<Addresses>,
    key: IpAddr,
}

impl Addresses {
    /// A place for a connection from `peer`, unless its address holds
    /// [`PER_ADDRESS`] already.
    fn take(self: &Arc<Self>, peer: &SocketAddr) -> Option<Slot> {
        let key = client_address(peer.ip());
        let mut open = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let count = open.entry(key).or_insert(0);
        if *count >= PER_ADDRESS {
            return None;
        }
        *count += 1;
        Some(Slot {
            addresses: self.clone(),
            key,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.addresses.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.key);
            }
        }
    }
}

fn out_of_descriptors(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

fn work(waiting: Receiver<Held>, handler: Handler) {
    let mut head = vec![0u8; HEAD_LIMIT];
    for (mut stream, _slot) in waiting {
        if let Err(e) = serve_one(&mut stream, &mut head, &handler) {
            crate::throttled_info!(error = %e, "metrics connection closed");
        }
        // Dropping the stream closes it, whatever happened.
    }
}

/// Reads one request head, writes its reply, and closes the write side.
fn serve_one(stream: &mut TcpStream, head: &mut [u8], handler: &Handler) -> io::Result<()> {
    let read_by = Instant::now() + READ_TIMEOUT;
    let mut len = 0;
    let reply = loop {
        // httparse is fed the whole head again after each read: at most
        // HEAD_LIMIT bytes, once per read, which costs less than keeping
        // its state.
        let n = read_by_deadline(stream, &mut head[len..], read_by)?;
        if n == 0 {
            // Closed before a whole head: nothing to answer.
            return Ok(());
        }
        len += n;
        match http::parse(&head[..len]) {
            Parsed::Incomplete => continue,
            Parsed::Request(request) => {
                let with_body = request.method != "HEAD";
                break handler(&request).compose(with_body);
            }
            Parsed::Invalid(reply) => break reply.compose(true),
        }
    };
    write_by_deadline(stream, &reply, Instant::now() + WRITE_TIMEOUT)?;
    stream.shutdown(Shutdown::Write)
}

/// One read that gives up at `deadline`, so a client that trickles bytes
/// cannot stretch [`READ_TIMEOUT`] one byte at a time.
fn read_by_deadline(
    stream: &mut TcpStream,
    buf: &mut [u8],
    deadline: Instant,
) -> io::Result<usize> {
    loop {
        stream.set_read_timeout(Some(left(deadline)?))?;
        match stream.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return timed_out_if_would_block(other),
        }
    }
}

/// `write_all` that gives up at `deadline`.
fn write_by_deadline(stream: &mut TcpStream, mut buf: &[u8], deadline: Instant) -> io::Result<()> {
    while !buf.is_empty() {
        stream.set_write_timeout(Some(left(deadline)?))?;
        match timed_out_if_would_block(stream.write(buf)) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The time left until `deadline`; an error once it has passed (a zero
/// timeout would mean none to the socket).
fn left(deadline: Instant) -> io::Result<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(io::ErrorKind::TimedOut.into());
    }
    Ok(left)
}

/// A socket timeout shows as `WouldBlock` on Linux: say what it is.
fn timed_out_if_would_block<T>(result: io::Result<T>) -> io::Result<T> {
    match result {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(io::ErrorKind::TimedOut.into()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(ip: &str) -> SocketAddr {
        SocketAddr::new(ip.parse().unwrap(), 40000)
    }

    #[test]
    fn one_address_holds_at_most_its_share_and_gets_it_back() {
        let addresses = Arc::new(Addresses::default());
        let held: Vec<Slot> = (0..PER_ADDRESS)
            .map(|_| addresses.take(&peer("10.0.0.1")).expect("within the share"))
            .collect();
        assert!(addresses.take(&peer("10.0.0.1")).is_none());
        // The same host over IPv4-mapped IPv6 is the same address.
        assert!(addresses.take(&peer("::ffff:10.0.0.1")).is_none());
        let other = addresses.take(&peer("10.0.0.2")).expect("another address");
        drop(held);
        assert!(addresses.take(&peer("10.0.0.1")).is_some());
        drop(other);
        assert!(
            addresses.0.lock().unwrap().is_empty(),
            "no entry outlives its connections"
        );
    }

    #[test]
    fn an_ipv6_host_counts_as_its_slash_64() {
        let addresses = Arc::new(Addresses::default());
        let _held: Vec<Slot> = (0..PER_ADDRESS)
            .map(|i| {
                addresses
                    .take(&peer(&format!("2001:db8:1:2::{i:x}")))
                    .unwrap()
            })
            .collect();
        assert!(addresses.take(&peer("2001:db8:1:2:ffff::9")).is_none());
        assert!(addresses.take(&peer("2001:db8:1:3::1")).is_some());
    }
}
