//! The sockets' side of the driver: a task reads each connection, a task writes what the
//! socket did not take at once, a task accepts, and a dial is a task; each tells the owner
//! what happened over one channel of [`Event`]s.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use async_channel::{Receiver, Sender};
use async_io::{Async, Timer};
use floodchat::PeerId;
use futures_lite::future::{or, yield_now};

use crate::driver::say;

/// Bytes read from a socket at once.
const READ_BUF: usize = 64 * 1024;
/// How long the listener rests after a failed accept (for example, out of file descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// A TCP stream on async-io's reactor, which smol and async-std both run on; clones share
/// the socket.
pub(crate) type Stream = Arc<Async<TcpStream>>;

/// Shuts down both directions of `stream`, ignoring errors: its reader then sees the end.
pub(crate) fn shutdown(stream: &Stream) {
    let _ = stream.get_ref().shutdown(Shutdown::Both);
}

/// Something a task tells the owner.
pub(crate) enum Event {
    Bytes(PeerId, Vec<u8>),
    /// This many sends to the peer were written.
    Sent(PeerId, usize),
    Closed(PeerId),
    Accepted(Async<TcpStream>, SocketAddr),
    Dialed(Async<TcpStream>, SocketAddr),
    DialFailed(SocketAddr),
}

/// How a connection's tasks reach the owner.
#[derive(Clone)]
pub(crate) struct Owner {
    /// Where events go.
    pub(crate) events: Sender<Event>,
    /// Ends (closed, never sent on) when the owner drops the connection.
    pub(crate) alive: Receiver<()>,
}

impl Owner {
    /// Sends `event` unless the owner dropped the connection first; whether it was sent.
    async fn tell(&self, event: Event) -> bool {
        let dropped = async {
            let _ = self.alive.recv().await;
            false
        };
        or(async { self.events.send(event).await.is_ok() }, dropped).await
    }
}

/// Forwards what `stream` says to the owner until it ends.
///
/// It reads with `read_with`, which waits on a new readiness future each time, as smol's
/// TcpStream does: a poll of `&Async` would keep the tick of the event that woke it, and
/// after each wake-up read once more for nothing.
pub(crate) async fn read_loop(id: PeerId, stream: Stream, owner: Owner) {
    let mut buf = vec![0; READ_BUF];
    loop {
        let event = match stream.read_with(|mut s| s.read(&mut buf)).await {
            Ok(0) => break,
            Ok(n) => Event::Bytes(id, buf[..n].to_vec()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        if !owner.tell(event).await {
            return;
        }
        // Let the owner relay these bytes before this task reads again: the next read is
        // usually an empty one that only re-arms the socket's interest, two system calls
        // that would otherwise sit between a frame's arrival and its relay.
        yield_now().await;
    }
    owner.tell(Event::Closed(id)).await;
}

/// Writes what `socket` takes of `bytes` without waiting; returns how many bytes it took.
///
/// A plain write on the socket, which async-io keeps non-blocking, rather than a poll of an
/// async write: this runs outside any task, so a poll would register with the reactor for a
/// wake-up that nobody waits for. The writer task waits for the socket instead.
pub(crate) fn write_now(mut socket: &TcpStream, bytes: &[u8]) -> io::Result<usize> {
    let mut done = 0;
    while done < bytes.len() {
        match socket.write(&bytes[done..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// Writes the batches of bytes queued for `stream`, all that are waiting in one write, and
/// acknowledges them, until the owner drops the queue.
pub(crate) async fn write_loop(
    id: PeerId,
    stream: Stream,
    queue: Receiver<(Vec<u8>, usize)>,
    owner: Owner,
) {
    while let Ok((mut bytes, mut count)) = queue.recv().await {
        while let Ok((more, sends)) = queue.try_recv() {
            bytes.extend_from_slice(&more);
            count += sends;
        }
        if write_all(&stream, &bytes).await.is_err() {
            // The reader then sees the end and reports it.
            shutdown(&stream);
            return;
        }
        if !owner.tell(Event::Sent(id, count)).await {
            return;
        }
    }
}

/// Writes all of `bytes` to `stream`, waiting for room with `write_with` (see [`read_loop`]).
async fn write_all(stream: &Async<TcpStream>, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        match stream.write_with(|mut s| s.write(bytes)).await? {
            0 => return Err(io::ErrorKind::WriteZero.into()),
            n => bytes = &bytes[n..],
        }
    }
    Ok(())
}

/// Connects to `addr` within `timeout` and tells the owner how it went.
pub(crate) async fn dial(addr: SocketAddr, timeout: Duration, events: Sender<Event>) {
    let give_up = async move {
        Timer::after(timeout).await;
        Err(io::ErrorKind::TimedOut.into())
    };
    let event = match or(Async::<TcpStream>::connect(addr), give_up).await {
        Ok(stream) => Event::Dialed(stream, addr),
        Err(_) => Event::DialFailed(addr),
    };
    let _ = events.send(event).await;
}

/// Hands accepted connections to the owner.
pub(crate) async fn accept_loop(listener: Async<TcpListener>, events: Sender<Event>) {
    let mut failing = false;
    loop {
        match listener.accept().await {
            Ok((stream, addr)) => {
                failing = false;
                if events.send(Event::Accepted(stream, addr)).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                if !failing {
                    say(format!("cannot accept a connection: {e}"));
                    failing = true;
                }
                Timer::after(ACCEPT_BACKOFF).await;
            }
        }
    }
}

/// The IP to tell others: the listen IP, else our side of the socket to the first peer, else
/// an interface's, else loopback.
pub(crate) fn reachable_ip(listen: IpAddr, via: Option<IpAddr>) -> IpAddr {
    if !listen.is_unspecified() {
        return listen;
    }
    let usable = |ip: &IpAddr| {
        !ip.is_unspecified() && !ip.is_loopback() && (ip.is_ipv4() || listen.is_ipv6())
    };
    if let Some(ip) = via.filter(usable) {
        return ip;
    }
    let mut found: Vec<IpAddr> = if_addrs::get_if_addrs()
        .unwrap_or_default()
        .into_iter()
        .filter(|i| {
            use if_addrs::IfOperStatus::{Unknown, Up};
            matches!(i.oper_status, Up | Unknown) && !i.is_loopback() && !i.is_link_local()
        })
        .map(|i| i.ip())
        .filter(usable)
        .collect();
    found.sort_by_key(IpAddr::is_ipv6);
    found.first().copied().unwrap_or(Ipv4Addr::LOCALHOST.into())
}
