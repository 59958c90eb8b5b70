//! Who is asking: the bearer token (stored hashed) or 401, and the role extractors
//! (`Releaser`, `Admin`) that put the role a handler needs in its signature, or answer 403.
//! The first layer (`guard`) works out the [`Caller`] once, for the rate limit and the audit
//! of refusals; `Auth` takes it from there.

use std::sync::Arc;

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

/// Who sent a request, as the first layer works it out from its `Authorization` header (and
/// leaves in the request's extensions for [`Auth`]).
#[derive(Debug, Clone)]
pub(super) enum Caller {
    /// A valid token: its user.
    User(User),
    /// No credentials.
    Anonymous,
    /// An `Authorization` header that is not `Bearer <token>`.
    Malformed,
    /// A bearer token no user has.
    InvalidToken,
}

impl Caller {
    /// Works out who sent a request; the token is hashed, never kept.
    pub(super) fn of(app: &App, headers: &axum::http::HeaderMap) -> Self {
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Self::Anonymous;
        };
        let Some(token) = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
        else {
            return Self::Malformed;
        };
        match app.service.user(&hash_token(token)) {
            Some(user) => Self::User(user),
            None => Self::InvalidToken,
        }
    }

    /// Who, as the audit trail names a refused caller: the user, `anonymous` or `invalid token`.
    pub(super) fn who(&self) -> &str {
        match self {
            Self::User(user) => &user.name,
            Self::Anonymous | Self::Malformed => "anonymous",
            Self::InvalidToken => "invalid token",
        }
    }
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
        let caller = match parts.extensions.get::<Caller>() {
            Some(caller) => caller.clone(),
            None => Caller::of(app, &parts.headers),
        };
        match caller {
            Caller::User(user) => Ok(Auth(user)),
            Caller::Anonymous => Err(unauthorized(
                "no credentials: send `Authorization: Bearer <token>`",
            )),
            Caller::Malformed => Err(unauthorized(
                "the Authorization header must be `Bearer <token>`",
            )),
            Caller::InvalidToken => Err(unauthorized("the token is not valid")),
        }
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
