//! Router tests of the check order every route keeps (`api/mod.rs`): authenticate, then the
//! route's role, then the body, then the target. So a caller without the role learns nothing
//! from the answer (403 whether the target exists or not, whatever the body), and a caller
//! with it is told about a malformed body (400) before anything is looked up.

use axum::http::StatusCode;
use serde_json::Value;

use super::router;
use super::tests::{Reply, send, service};
use crate::service::config::ApiLimits;

/// A body that is neither JSON nor TOML.
const MALFORMED: &str = r#"{"comment": "#;

/// Every POST and PUT route: (method, path with `{p}` for the pipeline and `{r}` for the
/// release, the least role that may call it, whether its body is a pipeline's TOML).
const ROUTES: &[(&str, &str, &str, bool)] = &[
    ("PUT", "/api/v1/pipelines/{p}", "ada", true),
    ("POST", "/api/v1/pipelines/{p}/validate", "rita", true),
    ("POST", "/api/v1/pipelines/{p}/releases", "rita", false),
    ("POST", "/api/v1/releases/{r}/abandon", "rita", false),
    (
        "POST",
        "/api/v1/releases/{r}/stages/qa/deploy",
        "rita",
        false,
    ),
    (
        "POST",
        "/api/v1/releases/{r}/stages/qa/cancel",
        "rita",
        false,
    ),
    (
        "POST",
        "/api/v1/releases/{r}/stages/qa/break-glass",
        "ada",
        false,
    ),
    (
        "POST",
        "/api/v1/approvals/{r}.qa.1.pre/approve",
        "alice",
        false,
    ),
    (
        "POST",
        "/api/v1/approvals/{r}.qa.1.pre/reject",
        "alice",
        false,
    ),
    (
        "POST",
        "/api/v1/approvals/{r}.qa.1.pre/reassign",
        "alice",
        false,
    ),
];

fn error(reply: &Reply) -> String {
    reply.json["error"].as_str().unwrap_or_default().to_owned()
}

/// The path of `route` on an existing target (`shop`, `release`) or a missing one.
fn path(route: &str, release: &str, exists: bool) -> String {
    let (pipeline, release) = match exists {
        true => ("shop".to_owned(), release.to_owned()),
        false => ("nowhere".to_owned(), "shop-999".to_owned()),
    };
    route.replace("{p}", &pipeline).replace("{r}", &release)
}

#[tokio::test]
async fn a_caller_without_the_role_gets_the_same_403_whether_the_target_exists_or_not() {
    let (_dir, service) = service(ApiLimits::default(), true);
    let app = router(service);
    let create = ("POST", "/api/v1/pipelines/shop/releases");
    let created = send(&app, Some("rita"), create, Some("{}"), &[]).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.json);
    let release = created.json["name"].as_str().unwrap().to_owned();
    let shown = |app: axum::Router, release: String| async move {
        let get = ("GET", format!("/api/v1/releases/{release}"));
        let one = send(&app, Some("vic"), (get.0, &get.1), None, &[])
            .await
            .json;
        let list = ("GET", "/api/v1/releases");
        (one, send(&app, Some("vic"), list, None, &[]).await.json)
    };
    let before = shown(app.clone(), release.clone()).await;
    // vic (viewer) for every route; rita (releaser) for the approver and admin routes.
    for &(method, route, least, _) in ROUTES {
        let callers: &[&str] = match least {
            "rita" => &["vic"],
            _ => &["vic", "rita"],
        };
        for &who in callers {
            let mut answers: Vec<(StatusCode, String)> = Vec::new();
            for exists in [true, false] {
                for body in ["{}", MALFORMED] {
                    let uri = path(route, &release, exists);
                    let reply = send(&app, Some(who), (method, &uri), Some(body), &[]).await;
                    assert_eq!(
                        reply.status,
                        StatusCode::FORBIDDEN,
                        "{who} {method} {uri} {body:?}: {}",
                        reply.json
                    );
                    answers.push((reply.status, error(&reply)));
                }
            }
            // One answer, word for word: nothing tells an existing target from a missing one.
            answers.dedup();
            assert_eq!(answers.len(), 1, "{who} {method} {route}: {answers:?}");
            assert!(answers[0].1.contains(&format!("{who} does not have the")));
        }
    }
    assert_eq!(
        shown(app.clone(), release).await,
        before,
        "a refusal changed something"
    );
}

#[tokio::test]
async fn a_caller_with_the_role_is_told_about_a_malformed_body_before_any_lookup() {
    let (_dir, service) = service(ApiLimits::default(), true);
    let app = router(service);
    let create = ("POST", "/api/v1/pipelines/shop/releases");
    let created = send(&app, Some("rita"), create, Some("{}"), &[]).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.json);
    let release = created.json["name"].as_str().unwrap().to_owned();
    let get = format!("/api/v1/releases/{release}");
    let before = send(&app, Some("vic"), ("GET", &get), None, &[]).await.json;
    for &(method, route, least, toml) in ROUTES {
        // A pipeline's TOML is parsed by the service (422 with diagnostics, nothing written):
        // a pipeline name is not looked up, only a release or an approval is.
        let want = match toml {
            true => StatusCode::UNPROCESSABLE_ENTITY,
            false => StatusCode::BAD_REQUEST,
        };
        let mut answers: Vec<(StatusCode, String)> = Vec::new();
        for exists in [true, false] {
            let uri = path(route, &release, exists);
            let reply = send(&app, Some(least), (method, &uri), Some(MALFORMED), &[]).await;
            assert_eq!(reply.status, want, "{least} {method} {uri}: {}", reply.json);
            answers.push((reply.status, error(&reply)));
        }
        answers.dedup();
        assert_eq!(answers.len(), 1, "{method} {route}: {answers:?}");
        let what = if toml {
            "the pipeline is invalid"
        } else {
            "invalid JSON body"
        };
        assert!(answers[0].1.contains(what), "{method} {route}: {answers:?}");
    }
    // An unknown field is a malformed body too: 400 before the approval is looked up.
    for exists in [true, false] {
        let uri = path("/api/v1/approvals/{r}.qa.1.pre/approve", &release, exists);
        let body = Some(r#"{"comentt": "typo"}"#);
        let reply = send(&app, Some("alice"), ("POST", &uri), body, &[]).await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{uri}: {}",
            reply.json
        );
        assert!(error(&reply).contains("comentt"), "{}", reply.json);
    }
    let after = send(&app, Some("vic"), ("GET", &get), None, &[]).await.json;
    assert_eq!(after, before, "a malformed request changed the release");
    let list = send(&app, Some("vic"), ("GET", "/api/v1/pipelines"), None, &[]).await;
    let names: Vec<&Value> = list.json["pipelines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| &p["name"])
        .collect();
    assert_eq!(names, ["shop"], "a refused PUT wrote a pipeline");
}
