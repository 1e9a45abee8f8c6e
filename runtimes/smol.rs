//! The [`Runtime`] on smol.

use std::future::Future;
use std::time::Instant;

use ::smol::net;

use crate::driver::{Runtime, tcp_sockets};

/// smol: spawns on its global executor.
pub struct Smol;

impl Runtime for Smol {
    tcp_sockets!(net);

    fn block_on<T>(fut: impl Future<Output = T>) -> T {
        ::smol::block_on(fut)
    }

    fn spawn(fut: impl Future<Output = ()> + Send + 'static) {
        ::smol::spawn(fut).detach();
    }

    fn sleep_until(deadline: Instant) -> impl Future<Output = ()> + Send {
        let timer = ::smol::Timer::at(deadline);
        async move {
            timer.await;
        }
    }
}
