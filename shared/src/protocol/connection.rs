//! How every binary opens Redis: the URL, the TLS roots for `rediss://` (the system's, or the bundle in
//! `REDIS_CA_FILE`), and the start-up check that turns a certificate Redis cannot be trusted with into an error
//! naming the setting instead of an endless "Redis unavailable".
//!
//! redis-rs does the TLS itself (rustls, the process's crypto provider). With `REDIS_CA_FILE` set, the bundle
//! replaces the system roots for Redis connections, as `redis-cli --cacert` and `psql sslrootcert` do.

use crate::config::RedisConfig;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ConnectionAddr, IntoConnectionInfo, TlsCertificates};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// A Redis setting no connection can be made with. Each variant names the setting to fix.
#[derive(Debug, thiserror::Error)]
pub enum RedisSetupError {
    #[error("REDIS_URL is not a valid Redis URL")]
    InvalidUrl(#[source] redis::RedisError),
    #[error("REDIS_CA_FILE {path}: cannot be read")]
    CaFileUnreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("REDIS_CA_FILE {path}: {reason}")]
    CaFileInvalid { path: PathBuf, reason: String },
    #[error("REDIS_CA_FILE is set but REDIS_URL is not rediss:// (the CA is only used for TLS)")]
    CaFileWithoutTls,
    #[error(
        "Redis at {host}:{port} presented a certificate that is not trusted ({}): {source}",
        trust_hint(.ca_file.as_deref())
    )]
    CertificateRejected {
        host: String,
        port: u16,
        ca_file: Option<PathBuf>,
        #[source]
        source: rustls::Error,
    },
}

fn trust_hint(ca_file: Option<&Path>) -> String {
    match ca_file {
        Some(path) => format!("checked against REDIS_CA_FILE {}", path.display()),
        None => "checked against the system roots; set REDIS_CA_FILE for a private CA".to_owned(),
    }
}

impl RedisConfig {
    /// A client for this configuration. `adjust` may change the connection settings (the executor leaves
    /// `CLIENT SETINFO` out, which its ACL user may not run).
    pub fn client_with(
        &self,
        adjust: impl FnOnce(redis::RedisConnectionInfo) -> redis::RedisConnectionInfo,
    ) -> Result<redis::Client, RedisSetupError> {
        let info = self.url.as_str().into_connection_info().map_err(RedisSetupError::InvalidUrl)?;
        let settings = adjust(info.redis_settings().clone());
        let tls = matches!(info.addr(), ConnectionAddr::TcpTls { .. });
        let info = info.set_redis_settings(settings);
        match (&self.ca_file, tls) {
            (None, _) => redis::Client::open(info).map_err(RedisSetupError::InvalidUrl),
            (Some(_), false) => Err(RedisSetupError::CaFileWithoutTls),
            (Some(path), true) => {
                let pem = read_ca_bundle(path)?;
                redis::Client::build_with_tls(info, TlsCertificates { client_tls: None, root_cert: Some(pem) })
                    .map_err(|e| RedisSetupError::CaFileInvalid { path: path.clone(), reason: e.to_string() })
            }
        }
    }

    /// A client with the default connection settings.
    pub fn client(&self) -> Result<redis::Client, RedisSetupError> {
        self.client_with(|settings| settings)
    }

    /// Checks the settings before a binary starts serving: the URL parses, the CA bundle is readable PEM, and
    /// for `rediss://` a TLS handshake with the server succeeds. A server that cannot be reached is not an error
    /// (services start while Redis is down and report not-ready); a certificate that cannot be trusted is.
    pub async fn check(&self) -> Result<(), RedisSetupError> {
        self.client()?;
        let info = self.url.as_str().into_connection_info().map_err(RedisSetupError::InvalidUrl)?;
        let ConnectionAddr::TcpTls { host, port, insecure, .. } = info.addr() else {
            return Ok(());
        };
        if *insecure {
            // `rediss://...#insecure`: the operator chose not to verify.
            return Ok(());
        }
        let roots = match &self.ca_file {
            Some(path) => ca_roots(path, &read_ca_bundle(path)?)?,
            None => system_roots(),
        };
        handshake(host, *port, roots).await.map_err(|source| RedisSetupError::CertificateRejected {
            host: host.clone(),
            port: *port,
            ca_file: self.ca_file.clone(),
            source,
        })
    }
}

fn read_ca_bundle(path: &Path) -> Result<Vec<u8>, RedisSetupError> {
    let pem =
        std::fs::read(path).map_err(|source| RedisSetupError::CaFileUnreadable { path: path.to_owned(), source })?;
    // Parsed here too, so an empty or non-PEM file is reported at start-up rather than at the first connection.
    ca_roots(path, &pem)?;
    Ok(pem)
}

fn ca_roots(path: &Path, pem: &[u8]) -> Result<rustls::RootCertStore, RedisSetupError> {
    let invalid = |reason: String| RedisSetupError::CaFileInvalid { path: path.to_owned(), reason };
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| invalid(format!("not a PEM certificate bundle: {e}")))?;
        roots.add(cert).map_err(|e| invalid(format!("a certificate cannot be used as a trust anchor: {e}")))?;
    }
    if roots.is_empty() {
        return Err(invalid("holds no PEM certificate".to_owned()));
    }
    Ok(roots)
}

fn system_roots() -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    // Unreadable system certificates leave the store smaller; the handshake then names the untrusted issuer.
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    roots
}

/// One TLS handshake with the server, verifying its certificate as redis-rs will. `Ok` also when the server is
/// unreachable: only a refused certificate is this check's business.
async fn handshake(host: &str, port: u16, roots: rustls::RootCertStore) -> Result<(), rustls::Error> {
    const TIMEOUT: Duration = Duration::from_secs(3);
    let Ok(name) = ServerName::try_from(host.to_owned()) else {
        return Ok(());
    };
    let config = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let Ok(Ok(tcp)) = tokio::time::timeout(TIMEOUT, tokio::net::TcpStream::connect((host, port))).await else {
        return Ok(());
    };
    match tokio::time::timeout(TIMEOUT, connector.connect(name, tcp)).await {
        Ok(Err(err)) => match err.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
            Some(tls) => Err(tls.clone()),
            None => Ok(()),
        },
        _ => Ok(()),
    }
}

/// A multiplexed, self-reconnecting connection. Created lazily: a service starts while Redis is down and reports
/// not-ready until it comes back. Short timeouts turn an unreachable Redis into a quick 503 rather than a hang.
pub fn connect_lazy(config: &RedisConfig) -> Result<ConnectionManager, RedisSetupError> {
    let client = config.client()?;
    let manager_config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(Duration::from_secs(3)))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_millis(500));
    ConnectionManager::new_lazy_with_config(client, manager_config).map_err(RedisSetupError::InvalidUrl)
}
