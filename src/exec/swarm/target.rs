//! The Docker Swarm target of a service (`[services.NAME.swarm]`): which
//! service, and which Docker endpoint reaches the swarm's manager.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The kind of Swarm targets.
pub const SWARM: &str = "swarm";

/// The Docker endpoint used when a target names none: the local socket,
/// as for the docker CLI.
pub const DEFAULT_DOCKER_HOST: &str = "unix:///var/run/docker.sock";

/// A Docker Swarm service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwarmTarget {
    /// The service's name or id, as `docker service ps` takes it.
    pub service: String,
    /// A manager's Docker endpoint: `unix:///path/docker.sock` or
    /// `tcp://host:2376` (with `tls` for a TLS-protected daemon).
    #[serde(default = "default_docker_host")]
    pub docker_host: String,
    /// `[services.NAME.swarm.tls]`: the client certificate files, as
    /// `docker --tlsverify --tlscacert … --tlscert … --tlskey …` takes them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<SwarmTls>,
}

fn default_docker_host() -> String {
    DEFAULT_DOCKER_HOST.to_string()
}

/// The files of a TLS connection to the Docker daemon (paths, read when
/// connecting; the key never enters the configuration).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwarmTls {
    /// The CA certificate that signed the daemon's certificate (PEM).
    pub ca: PathBuf,
    /// rollbot's client certificate (PEM).
    pub cert: PathBuf,
    /// rollbot's client key (PEM).
    pub key: PathBuf,
}

/// How a [`SwarmTarget`]'s endpoint is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint<'a> {
    /// A Unix socket path.
    Unix(&'a str),
    /// `host:port` over plain TCP.
    Tcp(&'a str),
    /// `host:port` over TLS with client certificates.
    Tls(&'a str, &'a SwarmTls),
}

impl SwarmTarget {
    /// The endpoint of `docker_host`.
    ///
    /// # Errors
    /// What is wrong with `docker_host` or `tls`, and what to write instead.
    pub fn endpoint(&self) -> Result<Endpoint<'_>, String> {
        let host = self.docker_host.as_str();
        if let Some(path) = host.strip_prefix("unix://") {
            if self.tls.is_some() {
                return Err(format!(
                    "tls is for tcp:// endpoints; {host} is a Unix socket, so remove the tls table"
                ));
            }
            if !path.starts_with('/') {
                return Err(format!(
                    "{host:?} is not an absolute socket path; write e.g. {DEFAULT_DOCKER_HOST}"
                ));
            }
            return Ok(Endpoint::Unix(path));
        }
        if let Some(addr) = host.strip_prefix("tcp://") {
            let addr = addr.trim_end_matches('/');
            let port = addr.rsplit_once(':').map(|(_, p)| p);
            if addr.is_empty()
                || addr.contains('/')
                || port.is_none_or(|p| p.parse::<u16>().is_err())
            {
                return Err(format!(
                    "{host:?} is not tcp://HOST:PORT; write e.g. tcp://manager-1:2376"
                ));
            }
            return Ok(match &self.tls {
                Some(tls) => Endpoint::Tls(addr, tls),
                None => Endpoint::Tcp(addr),
            });
        }
        Err(format!(
            "{host:?} is not a Docker endpoint rollbot can use; write unix:///var/run/docker.sock or tcp://HOST:PORT (with a tls table for TLS)"
        ))
    }
}

impl fmt::Display for SwarmTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "swarm service {}", self.service)?;
        if self.docker_host != DEFAULT_DOCKER_HOST {
            write!(f, " on {}", self.docker_host)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(host: &str, tls: bool) -> SwarmTarget {
        SwarmTarget {
            service: "app".into(),
            docker_host: host.into(),
            tls: tls.then(|| SwarmTls {
                ca: "/certs/ca.pem".into(),
                cert: "/certs/cert.pem".into(),
                key: "/certs/key.pem".into(),
            }),
        }
    }

    #[test]
    fn endpoints_are_read_like_docker_host() {
        assert_eq!(
            target(DEFAULT_DOCKER_HOST, false).endpoint(),
            Ok(Endpoint::Unix("/var/run/docker.sock"))
        );
        assert_eq!(
            target("tcp://manager-1:2375", false).endpoint(),
            Ok(Endpoint::Tcp("manager-1:2375"))
        );
        let t = target("tcp://10.0.0.5:2376/", true);
        assert!(matches!(
            t.endpoint(),
            Ok(Endpoint::Tls("10.0.0.5:2376", _))
        ));
        for (host, tls, says) in [
            ("unix://run/docker.sock", false, "absolute"),
            ("unix:///var/run/docker.sock", true, "remove the tls"),
            ("tcp://manager-1", false, "tcp://HOST:PORT"),
            ("tcp://manager-1:http", false, "tcp://HOST:PORT"),
            (
                "https://manager-1:2376",
                false,
                "unix:///var/run/docker.sock",
            ),
            ("", false, "not a Docker endpoint"),
        ] {
            let e = target(host, tls).endpoint().unwrap_err();
            assert!(e.contains(says), "{host}: {e}");
        }
    }

    #[test]
    fn shown_with_its_endpoint_unless_local() {
        assert_eq!(
            target(DEFAULT_DOCKER_HOST, false).to_string(),
            "swarm service app"
        );
        assert_eq!(
            target("tcp://m:2376", true).to_string(),
            "swarm service app on tcp://m:2376"
        );
    }
}
