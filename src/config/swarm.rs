//! `[services.NAME.swarm]`: the checks of a Docker Swarm target that need
//! no daemon (the endpoint's form, the TLS files). Whether the daemon
//! answers is asked by `rollbot check-config` and `/readyz`
//! ([`crate::exec::swarm::ping`]).

use super::*;

/// Checks a Swarm target at `at` (`services.NAME.swarm`).
pub(super) fn validate(t: &SwarmTarget, at: &str, problems: &mut Vec<Problem>) {
    if t.service.trim().is_empty() {
        problems.push(Problem::new(
            format!("{at}.service"),
            "names no service; write the Swarm service's name or id, as `docker service ls` shows it",
        ));
    }
    if let Err(e) = t.endpoint() {
        let key = if t.tls.is_some() && t.docker_host.starts_with("unix://") {
            "tls"
        } else {
            "docker_host"
        };
        problems.push(Problem::new(format!("{at}.{key}"), e));
    }
    if let Some(tls) = &t.tls {
        for (key, path) in [("ca", &tls.ca), ("cert", &tls.cert), ("key", &tls.key)] {
            if let Err(e) = std::fs::metadata(path) {
                problems.push(Problem::new(
                    format!("{at}.tls.{key}"),
                    format!("cannot read {}: {e}", path.display()),
                ));
            }
        }
    }
}
