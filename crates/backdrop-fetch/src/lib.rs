//! Reaching URLs that API clients name without opening a door into the network behind
//! the server.
//!
//! This crate owns one job: contacting a client-supplied URL safely, to download an input
//! image ([`Fetcher::fetch`]) or to deliver a callback ([`Fetcher::post`]). A server that
//! contacts arbitrary URLs can be aimed at its own loopback services, the private
//! network, or the cloud metadata endpoint (server-side request forgery), so both do
//! more than an HTTP request:
//!
//! 1. Only `http` and `https` URLs are accepted.
//! 2. The host is resolved here, once per hop, through the fetcher's [`Resolver`] (the
//!    system's unless [`Fetcher::with_resolver`] replaced it), and the request is refused
//!    if *any* of its addresses is loopback, private, link-local, CGNAT, multicast,
//!    unspecified, broadcast, reserved, a documentation range or a cloud metadata
//!    address, including IPv6 forms that embed such an IPv4 address (see
//!    [`refusal_reason`]). [`FetchPolicy::allow`] lists networks that are accepted anyway
//!    (a test fixture on loopback, an internal image host an operator trusts).
//! 3. The connection goes to exactly the addresses that were checked: each hop gets a
//!    fresh client whose only name resolution is that pinned answer, so a second DNS
//!    answer (DNS rebinding) cannot swap in an internal address between check and
//!    connect. The URL's host still names the request (`Host` header, TLS server name).
//!    Proxies from the environment are ignored for the same reason.
//! 4. Downloads follow redirects by hand, up to [`FetchPolicy::max_redirects`], and every
//!    hop goes through steps 1–3 again. A POST follows none: the receiver's 3xx status is
//!    its answer, and the body never goes anywhere the client did not name.
//! 5. A download's body is streamed and abandoned as soon as it passes
//!    [`FetchPolicy::max_bytes`] (or at once when `Content-Length` announces more); the
//!    whole request, name resolution included, is bounded by [`FetchPolicy::timeout`].
//! 6. A download's first bytes must be those of a PNG, JPEG or WebP file; anything else
//!    is refused as early as those bytes arrive.
//!
//! Every [`FetchError`] names the limit or the refused address in its message and has a
//! stable [`FetchError::code`] for the API's error body.

#![deny(missing_docs)]

mod address;

pub use address::{refusal_reason, refusal_with_allow};
pub use ipnet::IpNet;
pub use url::Url;

use backdrop_core::ErrorCode;
use reqwest::dns::{Name, Resolve, Resolving};
use std::fmt;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// What a [`Resolver`] lookup returns.
pub type Lookup<'a> = Pin<Box<dyn Future<Output = std::io::Result<Vec<SocketAddr>>> + Send + 'a>>;

/// Turns a host name into addresses. The fetcher asks it exactly once per hop and
/// connects only to what that answer held (after checking it), so a resolver that
/// answers differently on a second lookup changes nothing about the current hop.
///
/// The system resolver ([`SystemResolver`]) is the default; tests replace it to play a
/// rebinding DNS server, and a deployment could plug in its own.
pub trait Resolver: Send + Sync + fmt::Debug {
    /// The addresses of `host` (a domain name, never an IP literal), each with `port`.
    fn lookup<'a>(&'a self, host: &'a str, port: u16) -> Lookup<'a>;
}

/// The operating system's resolver (`getaddrinfo` through tokio).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

impl Resolver for SystemResolver {
    fn lookup<'a>(&'a self, host: &'a str, port: u16) -> Lookup<'a> {
        Box::pin(async move { Ok(tokio::net::lookup_host((host, port)).await?.collect()) })
    }
}

/// The limits a [`Fetcher`] enforces.
#[derive(Debug, Clone, PartialEq)]
pub struct FetchPolicy {
    /// The largest body accepted, in bytes.
    pub max_bytes: u64,
    /// The longest a whole fetch may take: name resolution, every redirect hop and the
    /// body together.
    pub timeout: Duration,
    /// How many redirects are followed; one more is an error.
    pub max_redirects: u32,
    /// Networks accepted even though they would be refused (for example `127.0.0.1/32`
    /// for a test server, or an internal image host).
    pub allow: Vec<IpNet>,
}

impl Default for FetchPolicy {
    /// 20 MiB, 30 seconds, 5 redirects, nothing internal allowed.
    fn default() -> Self {
        FetchPolicy {
            max_bytes: 20 * 1024 * 1024,
            timeout: Duration::from_secs(30),
            max_redirects: 5,
            allow: Vec::new(),
        }
    }
}

/// A downloaded image.
#[derive(Debug, Clone, PartialEq)]
pub struct Fetched {
    /// The body, at most [`FetchPolicy::max_bytes`] long.
    pub bytes: Vec<u8>,
    /// The type the bytes were sniffed as: `image/png`, `image/jpeg` or `image/webp`.
    /// The server's own `Content-Type` is not trusted (image hosts often send
    /// `application/octet-stream` or worse).
    pub content_type: &'static str,
    /// The URL the image was finally served from, after redirects.
    pub final_url: Url,
}

/// A URL whose host was resolved and whose every address was accepted.
#[derive(Debug, Clone, PartialEq)]
pub struct Destination {
    /// The URL.
    pub url: Url,
    /// The addresses it resolved to, with the URL's port; never empty.
    pub addrs: Vec<SocketAddr>,
}

/// Why a fetch failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// The URL could not be parsed or has no host.
    #[error("invalid image URL: {reason}")]
    InvalidUrl {
        /// What is wrong with it.
        reason: String,
    },
    /// The URL's scheme is not http or https.
    #[error("image URLs must use http or https, not '{scheme}'")]
    UnsupportedScheme {
        /// The scheme given.
        scheme: String,
    },
    /// The host resolves to an address that may not be fetched from.
    #[error("refused to fetch from {host}: it resolves to {addr}, {reason}")]
    AddressRefused {
        /// The host as written in the URL.
        host: String,
        /// The first refused address.
        addr: IpAddr,
        /// Why, e.g. "a loopback address".
        reason: &'static str,
    },
    /// The host name could not be resolved.
    #[error("could not resolve {host}: {reason}")]
    Resolve {
        /// The host.
        host: String,
        /// The resolver's answer.
        reason: String,
    },
    /// Connecting, sending or reading failed.
    #[error("downloading from {host} failed: {reason}")]
    Connection {
        /// The host.
        host: String,
        /// The cause.
        reason: String,
    },
    /// The server answered with an error status (or a redirect status without a usable
    /// `Location`).
    #[error("{host} answered HTTP {status}{detail}")]
    Status {
        /// The host.
        host: String,
        /// The status code.
        status: u16,
        /// Extra detail, empty or starting with a separator.
        detail: String,
    },
    /// More redirects than allowed.
    #[error("the image URL redirected more than {limit} times")]
    TooManyRedirects {
        /// [`FetchPolicy::max_redirects`].
        limit: u32,
    },
    /// The body is larger than allowed.
    #[error("the image is larger than the limit of {limit} bytes ({})", human_bytes(*.limit))]
    TooLarge {
        /// [`FetchPolicy::max_bytes`].
        limit: u64,
    },
    /// The fetch took longer than allowed.
    #[error("downloading the image took longer than the limit of {} s", .limit.as_secs_f64())]
    Timeout {
        /// [`FetchPolicy::timeout`].
        limit: Duration,
    },
    /// The body does not start like a PNG, JPEG or WebP file.
    #[error("the file at {host} is not a PNG, JPEG or WebP image")]
    NotAnImage {
        /// The host that served it.
        host: String,
    },
}

impl FetchError {
    /// The stable code of this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            FetchError::InvalidUrl { .. } => ErrorCode::InvalidUrl,
            FetchError::UnsupportedScheme { .. } | FetchError::AddressRefused { .. } => {
                ErrorCode::UrlRefused
            }
            FetchError::Resolve { .. }
            | FetchError::Connection { .. }
            | FetchError::Status { .. } => ErrorCode::DownloadFailed,
            FetchError::TooManyRedirects { .. } => ErrorCode::TooManyRedirects,
            FetchError::TooLarge { .. } => ErrorCode::DownloadTooLarge,
            FetchError::Timeout { .. } => ErrorCode::DownloadTimeout,
            FetchError::NotAnImage { .. } => ErrorCode::NotAnImage,
        }
    }
}

fn human_bytes(n: u64) -> String {
    const MIB: u64 = 1024 * 1024;
    if n >= MIB && n % MIB == 0 {
        format!("{} MiB", n / MIB)
    } else if n >= 1024 && n % 1024 == 0 {
        format!("{} KiB", n / 1024)
    } else {
        format!("{n} B")
    }
}

/// Downloads images and delivers callbacks under a [`FetchPolicy`]. Cheap to share;
/// holds no connections between requests.
#[derive(Debug, Clone)]
pub struct Fetcher {
    policy: FetchPolicy,
    resolver: Arc<dyn Resolver>,
}

/// How many leading bytes decide the image type (WebP needs 12: `RIFF`, size, `WEBP`).
const SNIFF_LEN: usize = 12;

impl Fetcher {
    /// A fetcher enforcing `policy`, resolving names with the system resolver.
    pub fn new(policy: FetchPolicy) -> Self {
        Fetcher { policy, resolver: Arc::new(SystemResolver) }
    }

    /// The same fetcher resolving names with `resolver`.
    pub fn with_resolver(self, resolver: Arc<dyn Resolver>) -> Self {
        Fetcher { resolver, ..self }
    }

    /// The same fetcher (and resolver) under another policy.
    pub fn with_policy(&self, policy: FetchPolicy) -> Self {
        Fetcher { policy, resolver: Arc::clone(&self.resolver) }
    }

    /// The policy in force.
    pub fn policy(&self) -> &FetchPolicy {
        &self.policy
    }

    /// Parses `url`, resolves its host and checks every address, without connecting.
    /// Bounded by the policy's timeout. Useful to refuse a URL at submit time (for
    /// example a callback URL) rather than when it is first used; [`Fetcher::fetch`]
    /// checks again on every hop regardless.
    pub async fn check(&self, url: &str) -> Result<Destination, FetchError> {
        let limit = self.policy.timeout;
        match tokio::time::timeout(limit, async { self.destination(parse_url(url)?).await }).await {
            Ok(result) => result,
            Err(_) => Err(FetchError::Timeout { limit }),
        }
    }

    /// Downloads the image at `url` under the policy (see the crate documentation for
    /// every rule).
    pub async fn fetch(&self, url: &str) -> Result<Fetched, FetchError> {
        let limit = self.policy.timeout;
        match tokio::time::timeout(limit, self.fetch_within_time(url)).await {
            Ok(result) => result,
            Err(_) => Err(FetchError::Timeout { limit }),
        }
    }

    /// POSTs `body` with `headers` to `url` and returns the receiver's HTTP status,
    /// whatever it is: the caller decides what counts as delivered. The host is resolved
    /// once and checked like a download's, the connection goes only to the checked
    /// address, and a redirect is not followed (its 3xx status is returned). The whole
    /// request is bounded by the policy's timeout.
    pub async fn post(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<u16, FetchError> {
        let limit = self.policy.timeout;
        let send = async {
            let destination = self.destination(parse_url(url)?).await?;
            let host = host_of(&destination.url);
            let client = pinned_client(&destination)?;
            let mut request = client.post(destination.url.clone());
            for (name, value) in headers {
                request = request.header(*name, *value);
            }
            let response =
                request.body(body).send().await.map_err(|e| connection_error(&host, e))?;
            // The body is not read: dropping the response closes the connection.
            Ok(response.status().as_u16())
        };
        match tokio::time::timeout(limit, send).await {
            Ok(result) => result,
            Err(_) => Err(FetchError::Timeout { limit }),
        }
    }

    async fn fetch_within_time(&self, url: &str) -> Result<Fetched, FetchError> {
        let mut url = parse_url(url)?;
        let mut redirects = 0u32;
        loop {
            // Check before any connection exists: a refused host is never contacted.
            let destination = self.destination(url).await?;
            url = destination.url.clone();
            let host = host_of(&url);
            let client = pinned_client(&destination)?;
            let response =
                client.get(url.clone()).send().await.map_err(|e| connection_error(&host, e))?;
            let status = response.status();
            if status.is_redirection() {
                let location = response
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let Some(location) = location else {
                    return Err(FetchError::Status {
                        host,
                        status: status.as_u16(),
                        detail: " (a redirect without a Location header)".into(),
                    });
                };
                if redirects >= self.policy.max_redirects {
                    return Err(FetchError::TooManyRedirects { limit: self.policy.max_redirects });
                }
                redirects += 1;
                let next = url.join(&location).map_err(|e| FetchError::Status {
                    host: host.clone(),
                    status: status.as_u16(),
                    detail: format!(" (a redirect to an invalid Location: {e})"),
                })?;
                url = check_scheme(next)?;
                continue;
            }
            if !status.is_success() {
                return Err(FetchError::Status {
                    host,
                    status: status.as_u16(),
                    detail: status.canonical_reason().map(|r| format!(" {r}")).unwrap_or_default(),
                });
            }
            return self.read_body(response, url).await;
        }
    }

    /// Resolves the URL's host and checks every address against the policy.
    async fn destination(&self, url: Url) -> Result<Destination, FetchError> {
        let host = host_of(&url);
        let port = url.port_or_known_default().ok_or_else(|| FetchError::InvalidUrl {
            reason: format!("no port for scheme '{}'", url.scheme()),
        })?;
        let addrs: Vec<SocketAddr> = match url.host() {
            // IP literals (the url crate has already normalised forms like
            // `http://2130706433/` or `http://0x7f.1/` to dotted IPv4).
            Some(url::Host::Ipv4(ip)) => vec![SocketAddr::new(IpAddr::V4(ip), port)],
            Some(url::Host::Ipv6(ip)) => vec![SocketAddr::new(IpAddr::V6(ip), port)],
            Some(url::Host::Domain(domain)) => self
                .resolver
                .lookup(domain, port)
                .await
                .map_err(|e| FetchError::Resolve { host: host.clone(), reason: e.to_string() })?
                .into_iter()
                // The URL decides the port, whatever a resolver put in its answer.
                .map(|addr| SocketAddr::new(addr.ip(), port))
                .collect(),
            None => return Err(FetchError::InvalidUrl { reason: "the URL has no host".into() }),
        };
        if addrs.is_empty() {
            return Err(FetchError::Resolve { host, reason: "no addresses".into() });
        }
        // Every address must pass, not just the first: the HTTP client may try any of
        // them, and a name with one public and one internal address is an attack.
        for addr in &addrs {
            if let Some(reason) = refusal_with_allow(addr.ip(), &self.policy.allow) {
                return Err(FetchError::AddressRefused { host, addr: addr.ip(), reason });
            }
        }
        Ok(Destination { url, addrs })
    }

    async fn read_body(
        &self,
        mut response: reqwest::Response,
        url: Url,
    ) -> Result<Fetched, FetchError> {
        let host = host_of(&url);
        let limit = self.policy.max_bytes;
        let too_large = || FetchError::TooLarge { limit };
        if response.content_length().is_some_and(|len| len > limit) {
            return Err(too_large());
        }
        // Never trust Content-Length for the allocation beyond the limit.
        let capacity = response.content_length().unwrap_or(0).min(limit).min(1 << 24);
        let mut bytes = Vec::with_capacity(usize::try_from(capacity).unwrap_or(0));
        let mut content_type = None;
        while let Some(chunk) = response.chunk().await.map_err(|e| connection_error(&host, e))? {
            if (bytes.len() as u64).saturating_add(chunk.len() as u64) > limit {
                // Dropping the response closes the connection: nothing more is read.
                return Err(too_large());
            }
            bytes.extend_from_slice(&chunk);
            if content_type.is_none() && bytes.len() >= SNIFF_LEN {
                // Refuse a non-image as soon as its first bytes are in, not after
                // downloading up to the size limit of it.
                content_type = Some(
                    sniff(&bytes).ok_or_else(|| FetchError::NotAnImage { host: host.clone() })?,
                );
            }
        }
        let content_type = match content_type {
            Some(t) => t,
            None => sniff(&bytes).ok_or(FetchError::NotAnImage { host })?,
        };
        Ok(Fetched { bytes, content_type, final_url: url })
    }
}

/// The image type of `bytes` from its magic number.
fn sniff(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("image/jpeg")
    } else if bytes.len() >= SNIFF_LEN && &bytes[0..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        Some("image/webp")
    } else {
        None
    }
}

fn parse_url(url: &str) -> Result<Url, FetchError> {
    let parsed =
        Url::parse(url.trim()).map_err(|e| FetchError::InvalidUrl { reason: e.to_string() })?;
    check_scheme(parsed)
}

fn check_scheme(url: Url) -> Result<Url, FetchError> {
    match url.scheme() {
        "http" | "https" => {}
        other => return Err(FetchError::UnsupportedScheme { scheme: other.to_owned() }),
    }
    if url.host().is_none() {
        return Err(FetchError::InvalidUrl { reason: "the URL has no host".into() });
    }
    Ok(url)
}

/// The host as written in the URL (IPv6 in brackets), for messages. The rest of the URL
/// is left out of messages: query strings often carry access tokens.
fn host_of(url: &Url) -> String {
    url.host_str().unwrap_or("").to_owned()
}

fn connection_error(host: &str, e: reqwest::Error) -> FetchError {
    // `without_url`: the URL may carry tokens; the host is in the message already.
    let e = e.without_url();
    let mut reason = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        reason.push_str(": ");
        reason.push_str(&cause.to_string());
        source = cause.source();
    }
    FetchError::Connection { host: host.to_owned(), reason }
}

/// A resolver that resolves nothing: every name the client may contact is pinned with
/// `resolve_to_addrs`, so reaching this means a name slipped past the checks.
struct PinnedOnly;

impl Resolve for PinnedOnly {
    fn resolve(&self, name: Name) -> Resolving {
        let name = name.as_str().to_owned();
        Box::pin(async move {
            Err(format!("{name} was not checked before connecting; refusing to resolve it").into())
        })
    }
}

/// A client for one hop: no redirects, no proxies, and name resolution limited to the
/// checked addresses of this hop's host.
fn pinned_client(destination: &Destination) -> Result<reqwest::Client, FetchError> {
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .dns_resolver(Arc::new(PinnedOnly))
        .pool_max_idle_per_host(0)
        .user_agent(concat!("backdrop-fetch/", env!("CARGO_PKG_VERSION")));
    if let Some(url::Host::Domain(domain)) = destination.url.host() {
        builder = builder.resolve_to_addrs(domain, &destination.addrs);
    }
    builder.build().map_err(|e| FetchError::Connection {
        host: host_of(&destination.url),
        reason: format!("cannot build the HTTP client: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_the_three_formats_and_nothing_else() {
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"), Some("image/png"));
        assert_eq!(sniff(&[0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10, b'J', b'F']), Some("image/jpeg"));
        assert_eq!(sniff(b"RIFF\x24\0\0\0WEBPVP8 "), Some("image/webp"));
        assert_eq!(sniff(b"RIFF\x24\0\0\0WAVEfmt "), None);
        assert_eq!(sniff(b"<!doctype html>"), None);
        assert_eq!(sniff(b"GIF89a......"), None);
        assert_eq!(sniff(b""), None);
        assert_eq!(sniff(b"\x89PN"), None);
    }

    #[test]
    fn codes_are_stable() {
        let cases = [
            (FetchError::InvalidUrl { reason: String::new() }, "invalid_url"),
            (FetchError::UnsupportedScheme { scheme: "file".into() }, "url_refused"),
            (
                FetchError::AddressRefused {
                    host: "x".into(),
                    addr: IpAddr::from([127, 0, 0, 1]),
                    reason: "a loopback address",
                },
                "url_refused",
            ),
            (FetchError::TooManyRedirects { limit: 1 }, "too_many_redirects"),
            (FetchError::TooLarge { limit: 1 }, "download_too_large"),
            (FetchError::Timeout { limit: Duration::from_secs(1) }, "download_timeout"),
            (FetchError::NotAnImage { host: "x".into() }, "not_an_image"),
        ];
        for (error, code) in cases {
            assert_eq!(error.code().as_str(), code, "{error}");
        }
    }

    #[test]
    fn messages_name_the_limit_or_address() {
        assert_eq!(
            FetchError::TooLarge { limit: 20 * 1024 * 1024 }.to_string(),
            "the image is larger than the limit of 20971520 bytes (20 MiB)"
        );
        assert_eq!(
            FetchError::Timeout { limit: Duration::from_millis(1500) }.to_string(),
            "downloading the image took longer than the limit of 1.5 s"
        );
        let refused = FetchError::AddressRefused {
            host: "metadata.example".into(),
            addr: IpAddr::from([169, 254, 169, 254]),
            reason: "the cloud metadata service",
        };
        assert_eq!(
            refused.to_string(),
            "refused to fetch from metadata.example: it resolves to 169.254.169.254, the cloud metadata service"
        );
    }

    #[test]
    fn only_http_and_https() {
        for url in [
            "file:///etc/passwd",
            "ftp://example.com/a.png",
            "gopher://x/",
            "data:image/png;base64,AA==",
        ] {
            assert_eq!(parse_url(url).map_err(|e| e.code()), Err(ErrorCode::UrlRefused), "{url}");
        }
        assert_eq!(parse_url("not a url").map_err(|e| e.code()), Err(ErrorCode::InvalidUrl));
        assert!(parse_url("https://example.com/a.png").is_ok());
    }

    #[tokio::test]
    async fn checks_ip_literals_without_connecting() {
        // `check` never connects; these show the URL forms that hide internal addresses.
        let fetcher = Fetcher::new(FetchPolicy::default());
        for url in [
            "http://127.0.0.1/",
            "http://2130706433/",
            "http://0x7f.1/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::1]:8080/",
            "http://10.0.0.1/",
            "http://169.254.169.254/latest/meta-data/",
            "http://[fd00:ec2::254]/",
            "http://0.0.0.0/",
        ] {
            let err = fetcher.check(url).await.expect_err(url);
            assert!(matches!(err, FetchError::AddressRefused { .. }), "{url}: {err}");
        }
    }
}
