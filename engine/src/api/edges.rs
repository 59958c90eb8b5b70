//! The edges of a request and of an error answer, for `guard`: a request whose URI, headers,
//! body encoding or percent-encoding the API does not take is refused before it is routed or
//! its body read (414, 431, 415, 400); and every error answer leaves as the one JSON error
//! body, logged with its request id (an answer axum or a handler made without one, such as a
//! 405, gets one; its headers are kept, and axum adds a 405's `Allow` after).

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

use super::error::ApiError;

/// The longest request URI (path and query), in bytes.
pub(super) const MAX_URI: usize = 8 * 1024;
/// The most header fields a request may carry.
pub(super) const MAX_HEADERS: usize = 100;
/// The largest header section, in bytes (`name: value\r\n` each).
pub(super) const MAX_HEADER_BYTES: usize = 32 * 1024;
/// The most of an error body read to log and check it; every `ApiError` is far smaller.
const ERROR_BODY: usize = 64 * 1024;

/// Why a request is refused before it is routed, if it is.
pub(super) fn refusal(request: &Request<Body>) -> Option<ApiError> {
    let uri = request.uri();
    let uri_len = uri.path_and_query().map_or(0, |p| p.as_str().len())
        + uri.authority().map_or(0, |a| a.as_str().len());
    if uri_len > MAX_URI {
        return Some(ApiError::new(
            StatusCode::URI_TOO_LONG,
            format!("the request URI is {uri_len} bytes; the limit is {MAX_URI}"),
        ));
    }
    if let Some(refused) = headers(request.headers()) {
        return Some(refused);
    }
    if let Some(refused) = encoding(request.headers()) {
        return Some(refused);
    }
    percent_encoding(uri)
}

fn headers(headers: &HeaderMap) -> Option<ApiError> {
    let count = headers.len();
    if count > MAX_HEADERS {
        return Some(ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!("the request has {count} header fields; the limit is {MAX_HEADERS}"),
        ));
    }
    let bytes: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    (bytes > MAX_HEADER_BYTES).then(|| {
        ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!("the request's headers are {bytes} bytes; the limit is {MAX_HEADER_BYTES}"),
        )
    })
}

/// A body is read as sent: any `Content-Encoding` but `identity` is a 415.
fn encoding(headers: &HeaderMap) -> Option<ApiError> {
    let refused = headers.get_all(header::CONTENT_ENCODING).iter().find(|v| {
        v.to_str().map_or(true, |v| {
            v.split(',')
                .any(|coding| !coding.trim().eq_ignore_ascii_case("identity"))
        })
    })?;
    let shown = String::from_utf8_lossy(refused.as_bytes())
        .chars()
        .take(40)
        .collect::<String>();
    Some(ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        format!(
            "Content-Encoding `{}` is not accepted: send the JSON body as is (identity)",
            crate::types::text::escape(&shown)
        ),
    ))
}

/// A path or query whose percent-decoding is not UTF-8, or with a `%` not followed by two hex
/// digits, is a 400 on every route: nothing is decoded to U+FFFD and matched.
fn percent_encoding(uri: &Uri) -> Option<ApiError> {
    let parts = [("path", Some(uri.path())), ("query string", uri.query())];
    parts.into_iter().find_map(|(part, text)| {
        let why = decoded(text?).err()?;
        Some(ApiError::bad_request(format!(
            "the request's {part} is not valid percent-encoded UTF-8: {why}; encode each byte \
             of the UTF-8 text as %XX"
        )))
    })
}

/// The bytes `text` percent-decodes to, if every escape is whole and they are UTF-8.
fn decoded(text: &str) -> Result<(), String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| {
                    u8::from_str_radix(h, 16)
                        .ok()
                        .filter(|_| !h.starts_with('+'))
                });
            let Some(byte) = hex else {
                return Err(format!("`%` at byte {i} is not followed by two hex digits"));
            };
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    std::str::from_utf8(&out)
        .map(|_| ())
        .map_err(|e| format!("the decoded bytes are not UTF-8 ({e})"))
}

/// An error answer as it leaves: the JSON error body (one made from the status and any short
/// text the answer had, when it had no JSON error), logged with the request id — info for a
/// 4xx, error for a 5xx. Other answers pass untouched.
pub(super) async fn json_error(
    response: Response,
    id: &str,
    method: &Method,
    path: &str,
) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, ERROR_BODY)
        .await
        .unwrap_or_default();
    let json = parts
        .headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|t| t == "application/json");
    let message = json
        .then(|| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
        .flatten()
        .and_then(|v| v["error"].as_str().map(str::to_owned));
    let code = status.as_u16();
    match message {
        Some(message) => {
            log(code, id, method, path, &message);
            Response::from_parts(parts, Body::from(bytes))
        }
        None => {
            let message = made_message(status, &bytes, method, path);
            log(code, id, method, path, &message);
            let mut made = ApiError::new(status, message).into_response();
            parts.headers.remove(header::CONTENT_LENGTH);
            parts.headers.remove(header::CONTENT_TYPE);
            for (name, value) in &parts.headers {
                made.headers_mut().insert(name.clone(), value.clone());
            }
            made
        }
    }
}

/// The message of an error answer made without one.
fn made_message(status: StatusCode, bytes: &[u8], method: &Method, path: &str) -> String {
    // The router adds `Allow` after this layer has run.
    if status == StatusCode::METHOD_NOT_ALLOWED {
        return format!("{method} is not allowed on {path}: the Allow header lists what it takes");
    }
    match std::str::from_utf8(bytes).map(str::trim) {
        Ok(text) if !text.is_empty() && text.len() <= 500 => {
            crate::types::text::escape(text).to_string()
        }
        _ => status.canonical_reason().unwrap_or("error").to_lowercase(),
    }
}

fn log(code: u16, id: &str, method: &Method, path: &str, message: &str) {
    let message = crate::types::text::escape(message);
    if code >= 500 {
        tracing::error!(request_id = %id, status = code, "{method} {path}: {message}");
    } else {
        tracing::info!(request_id = %id, status = code, "{method} {path}: {message}");
    }
}

#[cfg(test)]
mod tests {
    use super::decoded;

    #[test]
    fn percent_decoding_is_whole_escapes_of_utf_8() {
        for ok in [
            "",
            "a=b&c=d",
            "pipeline=shop%2D1",
            "x=%C3%A9",
            "%e2%82%ac",
            "a+b",
        ] {
            assert_eq!(decoded(ok), Ok(()), "{ok}");
        }
        for bad in [
            "pipeline=%FF",
            "%",
            "%4",
            "a=%zz",
            "%+1",
            "x=%C3",
            "%C3%28",
            "%ED%A0%80",
        ] {
            assert!(decoded(bad).is_err(), "{bad}");
        }
    }
}
