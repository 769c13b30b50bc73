//! Ten jobs through a tank of 5 per second, printing when each starts.
//!
//! `cargo run --release --example quickstart`

use std::time::Instant;

use fueltank::{Rate, Tank};

fn main() -> Result<(), fueltank::Error> {
    let tank = Tank::new("5/s".parse::<Rate>()?);
    let start = Instant::now();
    futures::executor::block_on(async {
        for job in 0..10 {
            tank.await_fuel().await;
            println!("job {job} at {:>6.3} s", start.elapsed().as_secs_f64());
        }
    });
    Ok(())
}
