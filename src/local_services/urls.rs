//! What the configured URLs say: the host and port to probe before a private server
//! stands in, whether that address is local (only a local one may be replaced), and the
//! private servers' own URLs. Read and built with `url::Url`.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use tokio::net::TcpStream;
use url::{Host, Url};

use super::PROBE_TIMEOUT;

/// The URL of the private PostgreSQL: the `postgres` role with trust authentication, and
/// the configured database name, so the caller creates and migrates the same database.
/// Credentials and query parameters of the configured URL do not apply to it.
pub(super) fn private_postgres_url(configured: &str, port: u16) -> String {
    private_url("postgres://postgres@127.0.0.1", configured, port)
}

/// The URL of the private Redis, keeping the configured database index (`/0`), if any.
pub(super) fn private_redis_url(configured: &str, port: u16) -> String {
    private_url("redis://127.0.0.1", configured, port)
}

/// `base` on `port` with the path (database name or index) of `configured`.
pub(super) fn private_url(base: &str, configured: &str, port: u16) -> String {
    let mut url = Url::parse(base).expect("a valid base URL");
    url.set_port(Some(port)).expect("the base URL has a host");
    if let Ok(configured) = Url::parse(configured) {
        url.set_path(configured.path());
    }
    url.into()
}

/// Where a server is expected to listen, as read from its URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Endpoint {
    host: String,
    port: u16,
}

impl Endpoint {
    /// Reads host and port from `postgres://user:pw@host:port/db`, `redis://host:port/0` and
    /// the like; `default_port` when the URL has none, `localhost` when it has no host.
    ///
    /// Read with `url::Url` rather than `PgConnectOptions`/`redis::ConnectionInfo`: those
    /// fill in what the URL leaves out from `PGHOST`/`PGPORT` and Unix socket defaults,
    /// while the question here is whether the address written in the URL answers.
    pub(super) fn parse(url: &str, default_port: u16) -> Result<Self, String> {
        let url = Url::parse(url).map_err(|e| e.to_string())?;
        if !url.has_authority() {
            return Err("expected scheme://host[:port]".into());
        }
        let host = match url.host() {
            Some(Host::Domain(name)) if !name.is_empty() => name.to_owned(),
            Some(Host::Ipv4(ip)) => ip.to_string(),
            Some(Host::Ipv6(ip)) => ip.to_string(),
            _ => "localhost".to_owned(),
        };
        Ok(Self {
            host,
            port: url.port().unwrap_or(default_port),
        })
    }

    pub(super) fn loopback(port: u16) -> Self {
        Self {
            host: Ipv4Addr::LOCALHOST.to_string(),
            port,
        }
    }

    /// Whether a private server may stand in for this address.
    pub(super) fn is_local(&self) -> bool {
        self.host.eq_ignore_ascii_case("localhost")
            || self
                .host
                .parse::<IpAddr>()
                .is_ok_and(|ip| ip.is_loopback() || ip.is_unspecified())
    }

    pub(super) async fn accepts_tcp(&self) -> bool {
        let connect = TcpStream::connect((self.host.as_str(), self.port));
        matches!(
            tokio::time::timeout(PROBE_TIMEOUT, connect).await,
            Ok(Ok(_))
        )
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(url: &str, default_port: u16) -> Endpoint {
        Endpoint::parse(url, default_port).expect("a URL the parser accepts")
    }

    fn at(host: &str, port: u16) -> Endpoint {
        Endpoint {
            host: host.to_owned(),
            port,
        }
    }

    #[test]
    fn postgres_url_with_user_and_port() {
        assert_eq!(
            endpoint("postgres://postgres@127.0.0.1:5433/agentq", 5432),
            at("127.0.0.1", 5433)
        );
    }

    #[test]
    fn postgres_url_with_password_and_no_port_gets_5432() {
        assert_eq!(
            endpoint("postgres://app:s3cret@db.internal/agentq", 5432),
            at("db.internal", 5432)
        );
        assert_eq!(
            endpoint(
                "postgresql://app:pa:ss@localhost/agentq?sslmode=disable",
                5432
            ),
            at("localhost", 5432)
        );
    }

    #[test]
    fn redis_url_with_port_and_optional_database_index() {
        assert_eq!(
            endpoint("redis://127.0.0.1:6380", 6379),
            at("127.0.0.1", 6380)
        );
        assert_eq!(
            endpoint("redis://127.0.0.1:6380/0", 6379),
            at("127.0.0.1", 6380)
        );
        assert_eq!(endpoint("redis://cache", 6379), at("cache", 6379));
        assert_eq!(endpoint("redis://:pw@cache/2", 6379), at("cache", 6379));
    }

    #[test]
    fn query_strings_and_ipv6_hosts_are_understood() {
        assert_eq!(
            endpoint("postgres://u@db:6000?sslmode=disable", 5432),
            at("db", 6000)
        );
        assert_eq!(
            endpoint("postgres://u@[::1]:5433/agentq", 5432),
            at("::1", 5433)
        );
        assert_eq!(endpoint("redis://[::1]", 6379), at("::1", 6379));
        assert_eq!(endpoint("postgres:///agentq", 5432), at("localhost", 5432));
    }

    #[test]
    fn malformed_urls_are_rejected() {
        assert!(Endpoint::parse("127.0.0.1:5432", 5432).is_err());
        assert!(Endpoint::parse("redis://cache:sixthousand", 6379).is_err());
        assert!(Endpoint::parse("redis://cache:70000", 6379).is_err());
        assert!(Endpoint::parse("redis://[::1", 6379).is_err());
    }

    #[test]
    fn private_postgres_url_keeps_the_database_but_not_the_credentials() {
        assert_eq!(
            private_postgres_url(
                "postgres://app:s3cret@127.0.0.1:5432/agentq?sslmode=require",
                41234
            ),
            "postgres://postgres@127.0.0.1:41234/agentq"
        );
        assert_eq!(
            private_postgres_url("postgres://localhost", 41234),
            "postgres://postgres@127.0.0.1:41234"
        );
    }

    #[test]
    fn private_redis_url_keeps_the_database_index() {
        assert_eq!(
            private_redis_url("redis://:pw@127.0.0.1:6379/3", 40000),
            "redis://127.0.0.1:40000/3"
        );
        assert_eq!(
            private_redis_url("redis://localhost", 40000),
            "redis://127.0.0.1:40000"
        );
    }

    #[test]
    fn only_local_addresses_get_a_private_server() {
        for local in ["localhost", "127.0.0.1", "127.0.1.1", "::1", "0.0.0.0"] {
            assert!(at(local, 1).is_local(), "{local} is local");
        }
        for remote in ["db.internal", "10.0.0.5", "postgres"] {
            assert!(!at(remote, 1).is_local(), "{remote} is not local");
        }
    }

    #[test]
    fn endpoints_display_as_host_and_port() {
        assert_eq!(at("127.0.0.1", 5432).to_string(), "127.0.0.1:5432");
        assert_eq!(at("::1", 6379).to_string(), "[::1]:6379");
    }
}
