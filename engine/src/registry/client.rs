//! A client of one OCI registry (the Distribution API): manifests and blobs by digest, each
//! verified as it arrives, tags resolved to digests, and pushes (monolithic blob uploads, then
//! the manifest). HTTPS through rustls with the web's roots; plain HTTP only to a loopback
//! registry. A `401` is answered once: `Basic` with the credentials given, or `Bearer` through
//! the token service the challenge names.

use std::sync::Mutex;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;

use crate::api::client::Reply;
use crate::api::outbound::Outbound;
use crate::plugin::Digest;

/// The largest manifest, tag list or token answer read.
const DOCUMENT_LIMIT: usize = 4 << 20;
const TIMEOUT: Duration = Duration::from_secs(60);
/// The most redirects followed for one blob.
const MAX_REDIRECTS: usize = 5;

/// Who the client says it is (its `Debug` shows no password).
#[derive(Clone, Default)]
pub enum Credentials {
    /// Nobody.
    #[default]
    Anonymous,
    /// A user and password (or token as password).
    Basic {
        /// User name.
        username: String,
        /// Password.
        password: String,
    },
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Anonymous => f.write_str("Anonymous"),
            Self::Basic { username, .. } => write!(f, "Basic({username}, ***)"),
        }
    }
}

/// A client of the registry at `host[:port]`.
pub struct Client {
    base: String,
    credentials: Credentials,
    http: Outbound,
    authorization: Mutex<Option<String>>,
}

impl Client {
    /// A client of `registry` (`host` or `host:port`): HTTPS, or plain HTTP when the host is a
    /// loopback address (`127.0.0.1`, `localhost`, `[::1]`).
    pub fn new(registry: &str, credentials: Credentials) -> Self {
        let scheme = if loopback(registry) { "http" } else { "https" };
        Self {
            base: format!("{scheme}://{registry}"),
            credentials,
            http: Outbound::default(),
            authorization: Mutex::new(None),
        }
    }

    /// `https://host` (or `http://` for loopback).
    pub fn base(&self) -> &str {
        &self.base
    }

    async fn once(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &Bytes,
        limit: usize,
        authorization: Option<&str>,
    ) -> Result<Reply, String> {
        let mut all = headers.to_vec();
        if let Some(authorization) = authorization {
            all.push(("authorization", authorization));
        }
        self.http
            .exchange(method, url, &all, body.clone(), limit, TIMEOUT)
            .await
    }

    /// One request to `path` (under the base), a challenge answered once.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
        limit: usize,
    ) -> Result<Reply, String> {
        // An absolute URL is one the registry gave (an upload's location): followed under the
        // same rule as a redirect, and credentials go only to the registry's own origin.
        let url = match path.strip_prefix('/') {
            Some(_) => format!("{}{path}", self.base),
            None => self.followable(path)?,
        };
        let own = self.own(&url);
        let body = Bytes::from(body);
        let current = if own { self.current() } else { None };
        let answer = self
            .once(method, &url, headers, &body, limit, current.as_deref())
            .await?;
        if answer.status != 401 || !own {
            return Ok(answer);
        }
        let header = self.answer_challenge(&answer).await?;
        if current.as_deref() == Some(header.as_str()) {
            return Err(format!("{} refused the credentials", self.base));
        }
        *self.authorization.lock().unwrap_or_else(|e| e.into_inner()) = Some(header.clone());
        self.once(method, &url, headers, &body, limit, Some(&header))
            .await
    }

    fn current(&self) -> Option<String> {
        self.authorization
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn basic(&self) -> Option<String> {
        match &self.credentials {
            Credentials::Anonymous => None,
            Credentials::Basic { username, password } => Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
            )),
        }
    }

    async fn answer_challenge(&self, answer: &Reply) -> Result<String, String> {
        let challenge = answer.header("www-authenticate").unwrap_or_default();
        let (scheme, params) = challenge.split_once(' ').unwrap_or((challenge, ""));
        match (scheme.to_ascii_lowercase().as_str(), self.basic()) {
            ("basic", Some(basic)) => Ok(basic),
            ("bearer", basic) => {
                let params = challenge_params(params);
                let get = |key: &str| {
                    params
                        .iter()
                        .find(|(k, _)| k == key)
                        .map(|(_, v)| v.as_str())
                };
                let realm = get("realm").ok_or("a Bearer challenge without a realm")?;
                // The token service gets the credentials: never over plain HTTP elsewhere.
                let mut url = self.followable(realm)?;
                for (i, key) in ["service", "scope"].iter().enumerate() {
                    if let Some(value) = get(key) {
                        let sep = if i == 0 && !url.contains('?') {
                            '?'
                        } else {
                            '&'
                        };
                        url.push_str(&format!("{sep}{key}={value}"));
                    }
                }
                let token = self
                    .once(
                        "GET",
                        &url,
                        &[],
                        &Bytes::new(),
                        DOCUMENT_LIMIT,
                        basic.as_deref(),
                    )
                    .await?;
                if token.status != 200 {
                    return Err(format!(
                        "the token service {realm} answered {}",
                        token.status
                    ));
                }
                #[derive(serde::Deserialize)]
                struct Token {
                    token: Option<String>,
                    access_token: Option<String>,
                }
                let token: Token = serde_json::from_slice(&token.body)
                    .map_err(|e| format!("the token service {realm} sent no token: {e}"))?;
                let token = token
                    .token
                    .or(token.access_token)
                    .ok_or("the token service sent no token")?;
                Ok(format!("Bearer {token}"))
            }
            _ => Err(format!(
                "{} asks for credentials: set SLUICE_REGISTRY_USERNAME and SLUICE_REGISTRY_PASSWORD",
                self.base
            )),
        }
    }

    /// A `GET` of a manifest (of media type `accept`), at most `DOCUMENT_LIMIT` bytes.
    async fn document(&self, path: &str, accept: &str) -> Result<Reply, String> {
        self.call(
            "GET",
            path,
            &[("accept", accept)],
            Vec::new(),
            DOCUMENT_LIMIT,
        )
        .await
    }

    /// The digest of the manifest `tag` names in `repository`.
    pub async fn resolve(
        &self,
        repository: &str,
        tag: &str,
        accept: &str,
    ) -> Result<Digest, String> {
        let path = format!("/v2/{repository}/manifests/{tag}");
        let answer = self.document(&path, accept).await?;
        match answer.status {
            200 => Ok(Digest::of(&answer.body)),
            404 => Err(format!(
                "{}/{repository}:{tag} is not in the registry",
                self.base
            )),
            status => Err(format!("GET {}{path} answered {status}", self.base)),
        }
    }

    /// The manifest `digest`, verified against it.
    pub async fn manifest(
        &self,
        repository: &str,
        digest: &Digest,
        accept: &str,
    ) -> Result<Vec<u8>, String> {
        let path = format!("/v2/{repository}/manifests/{digest}");
        let answer = self.document(&path, accept).await?;
        verified(answer, &path, digest)
    }

    /// The blob `digest` (at most `limit` bytes), verified against it.
    pub async fn blob(
        &self,
        repository: &str,
        digest: &Digest,
        limit: usize,
    ) -> Result<Vec<u8>, String> {
        let path = format!("/v2/{repository}/blobs/{digest}");
        let mut answer = self.call("GET", &path, &[], Vec::new(), limit).await?;
        // Registries serve blobs from elsewhere (a CDN, object storage) by redirect; the
        // credentials go only to the registry itself, and never over plain HTTP elsewhere.
        for _ in 0..MAX_REDIRECTS {
            if !matches!(answer.status, 301 | 302 | 303 | 307 | 308) {
                break;
            }
            let location = answer.header("location").ok_or_else(|| {
                format!("GET {path} answered {} without a location", answer.status)
            })?;
            let url = self.followable(location)?;
            let authorization = if self.own(&url) { self.current() } else { None };
            answer = self
                .once(
                    "GET",
                    &url,
                    &[],
                    &Bytes::new(),
                    limit,
                    authorization.as_deref(),
                )
                .await?;
        }
        verified(answer, &path, digest)
    }

    /// Whether `url` is on the registry's own origin (the one its credentials are for).
    fn own(&self, url: &str) -> bool {
        url.starts_with(&format!("{}/", self.base))
    }

    /// Where this registry may send the client (a redirect, an upload's location, a token
    /// service): its own paths, any HTTPS URL, plain HTTP only to loopback.
    fn followable(&self, location: &str) -> Result<String, String> {
        if location.starts_with('/') {
            return Ok(format!("{}{location}", self.base));
        }
        if location.starts_with("https://") {
            return Ok(location.to_owned());
        }
        match location.strip_prefix("http://") {
            Some(rest) if loopback(rest.split('/').next().unwrap_or_default()) => {
                Ok(location.to_owned())
            }
            _ => Err(format!(
                "{} sent the client to `{location}`: only HTTPS (or loopback) is followed",
                self.base
            )),
        }
    }

    /// Uploads `bytes` as a blob (one POST, one PUT), unless the registry has it.
    pub async fn push_blob(&self, repository: &str, bytes: &[u8]) -> Result<Digest, String> {
        let digest = Digest::of(bytes);
        let head = self
            .call(
                "HEAD",
                &format!("/v2/{repository}/blobs/{digest}"),
                &[],
                Vec::new(),
                0,
            )
            .await?;
        if head.status == 200 {
            return Ok(digest);
        }
        let started = self
            .call(
                "POST",
                &format!("/v2/{repository}/blobs/uploads/"),
                &[],
                Vec::new(),
                DOCUMENT_LIMIT,
            )
            .await?;
        let location = match (started.status, started.header("location")) {
            (202, Some(location)) => location.to_owned(),
            (status, _) => {
                return Err(format!(
                    "starting an upload to {repository} answered {status}"
                ));
            }
        };
        let sep = if location.contains('?') { '&' } else { '?' };
        let put = format!("{location}{sep}digest={digest}");
        let headers = [("content-type", "application/octet-stream")];
        let done = self
            .call("PUT", &put, &headers, bytes.to_vec(), DOCUMENT_LIMIT)
            .await?;
        match done.status {
            201 => Ok(digest),
            status => Err(format!(
                "uploading {digest} to {repository} answered {status}: {}",
                String::from_utf8_lossy(&done.body)
            )),
        }
    }

    /// Puts `manifest` (of `media_type`) under `tag`; returns its digest.
    pub async fn push_manifest(
        &self,
        repository: &str,
        tag: &str,
        manifest: &[u8],
        media_type: &str,
    ) -> Result<Digest, String> {
        let path = format!("/v2/{repository}/manifests/{tag}");
        let answer = self
            .call(
                "PUT",
                &path,
                &[("content-type", media_type)],
                manifest.to_vec(),
                DOCUMENT_LIMIT,
            )
            .await?;
        match answer.status {
            201 => Ok(Digest::of(manifest)),
            status => Err(format!(
                "PUT {}{path} answered {status}: {}",
                self.base,
                String::from_utf8_lossy(&answer.body)
            )),
        }
    }
}

fn verified(answer: Reply, path: &str, digest: &Digest) -> Result<Vec<u8>, String> {
    match answer.status {
        200 => {}
        404 => return Err(format!("{path} is not in the registry")),
        status => return Err(format!("GET {path} answered {status}")),
    }
    let got = Digest::of(&answer.body);
    if got != *digest {
        return Err(format!("{path} does not match its digest: got {got}"));
    }
    Ok(answer.body)
}

/// Whether `authority` (`host` or `host:port`) is a loopback address.
fn loopback(authority: &str) -> bool {
    let host = match authority.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => authority,
    };
    // An address, not a name that starts like one (`127.0.0.1.evil.example`).
    matches!(host, "localhost" | "[::1]")
        || host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// `key="value", key2=value2` as pairs.
fn challenge_params(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = text.trim();
    while let Some((key, after)) = rest.split_once('=') {
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let (value, next) = match after.strip_prefix('"') {
            Some(quoted) => quoted.split_once('"').unwrap_or((quoted, "")),
            None => after.split_once(',').unwrap_or((after, "")),
        };
        out.push((key, value.to_owned()));
        rest = next.trim_start_matches(',').trim();
    }
    out
}

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
