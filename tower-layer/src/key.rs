//! Keys for per-client limits: who is this request from?
//!
//! A [`KeyExtractor`] reads a key from a request: the client's address,
//! a header, a user id. [`KeyedThrottleLayer`](crate::KeyedThrottleLayer)
//! takes one, and gives each key its own tank.
//!
//! With the `http` feature:
//!
//! - [`PeerIp`]: the address of the TCP peer. In axum (feature `axum`),
//!   serve with `into_make_service_with_connect_info::<SocketAddr>()`.
//!   Behind a reverse proxy, the peer is the proxy: every client shares
//!   one key.
//! - [`ConnectInfoIp`] (feature `axum`): the same, read from axum's
//!   `ConnectInfo` only; without the feature it does not exist, so an app
//!   keyed with it cannot be built in the combination where `PeerIp`
//!   would refuse every request at run time.
//! - [`ForwardedIp`]: the client's address as your reverse proxy reports it
//!   in `X-Forwarded-For`, `Forwarded` or `X-Real-IP`. Opt in only behind a
//!   proxy you run, and tell it how many proxies there are — see
//!   [its spoofing risk][spoofing].
//!
//! Combine with `or` ([`Or`]), write your own with [`key_fn`]. An IPv6
//! client usually holds a whole `/64` network, and picks any address in
//! it: key IPv6 clients by their `/64` with
//! [`ipv6_net64`](Ipv6Net64) (`PeerIp.ipv6_net64()`), or one client
//! becomes 2^64 keys.
//!
//! # Examples
//!
//! ```
//! use fueltank_tower::key::{KeyError, KeyExtractor, key_fn};
//!
//! let by_user = key_fn(|request: &(&str, u32)| Ok::<_, KeyError>(request.1));
//! assert_eq!(by_user.extract(&("GET /", 42)), Ok(42));
//! ```
//!
//! [spoofing]: ForwardedIp#spoofing

use std::fmt;

/// Reads a key from a request, for keyed limiting.
///
/// # Examples
///
/// ```
/// use fueltank_tower::key::{KeyError, KeyExtractor};
///
/// /// Requests are `(user, path)` here.
/// struct ByUser;
///
/// impl KeyExtractor<(String, String)> for ByUser {
///     type Key = String;
///     fn extract(&self, request: &(String, String)) -> Result<String, KeyError> {
///         Ok(request.0.clone())
///     }
/// }
///
/// let request = ("ada".to_string(), "/".to_string());
/// assert_eq!(ByUser.extract(&request), Ok("ada".to_string()));
/// ```
pub trait KeyExtractor<Request> {
    /// The key: requests with equal keys share one budget.
    type Key;

    /// The key of `request`, or why there is none.
    ///
    /// # Errors
    ///
    /// A [`KeyError`] saying what was missing or malformed.
    fn extract(&self, request: &Request) -> Result<Self::Key, KeyError>;
}

/// Why a request has no key.
///
/// # Examples
///
/// ```
/// use fueltank_tower::key::KeyError;
///
/// let err = KeyError::MissingHeader { header: "x-forwarded-for" };
/// assert!(err.to_string().contains("x-forwarded-for"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyError {
    /// The request carries no peer address.
    NoPeerAddress,
    /// The header is absent.
    MissingHeader {
        /// The header's name.
        header: &'static str,
    },
    /// The header's chosen entry is not an IP address (or an obfuscated
    /// `Forwarded` identifier such as `unknown` or `_hidden`).
    NotAnAddress {
        /// The header's name.
        header: &'static str,
        /// The entry, as sent.
        value: String,
    },
    /// The header lists fewer addresses than there are trusted proxies, so
    /// none of them was written by a proxy you trust.
    TooFewAddresses {
        /// The header's name.
        header: &'static str,
        /// The trusted proxies configured.
        proxies: usize,
        /// The addresses found.
        found: usize,
    },
    /// A forwarded header was asked for with no trusted proxy in front:
    /// the client wrote it, so it is not used.
    NoTrustedProxy {
        /// The header's name.
        header: &'static str,
    },
    /// A custom extractor's reason.
    Other(String),
}

impl KeyError {
    /// Whether the server's setup is at fault rather than the request:
    /// every request would fail alike until the setup is changed. The
    /// HTTP layer answers these with `500 Internal Server Error`, the
    /// others with `400 Bad Request`; with the `tracing` feature they are
    /// logged as errors, the others at debug level.
    ///
    /// - [`NoPeerAddress`](KeyError::NoPeerAddress): the server passes no
    ///   peer address (axum without `ConnectInfo`, or without this crate's
    ///   `axum` feature);
    /// - [`NoTrustedProxy`](KeyError::NoTrustedProxy): a forwarded header
    ///   is read with no proxy configured to trust.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank_tower::key::KeyError;
    ///
    /// assert!(KeyError::NoPeerAddress.is_setup_error());
    /// assert!(!KeyError::MissingHeader { header: "x-real-ip" }.is_setup_error());
    /// ```
    pub fn is_setup_error(&self) -> bool {
        matches!(
            self,
            KeyError::NoPeerAddress | KeyError::NoTrustedProxy { .. }
        )
    }
}

/// What `NoPeerAddress` says: what to change, which depends on whether
/// this build reads axum's `ConnectInfo` at all.
#[cfg(feature = "axum")]
const NO_PEER_ADDRESS: &str = "no peer address in the request's extensions: serve the axum app \
     with `into_make_service_with_connect_info::<SocketAddr>()`, or insert the peer's \
     `SocketAddr` into the request's extensions yourself";
#[cfg(not(feature = "axum"))]
const NO_PEER_ADDRESS: &str = "no peer address in the request's extensions: fueltank-tower's \
     `axum` feature is off, so axum's `ConnectInfo<SocketAddr>` is not read; with axum, \
     enable it (`fueltank-tower = { version = \"0.1\", features = [\"axum\"] }`) and serve \
     with `into_make_service_with_connect_info::<SocketAddr>()`; otherwise insert the \
     peer's `SocketAddr` into the request's extensions yourself";

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::NoPeerAddress => f.write_str(NO_PEER_ADDRESS),
            KeyError::MissingHeader { header } => {
                write!(f, "no `{header}` header in the request")
            }
            KeyError::NotAnAddress { header, value } => write!(
                f,
                "`{header}` entry {value:?} is not an IP address; expected e.g. \
                 `192.0.2.7`, `192.0.2.7:443`, `2001:db8::1` or `[2001:db8::1]:443`"
            ),
            KeyError::TooFewAddresses {
                header,
                proxies,
                found,
            } => write!(
                f,
                "`{header}` lists {found} address(es) but {proxies} trusted proxies are \
                 configured; each proxy must append one, so the request did not pass \
                 through them all"
            ),
            KeyError::NoTrustedProxy { header } => write!(
                f,
                "`{header}` is not trusted with 0 proxies configured: the client could \
                 have written it; configure the number of proxies you run in front"
            ),
            KeyError::Other(reason) => f.write_str(reason),
        }
    }
}

impl std::error::Error for KeyError {}

/// An extractor from a closure `Fn(&Request) -> Result<Key, KeyError>`.
///
/// # Examples
///
/// ```
/// use fueltank_tower::key::{KeyExtractor, key_fn};
///
/// let by_length = key_fn(|request: &String| Ok(request.len()));
/// assert_eq!(by_length.extract(&"four".to_string()), Ok(4));
/// ```
pub fn key_fn<F, Request, Key>(f: F) -> KeyFn<F>
where
    F: Fn(&Request) -> Result<Key, KeyError>,
{
    KeyFn(f)
}

/// The extractor made by [`key_fn`].
///
/// # Examples
///
/// ```
/// use fueltank_tower::key::{KeyExtractor, KeyFn, key_fn};
///
/// let first: KeyFn<_> = key_fn(|request: &Vec<u8>| Ok(request.first().copied()));
/// assert_eq!(first.extract(&vec![7, 8]), Ok(Some(7)));
/// ```
#[derive(Clone, Copy)]
pub struct KeyFn<F>(F);

impl<F, Request, Key> KeyExtractor<Request> for KeyFn<F>
where
    F: Fn(&Request) -> Result<Key, KeyError>,
{
    type Key = Key;

    fn extract(&self, request: &Request) -> Result<Key, KeyError> {
        (self.0)(request)
    }
}

impl<F> fmt::Debug for KeyFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyFn(..)")
    }
}

/// The extractor made by `first.or(fallback)` or [`Or::new`]: the first, else the fallback.
///
/// # Examples
///
/// ```
/// use fueltank_tower::key::{KeyError, KeyExtractor, Or, key_fn};
///
/// let either: Or<_, _> = key_fn(|_: &()| Err::<u8, _>(KeyError::NoPeerAddress))
///     .or(key_fn(|_: &()| Ok(1_u8)));
/// assert_eq!(either.extract(&()), Ok(1));
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Or<A, B> {
    first: A,
    fallback: B,
}

impl<A, B> Or<A, B> {
    /// `first`, or `fallback` where `first` finds no key. The extractors of
    /// this module have it as a method, `first.or(fallback)`.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank_tower::key::{KeyError, KeyExtractor, Or, key_fn};
    ///
    /// let either = Or::new(
    ///     key_fn(|_: &()| Err::<u8, _>(KeyError::NoPeerAddress)),
    ///     key_fn(|_: &()| Ok(2_u8)),
    /// );
    /// assert_eq!(either.extract(&()), Ok(2));
    /// ```
    pub fn new(first: A, fallback: B) -> Or<A, B> {
        Or { first, fallback }
    }
}

/// The inherent `or` of each extractor here (a method on the generic trait
/// would leave the request type to be annotated at every call).
macro_rules! or_method {
    ($($generics:ident),* ; $ty:ty) => {
        impl<$($generics),*> $ty {
            /// This extractor, or `fallback` where this one finds no key.
            ///
            /// # Examples
            ///
            /// ```
            /// use fueltank_tower::key::{KeyError, KeyExtractor, key_fn};
            ///
            /// let header = key_fn(|_: &()| Err::<u32, _>(KeyError::MissingHeader { header: "x-user" }));
            /// let anonymous = key_fn(|_: &()| Ok(0_u32));
            /// assert_eq!(header.or(anonymous).extract(&()), Ok(0));
            /// ```
            pub fn or<E>(self, fallback: E) -> $crate::key::Or<Self, E> {
                $crate::key::Or::new(self, fallback)
            }

            /// This IP address extractor with IPv6 addresses cut to their
            /// `/64` network, so that one IPv6 client is one key; IPv4
            /// addresses are kept whole. See [`Ipv6Net64`]($crate::key::Ipv6Net64).
            ///
            /// # Examples
            ///
            /// ```
            /// use fueltank_tower::key::{KeyError, KeyExtractor, key_fn};
            /// use std::net::IpAddr;
            ///
            /// let from_text = key_fn(|s: &&str| s.parse::<IpAddr>().map_err(|e| KeyError::Other(e.to_string())));
            /// let by_net = from_text.ipv6_net64();
            /// assert_eq!(by_net.extract(&"2001:db8:1:2:aaaa::1")?.to_string(), "2001:db8:1:2::");
            /// assert_eq!(by_net.extract(&"192.0.2.7")?.to_string(), "192.0.2.7");
            /// # Ok::<(), KeyError>(())
            /// ```
            pub fn ipv6_net64(self) -> $crate::key::Ipv6Net64<Self> {
                $crate::key::Ipv6Net64::new(self)
            }
        }
    };
}
#[cfg(feature = "http")]
use or_method;

or_method!(F; KeyFn<F>);
or_method!(A, B; Or<A, B>);
or_method!(I; Ipv6Net64<I>);

/// An IP address extractor whose IPv6 keys are cut to their `/64` network:
/// made by `.ipv6_net64()` on [`PeerIp`], [`ForwardedIp`], [`key_fn`] or
/// [`Or`], or by [`Ipv6Net64::new`].
///
/// An IPv6 client is usually given a whole `/64` (the smallest network an
/// ISP hands out, and the one SLAAC addresses live in) and may use any of
/// its 2^64 addresses, changing them at will (privacy extensions do so by
/// themselves). Keyed by the full address, one client could dodge a per-IP
/// limit for ever; keyed by the `/64`, it is one key. IPv4 addresses (and
/// IPv4-mapped IPv6 ones, which the IP extractors here return as IPv4) are
/// kept whole.
///
/// The key stays an [`IpAddr`](std::net::IpAddr): the network address,
/// e.g. `2001:db8:1:2::` for `2001:db8:1:2:aaaa::1`.
///
/// # Examples
///
/// ```
/// use fueltank_tower::key::{Ipv6Net64, KeyExtractor, key_fn};
/// use std::net::IpAddr;
///
/// let fixed = key_fn(|_: &()| Ok("2001:db8::8:800:200c:417a".parse::<IpAddr>().unwrap()));
/// let by_net = Ipv6Net64::new(fixed);
/// assert_eq!(by_net.extract(&())?.to_string(), "2001:db8::");
/// # Ok::<(), fueltank_tower::key::KeyError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv6Net64<E> {
    inner: E,
}

impl<E> Ipv6Net64<E> {
    /// `inner`, with the IPv6 keys it returns cut to their `/64`.
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank_tower::key::{Ipv6Net64, KeyExtractor, key_fn};
    /// use std::net::IpAddr;
    ///
    /// let loopback = Ipv6Net64::new(key_fn(|_: &()| Ok(IpAddr::from([0, 0, 0, 0, 0, 0, 0, 1]))));
    /// assert_eq!(loopback.extract(&())?.to_string(), "::");
    /// # Ok::<(), fueltank_tower::key::KeyError>(())
    /// ```
    pub fn new(inner: E) -> Ipv6Net64<E> {
        Ipv6Net64 { inner }
    }
}

impl<E, Request> KeyExtractor<Request> for Ipv6Net64<E>
where
    E: KeyExtractor<Request, Key = std::net::IpAddr>,
{
    type Key = std::net::IpAddr;

    fn extract(&self, request: &Request) -> Result<std::net::IpAddr, KeyError> {
        Ok(match self.inner.extract(request)? {
            std::net::IpAddr::V6(ip) => {
                std::net::IpAddr::V6(std::net::Ipv6Addr::from_bits(ip.to_bits() & !0_u128 << 64))
            }
            ip => ip,
        })
    }
}

impl<A, B, Request> KeyExtractor<Request> for Or<A, B>
where
    A: KeyExtractor<Request>,
    B: KeyExtractor<Request, Key = A::Key>,
{
    type Key = A::Key;

    fn extract(&self, request: &Request) -> Result<A::Key, KeyError> {
        self.first
            .extract(request)
            .or_else(|_| self.fallback.extract(request))
    }
}

#[cfg(feature = "axum")]
pub use self::ip::ConnectInfoIp;
#[cfg(feature = "http")]
pub use self::ip::{ForwardedIp, PeerIp};

#[cfg(feature = "http")]
mod ip {
    use std::net::{IpAddr, SocketAddr};

    use http::Request;
    use http::header::{FORWARDED, HeaderMap, HeaderName};

    use super::{KeyError, KeyExtractor};

    const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
    const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

    /// The IP address of the TCP peer (feature `http`).
    ///
    /// It reads, from the request's extensions, axum's
    /// `ConnectInfo<SocketAddr>` (feature `axum`; serve with
    /// `into_make_service_with_connect_info::<SocketAddr>()`), or else a
    /// plain `SocketAddr` that your server inserted. IPv4-mapped IPv6
    /// addresses (`::ffff:192.0.2.7`, from a dual-stack listener) are
    /// returned as IPv4, so one client has one key.
    ///
    /// Without the `axum` feature it cannot see axum's `ConnectInfo`: under
    /// axum every request then fails with [`KeyError::NoPeerAddress`],
    /// whose message says to enable the feature (the HTTP layer answers
    /// `500` with that text, and logs it as an error with the `tracing`
    /// feature). In an axum app, `ConnectInfoIp` makes that mistake a
    /// compile error instead: it exists only with the `axum` feature.
    ///
    /// Behind a reverse proxy the peer is the proxy; see [`ForwardedIp`].
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank_tower::key::{KeyExtractor, PeerIp};
    /// use http::Request;
    /// use std::net::SocketAddr;
    ///
    /// let mut request = Request::new(());
    /// request.extensions_mut().insert("192.0.2.7:50000".parse::<SocketAddr>()?);
    /// assert_eq!(PeerIp.extract(&request)?.to_string(), "192.0.2.7");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
    #[cfg_attr(docsrs, doc(cfg(feature = "http")))]
    pub struct PeerIp;

    /// The IP address of the TCP peer, from axum's `ConnectInfo<SocketAddr>`
    /// (feature `axum`): serve the app with
    /// `into_make_service_with_connect_info::<SocketAddr>()`.
    ///
    /// It is [`PeerIp`] for axum apps, except that it reads nothing but
    /// `ConnectInfo`, and that it exists only with the `axum` feature: an
    /// app keyed with it does not build without the feature, where one
    /// keyed with `PeerIp` would build and refuse every request at run
    /// time. A server that does not pass `ConnectInfo` still fails each
    /// request with [`KeyError::NoPeerAddress`] (a `500` from the HTTP
    /// layer, saying how to serve the app). IPv4-mapped IPv6 addresses are
    /// returned as IPv4.
    ///
    /// # Examples
    ///
    /// ```
    /// use axum::extract::ConnectInfo;
    /// use fueltank_tower::key::{ConnectInfoIp, KeyError, KeyExtractor};
    /// use http::Request;
    /// use std::net::SocketAddr;
    ///
    /// let mut request = Request::new(());
    /// assert_eq!(ConnectInfoIp.extract(&request), Err(KeyError::NoPeerAddress));
    /// request.extensions_mut().insert(ConnectInfo("[::ffff:192.0.2.7]:50000".parse::<SocketAddr>()?));
    /// assert_eq!(ConnectInfoIp.extract(&request)?.to_string(), "192.0.2.7");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[cfg(feature = "axum")]
    #[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
    pub struct ConnectInfoIp;

    super::or_method!(; PeerIp);
    super::or_method!(; ForwardedIp);
    #[cfg(feature = "axum")]
    super::or_method!(; ConnectInfoIp);

    #[cfg(feature = "axum")]
    impl<B> KeyExtractor<Request<B>> for ConnectInfoIp {
        type Key = IpAddr;

        fn extract(&self, request: &Request<B>) -> Result<IpAddr, KeyError> {
            request
                .extensions()
                .get::<axum::extract::ConnectInfo<SocketAddr>>()
                .map(|info| info.0.ip().to_canonical())
                .ok_or(KeyError::NoPeerAddress)
        }
    }

    impl PeerIp {
        fn find(extensions: &http::Extensions) -> Option<SocketAddr> {
            #[cfg(feature = "axum")]
            if let Some(info) = extensions.get::<axum::extract::ConnectInfo<SocketAddr>>() {
                return Some(info.0);
            }
            extensions.get::<SocketAddr>().copied()
        }
    }

    impl<B> KeyExtractor<Request<B>> for PeerIp {
        type Key = IpAddr;

        fn extract(&self, request: &Request<B>) -> Result<IpAddr, KeyError> {
            PeerIp::find(request.extensions())
                .map(|peer| peer.ip().to_canonical())
                .ok_or(KeyError::NoPeerAddress)
        }
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    enum Source {
        XForwardedFor,
        Forwarded,
        XRealIp,
    }

    impl Source {
        fn name(self) -> &'static str {
            match self {
                Source::XForwardedFor => "x-forwarded-for",
                Source::Forwarded => "forwarded",
                Source::XRealIp => "x-real-ip",
            }
        }
    }

    /// The client's IP address as reported by your reverse proxies in a
    /// forwarded header (feature `http`). Opt-in: use it only behind
    /// proxies you run.
    ///
    /// - [`x_forwarded_for`](ForwardedIp::x_forwarded_for): `X-Forwarded-For:
    ///   client, proxy1, proxy2`; each proxy appends the address it received
    ///   the request from.
    /// - [`forwarded`](ForwardedIp::forwarded): RFC 7239 `Forwarded:
    ///   for=192.0.2.7;proto=https, for="[2001:db8::1]:443"`, the `for=` of
    ///   each element.
    /// - [`x_real_ip`](ForwardedIp::x_real_ip): `X-Real-IP: 192.0.2.7`, one
    ///   address that the proxy sets (and must overwrite).
    ///
    /// For the list headers, [`proxies`](ForwardedIp::proxies) says how many
    /// proxies you run in front of the service (default 1); the client is
    /// the address the outermost of them appended: the `proxies`-th from the
    /// right. With `proxies(0)` the header is never trusted
    /// ([`KeyError::NoTrustedProxy`]), and [`.or(PeerIp)`](ForwardedIp::or)
    /// falls back to the peer.
    ///
    /// # Spoofing
    ///
    /// A client can send any forwarded header it likes. A proxy appends to
    /// it, it does not clean it, so only the entries appended by your own
    /// proxies are true; everything to their left was written by the client.
    /// Read the leftmost entry, or trust the header on a service that
    /// clients can reach directly, and a client picks its own key: one
    /// attacker becomes a million clients (dodging its limit) or poses as
    /// your best customer (spending theirs). So:
    ///
    /// - use it only when every request passes through your proxies, and the
    ///   service cannot be reached around them (bind it to a private
    ///   interface, or firewall it);
    /// - set [`proxies`](ForwardedIp::proxies) to exactly the number of
    ///   proxies that append, counting a CDN or load balancer in front;
    /// - for `X-Real-IP`, make sure the proxy sets the header and overwrites
    ///   any the client sent (nginx: `proxy_set_header X-Real-IP
    ///   $remote_addr;`).
    ///
    /// Without a proxy, use [`PeerIp`].
    ///
    /// # Examples
    ///
    /// ```
    /// use fueltank_tower::key::{ForwardedIp, KeyExtractor, PeerIp};
    /// use http::Request;
    ///
    /// // One proxy in front: it appended the last entry; the first was
    /// // written by the client and is ignored.
    /// let request = Request::builder()
    ///     .header("x-forwarded-for", "10.9.9.9, 203.0.113.5")
    ///     .body(())?;
    /// let client = ForwardedIp::x_forwarded_for().or(PeerIp);
    /// assert_eq!(client.extract(&request)?.to_string(), "203.0.113.5");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    #[cfg_attr(docsrs, doc(cfg(feature = "http")))]
    pub struct ForwardedIp {
        source: Source,
        proxies: usize,
    }

    impl ForwardedIp {
        /// From `X-Forwarded-For`, behind one proxy.
        ///
        /// # Examples
        ///
        /// ```
        /// use fueltank_tower::key::{ForwardedIp, KeyExtractor};
        /// use http::Request;
        ///
        /// let request = Request::builder()
        ///     .header("x-forwarded-for", "198.51.100.1")
        ///     .body(())?;
        /// let ip = ForwardedIp::x_forwarded_for().extract(&request)?;
        /// assert_eq!(ip.to_string(), "198.51.100.1");
        /// # Ok::<(), Box<dyn std::error::Error>>(())
        /// ```
        pub fn x_forwarded_for() -> ForwardedIp {
            ForwardedIp {
                source: Source::XForwardedFor,
                proxies: 1,
            }
        }

        /// From RFC 7239 `Forwarded` (its `for=` parameters), behind one
        /// proxy.
        ///
        /// # Examples
        ///
        /// ```
        /// use fueltank_tower::key::{ForwardedIp, KeyExtractor};
        /// use http::Request;
        ///
        /// let request = Request::builder()
        ///     .header("forwarded", r#"for="[2001:db8::7]:4711";proto=https"#)
        ///     .body(())?;
        /// let ip = ForwardedIp::forwarded().extract(&request)?;
        /// assert_eq!(ip.to_string(), "2001:db8::7");
        /// # Ok::<(), Box<dyn std::error::Error>>(())
        /// ```
        pub fn forwarded() -> ForwardedIp {
            ForwardedIp {
                source: Source::Forwarded,
                proxies: 1,
            }
        }

        /// From `X-Real-IP`, which your proxy must set, overwriting any the
        /// client sent. If several are present, the last counts.
        ///
        /// # Examples
        ///
        /// ```
        /// use fueltank_tower::key::{ForwardedIp, KeyExtractor};
        /// use http::Request;
        ///
        /// let request = Request::builder().header("x-real-ip", "192.0.2.44").body(())?;
        /// let ip = ForwardedIp::x_real_ip().extract(&request)?;
        /// assert_eq!(ip.to_string(), "192.0.2.44");
        /// # Ok::<(), Box<dyn std::error::Error>>(())
        /// ```
        pub fn x_real_ip() -> ForwardedIp {
            ForwardedIp {
                source: Source::XRealIp,
                proxies: 1,
            }
        }

        /// How many proxies that append to the header stand in front of the
        /// service (default 1); the client is the `n`-th address from the
        /// right. `0` means none: the header is not trusted. Not used by
        /// `X-Real-IP`, except that `0` distrusts it too.
        ///
        /// # Examples
        ///
        /// ```
        /// use fueltank_tower::key::{ForwardedIp, KeyExtractor};
        /// use http::Request;
        ///
        /// // A CDN, then your load balancer: the CDN appended the client.
        /// let request = Request::builder()
        ///     .header("x-forwarded-for", "1.1.1.1, 203.0.113.9, 198.51.100.20")
        ///     .body(())?;
        /// let ip = ForwardedIp::x_forwarded_for().proxies(2).extract(&request)?;
        /// assert_eq!(ip.to_string(), "203.0.113.9");
        /// # Ok::<(), Box<dyn std::error::Error>>(())
        /// ```
        pub fn proxies(mut self, n: usize) -> ForwardedIp {
            self.proxies = n;
            self
        }

        fn read_headers(&self, headers: &HeaderMap) -> Result<IpAddr, KeyError> {
            let header = self.source.name();
            if self.proxies == 0 {
                return Err(KeyError::NoTrustedProxy { header });
            }
            let values = match self.source {
                Source::XForwardedFor => headers.get_all(X_FORWARDED_FOR),
                Source::Forwarded => headers.get_all(FORWARDED),
                Source::XRealIp => headers.get_all(X_REAL_IP),
            };
            // Several header lines are one comma-separated list, in order.
            let mut entries: Vec<&str> = Vec::new();
            let mut any = false;
            for value in values {
                any = true;
                let Ok(value) = value.to_str() else {
                    return Err(KeyError::NotAnAddress {
                        header,
                        value: String::from_utf8_lossy(value.as_bytes()).into_owned(),
                    });
                };
                match self.source {
                    Source::XRealIp => {
                        entries.clear();
                        entries.push(value.trim());
                    }
                    Source::XForwardedFor => {
                        entries.extend(value.split(',').map(str::trim).filter(|e| !e.is_empty()))
                    }
                    Source::Forwarded => entries.extend(forwarded_fors(value)),
                }
            }
            if !any {
                return Err(KeyError::MissingHeader { header });
            }
            let proxies = match self.source {
                Source::XRealIp => 1,
                _ => self.proxies,
            };
            let found = entries.len();
            let Some(entry) = found.checked_sub(proxies).map(|i| entries[i]) else {
                return Err(KeyError::TooFewAddresses {
                    header,
                    proxies,
                    found,
                });
            };
            parse_ip(entry).ok_or_else(|| KeyError::NotAnAddress {
                header,
                value: entry.to_string(),
            })
        }
    }

    impl<B> KeyExtractor<Request<B>> for ForwardedIp {
        type Key = IpAddr;

        fn extract(&self, request: &Request<B>) -> Result<IpAddr, KeyError> {
            self.read_headers(request.headers())
        }
    }

    /// The `for=` value of each element of one `Forwarded` line (an element
    /// without one counts as an unknown address, so the positions hold).
    fn forwarded_fors(line: &str) -> impl Iterator<Item = &str> {
        split_outside_quotes(line, ',').map(|element| {
            split_outside_quotes(element, ';')
                .filter_map(|pair| pair.split_once('='))
                .find(|(name, _)| name.trim().eq_ignore_ascii_case("for"))
                .map_or("unknown", |(_, value)| value.trim().trim_matches('"'))
        })
    }

    /// `s` split at `sep` where it is not inside a quoted string.
    fn split_outside_quotes(s: &str, sep: char) -> impl Iterator<Item = &str> {
        let mut rest = Some(s);
        std::iter::from_fn(move || {
            let s = rest?;
            let mut quoted = false;
            let mut escaped = false;
            for (i, c) in s.char_indices() {
                match c {
                    _ if escaped => escaped = false,
                    '\\' if quoted => escaped = true,
                    '"' => quoted = !quoted,
                    c if c == sep && !quoted => {
                        rest = Some(&s[i + c.len_utf8()..]);
                        return Some(&s[..i]);
                    }
                    _ => {}
                }
            }
            rest = None;
            Some(s)
        })
        .map(str::trim)
        .filter(|part| !part.is_empty())
    }

    /// An address as proxies write it: `192.0.2.7`, `192.0.2.7:443`,
    /// `2001:db8::1`, `[2001:db8::1]`, `[2001:db8::1]:443`.
    fn parse_ip(entry: &str) -> Option<IpAddr> {
        let entry = entry.trim();
        if let Ok(ip) = entry.parse::<IpAddr>() {
            return Some(ip.to_canonical());
        }
        if let Ok(addr) = entry.parse::<SocketAddr>() {
            return Some(addr.ip().to_canonical());
        }
        let bracketed = entry.strip_prefix('[')?.strip_suffix(']')?;
        bracketed.parse::<IpAddr>().ok().map(|ip| ip.to_canonical())
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn request(headers: &[(&str, &str)]) -> Request<()> {
            let mut builder = Request::builder();
            for (name, value) in headers {
                builder = builder.header(*name, *value);
            }
            builder.body(()).unwrap()
        }

        fn ip(s: &str) -> IpAddr {
            s.parse().unwrap()
        }

        #[test]
        fn peer_ip_reads_socket_addr_and_unmaps_ipv4() {
            let mut r = request(&[]);
            assert_eq!(PeerIp.extract(&r), Err(KeyError::NoPeerAddress));
            r.extensions_mut()
                .insert("[::ffff:192.0.2.1]:80".parse::<SocketAddr>().unwrap());
            assert_eq!(PeerIp.extract(&r), Ok(ip("192.0.2.1")));
        }

        #[cfg(feature = "axum")]
        #[test]
        fn connect_info_ip_reads_connect_info_only() {
            let mut r = request(&[]);
            r.extensions_mut()
                .insert("192.0.2.1:80".parse::<SocketAddr>().unwrap());
            assert_eq!(ConnectInfoIp.extract(&r), Err(KeyError::NoPeerAddress));
            r.extensions_mut().insert(axum::extract::ConnectInfo(
                "[2001:db8::5]:9".parse::<SocketAddr>().unwrap(),
            ));
            assert_eq!(ConnectInfoIp.extract(&r), Ok(ip("2001:db8::5")));
        }

        #[test]
        fn no_peer_address_says_what_to_change() {
            let message = KeyError::NoPeerAddress.to_string();
            assert!(
                message.contains("into_make_service_with_connect_info"),
                "{message}"
            );
            // Without the `axum` feature, the fix is to enable it.
            assert_eq!(
                message.contains("`axum` feature is off"),
                cfg!(not(feature = "axum")),
                "{message}"
            );
        }

        #[cfg(feature = "axum")]
        #[test]
        fn peer_ip_reads_axum_connect_info() {
            let mut r = request(&[]);
            r.extensions_mut().insert(axum::extract::ConnectInfo(
                "[2001:db8::5]:9".parse::<SocketAddr>().unwrap(),
            ));
            assert_eq!(PeerIp.extract(&r), Ok(ip("2001:db8::5")));
        }

        #[test]
        fn x_forwarded_for_counts_proxies_from_the_right() {
            let r = request(&[
                ("x-forwarded-for", "6.6.6.6, 1.2.3.4"),
                ("x-forwarded-for", "5.6.7.8:1234"),
            ]);
            let xff = ForwardedIp::x_forwarded_for();
            assert_eq!(xff.extract(&r), Ok(ip("5.6.7.8")));
            assert_eq!(xff.proxies(2).extract(&r), Ok(ip("1.2.3.4")));
            assert_eq!(xff.proxies(3).extract(&r), Ok(ip("6.6.6.6")));
            assert_eq!(
                xff.proxies(4).extract(&r),
                Err(KeyError::TooFewAddresses {
                    header: "x-forwarded-for",
                    proxies: 4,
                    found: 3
                })
            );
            assert_eq!(
                xff.proxies(0).extract(&r),
                Err(KeyError::NoTrustedProxy {
                    header: "x-forwarded-for"
                })
            );
        }

        #[test]
        fn forwarded_reads_for_parameters() {
            let r = request(&[(
                "forwarded",
                r#"for=192.0.2.60;proto=http;by=203.0.113.43, For="[2001:db8:cafe::17]:4711", proto=https"#,
            )]);
            let fwd = ForwardedIp::forwarded();
            // The last element has no `for=`: an unknown address.
            assert!(matches!(
                fwd.extract(&r),
                Err(KeyError::NotAnAddress { value, .. }) if value == "unknown"
            ));
            assert_eq!(fwd.proxies(2).extract(&r), Ok(ip("2001:db8:cafe::17")));
            assert_eq!(fwd.proxies(3).extract(&r), Ok(ip("192.0.2.60")));
            let hidden = request(&[("forwarded", "for=_hidden")]);
            assert!(fwd.extract(&hidden).is_err());
        }

        #[test]
        fn x_real_ip_takes_the_last_line() {
            let r = request(&[("x-real-ip", "6.6.6.6"), ("x-real-ip", " 192.0.2.9 ")]);
            assert_eq!(ForwardedIp::x_real_ip().extract(&r), Ok(ip("192.0.2.9")));
            assert!(ForwardedIp::x_real_ip().proxies(0).extract(&r).is_err());
        }

        #[test]
        fn missing_and_malformed_headers_are_errors_with_reasons() {
            let none = request(&[]);
            let err = ForwardedIp::x_forwarded_for().extract(&none).unwrap_err();
            assert_eq!(
                err,
                KeyError::MissingHeader {
                    header: "x-forwarded-for"
                }
            );
            let bad = request(&[("x-forwarded-for", "not-an-ip")]);
            let err = ForwardedIp::x_forwarded_for().extract(&bad).unwrap_err();
            assert!(err.to_string().contains("not-an-ip"), "{err}");
        }

        #[test]
        fn or_falls_back_to_the_peer() {
            let mut r = request(&[]);
            r.extensions_mut()
                .insert("192.0.2.3:1".parse::<SocketAddr>().unwrap());
            let key = ForwardedIp::x_forwarded_for().or(PeerIp);
            assert_eq!(key.extract(&r), Ok(ip("192.0.2.3")));
        }
    }
}
