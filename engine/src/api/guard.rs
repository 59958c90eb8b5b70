//! The first layer every request meets: a request id on every response, 503 while the server
//! shuts down, a URI, headers, body encoding or percent-encoding it does not take (414, 431,
//! 415, 400: see `edges`), 413 for a declared body over the limit (and a JSON 413 for one
//! found over it while read), the rate limit of every route (429, see `limit`), refusals
//! (401, 403, and the 400/429 of a failed or throttled authentication, see `auth`) recorded in
//! the audit trail with a bound, internal errors logged with the id
//! (the body carries only the id), and every error answer JSON and logged with the id
//! (`edges::json_error`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::App;
use super::auth::Caller;
use super::edges;
use super::error::{ApiError, InternalDetail};
use super::limit::ClientKey;

/// The longest path an audit entry quotes, in characters.
const SHOWN_PATH: usize = 200;

/// The middleware itself (`middleware::from_fn_with_state`).
pub(super) async fn guard(
    State(app): State<Arc<App>>,
    mut request: Request,
    next: Next,
) -> Response {
    static NEXT_ID: AtomicU64 = AtomicU64::new(1);
    let id = format!(
        "{:x}-{}",
        crate::store::now_ms(),
        NEXT_ID.fetch_add(1, Ordering::Relaxed)
    );
    let limits = &app.service.config().limits;
    let limit = limits.body_bytes;
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or_else(|| "unknown address".to_owned(), |c| c.0.ip().to_string());
    let caller = Caller::checked(&app, request.headers(), &peer);
    let key = match &caller {
        Caller::User(user) => ClientKey::User(user.name.clone()),
        Caller::Agent(token) => ClientKey::User(format!("agent-token:{}", &token.hash[..16])),
        _ => ClientKey::Peer(peer.clone()),
    };
    let (method, path) = (request.method().clone(), shown_path(request.uri().path()));
    request.extensions_mut().insert(caller.clone());
    // The URI, the headers, the body's encoding, the percent-encoding (`edges`).
    let refused = edges::refusal(&request);
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    // Every request counts against its client's rate, refused at the edges or not.
    let admitted = app
        .limiter
        .admit(&key, limits.requests_per_second, limits.burst);
    let mut response = match (admitted, refused, declared) {
        // Between SIGTERM and the listener closing, a request that got in is refused.
        _ if app.service.is_stopping() => {
            let mut refused = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the server is shutting down: retry once it (or its replacement) is back",
            )
            .into_response();
            refused.headers_mut().insert(
                header::CONNECTION,
                header::HeaderValue::from_static("close"),
            );
            refused
        }
        (Err(wait), _, _) => too_many(limits.requests_per_second, wait),
        (Ok(()), Some(refused), _) => refused.into_response(),
        (Ok(()), None, Some(n)) if n > limit => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the request body is {n} bytes; the limit is {limit} (limits.body in sluice.toml)"
            ),
        )
        .into_response(),
        (Ok(()), None, _) => next.run(request).await,
    };
    // Failed and throttled authentications (400, 401, 429 from `auth`) are refusals too.
    let failed_auth = caller.settle(&app, &response, &peer);
    if failed_auth
        || matches!(
            response.status(),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
        )
    {
        response = audited(&app, response, &key, &caller, (&method, &path, &peer)).await;
    }
    if let Some(InternalDetail(detail)) = response.extensions_mut().remove::<InternalDetail>() {
        tracing::error!(request_id = %id, "internal error: {detail}");
        let mut error = ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error");
        error.body.request_id = Some(id.clone());
        response = error.into_response();
    } else if response.status() == StatusCode::PAYLOAD_TOO_LARGE
        && response
            .headers()
            .get(header::CONTENT_TYPE)
            .is_none_or(|t| t != "application/json")
    {
        response = ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the request body is over the limit of {limit} bytes (limits.body in sluice.toml)"
            ),
        )
        .into_response();
    }
    let mut response = edges::json_error(response, &id, &method, &path).await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

/// 429 with `Retry-After`.
fn too_many(rate: u32, wait: u64) -> Response {
    let mut response = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        format!(
            "rate limit: {rate} requests per second per user, or per address without a valid token (limits.requests-per-second)"
        ),
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(wait));
    response
}

/// Records a refusal in the audit trail — who, what, why, from where — unless the client's (or
/// every client's) refusal bound is spent (see `limit`); returns the response unchanged.
async fn audited(
    app: &Arc<App>,
    response: Response,
    key: &ClientKey,
    caller: &Caller,
    (method, path, peer): (&axum::http::Method, &str, &str),
) -> Response {
    let limits = &app.service.config().limits;
    let Some(unrecorded) =
        app.limiter
            .record_refusal(key, limits.requests_per_second, limits.burst)
    else {
        return response;
    };
    // The body is one small JSON error; its message is the why.
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, 64 * 1024)
        .await
        .unwrap_or_default();
    let why = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_owned))
        .unwrap_or_default();
    let mut what = format!(
        "refused {} {method} {path} from {peer}: {why}",
        parts.status.as_u16()
    );
    if unrecorded > 0 {
        what.push_str(&format!(
            " ({unrecorded} earlier refusals of this client not recorded: rate-bounded)"
        ));
    }
    let service = app.service.clone();
    let who = caller.who().to_owned();
    match tokio::task::spawn_blocking(move || service.record_refusal(&who, &what)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!("recording a refusal in the audit trail: {e}"),
        Err(e) => tracing::error!("recording a refusal in the audit trail: {e}"),
    }
    Response::from_parts(parts, axum::body::Body::from(bytes))
}

/// A request path as an audit entry quotes it: at most [`SHOWN_PATH`] characters.
fn shown_path(path: &str) -> String {
    let mut shown: String = path.chars().take(SHOWN_PATH).collect();
    if path.chars().count() > SHOWN_PATH {
        shown.push('…');
    }
    shown
}
