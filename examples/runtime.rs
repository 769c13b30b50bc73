//! The demos' tokio runtime.

/// Two worker threads with timers: built by hand, so that the demos build
/// no procedural macro (tokio's `main` attribute would bring in `syn`).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .expect("a tokio runtime")
}
