//! A small blocking HTTP client over `wasi:http`, which Rust's std does not offer.
//!
//! Requests go through the host, which lets them out only to the hosts the pipeline grants
//! (`hosts = [...]` on the task); any other host is refused with an error naming it.

use wasip2::http::outgoing_handler;
use wasip2::http::types::{ErrorCode, Fields, Method, OutgoingBody, OutgoingRequest, Scheme};
use wasip2::io::streams::StreamError;

/// The response to a request: status code and body (read up to the limit given).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The HTTP status code.
    pub status: u16,
    /// The body, truncated to the limit the request was made with.
    pub body: Vec<u8>,
}

/// Bytes of body [`get`] keeps.
pub const DEFAULT_BODY_LIMIT: usize = 1 << 20;

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
/// bytes of body. `method` is an HTTP method such as `GET` or `HEAD`.
pub fn request(method: &str, url: &str, body_limit: usize) -> Result<Response, String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("`{url}` is not an absolute URL (http://host/path)"))?;
    let scheme = match scheme {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        other => {
            return Err(format!(
                "unsupported URL scheme `{other}` (use http or https)"
            ));
        }
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let method = match method {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "DELETE" => Method::Delete,
        other => Method::Other(other.to_owned()),
    };

    let request = OutgoingRequest::new(Fields::new());
    let invalid = |what: &str| format!("invalid {what} in `{url}`");
    request
        .set_method(&method)
        .map_err(|()| invalid("method"))?;
    request
        .set_scheme(Some(&scheme))
        .map_err(|()| invalid("scheme"))?;
    request
        .set_authority(Some(authority))
        .map_err(|()| invalid("host"))?;
    request
        .set_path_with_query(Some(path))
        .map_err(|()| invalid("path"))?;
    let body = request
        .body()
        .map_err(|()| "request body already taken".to_owned())?;
    OutgoingBody::finish(body, None).map_err(describe)?;

    let pending = outgoing_handler::handle(request, None).map_err(describe)?;
    pending.subscribe().block();
    let response = match pending.get() {
        Some(Ok(Ok(response))) => response,
        Some(Ok(Err(code))) => return Err(describe(code)),
        Some(Err(())) | None => return Err("the response was already taken".to_owned()),
    };
    let status = response.status();
    let incoming = response
        .consume()
        .map_err(|()| "response body already taken".to_owned())?;
    let stream = incoming
        .stream()
        .map_err(|()| "response body already taken".to_owned())?;
    let mut body = Vec::new();
    while body.len() < body_limit {
        match stream.blocking_read((body_limit - body.len()).min(64 * 1024) as u64) {
            Ok(chunk) => body.extend_from_slice(&chunk),
            Err(StreamError::Closed) => break,
            Err(StreamError::LastOperationFailed(e)) => {
                return Err(format!("reading the body failed: {}", e.to_debug_string()));
            }
        }
    }
    Ok(Response { status, body })
}

fn describe(code: ErrorCode) -> String {
    match code {
        ErrorCode::HttpRequestDenied => {
            "the host refused the request: this host is not granted to the task \
             (add it to the task's `hosts`)"
                .to_owned()
        }
        ErrorCode::ConnectionRefused => "connection refused".to_owned(),
        ErrorCode::DnsError(_) => "the host name could not be resolved".to_owned(),
        ErrorCode::ConnectionTimeout => "connection timed out".to_owned(),
        other => format!("{other:?}"),
    }
}
