//! The [`Runtime`] on async-std, which is deprecated upstream but still supported here.

use std::future::Future;
use std::io;
use std::net::{Shutdown, SocketAddr};
use std::time::Instant;

use ::async_std::net::{TcpListener, TcpStream};
use ::async_std::task;

use crate::driver::Runtime;

/// async-std: spawns on its global executor.
pub struct AsyncStd;

impl Runtime for AsyncStd {
    type Stream = TcpStream;
    type Listener = TcpListener;

    fn block_on<T>(fut: impl Future<Output = T>) -> T {
        task::block_on(fut)
    }

    fn spawn(fut: impl Future<Output = ()> + Send + 'static) {
        drop(task::spawn(fut));
    }

    fn connect(addr: SocketAddr) -> impl Future<Output = io::Result<TcpStream>> + Send {
        TcpStream::connect(addr)
    }

    fn bind(addr: SocketAddr) -> impl Future<Output = io::Result<TcpListener>> + Send {
        TcpListener::bind(addr)
    }

    fn accept(
        listener: &TcpListener,
    ) -> impl Future<Output = io::Result<(TcpStream, SocketAddr)>> + Send {
        listener.accept()
    }

    fn local_addr(listener: &TcpListener) -> io::Result<SocketAddr> {
        listener.local_addr()
    }

    fn stream_local_addr(stream: &TcpStream) -> io::Result<SocketAddr> {
        stream.local_addr()
    }

    fn shutdown(stream: &TcpStream, how: Shutdown) {
        let _ = stream.shutdown(how);
    }

    fn sleep_until(deadline: Instant) -> impl Future<Output = ()> + Send {
        task::sleep(deadline.saturating_duration_since(Instant::now()))
    }
}
