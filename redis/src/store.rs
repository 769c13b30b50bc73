//! [`RedisStore`]: the connection, the script, the failure policy and the
//! counters that every tank of the store shares.

use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use futures_util::future::{Either, select};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{Client, ErrorKind, RedisResult, Script, ScriptInvocation, ServerErrorKind};

use crate::error::redact;
use crate::script::{self, Reply};
use crate::spawn::Spawner;
use crate::{Error, GlobalKeyedTankBuilder, GlobalTankBuilder};
use fueltank::Rate;

/// What a tank does while Redis does not answer (a round trip failed or
/// timed out, and none has succeeded since).
///
/// Fuel already reserved from Redis is spent first under every policy: it
/// was granted by Redis. The policy decides the rest:
///
/// | policy | `has_fuel` | waiters |
/// |---|---|---|
/// | [`Closed`](FailurePolicy::Closed) (default) | `false` | keep waiting; served once Redis answers again |
/// | [`Open`](FailurePolicy::Open) | `true` | served at once |
/// | [`Local`](FailurePolicy::Local) | a local [`fueltank::Tank`] at `share` of the rate | served by that tank |
///
/// The default is `Closed`: the hardcap's bound holds even while Redis is
/// down. Every decision made under the policy is counted in
/// [`StoreStats::policy_grants`] and [`StoreStats::policy_refusals`].
///
/// # Examples
///
/// ```
/// use fueltank_redis::{FailurePolicy, RedisStore};
///
/// let builder = RedisStore::builder("redis://127.0.0.1:6379")
///     .on_failure(FailurePolicy::Local(0.25)); // four instances: a quarter each
/// assert_eq!(FailurePolicy::default(), FailurePolicy::Closed);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub enum FailurePolicy {
    /// No fuel but what is reserved until Redis answers again.
    #[default]
    Closed,
    /// Grant everything until Redis answers again.
    Open,
    /// Each tank (each key of a keyed tank) falls back to a local tank at
    /// this share of its rate (more than 0, at most 1), with its hardcap:
    /// `max_n × share` per `per`, holding at most `⌊max_n × share⌋` (at
    /// least 1) at once. `Local(0.25)` of `1/100ms` is one per 400 ms.
    /// Every rate is scaled so (those of `also` too), and the local tank
    /// follows the rate in force (a `set_rate`, here or by another
    /// instance). A keyed tank's keys are the keys of one local keyed
    /// tank ([`fueltank::KeyedTank`]), apart from the keys the tank holds
    /// for Redis: a key forgotten there (`max_keys`) keeps what it spent
    /// here.
    Local(f64),
}

/// Counters of one store, over all its tanks, since it connected.
///
/// # Examples
///
/// ```no_run
/// use fueltank_redis::RedisStore;
///
/// # async fn run() -> Result<(), fueltank_redis::Error> {
/// let store = RedisStore::connect("redis://127.0.0.1:6379").await?;
/// let stats = store.stats();
/// println!("{} round trips for {} grants", stats.round_trips, stats.granted);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoreStats {
    /// Script calls sent to Redis.
    pub round_trips: u64,
    /// Round trips that failed or timed out.
    pub store_errors: u64,
    /// Round trips that Redis answered with "nothing now, retry at".
    pub refusals: u64,
    /// Fuel Redis reserved for this instance.
    pub reserved: u64,
    /// Fuel granted from those reservations.
    pub granted: u64,
    /// Reserved fuel whose hold ended before anyone here took it.
    pub expired: u64,
    /// Fuel granted by the failure policy (`Open`, `Local`) while Redis did
    /// not answer.
    pub policy_grants: u64,
    /// Requests refused by the failure policy (`Closed`, `Local`) while Redis
    /// did not answer.
    pub policy_refusals: u64,
    /// Times a tank (a key of a keyed tank) found another limit stored
    /// under its name: its state was lost (a flush, a restart, an expiry)
    /// and made again by an instance with other parameters. Nothing more is
    /// granted to it until Redis holds its limit again; see
    /// [`Error::Mismatch`].
    pub mismatches: u64,
    /// Round trips whose writes fewer replicas acknowledged in time than
    /// [`RedisStoreBuilder::wait_for_replicas`] asks: failures (also
    /// counted in `store_errors`), their reservations never spent.
    pub unreplicated: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) round_trips: AtomicU64,
    pub(crate) store_errors: AtomicU64,
    pub(crate) refusals: AtomicU64,
    pub(crate) reserved: AtomicU64,
    pub(crate) granted: AtomicU64,
    pub(crate) expired: AtomicU64,
    pub(crate) policy_grants: AtomicU64,
    pub(crate) policy_refusals: AtomicU64,
    pub(crate) mismatches: AtomicU64,
    pub(crate) unreplicated: AtomicU64,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// A connection to one server, or to a Cluster (which follows `MOVED` and
/// `ASK` itself, within the round trip's timeout).
#[derive(Clone)]
enum Connection {
    Server(ConnectionManager),
    Cluster(ClusterConnection),
}

/// What every tank of a store shares.
pub(crate) struct StoreShared {
    url: String,
    connection: Connection,
    script: Script,
    /// What every Redis key of this store starts with (before a `:`).
    pub(crate) prefix: String,
    pub(crate) timeout: Duration,
    pub(crate) policy: FailurePolicy,
    /// `WAIT` for this many replicas, this long, after each script call.
    wait: Option<(u32, Duration)>,
    pub(crate) spawner: Spawner,
    /// Whether the latest round trip failed.
    down: AtomicBool,
    /// Redis's clock, seen from here.
    pub(crate) offset: crate::offset::Offset,
    pub(crate) counters: Counters,
}

/// One connection to Redis, shared by every tank built from it.
///
/// A cheap handle: clones share the connection (one multiplexed connection
/// that reconnects by itself, with backoff; on a Cluster, one per node,
/// following the Cluster's slots), the script and the counters.
/// The script is loaded when the store connects and sent again if Redis
/// has forgotten it (after a restart).
///
/// # Runtime
///
/// Each tank has a *driver*, a task spawned when it has something to do
/// (round trips, waking waiters at their fuel's time) and gone when it has
/// not. Drivers run where the store was connected: on the tokio runtime
/// that called [`connect`](RedisStore::connect) (feature `tokio`, the
/// default), or on smol's global executor (feature `smol`), as redis-rs's
/// own connection task does. Waiting futures and `has_fuel` may then be
/// used from any executor or thread.
///
/// # Examples
///
/// ```no_run
/// use fueltank_redis::{FailurePolicy, RedisStore};
/// use std::time::Duration;
///
/// # async fn run() -> Result<(), fueltank_redis::Error> {
/// let store = RedisStore::builder("redis://127.0.0.1:6379")
///     .timeout(Duration::from_millis(50))
///     .on_failure(FailurePolicy::Closed)
///     .connect()
///     .await?;
/// let api = store.tank("api", "100/s".parse()?).build().await?;
/// api.await_fuel().await;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisStore {
    pub(crate) shared: Arc<StoreShared>,
}

/// Chooses the timeouts and the failure policy of a [`RedisStore`].
///
/// # Examples
///
/// ```
/// use fueltank_redis::{FailurePolicy, RedisStore};
/// use std::time::Duration;
///
/// let builder = RedisStore::builder("redis://127.0.0.1:6379")
///     .timeout(Duration::from_millis(50))
///     .connect_timeout(Duration::from_secs(2))
///     .on_failure(FailurePolicy::Open);
/// ```
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until it connects"]
pub struct RedisStoreBuilder {
    /// One server's URL, or (`cluster`) the URLs of a Cluster's seed nodes.
    urls: Vec<String>,
    cluster: bool,
    prefix: String,
    timeout: Duration,
    connect_timeout: Duration,
    policy: FailurePolicy,
    wait: Option<(u32, Duration)>,
}

/// Timeouts accepted: 1 ms to 1 hour.
const TIMEOUT_RANGE: (Duration, Duration) = (Duration::from_millis(1), Duration::from_secs(3600));

impl RedisStore {
    /// Connects with the default options: a 100 ms timeout per round trip,
    /// 1 s to connect, [`FailurePolicy::Closed`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use fueltank_redis::RedisStore;
    ///
    /// # async fn run() -> Result<(), fueltank_redis::Error> {
    /// let store = RedisStore::connect("redis://127.0.0.1:6379").await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect(url: &str) -> Result<RedisStore, Error> {
        RedisStore::builder(url).connect().await
    }

    /// A builder for the timeouts and the failure policy.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank_redis::RedisStore;
    /// use std::time::Duration;
    ///
    /// let builder = RedisStore::builder("redis://127.0.0.1:6379").timeout(Duration::from_millis(20));
    /// ```
    pub fn builder(url: &str) -> RedisStoreBuilder {
        RedisStoreBuilder {
            urls: vec![url.to_string()],
            cluster: false,
            prefix: DEFAULT_PREFIX.to_string(),
            timeout: Duration::from_millis(100),
            connect_timeout: Duration::from_secs(1),
            policy: FailurePolicy::Closed,
            wait: None,
        }
    }

    /// A builder for a store on a Redis Cluster, seeded by the URLs of any
    /// of its nodes (one is enough; the others are found from it).
    ///
    /// Every tank works as on one server, with the same bounds and failure
    /// policies: a global tank's keys share one hash slot, and each key of
    /// a keyed tank has its own, so a keyed tank spreads over the shards.
    /// Redirections while the Cluster reshards (`MOVED`, `ASK`) are
    /// followed within the round trip's timeout; a round trip that does not
    /// end within it fails as on one server. A keyed tank's parameters live
    /// in one slot of their own, which each instance reads at most once a
    /// second (see [`GlobalKeyedTank::set_rate`](crate::GlobalKeyedTank::set_rate)).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use fueltank_redis::RedisStore;
    ///
    /// # async fn run() -> Result<(), fueltank_redis::Error> {
    /// let store = RedisStore::builder_cluster(["redis://127.0.0.1:7000", "redis://127.0.0.1:7001"])
    ///     .prefix("myapp")
    ///     .connect()
    ///     .await?;
    /// let api = store.tank("api", "1000/s".parse()?).build().await?;
    /// # Ok(()) }
    /// ```
    pub fn builder_cluster<I, S>(nodes: I) -> RedisStoreBuilder
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        RedisStoreBuilder {
            urls: nodes
                .into_iter()
                .map(|url| url.as_ref().to_string())
                .collect(),
            cluster: true,
            ..RedisStore::builder("")
        }
    }

    /// A builder for a global tank named `name` at `rate`, shared with every
    /// instance that builds the same name.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use fueltank::Hardcap;
    /// use fueltank_redis::RedisStore;
    ///
    /// # async fn run() -> Result<(), fueltank_redis::Error> {
    /// let store = RedisStore::connect("redis://127.0.0.1:6379").await?;
    /// let tank = store.tank("api", "100/s".parse()?).hardcap(Hardcap::Window).build().await?;
    /// # Ok(()) }
    /// ```
    pub fn tank(&self, name: &str, rate: Rate) -> GlobalTankBuilder {
        GlobalTankBuilder::new(self.clone(), name, rate)
    }

    /// A builder for a keyed global tank: one global tank per key, all at
    /// `rate`, named `name`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use fueltank_redis::RedisStore;
    ///
    /// # async fn run() -> Result<(), fueltank_redis::Error> {
    /// let store = RedisStore::connect("redis://127.0.0.1:6379").await?;
    /// let per_user = store.keyed::<String>("per-user", "10/s".parse()?).build().await?;
    /// # Ok(()) }
    /// ```
    pub fn keyed<K>(&self, name: &str, rate: Rate) -> GlobalKeyedTankBuilder<K>
    where
        K: Hash + Eq + Clone + fmt::Display + Send + Sync + 'static,
    {
        GlobalKeyedTankBuilder::new(self.clone(), name, rate)
    }

    /// The counters of this store's tanks.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use fueltank_redis::RedisStore;
    ///
    /// # async fn run() -> Result<(), fueltank_redis::Error> {
    /// let store = RedisStore::connect("redis://127.0.0.1:6379").await?;
    /// assert_eq!(store.stats().store_errors, 0);
    /// # Ok(()) }
    /// ```
    pub fn stats(&self) -> StoreStats {
        let c = &self.shared.counters;
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        StoreStats {
            round_trips: get(&c.round_trips),
            store_errors: get(&c.store_errors),
            refusals: get(&c.refusals),
            reserved: get(&c.reserved),
            granted: get(&c.granted),
            expired: get(&c.expired),
            policy_grants: get(&c.policy_grants),
            policy_refusals: get(&c.policy_refusals),
            mismatches: get(&c.mismatches),
            unreplicated: get(&c.unreplicated),
        }
    }

    /// Whether the latest round trip was answered (on one server, `false`
    /// while the failure policy decides; on a Cluster the policy follows
    /// each tank's and key's own round trips).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use fueltank_redis::RedisStore;
    ///
    /// # async fn run() -> Result<(), fueltank_redis::Error> {
    /// let store = RedisStore::connect("redis://127.0.0.1:6379").await?;
    /// assert!(store.is_reachable());
    /// # Ok(()) }
    /// ```
    pub fn is_reachable(&self) -> bool {
        !self.shared.is_down()
    }

    /// The failure policy.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use fueltank_redis::{FailurePolicy, RedisStore};
    ///
    /// # async fn run() -> Result<(), fueltank_redis::Error> {
    /// let store = RedisStore::connect("redis://127.0.0.1:6379").await?;
    /// assert_eq!(store.policy(), FailurePolicy::Closed);
    /// # Ok(()) }
    /// ```
    pub fn policy(&self) -> FailurePolicy {
        self.shared.policy
    }
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("url", &self.shared.url)
            .field("timeout", &self.shared.timeout)
            .field("policy", &self.shared.policy)
            .field("wait_for_replicas", &self.shared.wait)
            .field("reachable", &self.is_reachable())
            .finish()
    }
}

/// The prefix of every Redis key unless [`RedisStoreBuilder::prefix`] says
/// otherwise.
const DEFAULT_PREFIX: &str = "fueltank";

/// The longest prefix, in bytes.
const MAX_PREFIX: usize = 100;

impl RedisStoreBuilder {
    /// What every Redis key of this store's tanks starts with, before a
    /// `:` (`"fueltank"` by default): several applications can share one
    /// Redis with prefixes of their own, and an ACL can grant one its
    /// prefix (`~myapp:*`). 1 to 100 bytes, without `{` or `}` (which
    /// would move the Cluster hash tag) or control characters; anything
    /// else, `:` included, is accepted. Instances share a tank only if they
    /// use the same prefix.
    ///
    /// The keys of a tank are then `PREFIX:{NAME}:…` and, for key `KEY` of
    /// a keyed tank, `PREFIX:{NAME:KEY}:…`, with `%`, `{`, `}` and `:` of
    /// the name and the key escaped as `%25`, `%7B`, `%7D` and `%3A`: every
    /// name and key has keys of its own.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank_redis::{Error, RedisStore};
    ///
    /// let builder = RedisStore::builder("redis://127.0.0.1:6379").prefix("billing:v2");
    /// # futures::executor::block_on(async {
    /// let err = RedisStore::builder("redis://127.0.0.1:6379").prefix("{x}").connect().await.unwrap_err();
    /// assert!(matches!(err, Error::InvalidOption { option: "prefix", .. }));
    /// # });
    /// ```
    pub fn prefix(mut self, prefix: &str) -> RedisStoreBuilder {
        self.prefix = prefix.to_string();
        self
    }

    /// The longest a round trip may take before it counts as a failure
    /// (100 ms by default; 1 ms to 1 hour).
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank_redis::RedisStore;
    /// use std::time::Duration;
    ///
    /// let builder = RedisStore::builder("redis://127.0.0.1:6379").timeout(Duration::from_millis(50));
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> RedisStoreBuilder {
        self.timeout = timeout;
        self
    }

    /// The longest [`connect`](RedisStoreBuilder::connect) waits for the
    /// first connection (1 s by default; 1 ms to 1 hour).
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank_redis::RedisStore;
    /// use std::time::Duration;
    ///
    /// let builder = RedisStore::builder("redis://127.0.0.1:6379").connect_timeout(Duration::from_secs(5));
    /// ```
    pub fn connect_timeout(mut self, timeout: Duration) -> RedisStoreBuilder {
        self.connect_timeout = timeout;
        self
    }

    /// What tanks do while Redis does not answer; [`FailurePolicy::Closed`]
    /// by default.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank_redis::{FailurePolicy, RedisStore};
    ///
    /// let builder = RedisStore::builder("redis://127.0.0.1:6379").on_failure(FailurePolicy::Open);
    /// ```
    pub fn on_failure(mut self, policy: FailurePolicy) -> RedisStoreBuilder {
        self.policy = policy;
        self
    }

    /// Makes every round trip wait until `replicas` replicas of the node
    /// that ran it have its writes, at most `timeout`, before its answer is
    /// used: off by default. A Redis master tells its replicas of a write
    /// after it has answered (asynchronous replication), so a replica that
    /// takes over a failed master (Cluster failover, Sentinel) can lack the
    /// reservations of the master's last moments, and grant that fuel
    /// again: a window can then see up to that much more than its bound
    /// (the crate docs, *Failover*, bound it). With this option a
    /// reservation is spent only once `replicas` replicas hold it, so a
    /// replica that held it and takes over grants nothing twice.
    ///
    /// Each script call is followed, on the same connection, by `WAIT
    /// replicas timeout`; when fewer replicas acknowledge in time the
    /// round trip is a failure ([`StoreStats::unreplicated`]): its reservation
    /// is never spent and the [`FailurePolicy`] decides, as while Redis is
    /// down. The cost is a wait for the replicas on every round trip (not
    /// on grants from reserved fuel), and the connection to that node
    /// waits with it. Ask for every replica of a master to be sure the
    /// one promoted holds every reservation spent (Cluster and Sentinel
    /// promote the replica with the most data, but fewer than all is no
    /// promise); a master with fewer replicas up than asked grants
    /// nothing but what the policy grants.
    ///
    /// `replicas` at least 1; `timeout` at least 1 ms and less than the
    /// round trip's [`timeout`](RedisStoreBuilder::timeout).
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank_redis::{Error, RedisStore};
    /// use std::time::Duration;
    ///
    /// let builder = RedisStore::builder_cluster(["redis://127.0.0.1:7000"])
    ///     .wait_for_replicas(1, Duration::from_millis(20));
    /// # futures::executor::block_on(async {
    /// let err = RedisStore::builder("redis://127.0.0.1:6379")
    ///     .wait_for_replicas(1, Duration::from_secs(1))
    ///     .connect()
    ///     .await
    ///     .unwrap_err();
    /// assert!(matches!(err, Error::InvalidOption { option: "wait_for_replicas timeout", .. }));
    /// # });
    /// ```
    pub fn wait_for_replicas(mut self, replicas: u32, timeout: Duration) -> RedisStoreBuilder {
        self.wait = Some((replicas, timeout));
        self
    }

    /// Connects, loads the script (on every node of a Cluster), and
    /// returns the store; an error if a URL is malformed, an option is out
    /// of range, or no connection is made within the connect timeout.
    ///
    /// Call it from inside the runtime the tanks' drivers should run on
    /// (see [`RedisStore`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank_redis::{Error, RedisStore};
    /// use std::time::Duration;
    ///
    /// # futures::executor::block_on(async {
    /// let err = RedisStore::builder("redis://127.0.0.1:6379")
    ///     .timeout(Duration::ZERO)
    ///     .connect()
    ///     .await
    ///     .unwrap_err();
    /// assert!(matches!(err, Error::InvalidOption { option: "timeout", .. }));
    /// # });
    /// ```
    pub async fn connect(self) -> Result<RedisStore, Error> {
        let url = self
            .urls
            .iter()
            .map(|url| redact(url))
            .collect::<Vec<_>>()
            .join(", ");
        check_timeout("timeout", self.timeout)?;
        check_timeout("connect_timeout", self.connect_timeout)?;
        if let FailurePolicy::Local(share) = self.policy
            && !(share > 0.0 && share <= 1.0)
        {
            return Err(Error::InvalidOption {
                option: "FailurePolicy::Local share",
                value: share.to_string(),
                accepted: "more than 0 and at most 1",
            });
        }
        if let Some((replicas, timeout)) = self.wait {
            if replicas == 0 {
                return Err(Error::InvalidOption {
                    option: "wait_for_replicas replicas",
                    value: replicas.to_string(),
                    accepted: "at least 1",
                });
            }
            if timeout < TIMEOUT_RANGE.0 || timeout >= self.timeout {
                return Err(Error::InvalidOption {
                    option: "wait_for_replicas timeout",
                    value: format!("{timeout:?}"),
                    accepted: "at least 1 ms and less than the round trip's timeout",
                });
            }
        }
        let prefix = &self.prefix;
        if prefix.is_empty()
            || prefix.len() > MAX_PREFIX
            || prefix.contains(['{', '}'])
            || prefix.chars().any(char::is_control)
        {
            return Err(Error::InvalidOption {
                option: "prefix",
                value: format!("{prefix:?}"),
                accepted: "1 to 100 bytes without '{', '}' or control characters",
            });
        }
        let invalid = |reason: String| Error::InvalidUrl {
            url: url.clone(),
            reason,
        };
        let Some(spawner) = Spawner::current() else {
            return Err(Error::InvalidOption {
                option: "connect's runtime",
                value: "none".to_string(),
                accepted: "a tokio runtime around the call (feature `tokio`), \
                           or the feature `smol`",
            });
        };
        let unreachable = |reason: String| Error::Unreachable {
            url: url.clone(),
            reason,
        };
        let connecting = async {
            if self.cluster {
                if self.urls.is_empty() {
                    return Err(invalid(
                        "no node given; builder_cluster needs the URL of at least one node"
                            .to_string(),
                    ));
                }
                let client = ClusterClient::builder(self.urls.iter().map(String::as_str))
                    .connection_timeout(self.connect_timeout)
                    .response_timeout(self.timeout)
                    .build()
                    .map_err(|err| invalid(err.to_string()))?;
                client
                    .get_async_connection()
                    .await
                    .map(Connection::Cluster)
                    .map_err(|err| unreachable(err.to_string()))
            } else {
                let client =
                    Client::open(self.urls[0].as_str()).map_err(|err| invalid(err.to_string()))?;
                let config = ConnectionManagerConfig::new()
                    .set_response_timeout(Some(self.timeout))
                    .set_connection_timeout(Some(self.connect_timeout))
                    .set_min_delay(Duration::from_millis(20))
                    .set_max_delay(Duration::from_millis(500))
                    .set_number_of_retries(4);
                client
                    .get_connection_manager_with_config(config)
                    .await
                    .map(Connection::Server)
                    .map_err(|err| unreachable(err.to_string()))
            }
        };
        let connection = within(self.connect_timeout, connecting)
            .await
            .ok_or_else(|| {
                unreachable(format!("no connection within {:?}", self.connect_timeout))
            })??;
        let script = script::script();
        let loaded = match connection.clone() {
            Connection::Server(mut c) => {
                within(self.connect_timeout, script.load_async(&mut c)).await
            }
            Connection::Cluster(mut c) => {
                within(self.connect_timeout, script.load_async(&mut c)).await
            }
        };
        loaded
            .ok_or_else(|| unreachable(format!("no answer within {:?}", self.connect_timeout)))?
            .map_err(|err| Error::Redis {
                reason: format!("cannot load the script: {err}"),
            })?;
        Ok(RedisStore {
            shared: Arc::new(StoreShared {
                url,
                connection,
                script,
                prefix: self.prefix,
                timeout: self.timeout,
                policy: self.policy,
                wait: self.wait,
                spawner,
                down: AtomicBool::new(false),
                offset: crate::offset::Offset::new(),
                counters: Counters::default(),
            }),
        })
    }
}

fn check_timeout(option: &'static str, value: Duration) -> Result<(), Error> {
    if value < TIMEOUT_RANGE.0 || value > TIMEOUT_RANGE.1 {
        return Err(Error::InvalidOption {
            option,
            value: format!("{value:?}"),
            accepted: "between 1 ms and 1 hour",
        });
    }
    Ok(())
}

/// The script's answer and, with `wait` (replicas, timeout), how many
/// replicas acknowledged its writes: `EVALSHA` and `WAIT` pipelined on one
/// connection (on a Cluster, `WAIT` has no key and goes with the script's
/// slot), so that `WAIT` covers the script's writes.
async fn invoke<C: redis::aio::ConnectionLike>(
    connection: &mut C,
    script: &Script,
    invocation: &ScriptInvocation<'_>,
    wait: Option<(u32, Duration)>,
) -> RedisResult<(Vec<i64>, Option<i64>)> {
    let Some((replicas, timeout)) = wait else {
        return Ok((invocation.invoke_async(connection).await?, None));
    };
    let mut pipe = redis::pipe();
    pipe.invoke_script(invocation)
        .cmd("WAIT")
        .arg(replicas)
        .arg(u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX));
    let answer: RedisResult<(Vec<i64>, i64)> = match pipe.query_async(connection).await {
        Err(err) if err.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
            script.load_async(connection).await?;
            pipe.query_async(connection).await
        }
        answer => answer,
    };
    answer.map(|(values, acked)| (values, Some(acked)))
}

/// `future`'s output, or `None` if `timeout` passes first. The timer is
/// `async-io`'s, which runs under any executor.
pub(crate) async fn within<F: Future>(timeout: Duration, future: F) -> Option<F::Output> {
    let future = pin!(future);
    let timer = async_io::Timer::after(timeout);
    match select(future, timer).await {
        Either::Left((output, _)) => Some(output),
        Either::Right(_) => None,
    }
}

impl StoreShared {
    /// Whether the store is on a Redis Cluster.
    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self.connection, Connection::Cluster(_))
    }

    pub(crate) fn is_down(&self) -> bool {
        self.down.load(Ordering::Relaxed)
    }

    /// One script call, bounded by the store's timeout. Marks the store down
    /// or up, and counts.
    pub(crate) async fn call(&self, keys: &[Vec<u8>], args: Vec<String>) -> Result<Reply, Error> {
        let result = self.send(keys, args).await;
        self.down.store(result.is_err(), Ordering::Relaxed);
        result
    }

    /// One script call, bounded by the store's timeout, counted; the store
    /// is not marked down or up (a keyed tank's check of its parameters,
    /// which the keys' round trips do without).
    pub(crate) async fn send(&self, keys: &[Vec<u8>], args: Vec<String>) -> Result<Reply, Error> {
        Counters::add(&self.counters.round_trips, 1);
        let mut invocation = self.script.prepare_invoke();
        for key in keys {
            invocation.key(key.as_slice());
        }
        for arg in args {
            invocation.arg(arg);
        }
        // EVALSHA, and the script sent again if Redis (that node) forgot it.
        let answer = match self.connection.clone() {
            Connection::Server(mut c) => {
                within(
                    self.timeout,
                    invoke(&mut c, &self.script, &invocation, self.wait),
                )
                .await
            }
            Connection::Cluster(mut c) => {
                within(
                    self.timeout,
                    invoke(&mut c, &self.script, &invocation, self.wait),
                )
                .await
            }
        };
        let result = match answer {
            None => Err(Error::Timeout {
                after: self.timeout,
            }),
            Some(Err(err)) => Err(Error::Redis {
                reason: err.to_string(),
            }),
            Some(Ok((_, Some(acked)))) if acked < self.wait.map_or(0, |(n, _)| i64::from(n)) => {
                Counters::add(&self.counters.unreplicated, 1);
                let (replicas, timeout) = self.wait.unwrap_or_default();
                Err(Error::Redis {
                    reason: format!(
                        "{acked} replicas of the {replicas} asked for (wait_for_replicas) \
                         acknowledged the round trip within {timeout:?}; its reservation \
                         is not spent"
                    ),
                })
            }
            Some(Ok((values, _))) => Reply::parse(&values).ok_or_else(|| Error::Redis {
                reason: format!(
                    "the script answered {values:?}, which is not one of its answers; \
                     another program may have written this tank's keys"
                ),
            }),
        };
        if result.is_err() {
            Counters::add(&self.counters.store_errors, 1);
        }
        result
    }
}
