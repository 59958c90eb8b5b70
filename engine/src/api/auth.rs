//! Who is asking: the bearer token (stored hashed) or 401, the per-token rate limit or 429
//! with `Retry-After`, and the role extractors (`Releaser`, `Admin`) that put the role a
//! handler needs in its signature, or answer 403.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::FromRequestParts;
use axum::http::{HeaderValue, StatusCode, header, request::Parts};
use axum::response::{IntoResponse, Response};

use super::App;
use super::error::ApiError;
use crate::core::Authority;
use crate::service::{Role, User, hash_token};

/// Any authenticated user.
pub(super) struct Auth(pub(super) User);

/// A user with the releaser role.
pub(super) struct Releaser(pub(super) User);

/// A user with the admin role.
pub(super) struct Admin(pub(super) User);

/// The authority a decision is made with: an approver's own, or (asked for with `override`) an
/// admin's for every approver at once, with its `justification` (checked by the route). Who
/// may decide a given approval is the core's to say.
pub(super) fn approval_authority(
    user: &User,
    override_approvers: bool,
    justification: String,
) -> Result<Authority, ApiError> {
    let forbidden = |why: String| ApiError::new(StatusCode::FORBIDDEN, why);
    match (override_approvers, user.has(Role::Admin)) {
        (true, true) => Ok(Authority::Override { justification }),
        (true, false) => Err(forbidden(format!(
            "{} is not an admin: only admins may override approvers",
            user.name
        ))),
        (false, _) if user.has(Role::Approver) => Ok(Authority::Approver),
        (false, _) => Err(forbidden(format!(
            "{} does not have the approver role",
            user.name
        ))),
    }
}

/// A token bucket.
pub(super) struct Bucket {
    tokens: f64,
    at: Instant,
}

impl FromRequestParts<Arc<App>> for Auth {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, Response> {
        let unauthorized = |why: &str| {
            let mut response = ApiError::new(StatusCode::UNAUTHORIZED, why).into_response();
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            response
        };
        let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
            return Err(unauthorized(
                "no credentials: send `Authorization: Bearer <token>`",
            ));
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(|| unauthorized("the Authorization header must be `Bearer <token>`"))?;
        let hash = hash_token(token);
        let user = app
            .service
            .user(&hash)
            .cloned()
            .ok_or_else(|| unauthorized("the token is not valid"))?;
        app.admit(&hash).map_err(|r| *r)?;
        Ok(Auth(user))
    }
}

/// The authenticated user, if they have `role`; 403 if not.
async fn with_role(parts: &mut Parts, app: &Arc<App>, role: Role) -> Result<User, Response> {
    let Auth(user) = Auth::from_request_parts(parts, app).await?;
    if user.has(role) {
        return Ok(user);
    }
    let role = format!("{role:?}").to_lowercase();
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        format!("{} does not have the {role} role this needs", user.name),
    )
    .into_response())
}

impl FromRequestParts<Arc<App>> for Releaser {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, Response> {
        with_role(parts, app, Role::Releaser).await.map(Self)
    }
}

impl FromRequestParts<Arc<App>> for Admin {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, Response> {
        with_role(parts, app, Role::Admin).await.map(Self)
    }
}

impl App {
    /// Takes one request from the token's bucket, or answers 429.
    fn admit(&self, token: &str) -> Result<(), Box<Response>> {
        let limits = &self.service.config().limits;
        let (rate, burst) = (
            f64::from(limits.requests_per_second),
            f64::from(limits.burst),
        );
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let bucket = buckets.entry(token.to_owned()).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        bucket.tokens =
            (bucket.tokens + now.duration_since(bucket.at).as_secs_f64() * rate).min(burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        let wait = ((1.0 - bucket.tokens) / rate).ceil().max(1.0) as u64;
        let mut response = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "rate limit: {} requests per second per token (limits.requests-per-second)",
                limits.requests_per_second
            ),
        )
        .into_response();
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(wait));
        Err(Box::new(response))
    }
}
