//! The [`Runtime`] on smol.

use std::future::Future;
use std::io;
use std::net::{Shutdown, SocketAddr};
use std::time::Instant;

use ::smol::net::{TcpListener, TcpStream};

use crate::driver::Runtime;

/// smol: spawns on its global executor.
pub struct Smol;

impl Runtime for Smol {
    type Stream = TcpStream;
    type Listener = TcpListener;

    fn block_on<T>(fut: impl Future<Output = T>) -> T {
        ::smol::block_on(fut)
    }

    fn spawn(fut: impl Future<Output = ()> + Send + 'static) {
        ::smol::spawn(fut).detach();
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
        let timer = ::smol::Timer::at(deadline);
        async move {
            timer.await;
        }
    }
}
