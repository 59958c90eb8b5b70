//! TLS for the API, with rustls: the server's certificate and key (`tls` in `sluice.toml`),
//! and the roots a client trusts (the web's, or one CA file: `--ca-file`). Here so that only
//! `api/` deals in TLS, as in HTTP.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A server's TLS: what accepts connections.
#[derive(Clone)]
pub struct ServerTls {
    pub(super) acceptor: tokio_rustls::TlsAcceptor,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerTls")
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificates of a PEM file, at least one.
fn certificates(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let shown = path.display();
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{what} {shown}: {e}"))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{what} {shown}: {e}"))?;
    if certs.is_empty() {
        return Err(format!(
            "{what} {shown}: no certificate in it (a PEM file with `BEGIN CERTIFICATE`)"
        ));
    }
    Ok(certs)
}

impl ServerTls {
    /// From a PEM certificate chain (the server's first) and its PEM private key (PKCS#8,
    /// PKCS#1 or SEC1); each problem names the key of `sluice.toml` and the file.
    pub fn load(cert: &Path, key: &Path) -> Result<Self, String> {
        let chain = certificates(cert, "tls.cert")?;
        let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
            format!(
                "tls.key {}: {e} (a PEM file with `BEGIN PRIVATE KEY`)",
                key.display()
            )
        })?;
        let config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| format!("tls.cert and tls.key do not make a certificate: {e}"))?;
        Ok(Self {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        })
    }
}

/// What a client trusts: the certificates of `ca_file` alone, or the web's roots.
pub fn client_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(file) => {
            for cert in certificates(file, "--ca-file")? {
                roots
                    .add(cert)
                    .map_err(|e| format!("--ca-file {}: {e}", file.display()))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    Ok(rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// The warning for serving plain HTTP on `address`, unless it is a loopback one.
pub fn plain_http_warning(address: std::net::SocketAddr) -> Option<String> {
    (!address.ip().is_loopback()).then(|| {
        format!(
            "serving plain HTTP on {address}, which is not a loopback address: tokens and the \
             secrets jobs carry cross the network in the clear; set tls = {{ cert = \"...\", \
             key = \"...\" }} in sluice.toml"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_is_quiet_on_loopback_only() {
        for quiet in ["127.0.0.1:8080", "[::1]:8080"] {
            assert_eq!(plain_http_warning(quiet.parse().unwrap()), None, "{quiet}");
        }
        for loud in ["0.0.0.0:8080", "10.0.0.5:8080", "[::]:8080"] {
            let warning = plain_http_warning(loud.parse().unwrap()).unwrap();
            assert!(warning.contains("set tls = "), "{warning}");
        }
    }

    #[test]
    fn files_that_are_not_a_certificate_or_key_are_refused_naming_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a pem\n").unwrap();
        let missing = dir.path().join("missing.pem");
        let e = ServerTls::load(&empty, &empty).unwrap_err();
        assert!(
            e.starts_with("tls.cert ") && e.contains("no certificate"),
            "{e}"
        );
        let e = ServerTls::load(&missing, &empty).unwrap_err();
        assert!(e.starts_with("tls.cert "), "{e}");
        let e = client_config(Some(&empty)).unwrap_err();
        assert!(e.starts_with("--ca-file "), "{e}");
    }
}
