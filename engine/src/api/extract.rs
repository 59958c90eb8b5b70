//! Request extractors that answer like every other error (JSON, 400): path parameters, query
//! strings (and the counts in them), the strict JSON body and its idempotency fingerprint, and
//! the `Idempotency-Key` header.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::error::ApiError;

/// Path parameters, with a JSON 400 when one does not parse.
pub(super) struct Path<T>(pub(super) T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| Path(value))
            .map_err(|e| ApiError::bad_request(e.body_text()))
    }
}

/// A query string, with a JSON 400 when it does not parse (an unknown parameter included).
pub(super) struct Query<T>(pub(super) T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| Query(value))
            .map_err(|e| ApiError::bad_request(e.body_text()))
    }
}

/// A count from a query, checked against the range the API documents.
pub(super) fn count(name: &str, value: i64, max: i64) -> Result<usize, ApiError> {
    if (0..=max).contains(&value) {
        Ok(value as usize)
    } else {
        Err(ApiError::bad_request(format!(
            "{name} must be between 0 and {max}: it is {value}"
        )))
    }
}

/// A JSON body parsed strictly: an unknown field is a 400 that names it; an empty body (or
/// `null`) is `{}`. Keeps the body normalised, for the idempotency fingerprint.
pub(super) struct Strict<T> {
    pub(super) value: T,
    normal: Value,
}

impl<T> Strict<T> {
    /// What an idempotent request is, the one rule of every idempotent route: the route, its
    /// path parameters and the body as parsed, normalised ([`normalise`]). Two requests with
    /// the same fingerprint are the same request.
    pub(super) fn fingerprint(&self, route: &str, params: &[&str]) -> String {
        serde_json::json!([route, params, self.normal]).to_string()
    }
}

/// A parsed body as one text per meaning: object members sorted by key and those set to
/// `null` left out (a missing optional field and a `null` one parse alike; anywhere else a
/// `null` is refused before a fingerprint matters). Whitespace and escapes are gone with the
/// parse.
fn normalise(value: Value) -> Value {
    match value {
        Value::Object(members) => {
            let mut members: Vec<(String, Value)> = members
                .into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, normalise(v)))
                .collect();
            members.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(members.into_iter().collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(normalise).collect()),
        other => other,
    }
}

impl<T, S> FromRequest<S> for Strict<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<Self, Response> {
        let raw = Bytes::from_request(request, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let body: &[u8] = if raw.iter().all(u8::is_ascii_whitespace) || raw.trim_ascii() == b"null"
        {
            b"{}"
        } else {
            &raw
        };
        let value = serde_json::from_slice(body).map_err(|e| {
            ApiError::bad_request(format!("invalid JSON body: {e}")).into_response()
        })?;
        // It parsed as `T`, so it parses as a value too (if not, the text as sent stands in).
        let normal = serde_json::from_slice(body).map_or_else(
            |_| Value::String(String::from_utf8_lossy(body).into_owned()),
            normalise,
        );
        Ok(Self { value, normal })
    }
}

/// The `Idempotency-Key` header, if sent: 1 to 200 visible characters, or a 400.
pub(super) struct Idempotency(pub(super) Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for Idempotency {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let Some(key) = parts.headers.get("idempotency-key") else {
            return Ok(Self(None));
        };
        key.to_str()
            .ok()
            .filter(|k| {
                (1..=200).contains(&k.len()) && k.bytes().all(|b| (b' '..=b'~').contains(&b))
            })
            .map(|k| Self(Some(k.to_owned())))
            .ok_or_else(|| {
                ApiError::bad_request("Idempotency-Key must be 1 to 200 visible characters")
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn normal(text: &str) -> String {
        normalise(serde_json::from_str(text).unwrap()).to_string()
    }

    #[test]
    fn a_body_normalises_to_one_text_per_meaning() {
        let one = normal(r#"{"b":{"y":1,"x":[2,1]},"a":"\u0041","c":null}"#);
        assert_eq!(one, r#"{"a":"A","b":{"x":[2,1],"y":1}}"#);
        assert_eq!(
            normal(" {\n\"a\" : \"A\", \"b\":{\"x\":[2, 1],\"y\":1}}"),
            one
        );
        // A different value, a reordered array, an empty string for a null: not the same.
        for other in [
            r#"{"a":"B","b":{"x":[2,1],"y":1}}"#,
            r#"{"a":"A","b":{"x":[1,2],"y":1}}"#,
            r#"{"a":"A","b":{"x":[2,1],"y":1},"c":""}"#,
        ] {
            assert_ne!(normal(other), one, "{other}");
        }
        // Nested nulls go too; nulls in an array are values.
        assert_eq!(
            normal(r#"{"m":{"k":null},"l":[null]}"#),
            r#"{"l":[null],"m":{}}"#
        );
    }
}
