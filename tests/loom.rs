//! Loom models of the lock-free parts. Run with
//! `RUSTFLAGS="--cfg fueltank_loom" cargo test --release --test loom`.
#![cfg(fueltank_loom)]
