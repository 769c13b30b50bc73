//! Every bad input gets an `Err` that says what was wrong and what is
//! accepted, never a panic; and the README's table of them is what the code
//! really says.

use std::pin::pin;
use std::time::Duration;

use fueltank::{Error, Hardcap, KeyedTank, Monitor, Rate, Tank, Throttle};

mod common;

/// (the input as the README shows it, the error it gets)
fn cases() -> Vec<(&'static str, Error)> {
    let rate = |s: &str| s.parse::<Rate>().unwrap_err();
    let secs = Duration::from_secs;
    let mut cases = Vec::new();
    cases.extend(vec![
        ("Rate::new(0, 1s)", Rate::new(0, secs(1)).unwrap_err()),
        ("Rate::new(10, 0s)", Rate::new(10, secs(0)).unwrap_err()),
        (
            "Rate::new(2, 1ns)",
            Rate::new(2, Duration::from_nanos(1)).unwrap_err(),
        ),
        (
            "Rate::new(1, Duration::MAX)",
            Rate::new(1, Duration::MAX).unwrap_err(),
        ),
        ("\"100\"", rate("100")),
        ("\"x/s\"", rate("x/s")),
        ("\"-5/s\"", rate("-5/s")),
        ("\"99999999999999999999/s\"", rate("99999999999999999999/s")),
        ("\"100/\"", rate("100/")),
        ("\"100/5\"", rate("100/5")),
        ("\"100/fortnight\"", rate("100/fortnight")),
        ("\"10/1.2.3s\"", rate("10/1.2.3s")),
        ("\"10/1.0000000001s\"", rate("10/1.0000000001s")),
        ("\"0/s\"", rate("0/s")),
        ("\"5/0ms\"", rate("5/0ms")),
        (
            "Tank::builder(10/s).hardcap(One).initial(2)",
            Tank::builder(Rate::per_second(10).unwrap())
                .hardcap(Hardcap::One)
                .initial(2)
                .build()
                .unwrap_err(),
        ),
        (
            "Tank::builder(10/s).also(2/s).initial(5)",
            Tank::builder(Rate::per_second(10).unwrap())
                .also(Rate::per_second(2).unwrap())
                .initial(5)
                .build()
                .unwrap_err(),
        ),
        (
            "Monitor::builder().refresh(0s)",
            Monitor::builder().refresh(secs(0)).build().unwrap_err(),
        ),
        (
            "Monitor::builder().window(400 days)",
            Monitor::builder()
                .window(secs(400 * 86_400))
                .build()
                .unwrap_err(),
        ),
        (
            "Throttle::builder(10/s).timer_correction(1s)",
            Throttle::builder(Rate::per_second(10).unwrap())
                .timer_correction(secs(1))
                .build()
                .unwrap_err(),
        ),
        ("throttle(10/s).emit() with auto_emit on", {
            let throttle = Throttle::builder(Rate::per_second(10).unwrap())
                .build()
                .unwrap();
            throttle.emit().unwrap_err()
        }),
        (
            "KeyedTank::<u32>::builder(10/s).max_keys(0)",
            KeyedTank::<u32>::builder(Rate::per_second(10).unwrap())
                .max_keys(0)
                .build()
                .unwrap_err(),
        ),
        ("\"100/S\"", rate("100/S")),
        (
            "KeyedTank::<u32>::builder(5/s).burst(u64::MAX)",
            KeyedTank::<u32>::builder(Rate::per_second(5).unwrap())
                .burst(u64::MAX)
                .build()
                .unwrap_err(),
        ),
        (
            "Tank::builder(5/s).hardcap(One).burst(20)",
            Tank::builder(Rate::per_second(5).unwrap())
                .hardcap(Hardcap::One)
                .burst(20)
                .build()
                .unwrap_err(),
        ),
    ]);
    // The rows of shared memory, in their place in the README's table.
    #[cfg(feature = "shared-memory")]
    cases.extend(shared_cases());
    cases.extend(vec![("tank(10/s).await_fuel_n(11)", {
        let tank = Tank::new(Rate::per_second(10).unwrap());
        let mut future = pin!(tank.await_fuel_n(11));
        match common::poll(future.as_mut()) {
            std::task::Poll::Ready(Err(err)) => err,
            other => panic!("expected an error, got {other:?}"),
        }
    })]);
    cases
}

#[cfg(feature = "shared-memory")]
fn shared_cases() -> Vec<(&'static str, Error)> {
    use fueltank::SharedMemory;
    vec![
        (
            "Tank::builder(10/s).hardcap(Window).shared_memory(\"api\")",
            Tank::builder(Rate::per_second(10).unwrap())
                .hardcap(Hardcap::Window)
                .shared_memory("api")
                .build()
                .unwrap_err(),
        ),
        (
            "Tank::builder(10/s).also(2/s).shared_memory(\"api\")",
            Tank::builder(Rate::per_second(10).unwrap())
                .also(Rate::per_second(2).unwrap())
                .shared_memory("api")
                .build()
                .unwrap_err(),
        ),
        (
            "shared_memory(\"/tmp/fueltank-readme.tank\"), made at 10/s, attached at 20/s",
            {
                let path = "/tmp/fueltank-readme.tank";
                // Both tests of this file build the table, at once: one
                // at a time here, or one removes the other's file.
                static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
                let _turn = ONE_AT_A_TIME
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let _ = std::fs::remove_file(path);
                let shared = |per_second| {
                    Tank::builder(Rate::per_second(per_second).unwrap())
                        .shared_memory(path)
                        .build()
                };
                let _made = shared(10).unwrap();
                let err = shared(20).unwrap_err();
                let _ = std::fs::remove_file(path);
                err
            },
        ),
        (
            "shared_memory(SharedMemory::new(\"/tmp/fueltank-readme.tank\").mode(0o777))",
            Tank::builder(Rate::per_second(10).unwrap())
                .shared_memory(SharedMemory::new("/tmp/fueltank-readme.tank").mode(0o777))
                .build()
                .unwrap_err(),
        ),
        ("shared_memory(\"no spaces\")", {
            Tank::builder(Rate::per_second(10).unwrap())
                .shared_memory("no spaces")
                .build()
                .unwrap_err()
        }),
    ]
}

#[test]
fn errors_say_what_is_wrong_and_what_is_accepted() {
    for (input, err) in cases() {
        let message = err.to_string();
        assert!(!message.is_empty(), "{input}");
        let says_what_is_accepted = ["must", "expected", "ask for", "at most", "at least"]
            .iter()
            .any(|hint| message.contains(hint));
        assert!(says_what_is_accepted, "{input}: {message}");
    }
}

#[test]
fn parse_errors_name_the_input() {
    let err = "100/fortnight".parse::<Rate>().unwrap_err();
    assert!(err.to_string().contains("\"100/fortnight\""), "{err}");
    assert!(matches!(err, Error::ParseRate { .. }));
}

#[test]
fn the_readme_table_matches_the_code() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let mut missing = Vec::new();
    for (input, err) in cases() {
        let row = format!("| `{input}` | {err} |");
        if !readme.contains(&row) {
            missing.push(row);
        }
    }
    if !missing.is_empty() {
        // All rows, in order, to paste into the README.
        let rows: Vec<String> = cases()
            .into_iter()
            .map(|(input, err)| format!("| `{input}` | {err} |"))
            .collect();
        panic!(
            "README rows out of date:\n{}\n\nthe table should be:\n{}",
            missing.join("\n"),
            rows.join("\n")
        );
    }
}

#[test]
fn good_strings_round_trip() {
    for s in [
        "100/s",
        "5/250ms",
        "1000/min",
        "2/h",
        "1/d",
        "7/3us",
        "10/1500ms",
    ] {
        let rate: Rate = s.parse().unwrap();
        assert_eq!(rate.to_string(), s);
        assert_eq!(rate.to_string().parse::<Rate>().unwrap(), rate);
    }
    let decimal: Rate = "10/1.5s".parse().unwrap();
    assert_eq!(decimal.per(), Duration::from_millis(1500));
    assert_eq!(decimal.to_string(), "10/1500ms");
    let spaced: Rate = " 3 / 2 min ".parse().unwrap();
    assert_eq!(spaced, Rate::new(3, Duration::from_secs(120)).unwrap());
    assert_eq!("5/µs".parse::<Rate>().unwrap(), "5/us".parse().unwrap());
}

#[test]
fn units_spelled_out_in_any_case() {
    for (spelled, short) in [
        ("100/second", "100/s"),
        ("100/seconds", "100/s"),
        ("5/Minute", "5/min"),
        ("2/HOURS", "2/h"),
        ("1/day", "1/d"),
        ("3/250 milliseconds", "3/250ms"),
        ("7/3microseconds", "7/3us"),
        ("9/10nanosecond", "9/10ns"),
    ] {
        let rate: Rate = spelled.parse().unwrap();
        assert_eq!(rate.to_string(), short, "{spelled}");
    }
    // Abbreviations are lower case: "M" could be read as mega.
    for upper in ["100/S", "5/MS", "1/M", "2/H"] {
        let err = upper.parse::<Rate>().unwrap_err().to_string();
        assert!(err.contains("upper case"), "{upper}: {err}");
    }
}
