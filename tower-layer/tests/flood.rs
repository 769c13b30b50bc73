//! A flood of 10^5 new client addresses through the keyed HTTP layer, on a
//! `ManualClock` (no key ever refills, so none is forgotten for owing
//! nothing): the keys held and the heap stay bounded by `max_keys`, the
//! client that owes most keeps its debt, and without a tight bound each
//! key costs about what the keyed tank alone says (≤ 64 B).
//!
//! One test in its own binary: the heap counter sees this test only.
//! `--nocapture` prints the figures.

use std::alloc::{GlobalAlloc, Layout, System};
use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::task::{Context, Poll, Waker};

use fueltank::clock::ManualClock;
use fueltank::{KeyedTank, Rate};
use fueltank_tower::KeyedThrottleLayer;
use fueltank_tower::key::PeerIp;
use futures::FutureExt;
use http::{Request, Response, StatusCode};
use tower::{Layer, Service, service_fn};

/// Counts the bytes this test binary holds on the heap.
struct Counting;

static HELD: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged and only
// counts sizes on the side.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        HELD.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which
        // is `System.alloc`'s.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        HELD.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: `ptr` came from `alloc` above, that is from `System`,
        // with this `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const FLOOD: u32 = 100_000;

fn held() -> isize {
    HELD.load(Ordering::SeqCst)
}

/// One request from `ip`, answered at once; its status.
fn get<S>(svc: &mut S, ip: IpAddr) -> StatusCode
where
    S: Service<Request<()>, Response = Response<String>, Error = Infallible>,
{
    let mut request = Request::new(());
    request.extensions_mut().insert(SocketAddr::new(ip, 40_000));
    assert!(matches!(
        svc.poll_ready(&mut Context::from_waker(Waker::noop())),
        Poll::Ready(Ok(()))
    ));
    match svc.call(request).now_or_never() {
        Some(Ok(response)) => response.status(),
        Some(Err(never)) => match never {},
        None => panic!("no answer at once"),
    }
}

fn ip(i: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i))
}

#[test]
fn a_flood_of_new_clients_keeps_keys_and_memory_bounded() {
    let clock = ManualClock::new();
    let ok =
        service_fn(|_: Request<()>| async { Ok::<_, Infallible>(Response::new(String::new())) });

    // 1. A bound of 1 000 keys.
    let max_keys = 1_000;
    let keyed = KeyedTank::<IpAddr>::builder(Rate::per_second(10).unwrap())
        .max_keys(max_keys)
        .clock(clock.clone())
        .build()
        .unwrap();
    let mut svc = KeyedThrottleLayer::new(keyed.clone(), PeerIp)
        .reject()
        .http()
        .layer(ok);
    // A client drains its budget first: it owes the most.
    let victim = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 66));
    while get(&mut svc, victim) == StatusCode::OK {}
    // Warm up to the bound: the maps reach their working size.
    for i in 0..2 * max_keys as u32 {
        assert_eq!(get(&mut svc, ip(FLOOD + i)), StatusCode::OK);
    }
    // Room for the checkpoints before measuring: they must not count.
    let mut checkpoints: Vec<(u32, isize)> = Vec::with_capacity(4);
    let before = held();
    let mut peak = before;
    let mut most_keys = 0;
    let mut served = 0;
    for i in 0..FLOOD {
        // Under a flood that evicts owing keys, new clients may start with
        // an evicted key's debt (at worst empty): no client ever beyond its
        // bound, however the flood evicts.
        match get(&mut svc, ip(i)) {
            StatusCode::OK => served += 1,
            status => assert_eq!(status, StatusCode::TOO_MANY_REQUESTS),
        }
        peak = peak.max(held());
        most_keys = most_keys.max(keyed.len());
        if (i + 1) % (FLOOD / 4) == 0 {
            checkpoints.push((i + 1, held() - before));
        }
    }
    let checkpoints: Vec<String> = checkpoints
        .iter()
        .map(|(n, grown)| format!("+{grown} B after {n}"))
        .collect();
    println!(
        "flood of {FLOOD} new clients, max_keys {max_keys}: {served} served at once, \
         at most {most_keys} keys held; heap {before} B after warm-up; {}; peak +{} B",
        checkpoints.join(", "),
        peak - before
    );
    assert!(most_keys <= max_keys, "{most_keys} keys held");
    assert!(served >= max_keys as u32, "{served} served");
    // Bounded by `max_keys`, not by the flood: the shards' maps may settle
    // at a larger capacity as keys come and go, but within a few buckets
    // per key of the bound (10^5 keys held would take about 5 MB).
    let bound = 128 * max_keys as isize;
    assert!(
        peak - before <= bound,
        "the heap grew by {} B during the flood (bound {bound} B)",
        peak - before
    );
    assert_eq!(
        get(&mut svc, victim),
        StatusCode::TOO_MANY_REQUESTS,
        "the client that owed most was not forgotten"
    );
    drop(svc);
    drop(keyed);

    // 2. The default bound (2^20): every client of the flood is held;
    // what one costs, through the layer.
    let keyed = KeyedTank::<IpAddr>::builder(Rate::per_second(10).unwrap())
        .clock(clock.clone())
        .build()
        .unwrap();
    let mut svc = KeyedThrottleLayer::new(keyed.clone(), PeerIp)
        .reject()
        .http()
        .layer(ok);
    assert_eq!(get(&mut svc, ip(u32::MAX - 0x0a00_0000)), StatusCode::OK);
    let before = held();
    for i in 0..FLOOD {
        assert_eq!(get(&mut svc, ip(i)), StatusCode::OK);
    }
    assert_eq!(keyed.len(), FLOOD as usize + 1);
    let per_key = (held() - before) as f64 / f64::from(FLOOD);
    println!(
        "default max_keys: {} keys held, {per_key:.1} B per key",
        keyed.len()
    );
    assert!(per_key <= 64.0, "{per_key:.1} B per key");
}
