//! A real `redis-server` for the tests: one per test binary or per test, on
//! its own free port, nothing saved to disk, killed when dropped (also when
//! a test panics). A Redis Cluster likewise: three masters (and, if asked,
//! a replica of each) on free ports, each in a temporary directory of its
//! own (for its `nodes.conf`), joined by `redis-cli --cluster create`;
//! killed (also when stopped) and their directory removed when dropped.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
    /// Whose replica it is, if it is one.
    master: Option<u16>,
    /// Its working directory, removed with it: a replica writes the copy
    /// it receives from its master there (`dump.rdb`), even with saving
    /// off.
    dir: std::path::PathBuf,
}

/// A port nobody listens on now, never handed out before in this process,
/// and below Linux's ephemeral range (32768 up), from which the kernel
/// picks the ports of outgoing connections (and of a bind to port 0): a
/// server started on a port from that range can find it taken by then
/// by a client's connection, or by another test's server.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20_000;
    const SPAN: u32 = 12_000;
    // Each process starts at its own place, so that test binaries and
    // their child processes seldom try the same ports.
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        std::process::id().wrapping_mul(2_654_435_761) % SPAN,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    for _ in 0..SPAN {
        let port = (FIRST + NEXT.fetch_add(1, Ordering::Relaxed) % SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!(
        "no free port on 127.0.0.1 from {FIRST} to {}",
        FIRST + SPAN - 1
    )
}

impl RedisServer {
    /// Starts `redis-server` on a free port and waits until it answers.
    /// Fails the test, saying why, if there is no `redis-server` on PATH.
    pub fn start() -> RedisServer {
        RedisServer::start_replica(None)
    }

    /// Starts a replica of the server at `master` (`None`: a master) and
    /// waits until it answers; a replica is then in sync soon.
    pub fn start_replica(master: Option<u16>) -> RedisServer {
        let port = free_port();
        let dir =
            std::env::temp_dir().join(format!("fueltank-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create the server's directory");
        let mut server = RedisServer {
            port,
            child: None,
            master,
            dir,
        };
        server.restart();
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts it again on the same port (empty: nothing was saved).
    pub fn restart(&mut self) {
        self.stop();
        let master = self.master;
        self.child = Some(spawn(self.port, |server| {
            server.arg("--dir").arg(&self.dir);
            if let Some(master) = master {
                server.args(["--replicaof".to_string(), format!("127.0.0.1 {master}")]);
            }
        }));
    }

    /// Kills it and waits until it is gone.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn answers(&self) -> bool {
        answers(self.port)
    }

    /// Runs one command (inline form) and returns the raw answer.
    pub fn command(&self, line: &str) -> String {
        command(self.port, line)
    }
}

/// Runs one command (inline form) on the server at `port` and returns the
/// raw answer.
pub fn command(port: u16, line: &str) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to redis");
    stream
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    stream.write_all(format!("{line}\r\n").as_bytes()).unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let n = stream.read(&mut buf).unwrap_or(0);
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// A Redis Cluster of three masters on 127.0.0.1, with or without a
/// replica each.
pub struct RedisCluster {
    /// The masters' ports, in the order of their slot ranges.
    pub ports: Vec<u16>,
    /// The replicas' ports (none unless asked).
    pub replicas: Vec<u16>,
    nodes: Vec<Node>,
    node_timeout_ms: u32,
    dir: PathBuf,
}

/// One server of a Cluster: its port, its bus port, its process if
/// running.
struct Node {
    port: u16,
    bus: u16,
    child: Option<Child>,
}

impl RedisCluster {
    /// Three masters, no replica, a node timeout of 5 s.
    pub fn start() -> RedisCluster {
        RedisCluster::start_with(0, 5000)
    }

    /// Starts three masters and `replicas` replicas of each, with
    /// `cluster-node-timeout` (what a replica waits before it takes over a
    /// failed master) of `node_timeout_ms`, joins them and waits until
    /// every replica is in sync; fails the test, saying what to install,
    /// without `redis-server` or `redis-cli` on PATH.
    pub fn start_with(replicas: usize, node_timeout_ms: u32) -> RedisCluster {
        let dir = std::env::temp_dir().join(format!(
            "fueltank-cluster-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        // From here on, the guard kills what started and removes `dir`.
        let mut cluster = RedisCluster {
            ports: Vec::new(),
            replicas: Vec::new(),
            nodes: Vec::new(),
            node_timeout_ms,
            dir,
        };
        let mut all = Vec::new();
        for _ in 0..3 * (1 + replicas) {
            let (port, bus) = (free_port(), free_port());
            cluster.nodes.push(Node {
                port,
                bus,
                child: None,
            });
            cluster.restart(port);
            all.push(port);
        }
        let started = Instant::now();
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(all.iter().map(|port| format!("127.0.0.1:{port}")))
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|err| {
                panic!(
                    "cannot run redis-cli ({err}): the Cluster tests need it; install it \
                     (apt-get install redis-tools, or redis-server, which brings it)"
                )
            });
        assert!(
            created.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&created.stdout),
            String::from_utf8_lossy(&created.stderr)
        );
        // Every node must see the whole Cluster as up, and each replica
        // be in sync with its master.
        for &port in &all {
            loop {
                let info = command(port, "INFO replication");
                let up = command(port, "CLUSTER INFO").contains("cluster_state:ok")
                    && (info.contains("role:master") || info.contains("master_link_status:up"));
                if up {
                    if info.contains("role:master") {
                        cluster.ports.push(port);
                    } else {
                        cluster.replicas.push(port);
                    }
                    break;
                }
                assert!(
                    started.elapsed() < Duration::from_secs(30),
                    "the Cluster is not up on port {port} after 30 s"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        assert_eq!(cluster.ports.len(), 3, "masters: {:?}", cluster.ports);
        cluster
    }

    /// The seed URLs of every master.
    pub fn urls(&self) -> Vec<String> {
        self.ports
            .iter()
            .map(|port| format!("redis://127.0.0.1:{port}"))
            .collect()
    }

    /// The port of the master that serves `key`'s slot, and of its
    /// replica if it has one, as the node at `ask` sees the Cluster.
    pub fn master_of(&self, ask: u16, key: &str) -> (u16, Option<u16>) {
        let slot: u16 = command(ask, &format!("CLUSTER KEYSLOT {key}"))
            .trim_start_matches(':')
            .trim()
            .parse()
            .expect("CLUSTER KEYSLOT answers an integer");
        let nodes = command(ask, "CLUSTER NODES");
        // `<id> <ip:port@bus> <flags> <master id or -> ... <slot ranges>`
        let lines: Vec<Vec<&str>> = nodes
            .lines()
            .map(|line| line.split_whitespace().collect())
            .filter(|fields: &Vec<&str>| fields.len() >= 8)
            .collect();
        let port = |fields: &[&str]| -> u16 {
            let addr = fields[1].split('@').next().unwrap();
            addr.rsplit(':').next().unwrap().parse().unwrap()
        };
        let serves = |range: &&str| {
            let mut ends = range.split('-').map(|end| end.parse::<u16>());
            match (ends.next(), ends.next()) {
                (Some(Ok(from)), Some(Ok(to))) => (from..=to).contains(&slot),
                (Some(Ok(only)), None) => only == slot,
                _ => false,
            }
        };
        let master = lines
            .iter()
            .find(|fields| fields[2].contains("master") && fields[8..].iter().any(serves))
            .unwrap_or_else(|| panic!("no master serves slot {slot}: {nodes}"));
        let replica = lines
            .iter()
            .find(|fields| fields[3] == master[0] && !fields[2].contains("fail"))
            .map(|fields| port(fields));
        (port(master), replica)
    }

    fn node(&mut self, port: u16) -> &mut Node {
        self.nodes
            .iter_mut()
            .find(|node| node.port == port)
            .unwrap_or_else(|| panic!("no node of this Cluster on port {port}"))
    }

    /// Starts the node at `port` and waits until it answers (again, after
    /// a `SIGKILL`: it reads its `nodes.conf` and rejoins the Cluster, as a
    /// replica if its slots were taken over meanwhile; its data is gone,
    /// nothing was saved).
    pub fn restart(&mut self, port: u16) {
        let (dir, node_timeout_ms) = (self.dir.join(port.to_string()), self.node_timeout_ms);
        let node = self.node(port);
        assert!(node.child.is_none(), "the node on {port} runs");
        std::fs::create_dir_all(&dir).expect("create the node's directory");
        let bus = node.bus;
        node.child = Some(spawn(port, |server| {
            server
                .args(["--cluster-port", &bus.to_string()])
                .args(["--cluster-enabled", "yes"])
                .args(["--cluster-config-file", "nodes.conf"])
                .args(["--cluster-node-timeout", &node_timeout_ms.to_string()])
                .arg("--dir")
                .arg(&dir);
        }));
    }

    /// Sends `signal` to the node at `port` (`SIGKILL` also reaps it).
    pub fn signal(&mut self, port: u16, signal: i32) {
        let node = self.node(port);
        let child = node
            .child
            .as_mut()
            .unwrap_or_else(|| panic!("the node on {port} does not run"));
        if signal == libc::SIGKILL {
            let _ = child.kill();
            let _ = child.wait();
            node.child = None;
            return;
        }
        let pid = child.id() as libc::pid_t;
        // SAFETY: `kill` reads no memory of ours; `pid` is our own child,
        // not yet reaped (so not reused by another process).
        let sent = unsafe { libc::kill(pid, signal) };
        assert_eq!(sent, 0, "cannot send signal {signal} to {pid}");
    }
}

/// Starts a `redis-server` on `port` (no persistence), with the options
/// `configure` adds, and waits until it answers a PING.
fn spawn(port: u16, configure: impl FnOnce(&mut Command)) -> Child {
    let mut server = Command::new("redis-server");
    server
        .args(["--port", &port.to_string()])
        .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    configure(&mut server);
    let mut child = server.spawn().unwrap_or_else(|err| {
        panic!(
            "cannot start redis-server ({err}): these tests need a real Redis; \
             install it (apt-get install redis-server) so that redis-server is on PATH"
        )
    });
    let started = Instant::now();
    while !answers(port) {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("redis-server on port {port} exited ({status}) before it answered");
        }
        if started.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("redis-server on port {port} did not answer PING within 10 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child
}

/// Whether the server at `port` answers a PING.
fn answers(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut answer = [0u8; 7];
    stream.read_exact(&mut answer).is_ok() && &answer == b"+PONG\r\n"
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        // SIGKILL ends a stopped process too.
        for child in self.nodes.iter_mut().filter_map(|node| node.child.as_mut()) {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Takes one fuel for each of `keys` until `keyed` has taken `rate`: a
/// keyed tank learns another instance's `set_rate` at its next check of the
/// tank's parameters (a second after its last), made alongside a key's
/// round trip. Fails after 3 s.
pub async fn until_keyed_rate<K>(
    keyed: &fueltank_redis::GlobalKeyedTank<K>,
    rate: fueltank::Rate,
    keys: impl IntoIterator<Item = K>,
) where
    K: std::hash::Hash + Eq + Clone + std::fmt::Display + Send + Sync + 'static,
{
    let started = Instant::now();
    for key in keys {
        keyed.await_fuel(key).await.unwrap();
        if keyed.rate() == rate {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "still at {}, not {rate}",
            keyed.rate()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no key left, still at {}", keyed.rate());
}

/// The most stamps in any half-open window `[t, t + width)`.
pub fn densest(stamps: &mut [Instant], width: Duration) -> usize {
    stamps.sort();
    let mut most = 0;
    let mut start = 0;
    for end in 0..stamps.len() {
        while stamps[end] - stamps[start] >= width {
            start += 1;
        }
        most = most.max(end - start + 1);
    }
    most
}
