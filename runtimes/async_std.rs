//! The [`Runtime`] on async-std, which is deprecated upstream but still supported here.

use std::future::Future;

use ::async_std::task;

use crate::driver::Runtime;

/// async-std: every task on the owner's thread, in the executor its `block_on` drives.
pub struct AsyncStd;

impl Runtime for AsyncStd {
    fn block_on<T: Send + 'static>(fut: impl Future<Output = T> + Send + 'static) -> T {
        task::block_on(async { task::spawn_local(fut).await })
    }

    fn spawn(fut: impl Future<Output = ()> + Send + 'static) {
        drop(task::spawn_local(fut));
    }
}
