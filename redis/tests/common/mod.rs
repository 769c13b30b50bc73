//! A real `redis-server` for the tests: one per test binary or per test, on
//! its own free port, nothing saved to disk, killed when dropped (also when
//! a test panics). A Redis Cluster likewise: three masters on free ports,
//! each in a temporary directory of its own (for its `nodes.conf`), joined
//! by `redis-cli --cluster create`; killed and their directory removed
//! when dropped.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
}

/// A port nobody listens on now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("cannot find a free port on 127.0.0.1")
}

impl RedisServer {
    /// Starts `redis-server` on a free port and waits until it answers.
    /// Fails the test, saying why, if there is no `redis-server` on PATH.
    pub fn start() -> RedisServer {
        let mut server = RedisServer {
            port: free_port(),
            child: None,
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
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| {
                panic!(
                    "cannot start redis-server ({err}): these tests need a real Redis; \
                     install it (apt-get install redis-server) so that redis-server is on PATH"
                )
            });
        self.child = Some(child);
        let started = Instant::now();
        while !self.answers() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "redis-server on port {} did not answer PING within 10 s",
                self.port
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Kills it and waits until it is gone.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn answers(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
        if stream.write_all(b"PING\r\n").is_err() {
            return false;
        }
        let mut answer = [0u8; 7];
        stream.read_exact(&mut answer).is_ok() && &answer == b"+PONG\r\n"
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

/// A Redis Cluster of three masters (no replicas) on 127.0.0.1.
pub struct RedisCluster {
    /// The masters' ports, in the order of their slot ranges.
    pub ports: Vec<u16>,
    children: Vec<Child>,
    dir: PathBuf,
}

impl RedisCluster {
    /// Starts the servers and joins them; fails the test, saying what to
    /// install, without `redis-server` or `redis-cli` on PATH.
    pub fn start() -> RedisCluster {
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
            children: Vec::new(),
            dir,
        };
        for _ in 0..3 {
            let (port, bus) = (free_port(), free_port());
            let node_dir = cluster.dir.join(port.to_string());
            std::fs::create_dir_all(&node_dir).expect("create the node's directory");
            let child = Command::new("redis-server")
                .args([
                    "--port",
                    &port.to_string(),
                    "--cluster-port",
                    &bus.to_string(),
                ])
                .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .args([
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                ])
                .args(["--cluster-node-timeout", "5000"])
                .arg("--dir")
                .arg(&node_dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|err| {
                    panic!(
                        "cannot start redis-server ({err}): these tests need a real Redis; \
                         install it (apt-get install redis-server) so that redis-server is on PATH"
                    )
                });
            cluster.children.push(child);
            cluster.ports.push(port);
        }
        let started = Instant::now();
        for &port in &cluster.ports {
            while command_answers(port).is_none() {
                assert!(
                    started.elapsed() < Duration::from_secs(10),
                    "redis-server on port {port} did not answer PING within 10 s"
                );
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(cluster.ports.iter().map(|port| format!("127.0.0.1:{port}")))
            .args(["--cluster-replicas", "0", "--cluster-yes"])
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
        // Every node must see the whole Cluster as up.
        for &port in &cluster.ports {
            while !command(port, "CLUSTER INFO").contains("cluster_state:ok") {
                assert!(
                    started.elapsed() < Duration::from_secs(30),
                    "the Cluster is not up on port {port} after 30 s"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        cluster
    }

    /// The seed URLs of every master.
    pub fn urls(&self) -> Vec<String> {
        self.ports
            .iter()
            .map(|port| format!("redis://127.0.0.1:{port}"))
            .collect()
    }
}

/// `Some` once the server at `port` answers a PING.
fn command_answers(port: u16) -> Option<()> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_millis(500)))
        .ok()?;
    stream.write_all(b"PING\r\n").ok()?;
    let mut answer = [0u8; 7];
    stream.read_exact(&mut answer).ok()?;
    (&answer == b"+PONG\r\n").then_some(())
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
