//! A client of one repository on an OCI registry (the Distribution API) over the SDK's HTTP:
//! the tags, a manifest, a blob streamed into a writer. Credentials answer the registry's
//! challenge: `Basic` with `username`/`password`, or `Bearer` through the token service the
//! challenge names (given the same credentials, or anonymous); a `token` is sent as it is.

use std::cell::RefCell;
use std::io::Write;

use base64::Engine as _;
use sluice_plugin_sdk::Error;
use sluice_plugin_sdk::http::{self, Head, HttpError, Request, Response};

/// The largest manifest or tag page read.
const DOCUMENT_LIMIT: usize = 4 << 20;

/// What a manifest request accepts: OCI first, then Docker's schema 2.
pub(crate) const MANIFEST_TYPES: &str = "application/vnd.oci.image.manifest.v1+json, \
     application/vnd.docker.distribution.manifest.v2+json";

/// How to prove who we are.
#[derive(Debug, Clone)]
pub(crate) enum Credentials {
    Anonymous,
    Basic { username: String, password: String },
    Token(String),
}

pub(crate) struct Registry {
    /// `http(s)://host[:port]`
    base: String,
    repository: String,
    credentials: Credentials,
    timeout: std::time::Duration,
    /// The `authorization` header earned from a challenge, reused for every later request.
    authorization: RefCell<Option<String>>,
}

impl Registry {
    pub(crate) fn new(
        base: String,
        repository: String,
        credentials: Credentials,
        timeout: std::time::Duration,
    ) -> Self {
        let authorization = match &credentials {
            Credentials::Token(token) => Some(format!("Bearer {token}")),
            _ => None,
        };
        Self {
            base,
            repository,
            credentials,
            timeout,
            authorization: RefCell::new(authorization),
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}/v2/{}/{path}", self.base, self.repository)
    }

    fn request(&self, method: &str, url: &str, accept: Option<&str>) -> Request {
        let mut request = Request::new(method, url).timeout(self.timeout);
        if let Some(accept) = accept {
            request = request.header("accept", accept);
        }
        if let Some(authorization) = self.authorization.borrow().as_ref() {
            request = request.header("authorization", authorization);
        }
        request
    }

    /// `method url`, its body read (up to the document limit); one challenge answered.
    pub(crate) fn document(
        &self,
        method: &str,
        url: &str,
        accept: Option<&str>,
    ) -> Result<Response, Error> {
        let send = || {
            self.request(method, url, accept)
                .follow_redirects(http::MAX_REDIRECTS)
                .send(DOCUMENT_LIMIT)
                .map_err(|e| request_error(method, url, &e))
        };
        let response = send()?;
        if response.status == 401 && self.answer(&response)? {
            return send();
        }
        Ok(response)
    }

    /// `GET url` with the body written into `sink`, at most `max` bytes. Called after the
    /// manifest, whose request answered any challenge; a status but 200 is the caller's to
    /// refuse (what `sink` got is then not the blob).
    pub(crate) fn download(
        &self,
        url: &str,
        sink: &mut dyn Write,
        max: u64,
    ) -> Result<Head, Error> {
        self.request("GET", url, None)
            .follow_redirects(http::MAX_REDIRECTS)
            .send_into(sink, max)
            .map_err(|e| match e {
                HttpError::TooLarge { limit } => Error::failed(format!(
                    "{url} is larger than the {limit} bytes its manifest declares"
                )),
                other => request_error("GET", url, &other),
            })
    }

    /// Answers a 401's challenge; false when there is nothing more to try.
    fn answer(&self, response: &Response) -> Result<bool, Error> {
        let challenge = response.headers.get("www-authenticate").unwrap_or_default();
        let (scheme, params) = challenge.split_once(' ').unwrap_or((challenge, ""));
        let basic = match &self.credentials {
            Credentials::Basic { username, password } => Some(
                base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}")),
            ),
            _ => None,
        };
        let header = match (scheme.to_ascii_lowercase().as_str(), &basic) {
            ("basic", Some(basic)) => format!("Basic {basic}"),
            ("bearer", _) if !matches!(self.credentials, Credentials::Token(_)) => {
                format!("Bearer {}", self.token(params, basic.as_deref())?)
            }
            _ => {
                return Err(Error::failed(format!(
                    "{} asks for credentials ({}): set `username` and `password` (or `token`) \
                     from secret variables",
                    self.base,
                    if scheme.is_empty() { "401" } else { scheme }
                )));
            }
        };
        let mut authorization = self.authorization.borrow_mut();
        if authorization.as_deref() == Some(header.as_str()) {
            return Err(Error::failed(format!(
                "{} refused the credentials",
                self.base
            )));
        }
        *authorization = Some(header);
        Ok(true)
    }

    /// A token from the service a `Bearer realm=...,service=...,scope=...` challenge names.
    fn token(&self, params: &str, basic: Option<&str>) -> Result<String, Error> {
        let params = challenge_params(params);
        let get = |key: &str| {
            params
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
        };
        let realm = get("realm").ok_or_else(|| {
            Error::failed(format!(
                "{} sent a Bearer challenge without a realm",
                self.base
            ))
        })?;
        let mut url = realm.to_owned();
        let mut separator = if url.contains('?') { '&' } else { '?' };
        for key in ["service", "scope"] {
            if let Some(value) = get(key) {
                url.push(separator);
                url.push_str(&format!("{key}={}", query_escape(value)));
                separator = '&';
            }
        }
        let mut request = Request::new("GET", &url).timeout(self.timeout);
        if let Some(basic) = basic {
            request = request.header("authorization", format!("Basic {basic}"));
        }
        let response = request
            .send(DOCUMENT_LIMIT)
            .map_err(|e| request_error("GET", realm, &e))?;
        if response.status != 200 {
            return Err(Error::failed(format!(
                "the token service {realm} answered {}: check `username` and `password`",
                response.status
            )));
        }
        #[derive(serde::Deserialize)]
        struct Token {
            token: Option<String>,
            access_token: Option<String>,
        }
        let token: Token = serde_json::from_slice(&response.body)
            .map_err(|e| Error::failed(format!("the token service {realm} sent no token: {e}")))?;
        token
            .token
            .or(token.access_token)
            .ok_or_else(|| Error::failed(format!("the token service {realm} sent no token")))
    }
}

fn request_error(method: &str, url: &str, e: &HttpError) -> Error {
    Error::failed(format!("{method} {url} failed: {e}"))
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
            Some(quoted) => match quoted.split_once('"') {
                Some((value, next)) => (value, next),
                None => (quoted, ""),
            },
            None => after.split_once(',').unwrap_or((after, "")),
        };
        out.push((key, value.to_owned()));
        rest = next.trim_start_matches(',').trim();
    }
    out
}

/// Percent-encodes what a query value may not hold as it is.
fn query_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b':' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
