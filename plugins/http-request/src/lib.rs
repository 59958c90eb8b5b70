//! `http-request`: a built-in Sluice task that calls an HTTP API (a cloud provider, a
//! Kubernetes API server, a webhook), retries it with exponential backoff and jitter, and keeps
//! parts of the JSON answer as output variables.
//!
//! ```toml
//! [[stages.tasks]]
//! plugin = "http-request"
//! grants.hosts = ["deploy.example.com"]
//! [stages.tasks.config]
//! method = "POST"
//! url = "https://deploy.example.com/api/deployments"
//! headers = { authorization = "Bearer $(deploy-token)", content-type = "application/json" }
//! body = '{"release": "$(sluice.release)"}'       # or body-file = "site/deploy.json" (workspace)
//! success = ["2xx"]                               # the default; or e.g. [200, 201]
//! retries = 4                                     # after the first try: 5 tries at most
//! retry-on = [429, 502, 503, 504]                 # the default; connection errors always
//! backoff = "1s"                                  # the first wait, doubled each time...
//! max-backoff = "30s"                             # ...up to this; each wait is jittered
//! timeout = "30s"                                 # per try
//! outputs = { deployment-id = "/id" }             # JSON pointers into the response body
//! ```
//!
//! Header values are never logged, and the engine masks secret values in every log line, so a
//! `$(secret)` in a header or the URL stays out of the log. A status in `retry-on` with a
//! `retry-after: N` header waits N seconds (at most `max-backoff`) instead.

mod retry;

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use sluice_plugin_sdk::http::{HttpError, Request, Response};
use sluice_plugin_sdk::units;
use sluice_plugin_sdk::{Context, Error, Report, Task, TaskInput, files, log};

use crate::retry::Backoff;

/// The largest response body read: an API's answer, not a download.
const RESPONSE_LIMIT: usize = 4 << 20;
/// The largest `body-file` sent.
const BODY_FILE_LIMIT: u64 = 16 << 20;
/// How much of a failed response's body the error quotes.
const QUOTED: usize = 512;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Config {
    url: String,
    #[serde(default = "get")]
    method: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    body: Option<String>,
    body_file: Option<String>,
    #[serde(default = "two_hundreds")]
    success: Vec<Status>,
    #[serde(default)]
    retries: u32,
    #[serde(default = "transient")]
    retry_on: Vec<Status>,
    backoff: Option<units::Duration>,
    max_backoff: Option<units::Duration>,
    timeout: Option<units::Duration>,
    #[serde(default)]
    outputs: BTreeMap<String, OutputSpec>,
}

/// A status code (`201`) or a class of them (`"2xx"`).
#[derive(Deserialize, Clone)]
#[serde(untagged)]
enum Status {
    Code(u16),
    Class(String),
}

/// `name = "/json/pointer"` or `name = { pointer = "/token", secret = true }`.
#[derive(Deserialize)]
#[serde(untagged)]
enum OutputSpec {
    Pointer(String),
    Table(OutputTable),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OutputTable {
    pointer: String,
    #[serde(default)]
    secret: bool,
}

fn get() -> String {
    "GET".to_owned()
}

fn two_hundreds() -> Vec<Status> {
    vec![Status::Class("2xx".to_owned())]
}

fn transient() -> Vec<Status> {
    [429, 502, 503, 504].map(Status::Code).to_vec()
}

/// The most retries a task may ask for.
const MAX_RETRIES: u32 = 20;

impl Status {
    fn check(&self) -> Result<(), Error> {
        match self {
            Status::Code(code) if (100..=599).contains(code) => Ok(()),
            Status::Class(class)
                if class.len() == 3
                    && matches!(class.as_bytes()[0], b'1'..=b'5')
                    && class[1..].eq_ignore_ascii_case("xx") =>
            {
                Ok(())
            }
            Status::Code(code) => Err(Error::invalid_config(format!(
                "status {code} is not an HTTP status (100 to 599)"
            ))),
            Status::Class(class) => Err(Error::invalid_config(format!(
                "status `{class}` is neither a code (201) nor a class (\"2xx\")"
            ))),
        }
    }

    fn matches(&self, status: u16) -> bool {
        match self {
            Status::Code(code) => *code == status,
            Status::Class(class) => u16::from(class.as_bytes()[0] - b'0') == status / 100,
        }
    }
}

impl Config {
    fn check(&self) -> Result<(), Error> {
        sluice_plugin_sdk::http::Url::parse(&self.url)
            .map_err(|e| Error::invalid_config(format!("url: {e}")))?;
        if self.body.is_some() && self.body_file.is_some() {
            return Err(Error::invalid_config(
                "give either `body` or `body-file`, not both",
            ));
        }
        if self.retries > MAX_RETRIES {
            return Err(Error::invalid_config(format!(
                "retries = {} is more than {MAX_RETRIES}",
                self.retries
            )));
        }
        for status in self.success.iter().chain(&self.retry_on) {
            status.check()?;
        }
        if self.method.is_empty() || !self.method.bytes().all(|b| b.is_ascii_alphabetic()) {
            return Err(Error::invalid_config(format!(
                "method `{}` is not an HTTP method (GET, POST, PUT, PATCH, DELETE, ...)",
                self.method
            )));
        }
        for (name, output) in &self.outputs {
            let pointer = output.pointer();
            if !pointer.is_empty() && !pointer.starts_with('/') {
                return Err(Error::invalid_config(format!(
                    "outputs.{name}: `{pointer}` is not a JSON pointer (write `/id` or `/items/0/name`)"
                )));
            }
        }
        Ok(())
    }

    /// The body: inline, or read from `body-file` (relative to the workspace, or absolute).
    fn body(&self, context: &Context) -> Result<Vec<u8>, Error> {
        if let Some(body) = &self.body {
            return Ok(body.clone().into_bytes());
        }
        let Some(file) = &self.body_file else {
            return Ok(Vec::new());
        };
        let path = files::source_dir("body-file", file, context)?;
        let file = &path.display().to_string();
        let size = std::fs::metadata(file)
            .map_err(|e| Error::failed(format!("body-file {file}: {e}")))?
            .len();
        if size > BODY_FILE_LIMIT {
            return Err(Error::failed(format!(
                "body-file {file} is {size} bytes, more than the {BODY_FILE_LIMIT} a request body may be"
            )));
        }
        std::fs::read(file).map_err(|e| Error::failed(format!("body-file {file}: {e}")))
    }

    fn request(&self, body: Vec<u8>) -> Request {
        let mut request = Request::new(&self.method.to_ascii_uppercase(), &self.url)
            .body(body)
            .timeout(self.timeout.map_or(Duration::from_secs(30), |t| t.0));
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        request
    }
}

impl OutputSpec {
    fn pointer(&self) -> &str {
        match self {
            OutputSpec::Pointer(p) => p,
            OutputSpec::Table(t) => &t.pointer,
        }
    }
}

struct HttpRequest;

impl Task for HttpRequest {
    fn run(input: TaskInput) -> Result<Report, Error> {
        let config: Config = input.config.parse()?;
        config.check()?;
        let request = config.request(config.body(&input.context)?);
        let what = format!("{} {}", config.method.to_ascii_uppercase(), config.url);
        let mut backoff = Backoff::new(
            config.backoff.map_or(Duration::from_secs(1), |b| b.0),
            config.max_backoff.map_or(Duration::from_secs(30), |b| b.0),
        );
        let tries = config.retries + 1;
        for attempt in 1..=tries {
            let last = attempt == tries;
            let retry = match request.send(RESPONSE_LIMIT) {
                Ok(response) if config.success.iter().any(|s| s.matches(response.status)) => {
                    log::info(format!("{what} -> {} (try {attempt})", response.status));
                    return outputs(&config, &response);
                }
                Ok(response)
                    if !last && config.retry_on.iter().any(|s| s.matches(response.status)) =>
                {
                    let wait = backoff.next_wait(retry_after(&response));
                    log::warn(format!(
                        "{what} -> {} (try {attempt} of {tries}); retrying in {}",
                        response.status,
                        seconds(wait)
                    ));
                    wait
                }
                Ok(response) => return Err(Error::failed(unexpected(&what, &response))),
                Err(e) if e.is_transient() && !last => {
                    let wait = backoff.next_wait(None);
                    log::warn(format!(
                        "{what} failed: {e} (try {attempt} of {tries}); retrying in {}",
                        seconds(wait)
                    ));
                    wait
                }
                Err(e) => return Err(Error::failed(failed(&what, &e, attempt))),
            };
            retry::sleep(retry);
        }
        unreachable!("the last try returns")
    }
}

fn outputs(config: &Config, response: &Response) -> Result<Report, Error> {
    let mut report = Report::new().output("status", response.status.to_string());
    if config.outputs.is_empty() {
        return Ok(report);
    }
    let json: serde_json::Value = serde_json::from_slice(&response.body).map_err(|e| {
        Error::failed(format!(
            "the response to {} is not JSON ({e}), so `outputs` cannot be read from it",
            config.url
        ))
    })?;
    for (name, spec) in &config.outputs {
        let value = match json.pointer(spec.pointer()) {
            None | Some(serde_json::Value::Null) => {
                return Err(Error::failed(format!(
                    "outputs.{name}: the response has no value at `{}`",
                    spec.pointer()
                )));
            }
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
        };
        report = match spec {
            OutputSpec::Table(OutputTable { secret: true, .. }) => {
                report.secret_output(name, value)
            }
            _ => report.output(name, value),
        };
    }
    Ok(report)
}

/// `retry-after: N` (seconds) on the response, if it has one.
fn retry_after(response: &Response) -> Option<Duration> {
    let seconds = response.headers.get("retry-after")?.trim().parse().ok()?;
    Some(Duration::from_secs(seconds))
}

fn unexpected(what: &str, response: &Response) -> String {
    let body = String::from_utf8_lossy(&response.body);
    let mut quoted: String = body.chars().take(QUOTED).collect();
    if quoted.len() < body.len() {
        quoted.push_str("...");
    }
    let quoted = quoted.trim();
    if quoted.is_empty() {
        format!("{what} returned status {}", response.status)
    } else {
        format!("{what} returned status {}: {quoted}", response.status)
    }
}

fn failed(what: &str, e: &HttpError, attempt: u32) -> String {
    match attempt {
        1 => format!("{what} failed: {e}"),
        n => format!("{what} failed after {n} tries: {e}"),
    }
}

fn seconds(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

sluice_plugin_sdk::export_task!(HttpRequest);
