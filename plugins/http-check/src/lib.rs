//! `http-check`: a built-in Sluice task and gate that requests a URL through `wasi:http` and
//! checks the status code and, optionally, that the body contains some text.
//!
//! As a task a mismatch fails the task; as a gate it makes the gate unhealthy. The URL's host
//! must be granted (`hosts = ["127.0.0.1:8080"]`); any other host is refused by the engine.
//!
//! ```toml
//! [[stages.tasks]]
//! plugin = "http-check"
//! config = { url = "http://127.0.0.1:8080/health", expect_status = 200, body_contains = "ok" }
//! grants.hosts = ["127.0.0.1:8080"]
//! ```

use serde::Deserialize;
use sluice_plugin_sdk::{Error, Gate, Health, Report, Task, TaskInput, http, log};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// The URL to request.
    url: String,
    /// HTTP method, `GET` by default.
    #[serde(default = "get")]
    method: String,
    /// The status code expected, 200 by default.
    #[serde(default = "ok")]
    expect_status: u16,
    /// Text the body must contain.
    body_contains: Option<String>,
}

fn get() -> String {
    "GET".to_owned()
}

fn ok() -> u16 {
    200
}

/// Requests the URL; `Ok(status)` when it matches, `Err(reason)` when it does not.
fn check(config: &Config) -> Result<u16, String> {
    let response = http::request(&config.method, &config.url, http::DEFAULT_BODY_LIMIT)
        .map_err(|e| format!("{} {} failed: {e}", config.method, config.url))?;
    log::info(format!(
        "{} {} -> {}",
        config.method, config.url, response.status
    ));
    if response.status != config.expect_status {
        return Err(format!(
            "{} returned status {}, expected {}",
            config.url, response.status, config.expect_status
        ));
    }
    if let Some(text) = &config.body_contains
        && !String::from_utf8_lossy(&response.body).contains(text.as_str())
    {
        return Err(format!(
            "the body of {} does not contain {text:?}",
            config.url
        ));
    }
    Ok(response.status)
}

struct HttpCheck;

impl Task for HttpCheck {
    fn run(input: TaskInput) -> Result<Report, Error> {
        let config: Config = input.config.parse()?;
        let status = check(&config).map_err(Error::failed)?;
        Ok(Report::new().output("status", status.to_string()))
    }
}

impl Gate for HttpCheck {
    fn evaluate(input: TaskInput) -> Result<Health, Error> {
        let config: Config = input.config.parse()?;
        Ok(match check(&config) {
            Ok(_) => Health::Healthy,
            Err(reason) => Health::Unhealthy(reason),
        })
    }
}

sluice_plugin_sdk::export_task!(HttpCheck);
sluice_plugin_sdk::export_gate!(HttpCheck);
