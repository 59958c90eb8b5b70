//! Who is asking: the bearer token (stored hashed) or 401, and the role extractors
//! (`Releaser`, `Approver`, `Admin`) that put the role a handler needs in its signature, or
//! answer 403. The first layer (`guard`) works out the [`Caller`] once, for the rate limit and
//! the audit of refusals; `Auth` takes it from there.
//!
//! `Authorization` is read as RFC 9110 §11 says: the scheme `Bearer` in any case, then one or
//! more spaces, then the token (one word of visible characters). Two `Authorization` headers
//! are a 400, never "the first one wins". A presented token no user has, a malformed header and
//! a repeated one are failed authentications, limited per client address
//! (`limits.auth-failures` a minute, see `limit`): past it, credentials from that address are
//! answered 429 **before they are checked**.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header, request::Parts};
use axum::response::{IntoResponse, Response};

use super::App;
use super::error::ApiError;
use super::limit::ClientKey;
use crate::core::Authority;
use crate::service::agents::AgentToken;
use crate::service::{Role, User, hash_token};

/// Any authenticated user.
pub(super) struct Auth(pub(super) User);

/// An agent's token (the agent routes only; a user token gets 403 there).
pub(super) struct AgentAuth(pub(super) AgentToken);

/// A user with the releaser role.
pub(super) struct Releaser(pub(super) User);

/// A user with the approver role (admins have it): who may ask to decide or reassign an
/// approval at all. Whether they may decide a given one is the core's rule.
pub(super) struct Approver(pub(super) User);

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
    /// A valid agent token: the pools it may join.
    Agent(AgentToken),
    /// No credentials.
    Anonymous,
    /// An `Authorization` header that is not `Bearer <token>`.
    Malformed,
    /// More than one `Authorization` header: which one counts would be a guess (400).
    Duplicate,
    /// A bearer token no user has.
    InvalidToken,
    /// Credentials from an address whose failed authentications are spent: not checked, so
    /// that a guess cannot succeed while the address is throttled. A valid token from the
    /// same address waits too: if it went through, the difference between its answer and a
    /// 429 would tell a guesser that a guess was right, and the limit would limit nothing.
    Throttled {
        /// Seconds until the address may present credentials again.
        wait: u64,
    },
}

/// Marks an answer that refused a failed or throttled authentication (`Auth`'s 400, 401 and
/// 429), so that the first layer audits it and keeps the failure charged.
#[derive(Debug, Clone, Copy)]
pub(super) struct FailedAuth;

/// The token of a `Bearer` credential: the scheme in any case, one or more spaces, then one
/// word of visible ASCII (token68 and the tokens `sluice token new` makes are such words).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, rest) = value.split_once(' ')?;
    let token = rest.trim_start_matches(' ').trim_end_matches([' ', '\t']);
    (scheme.eq_ignore_ascii_case("bearer")
        && !token.is_empty()
        && token.bytes().all(|b| b.is_ascii_graphic()))
    .then_some(token)
}

impl Caller {
    /// Works out who sent a request; the token is hashed, never kept.
    pub(super) fn of(app: &App, headers: &HeaderMap) -> Self {
        let mut values = headers.get_all(header::AUTHORIZATION).iter();
        let Some(value) = values.next() else {
            return Self::Anonymous;
        };
        if values.next().is_some() {
            return Self::Duplicate;
        }
        let Some(token) = value.to_str().ok().and_then(bearer_token) else {
            return Self::Malformed;
        };
        let hash = hash_token(token);
        match app.service.user(&hash) {
            Some(user) => Self::User(user),
            None => match app.service.agent_token(&hash) {
                Some(agent) => Self::Agent(agent),
                None => Self::InvalidToken,
            },
        }
    }

    /// [`of`](Self::of), behind the failed-authentication limit of the client's address
    /// `peer`: while it is spent, credentials are [`Throttled`](Self::Throttled) unchecked;
    /// otherwise a failure is charged at once (so that many guesses racing each other are
    /// counted as they are checked, not as they are answered).
    pub(super) fn checked(app: &App, headers: &HeaderMap, peer: &str) -> Self {
        if !headers.contains_key(header::AUTHORIZATION) {
            return Self::Anonymous;
        }
        let limits = &app.service.config().limits;
        let key = ClientKey::Peer(peer.to_owned());
        if let Err(wait) = app.limiter.credentials_allowed(&key, limits) {
            return Self::Throttled { wait };
        }
        let caller = Self::of(app, headers);
        if caller.failed() {
            app.limiter.charge_auth_failure(&key, limits);
        }
        caller
    }

    /// After the answer: whether it refused a failed or throttled authentication (to be
    /// audited). A failure charged on a route that does not authenticate (`/healthz`, a 404)
    /// is given back: nothing was learnt from it.
    pub(super) fn settle(&self, app: &App, response: &Response, peer: &str) -> bool {
        let refused = response.extensions().get::<FailedAuth>().is_some();
        if self.failed() && !refused {
            let key = ClientKey::Peer(peer.to_owned());
            app.limiter
                .refund_auth_failure(&key, &app.service.config().limits);
        }
        refused
    }

    /// Whether credentials were presented and failed.
    fn failed(&self) -> bool {
        matches!(self, Self::Malformed | Self::Duplicate | Self::InvalidToken)
    }

    /// Who, as the audit trail names a refused caller: the user, `anonymous`, `invalid token`
    /// or `unchecked credentials` (throttled).
    pub(super) fn who(&self) -> &str {
        match self {
            Self::User(user) => &user.name,
            Self::Agent(_) => "agent token",
            Self::Anonymous | Self::Malformed | Self::Duplicate => "anonymous",
            Self::InvalidToken => "invalid token",
            Self::Throttled { .. } => "unchecked credentials",
        }
    }
}

impl FromRequestParts<Arc<App>> for Auth {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, Response> {
        // A failed authentication is marked (`FailedAuth`); no credentials at all is not one.
        let refused = |status: StatusCode, why: String, failed: bool| {
            let mut response = ApiError::new(status, why).into_response();
            if failed {
                response.extensions_mut().insert(FailedAuth);
            }
            if status == StatusCode::UNAUTHORIZED {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            response
        };
        let unauthorized = |why: &str| refused(StatusCode::UNAUTHORIZED, why.to_owned(), true);
        let caller = match parts.extensions.get::<Caller>() {
            Some(caller) => caller.clone(),
            None => Caller::of(app, &parts.headers),
        };
        match caller {
            Caller::User(user) => Ok(Auth(user)),
            Caller::Agent(_) => Err(refused(
                StatusCode::FORBIDDEN,
                "an agent token reaches only the agent routes (/api/v1/agent/...)".into(),
                false,
            )),
            Caller::Anonymous => Err(refused(
                StatusCode::UNAUTHORIZED,
                "no credentials: send `Authorization: Bearer <token>`".into(),
                false,
            )),
            Caller::Malformed => Err(unauthorized(
                "the Authorization header must be `Bearer <token>`",
            )),
            Caller::InvalidToken => Err(unauthorized("the token is not valid")),
            Caller::Duplicate => Err(refused(
                StatusCode::BAD_REQUEST,
                "send one Authorization header: this request has more than one".into(),
                true,
            )),
            Caller::Throttled { wait } => {
                let per_minute = app.service.config().limits.auth_failures;
                let mut response = refused(
                    StatusCode::TOO_MANY_REQUESTS,
                    format!(
                        "too many failed authentications from this address: more than \
                         {per_minute} a minute (limits.auth-failures); credentials from it, \
                         valid ones included, are not checked for {wait} s (Retry-After)"
                    ),
                    true,
                );
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(wait));
                Err(response)
            }
        }
    }
}

impl FromRequestParts<Arc<App>> for AgentAuth {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, Response> {
        let caller = match parts.extensions.get::<Caller>() {
            Some(caller) => caller.clone(),
            None => Caller::of(app, &parts.headers),
        };
        match caller {
            Caller::Agent(token) => Ok(Self(token)),
            Caller::User(user) => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!(
                    "{} is a user: user tokens do not reach the agent routes; an agent joins \
                     with an agent token of its pool",
                    user.name
                ),
            )
            .into_response()),
            // Every other caller is refused as `Auth` refuses it (401, 400, 429).
            _ => match Auth::from_request_parts(parts, app).await {
                Err(refused) => Err(refused),
                Ok(_) => Err(ApiError::new(StatusCode::FORBIDDEN, "not an agent").into_response()),
            },
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

impl FromRequestParts<Arc<App>> for Approver {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, Response> {
        with_role(parts, app, Role::Approver).await.map(Self)
    }
}

impl FromRequestParts<Arc<App>> for Admin {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, Response> {
        with_role(parts, app, Role::Admin).await.map(Self)
    }
}
