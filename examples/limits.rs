//! Several named limits from one TOML file, each a `TankConfig`: a tank
//! with two rates and a keyed tank with a burst and per-key rates.
//!
//! ```text
//! cargo run --example limits --features serde            # the file below
//! cargo run --example limits --features serde -- my.toml  # your own
//! ```

use std::collections::BTreeMap;

use fueltank::{Budget, TankConfig};
use serde::Deserialize;

const LIMITS: &str = r#"
[limits.api]
rate = "100/s"
also = ["10000/h"]

[limits.per_ip]
rate = "5/s"
burst = 10
max_keys = 100000
keys = { "10.0.0.1" = "50/s" }
"#;

/// The configuration file: limits by name.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    limits: BTreeMap<String, TankConfig>,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let text = match std::env::args().nth(1) {
        Some(path) => std::fs::read_to_string(path)?,
        None => LIMITS.to_string(),
    };
    let config: Config = toml::from_str(&text)?;
    let limit = |name: &str| {
        config
            .limits
            .get(name)
            .ok_or_else(|| format!("no limit named {name:?} in the file"))
    };
    let api = limit("api")?.build()?;
    let per_ip = limit("per_ip")?.build_keyed::<String>()?;
    let rates: Vec<String> = (api.rates().iter())
        .map(|(rate, now)| format!("{rate} ({now} now)"))
        .collect();
    println!("api: {}", rates.join(", also "));
    for ip in ["10.0.0.9", "10.0.0.1"] {
        let ip = ip.to_string();
        let mut granted = 0;
        while per_ip.has_fuel(&ip) {
            granted += 1;
        }
        println!(
            "{ip}: {granted} at once, then one per {:?}",
            per_ip.wait_time(&ip, 1).unwrap_or_default()
        );
    }
    Ok(())
}
