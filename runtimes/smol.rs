//! The [`Runtime`] on smol.

use std::future::Future;

use crate::driver::Runtime;

/// The executor of every task, run by [`Smol::block_on`] on the owner's thread, so that a
/// socket's task and the owner hand events over without waking another thread.
static EXECUTOR: ::smol::Executor<'static> = ::smol::Executor::new();

/// smol: every task on the owner's thread.
pub struct Smol;

impl Runtime for Smol {
    fn block_on<T: Send + 'static>(fut: impl Future<Output = T> + Send + 'static) -> T {
        ::smol::block_on(EXECUTOR.run(EXECUTOR.spawn(fut)))
    }

    fn spawn(fut: impl Future<Output = ()> + Send + 'static) {
        EXECUTOR.spawn(fut).detach();
    }
}
