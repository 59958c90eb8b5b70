//! A real OCI registry for the tests: Debian's `docker-registry` (Distribution 2.8), started
//! with a config of its own on a free loopback port, its storage in a temporary directory; and
//! the Distribution API calls a test pushes with (blob uploads, manifests), over plain HTTP/1.1.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// The OCI manifest media type.
pub const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

pub struct Registry {
    pub addr: SocketAddr,
    child: Child,
    dir: tempfile::TempDir,
}

impl Registry {
    /// Starts a registry, waiting (bounded) until `/v2/` answers.
    pub fn start() -> Self {
        let binary = ["/usr/bin/docker-registry", "/usr/sbin/docker-registry"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("the OCI tests need Debian's docker-registry: apt-get install docker-registry");
        let dir = tempfile::tempdir().unwrap();
        let addr = {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap()
        };
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n",
                dir.path().join("storage").display()
            ),
        )
        .unwrap();
        let child = Command::new(binary)
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let registry = Self { addr, child, dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        while registry
            .call("GET", "/v2/", &[], &[])
            .ok()
            .map(|r| r.status)
            != Some(200)
        {
            assert!(
                Instant::now() < deadline,
                "docker-registry did not answer on {addr} within 30 s"
            );
            std::thread::park_timeout(Duration::from_millis(20));
        }
        registry
    }

    /// Where the registry keeps the blob `digest` on disk (a test corrupts it there).
    pub fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap();
        self.dir
            .path()
            .join("storage/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// Uploads `bytes` as a blob of `repo` (monolithic: POST, then PUT with the digest).
    pub fn push_blob(&self, repo: &str, bytes: &[u8]) -> String {
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(bytes)));
        let started = self
            .call("POST", &format!("/v2/{repo}/blobs/uploads/"), &[], &[])
            .unwrap();
        assert_eq!(started.status, 202, "starting an upload: {started:?}");
        let location = started.header("location").unwrap();
        let location = location
            .strip_prefix(&format!("http://{}", self.addr))
            .unwrap_or(location);
        let separator = if location.contains('?') { '&' } else { '?' };
        let put = format!("{location}{separator}digest={digest}");
        let done = self
            .call(
                "PUT",
                &put,
                &[("content-type", "application/octet-stream")],
                bytes,
            )
            .unwrap();
        assert_eq!(done.status, 201, "finishing an upload: {done:?}");
        digest
    }

    /// Pushes files as an ORAS-style artifact tagged `tag`: one layer per file, titled by its
    /// name; returns the manifest's digest.
    pub fn push_files(&self, repo: &str, tag: &str, files: &[(&str, &[u8])]) -> String {
        let config = self.push_blob(repo, b"{}");
        let layers: Vec<serde_json::Value> = files
            .iter()
            .map(|(name, bytes)| {
                serde_json::json!({
                    "mediaType": "application/octet-stream",
                    "digest": self.push_blob(repo, bytes),
                    "size": bytes.len(),
                    "annotations": {"org.opencontainers.image.title": name},
                })
            })
            .collect();
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": config, "size": 2},
            "layers": layers,
            "annotations": {"org.opencontainers.image.created": "2026-11-30T12:00:00Z"},
        });
        self.push_manifest(repo, tag, &manifest)
    }

    /// Puts `manifest` under `reference` (a tag); returns its digest.
    pub fn push_manifest(
        &self,
        repo: &str,
        reference: &str,
        manifest: &serde_json::Value,
    ) -> String {
        let body = serde_json::to_vec(manifest).unwrap();
        let put = self
            .call(
                "PUT",
                &format!("/v2/{repo}/manifests/{reference}"),
                &[("content-type", MANIFEST)],
                &body,
            )
            .unwrap();
        assert_eq!(put.status, 201, "pushing a manifest: {put:?}");
        format!("sha256:{}", hex::encode(Sha256::digest(&body)))
    }

    /// One request, `Connection: close`.
    pub fn call(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> std::io::Result<Answer> {
        let mut conn = TcpStream::connect(self.addr)?;
        conn.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
            self.addr,
            body.len()
        );
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        conn.write_all(head.as_bytes())?;
        conn.write_all(body)?;
        let mut reader = BufReader::new(conn);
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 || line.trim_end().is_empty() {
                break;
            }
            if let Some((name, value)) = line.trim_end().split_once(':') {
                headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
            }
        }
        let mut body = Vec::new();
        if method != "HEAD" {
            reader.read_to_end(&mut body)?;
        }
        Ok(Answer {
            status,
            headers,
            body,
        })
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}
