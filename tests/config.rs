//! Feature `serde`: rates as their strings, hardcaps by name, and a tank's
//! options read from a service's configuration.

use fueltank::{Budget, Hardcap, Rate, TankConfig};

#[test]
fn a_rate_is_written_and_read_as_its_string() {
    let rate: Rate = "5/250ms".parse().unwrap();
    assert_eq!(serde_json::to_string(&rate).unwrap(), r#""5/250ms""#);
    let back: Rate = serde_json::from_str(r#""5/250ms""#).unwrap();
    assert_eq!(back, rate);
    let spelled: Rate = serde_json::from_str(r#""100/second""#).unwrap();
    assert_eq!(spelled, Rate::per_second(100).unwrap());
}

#[test]
fn a_bad_rate_says_what_is_wrong() {
    let err = serde_json::from_str::<Rate>(r#""100/fortnight""#).unwrap_err();
    assert!(err.to_string().contains("unit is unknown"), "{err}");
    let err = serde_json::from_str::<Rate>("100").unwrap_err();
    assert!(err.to_string().contains("a rate such as"), "{err}");
}

#[test]
fn hardcaps_by_name() {
    assert_eq!(
        serde_json::to_string(&Hardcap::Window).unwrap(),
        r#""window""#
    );
    let one: Hardcap = serde_json::from_str(r#""one""#).unwrap();
    assert_eq!(one, Hardcap::One);
    assert!(serde_json::from_str::<Hardcap>(r#""sometimes""#).is_err());
}

#[test]
fn a_tank_from_its_configuration() {
    let config: TankConfig =
        serde_json::from_str(r#"{"rate": "5/s", "burst": 20, "initial": 20}"#).unwrap();
    let tank = config.build().unwrap();
    assert!(tank.has_fuel_n(20));
    assert_eq!(
        serde_json::to_string(&config).unwrap(),
        r#"{"rate":"5/s","hardcap":"limit","burst":20,"initial":20}"#
    );
    // A misspelt option is an error, not a silent default.
    let err = serde_json::from_str::<TankConfig>(r#"{"rate": "5/s", "brust": 20}"#).unwrap_err();
    assert!(err.to_string().contains("brust"), "{err}");
}

/// Without the `shared-memory` feature, a configuration that asks for
/// shared memory is refused, not built as a tank of one process.
#[cfg(not(feature = "shared-memory"))]
#[test]
fn shared_memory_without_the_feature_is_refused() {
    let config: TankConfig =
        serde_json::from_str(r#"{"rate": "10/s", "shared_memory": "api"}"#).unwrap();
    let err = config.build().unwrap_err();
    assert!(
        matches!(err, fueltank::Error::Unsupported { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("`shared-memory` feature"), "{err}");
}

/// One struct for every kind: a tank with several rates, the same keyed,
/// a keyed tank with a burst, a bound on keys and rates of its own per
/// key; options of one kind given to the other are refused, saying which.
#[test]
fn every_kind_from_one_configuration() {
    use fueltank::clock::ManualClock;
    use std::time::Duration;

    let clock = ManualClock::new();
    let api: TankConfig =
        serde_json::from_str(r#"{"rate": "100/min", "also": ["5/s"], "initial": 5}"#).unwrap();
    let tank = api.builder().clock(clock.clone()).build().unwrap();
    assert!(tank.has_fuel_n(5));
    // The longer wait of the two rates: 100/min's.
    assert_eq!(tank.wait_time(1), Some(Duration::from_millis(600)));
    assert_eq!(
        serde_json::to_string(&api).unwrap(),
        r#"{"rate":"100/min","hardcap":"limit","initial":5,"also":["5/s"]}"#
    );

    let per_ip: TankConfig = serde_json::from_str(
        r#"{"rate": "5/s", "burst": 10, "max_keys": 1000, "keys": {"10.0.0.1": "50/s"}}"#,
    )
    .unwrap();
    let keyed = per_ip
        .keyed_builder::<String>()
        .unwrap()
        .clock(clock.clone())
        .build()
        .unwrap();
    let (user, partner) = ("10.0.0.9".to_string(), "10.0.0.1".to_string());
    assert!(keyed.has_fuel_n(&user, 10) && !keyed.has_fuel(&user));
    assert!(keyed.has_fuel_n(&partner, 10) && !keyed.has_fuel(&partner));
    clock.advance(Duration::from_millis(200));
    // 5/s gives one in 200 ms, 50/s ten.
    assert_eq!(keyed.level(&user), 1);
    assert_eq!(keyed.level(&partner), 10);
    assert_eq!(keyed.max_keys(), 1000);

    // The same options per key: every key keeps both rates.
    let per_user = api
        .keyed_builder::<u32>()
        .unwrap()
        .clock(clock.clone())
        .build()
        .unwrap();
    assert!(per_user.has_fuel_n(&1, 5) && !per_user.has_fuel(&1));
    assert_eq!(per_user.wait_time(&1, 1), Some(Duration::from_millis(600)));
    assert!(per_user.has_fuel_n(&2, 5));
    let shared: TankConfig =
        serde_json::from_str(r#"{"rate": "5/s", "shared_memory": "per-user"}"#).unwrap();
    let err = shared.build_keyed::<u32>().unwrap_err();
    assert!(err.to_string().contains("`shared_memory`"), "{err}");
    let err = per_ip.build().unwrap_err();
    assert!(err.to_string().contains("keyed tank"), "{err}");
}
