//! The S3 server (s3s-fs: S3 over a directory, with real SigV4 checks), its client and per-test bucket pairs.

use super::process::{ServerProcess, find_binary, free_port};
use super::redis::retries_error;
use super::{ServiceError, unique_suffix};
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use flow_like_shared::config::S3Config;
use std::path::{Path, PathBuf};
use std::process::Command;

/// How many fresh ports are tried when another process takes the chosen one first.
const START_ATTEMPTS: u32 = 5;
/// Region the test server is addressed with (s3s-fs accepts any).
pub(crate) const REGION: &str = "us-east-1";

/// Starts s3s-fs on `port` serving `root`, and waits until it accepts connections.
pub(crate) fn start_s3(
    root: &Path,
    log: &Path,
    port: u16,
    access_key: &str,
    secret_key: &str,
) -> Result<ServerProcess, ServiceError> {
    let cargo_bin = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")))
        .map(|home| home.join("bin"));
    let binary = find_binary("s3s-fs", cargo_bin.as_slice())?;
    let mut command = Command::new(binary);
    command
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--access-key", access_key, "--secret-key", secret_key])
        .arg(root);
    let mut server = ServerProcess::spawn(command, "s3s-fs", log)?;
    server.wait_ready(port)?;
    Ok(server)
}

/// Starts s3s-fs on a free port, retrying on a port another process took in the meantime.
pub(crate) fn start_s3_on_free_port(
    root: &Path,
    log: &Path,
    access_key: &str,
    secret_key: &str,
) -> Result<(u16, ServerProcess), ServiceError> {
    let mut last = None;
    for _ in 0..START_ATTEMPTS {
        let port = free_port()?;
        match start_s3(root, log, port, access_key, secret_key) {
            Ok(server) => return Ok((port, server)),
            Err(err @ ServiceError::MissingBinary { .. }) => return Err(err),
            Err(err) => last = Some(err),
        }
    }
    Err(retries_error("start s3s-fs", last))
}

/// Where and how to reach an S3 server, and the two buckets of one test.
#[derive(Debug, Clone)]
pub struct S3Settings {
    pub endpoint: String,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub meta_bucket: String,
    pub content_bucket: String,
}

impl S3Settings {
    /// The services' S3 settings for this server and these buckets.
    pub fn to_config(&self) -> S3Config {
        S3Config {
            endpoint: self.endpoint.clone(),
            region: self.region.clone(),
            access_key_id: self.access_key_id.clone(),
            secret_access_key: self.secret_access_key.clone(),
            meta_bucket: self.meta_bucket.clone(),
            content_bucket: self.content_bucket.clone(),
            force_path_style: true,
        }
    }

    /// An S3 client for this server (path-style addressing, static keys).
    pub fn client(&self) -> aws_sdk_s3::Client {
        client(&self.endpoint, &self.region, &self.access_key_id, &self.secret_access_key)
    }
}

/// An S3 client for `endpoint` with static keys and path-style addressing.
pub(crate) fn client(endpoint: &str, region: &str, access_key: &str, secret_key: &str) -> aws_sdk_s3::Client {
    let credentials = Credentials::new(access_key, secret_key, None, None, "flow-like-tests");
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new(region.to_owned()))
        .credentials_provider(credentials)
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

/// Creates a uniquely named bucket and returns its name.
pub(crate) async fn create_unique_bucket(client: &aws_sdk_s3::Client, role: &str) -> Result<String, ServiceError> {
    let name = format!("t-{}-{role}", unique_suffix());
    client
        .create_bucket()
        .bucket(&name)
        .send()
        .await
        .map_err(|err| ServiceError::S3 { operation: "CreateBucket", source: Box::new(err) })?;
    Ok(name)
}
