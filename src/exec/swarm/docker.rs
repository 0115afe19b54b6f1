//! The Docker Engine API as the Swarm executor uses it: bollard for the
//! update, the tasks and the ping, and one GET of our own for the service
//! itself, because bollard's `Service` model drops `PreviousSpec` — exactly
//! what `docker service rollback` restores.
//!
//! A connection is made per call: a bollard client is only a handle (no
//! connection is opened until a request), and making it fresh means a
//! daemon that was down at start-up, or restarted since, is simply reached
//! again.

use std::collections::HashMap;
use std::time::Duration;

use bollard::Docker;
use bollard::models::{ServiceSpec, Task};
use bollard::query_parameters::{ListTasksOptions, UpdateServiceOptions};
use serde_json::Value;

use super::target::{Endpoint, SwarmTarget};

/// How long one request to the daemon may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A failed request to the Docker daemon.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DockerError {
    /// The daemon could not be reached at all.
    #[error(
        "cannot reach Docker at {host}: {error}; check that dockerd runs there and that docker_host (and tls) in [services.NAME.swarm] are right (try `docker -H {host} info`)"
    )]
    Unreachable { host: String, error: String },
    /// The daemon answered with an error status.
    #[error("Docker at {host} answered {status}: {message}")]
    Status {
        host: String,
        status: u16,
        message: String,
    },
}

impl DockerError {
    /// The HTTP status the daemon answered, if it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            DockerError::Status { status, .. } => Some(*status),
            DockerError::Unreachable { .. } => None,
        }
    }

    /// The daemon's own message, or the connection failure.
    pub fn message(&self) -> &str {
        match self {
            DockerError::Status { message, .. } => message,
            DockerError::Unreachable { error, .. } => error,
        }
    }
}

/// The Docker endpoint of one target.
pub struct DockerApi {
    host: String,
    docker: Docker,
    raw: Raw,
}

/// The transport of our own GET.
enum Raw {
    Unix {
        path: String,
        client: Box<
            hyper_util::client::legacy::Client<
                hyperlocal::UnixConnector,
                http_body_util::Full<bytes::Bytes>,
            >,
        >,
    },
    Http {
        base: String,
        client: reqwest::Client,
    },
}

impl DockerApi {
    /// A handle on `target`'s endpoint; nothing is sent yet.
    ///
    /// # Errors
    /// A malformed endpoint, a missing socket, or TLS files that cannot be
    /// read — as [`DockerError::Unreachable`], with what to fix.
    pub fn connect(target: &SwarmTarget) -> Result<Self, DockerError> {
        let host = target.docker_host.clone();
        let unreachable = |error: String| DockerError::Unreachable {
            host: host.clone(),
            error,
        };
        let secs = REQUEST_TIMEOUT.as_secs();
        let version = bollard::API_DEFAULT_VERSION;
        let (docker, raw) = match target.endpoint().map_err(unreachable)? {
            Endpoint::Unix(path) => {
                let docker = Docker::connect_with_unix(path, secs, version)
                    .map_err(|e| unreachable(e.to_string()))?;
                let client = hyper_util::client::legacy::Client::builder(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .build(hyperlocal::UnixConnector);
                let raw = Raw::Unix {
                    path: path.to_string(),
                    client: Box::new(client),
                };
                (docker, raw)
            }
            Endpoint::Tcp(addr) => {
                let docker = Docker::connect_with_http(addr, secs, version)
                    .map_err(|e| unreachable(e.to_string()))?;
                let client = reqwest::Client::builder()
                    .timeout(REQUEST_TIMEOUT)
                    .build()
                    .map_err(|e| unreachable(e.to_string()))?;
                let raw = Raw::Http {
                    base: format!("http://{addr}"),
                    client,
                };
                (docker, raw)
            }
            Endpoint::Tls(addr, tls) => {
                let docker =
                    Docker::connect_with_ssl(addr, &tls.key, &tls.cert, &tls.ca, secs, version)
                        .map_err(|e| unreachable(e.to_string()))?;
                let read = |p: &std::path::Path| {
                    std::fs::read(p)
                        .map_err(|e| unreachable(format!("cannot read {}: {e}", p.display())))
                };
                let mut pem = read(&tls.cert)?;
                pem.push(b'\n');
                pem.extend(read(&tls.key)?);
                let identity = reqwest::Identity::from_pem(&pem).map_err(|e| {
                    unreachable(format!(
                        "{} and {} are not a PEM certificate and key: {e}",
                        tls.cert.display(),
                        tls.key.display()
                    ))
                })?;
                let ca = reqwest::Certificate::from_pem(&read(&tls.ca)?).map_err(|e| {
                    unreachable(format!(
                        "{} is not a PEM certificate: {e}",
                        tls.ca.display()
                    ))
                })?;
                let client = reqwest::Client::builder()
                    .timeout(REQUEST_TIMEOUT)
                    .identity(identity)
                    .add_root_certificate(ca)
                    .build()
                    .map_err(|e| unreachable(e.to_string()))?;
                let raw = Raw::Http {
                    base: format!("https://{addr}"),
                    client,
                };
                (docker, raw)
            }
        };
        Ok(Self { host, docker, raw })
    }

    /// The endpoint, e.g. `unix:///var/run/docker.sock`.
    pub fn host(&self) -> &str {
        &self.host
    }

    fn error(&self, e: bollard::errors::Error) -> DockerError {
        match e {
            bollard::errors::Error::DockerResponseServerError {
                status_code,
                message,
            } => DockerError::Status {
                host: self.host.clone(),
                status: status_code,
                message,
            },
            other => DockerError::Unreachable {
                host: self.host.clone(),
                error: other.to_string(),
            },
        }
    }

    /// `GET /_ping`.
    ///
    /// # Errors
    /// The daemon cannot be reached or does not answer OK.
    pub async fn ping(&self) -> Result<(), DockerError> {
        self.docker
            .ping()
            .await
            .map(drop)
            .map_err(|e| self.error(e))
    }

    /// `GET /services/NAME` as the daemon sends it, `PreviousSpec` included.
    ///
    /// # Errors
    /// As the daemon answers (404: no such service), or unreachable.
    pub async fn service(&self, name: &str) -> Result<Value, DockerError> {
        let path = format!("/services/{name}");
        let (status, body) = match &self.raw {
            Raw::Unix {
                path: socket,
                client,
            } => {
                let uri: hyper::Uri = hyperlocal::Uri::new(socket, &path).into();
                let get = client.get(uri);
                let response = tokio::time::timeout(REQUEST_TIMEOUT, get)
                    .await
                    .map_err(|_| self.unreachable("no answer within 30 s"))?
                    .map_err(|e| self.unreachable(&e.to_string()))?;
                let status = response.status().as_u16();
                let body = http_body_util::BodyExt::collect(response.into_body())
                    .await
                    .map_err(|e| self.unreachable(&e.to_string()))?
                    .to_bytes();
                (status, body)
            }
            Raw::Http { base, client } => {
                let response = client
                    .get(format!("{base}{path}"))
                    .send()
                    .await
                    .map_err(|e| self.unreachable(&e.to_string()))?;
                let status = response.status().as_u16();
                let body = response
                    .bytes()
                    .await
                    .map_err(|e| self.unreachable(&e.to_string()))?;
                (status, body)
            }
        };
        let json: Value = serde_json::from_slice(&body).map_err(|e| {
            self.unreachable(&format!(
                "the answer to GET {path} is not JSON ({e}); is {} a Docker daemon?",
                self.host
            ))
        })?;
        if status == 200 {
            Ok(json)
        } else {
            Err(DockerError::Status {
                host: self.host.clone(),
                status,
                message: json["message"].as_str().unwrap_or_default().to_string(),
            })
        }
    }

    fn unreachable(&self, error: &str) -> DockerError {
        DockerError::Unreachable {
            host: self.host.clone(),
            error: error.to_string(),
        }
    }

    /// `POST /services/ID/update?version=V[&rollback=previous]` with `spec`.
    ///
    /// # Errors
    /// As the daemon answers (e.g. `update out of sequence`), or unreachable.
    pub async fn update(
        &self,
        id: &str,
        version: u64,
        spec: &Value,
        rollback: bool,
    ) -> Result<Vec<String>, DockerError> {
        let spec: ServiceSpec = serde_json::from_value(spec.clone()).map_err(|e| {
            self.unreachable(&format!("the service's spec cannot be sent back ({e})"))
        })?;
        let version = i32::try_from(version)
            .map_err(|_| self.unreachable(&format!("version {version} is out of range")))?;
        let options = UpdateServiceOptions {
            version,
            rollback: rollback.then(|| "previous".to_string()),
            ..Default::default()
        };
        let answer = self
            .docker
            .update_service(id, spec, options, None)
            .await
            .map_err(|e| self.error(e))?;
        Ok(answer.warnings.unwrap_or_default())
    }

    /// The service's tasks, as `docker service ps` lists them.
    ///
    /// # Errors
    /// As the daemon answers, or unreachable.
    pub async fn tasks(&self, service_id: &str) -> Result<Vec<Task>, DockerError> {
        let filters = HashMap::from([("service".to_string(), vec![service_id.to_string()])]);
        self.docker
            .list_tasks(Some(ListTasksOptions {
                filters: Some(filters),
            }))
            .await
            .map_err(|e| self.error(e))
    }
}
