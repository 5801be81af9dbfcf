//! Throwaway certificate authorities for TLS tests, made with the `openssl` command: a CA and a server
//! certificate it signs for `127.0.0.1` and `localhost`, as a private CA of a managed Redis would be.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A server certificate, its key, and the CA that signed it (PEM files).
#[derive(Debug, Clone)]
pub struct ServerCertificate {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) -> anyhow::Result<()> {
    let output = Command::new("openssl").args(args).current_dir(dir).output()?;
    anyhow::ensure!(
        output.status.success(),
        "openssl {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

/// Makes, in `dir`, a CA named `name` and a server certificate for 127.0.0.1 / localhost signed by it.
pub fn make_server_certificate(dir: &Path, name: &str) -> anyhow::Result<ServerCertificate> {
    std::fs::create_dir_all(dir)?;
    let file = |suffix: &str| format!("{name}-{suffix}");
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN={name} test CA"),
            "-keyout",
            &file("ca.key"),
            "-out",
            &file("ca.crt"),
        ],
    )?;
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            &file("server.key"),
            "-out",
            &file("server.csr"),
        ],
    )?;
    std::fs::write(dir.join(file("san.ext")), "subjectAltName=IP:127.0.0.1,DNS:localhost\n")?;
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &file("server.csr"),
            "-CA",
            &file("ca.crt"),
            "-CAkey",
            &file("ca.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &file("san.ext"),
            "-out",
            &file("server.crt"),
        ],
    )?;
    Ok(ServerCertificate {
        cert: dir.join(file("server.crt")),
        key: dir.join(file("server.key")),
        ca: dir.join(file("ca.crt")),
    })
}
