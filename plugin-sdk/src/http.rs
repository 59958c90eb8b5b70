//! A small blocking HTTP client over `wasi:http`, which Rust's std does not offer.
//!
//! Requests go through the host, which lets them out only to the hosts the pipeline grants
//! (`hosts = [...]` on the task); any other host is refused with [`HttpError::Denied`].
//!
//! ```no_run
//! use std::time::Duration;
//! use sluice_plugin_sdk::http::Request;
//!
//! let response = Request::new("POST", "http://127.0.0.1:8080/deployments")
//!     .header("content-type", "application/json")
//!     .body(r#"{"release": "web-7"}"#)
//!     .timeout(Duration::from_secs(10))
//!     .send(1 << 20)?;
//! assert_eq!(response.status, 201);
//! # Ok::<(), sluice_plugin_sdk::http::HttpError>(())
//! ```

use std::fmt;
use std::io::Write;
use std::time::{Duration, Instant};

use wasip2::http::outgoing_handler;
use wasip2::http::types::{
    ErrorCode, Fields, Method, OutgoingBody, OutgoingRequest, RequestOptions, Scheme,
};
use wasip2::io::streams::StreamError;

mod url;

pub use url::{Url, join};

/// The response to a request: status code, headers and body (read up to the limit given).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The HTTP status code.
    pub status: u16,
    /// The response headers.
    pub headers: Headers,
    /// The body.
    pub body: Vec<u8>,
}

/// A response's status and headers, its body having been written elsewhere
/// ([`Request::send_into`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// The HTTP status code.
    pub status: u16,
    /// The response headers.
    pub headers: Headers,
    /// Bytes of body written.
    pub body_bytes: u64,
}

/// Response headers, in the order the server sent them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(Vec<(String, String)>);

impl Headers {
    /// The first value of header `name` (compared case-insensitively).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every header, name and value.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }
}

/// Why a request got no response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    /// The request cannot be sent as written (a bad URL, method or header).
    Invalid(String),
    /// The host refused the request: the URL's host is not granted to the plugin.
    Denied,
    /// Connecting failed, the connection broke or timed out: worth trying again.
    Connection(String),
    /// The response body is larger than the limit.
    TooLarge {
        /// The limit, in bytes.
        limit: u64,
    },
    /// Writing the body where it was to go failed.
    Sink(String),
    /// Anything else that went wrong.
    Other(String),
}

impl HttpError {
    /// True for failures a retry may cure: the connection, not the request.
    pub fn is_transient(&self) -> bool {
        matches!(self, HttpError::Connection(_))
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::Invalid(why) | HttpError::Connection(why) | HttpError::Other(why) => {
                f.write_str(why)
            }
            HttpError::Denied => f.write_str(
                "the host refused the request: this host is not granted to the task \
                 (add it to the task's `hosts`)",
            ),
            HttpError::TooLarge { limit } => write!(f, "the response is larger than {limit} bytes"),
            HttpError::Sink(why) => write!(f, "writing the response body failed: {why}"),
        }
    }
}

impl std::error::Error for HttpError {}

/// Bytes of body [`get`] keeps.
pub const DEFAULT_BODY_LIMIT: usize = 1 << 20;

/// How many redirects a request follows at most, when told to follow them.
pub const MAX_REDIRECTS: u8 = 10;

/// An HTTP request, built up and then sent with [`Request::send`] or [`Request::send_into`].
#[derive(Debug, Clone)]
pub struct Request {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    timeout: Option<Duration>,
    redirects: u8,
}

impl Request {
    /// A request with `method` (`GET`, `POST`, ...) to the absolute `url`, with no headers,
    /// an empty body, the host's timeouts, and redirects returned as they are.
    pub fn new(method: &str, url: &str) -> Self {
        Self {
            method: method.to_owned(),
            url: url.to_owned(),
            headers: Vec::new(),
            body: Vec::new(),
            timeout: None,
            redirects: 0,
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// Bounds connecting, the wait for the response, each gap in the body, and the whole
    /// exchange, each by `timeout`.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Follows up to `max` redirects (301, 302, 303, 307, 308; at most [`MAX_REDIRECTS`]).
    /// A redirect to another host or port drops the `authorization` header.
    pub fn follow_redirects(mut self, max: u8) -> Self {
        self.redirects = max.min(MAX_REDIRECTS);
        self
    }

    /// Sends the request and reads the response, body included, failing with
    /// [`HttpError::TooLarge`] past `body_limit` bytes.
    pub fn send(&self, body_limit: usize) -> Result<Response, HttpError> {
        let mut body = Vec::new();
        let head = self.send_into(&mut body, body_limit as u64)?;
        Ok(Response {
            status: head.status,
            headers: head.headers,
            body,
        })
    }

    /// Sends the request and writes the response body into `sink` as it arrives, failing with
    /// [`HttpError::TooLarge`] past `max_bytes` (what was written by then stays written).
    pub fn send_into(&self, sink: &mut dyn Write, max_bytes: u64) -> Result<Head, HttpError> {
        let started = Instant::now();
        let mut request = self.clone();
        loop {
            let url = Url::parse(&request.url).map_err(HttpError::Invalid)?;
            let (status, headers, incoming) = request.exchange(&url)?;
            let location = headers.get("location").map(str::to_owned);
            if request.redirects > 0
                && matches!(status, 301 | 302 | 303 | 307 | 308)
                && let Some(location) = location
            {
                let next = join(&request.url, &location).map_err(HttpError::Invalid)?;
                let next_url = Url::parse(&next).map_err(HttpError::Invalid)?;
                if next_url.authority() != url.authority() || next_url.scheme != url.scheme {
                    request
                        .headers
                        .retain(|(n, _)| !n.eq_ignore_ascii_case("authorization"));
                }
                if status == 303 {
                    request.method = "GET".to_owned();
                    request.body.clear();
                }
                request.url = next;
                request.redirects -= 1;
                continue;
            }
            let deadline = request.timeout.map(|t| started + t);
            let body_bytes = read_body(incoming, sink, max_bytes, deadline)?;
            return Ok(Head {
                status,
                headers,
                body_bytes,
            });
        }
    }

    /// One request and its response's head; the body is left to read.
    fn exchange(
        &self,
        url: &Url,
    ) -> Result<(u16, Headers, wasip2::http::types::IncomingBody), HttpError> {
        let fields = Fields::new();
        for (name, value) in &self.headers {
            fields
                .append(name, value.as_bytes())
                .map_err(|e| HttpError::Invalid(format!("header `{name}`: {e:?}")))?;
        }
        // A length, not chunks: many APIs refuse a chunked body (411 Length Required).
        let has_length = self
            .headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("content-length"));
        let bodiless = matches!(self.method.to_ascii_uppercase().as_str(), "GET" | "HEAD");
        let needs_length = !has_length && (!bodiless || !self.body.is_empty());
        if needs_length {
            fields
                .append("content-length", self.body.len().to_string().as_bytes())
                .map_err(|e| HttpError::Invalid(format!("header `content-length`: {e:?}")))?;
        }
        let request = OutgoingRequest::new(fields);
        let invalid = |what: &str| HttpError::Invalid(format!("invalid {what} in `{}`", self.url));
        request
            .set_method(&method(&self.method))
            .map_err(|()| invalid("method"))?;
        let scheme = if url.scheme == "https" {
            Scheme::Https
        } else {
            Scheme::Http
        };
        request
            .set_scheme(Some(&scheme))
            .map_err(|()| invalid("scheme"))?;
        request
            .set_authority(Some(&url.authority()))
            .map_err(|()| invalid("host"))?;
        request
            .set_path_with_query(Some(&url.path))
            .map_err(|()| invalid("path"))?;
        let body = request
            .body()
            .map_err(|()| HttpError::Other("request body already taken".to_owned()))?;
        let options = self.timeout.map(|t| {
            let options = RequestOptions::new();
            let ns = u64::try_from(t.as_nanos()).unwrap_or(u64::MAX);
            // Each setter fails only if the host does not support that timeout.
            let _ = options.set_connect_timeout(Some(ns));
            let _ = options.set_first_byte_timeout(Some(ns));
            let _ = options.set_between_bytes_timeout(Some(ns));
            options
        });
        let pending = outgoing_handler::handle(request, options).map_err(describe)?;
        write_body(&body, &self.body)?;
        OutgoingBody::finish(body, None).map_err(describe)?;
        pending.subscribe().block();
        let response = match pending.get() {
            Some(Ok(Ok(response))) => response,
            Some(Ok(Err(code))) => return Err(describe(code)),
            Some(Err(())) | None => {
                return Err(HttpError::Other(
                    "the response was already taken".to_owned(),
                ));
            }
        };
        let headers = Headers(
            response
                .headers()
                .entries()
                .into_iter()
                .map(|(n, v)| (n, String::from_utf8_lossy(&v).into_owned()))
                .collect(),
        );
        let incoming = response
            .consume()
            .map_err(|()| HttpError::Other("response body already taken".to_owned()))?;
        Ok((response.status(), headers, incoming))
    }
}

fn method(name: &str) -> Method {
    match name.to_ascii_uppercase().as_str() {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "DELETE" => Method::Delete,
        "PATCH" => Method::Patch,
        "OPTIONS" => Method::Options,
        _ => Method::Other(name.to_owned()),
    }
}

fn write_body(body: &OutgoingBody, bytes: &[u8]) -> Result<(), HttpError> {
    if bytes.is_empty() {
        return Ok(());
    }
    let stream = body
        .write()
        .map_err(|()| HttpError::Other("request body already taken".to_owned()))?;
    // `blocking-write-and-flush` takes at most 4096 bytes per call.
    for chunk in bytes.chunks(4096) {
        stream
            .blocking_write_and_flush(chunk)
            .map_err(|e| match e {
                StreamError::Closed => HttpError::Connection("the connection closed".to_owned()),
                StreamError::LastOperationFailed(e) => HttpError::Connection(format!(
                    "sending the body failed: {}",
                    e.to_debug_string()
                )),
            })?;
    }
    Ok(())
}

fn read_body(
    incoming: wasip2::http::types::IncomingBody,
    sink: &mut dyn Write,
    max_bytes: u64,
    deadline: Option<Instant>,
) -> Result<u64, HttpError> {
    let stream = incoming
        .stream()
        .map_err(|()| HttpError::Other("response body already taken".to_owned()))?;
    let mut read = 0u64;
    loop {
        if deadline.is_some_and(|d| Instant::now() > d) {
            return Err(HttpError::Connection(
                "the response took longer than the timeout".to_owned(),
            ));
        }
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => {
                read += chunk.len() as u64;
                if read > max_bytes {
                    return Err(HttpError::TooLarge { limit: max_bytes });
                }
                sink.write_all(&chunk)
                    .map_err(|e| HttpError::Sink(e.to_string()))?;
            }
            Err(StreamError::Closed) => break,
            Err(StreamError::LastOperationFailed(e)) => {
                return Err(HttpError::Connection(format!(
                    "reading the body failed: {}",
                    e.to_debug_string()
                )));
            }
        }
    }
    drop(stream);
    Ok(read)
}

/// Sends `GET url` and returns the response, keeping at most [`DEFAULT_BODY_LIMIT`] bytes of body.
///
/// ```no_run
/// let response = sluice_plugin_sdk::http::get("http://127.0.0.1:8080/health")?;
/// assert_eq!(response.status, 200);
/// # Ok::<(), String>(())
/// ```
pub fn get(url: &str) -> Result<Response, String> {
    request("GET", url, DEFAULT_BODY_LIMIT)
}

/// Sends a request with an empty body and returns the response, keeping at most `body_limit`
/// bytes of body (the rest is not read). `method` is an HTTP method such as `GET` or `HEAD`.
pub fn request(method: &str, url: &str, body_limit: usize) -> Result<Response, String> {
    let mut body = Vec::new();
    let head = Request::new(method, url)
        .send_into(&mut Truncate(&mut body, body_limit), u64::MAX)
        .map_err(|e| e.to_string())?;
    Ok(Response {
        status: head.status,
        headers: head.headers,
        body,
    })
}

/// Keeps the first `.1` bytes written, ignoring the rest.
struct Truncate<'a>(&'a mut Vec<u8>, usize);

impl Write for Truncate<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let room = self.1.saturating_sub(self.0.len());
        self.0.extend_from_slice(&buf[..buf.len().min(room)]);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn describe(code: ErrorCode) -> HttpError {
    match code {
        ErrorCode::HttpRequestDenied => HttpError::Denied,
        ErrorCode::ConnectionRefused => HttpError::Connection("connection refused".to_owned()),
        ErrorCode::DnsError(_) => {
            HttpError::Connection("the host name could not be resolved".to_owned())
        }
        ErrorCode::ConnectionTimeout => HttpError::Connection("connection timed out".to_owned()),
        ErrorCode::ConnectionReadTimeout | ErrorCode::HttpResponseTimeout => {
            HttpError::Connection("the server did not answer within the timeout".to_owned())
        }
        ErrorCode::ConnectionTerminated | ErrorCode::ConnectionLimitReached => {
            HttpError::Connection("the connection was closed".to_owned())
        }
        ErrorCode::HttpResponseIncomplete => {
            HttpError::Connection("the response was cut off".to_owned())
        }
        other => HttpError::Other(format!("{other:?}")),
    }
}
