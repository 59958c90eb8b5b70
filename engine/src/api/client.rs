//! A small client for the API, for the CLI and the tests: one request, the status, the body.

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::Request;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client as Hyper;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use std::time::Duration;

/// How long a client waits for the server, by default.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);

/// A connection to a Sluice server.
#[derive(Clone)]
pub struct Client {
    base: String,
    token: Option<String>,
    timeout: Duration,
    http: Hyper<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

/// A response.
#[derive(Debug, Clone)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Headers (names in lowercase).
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

impl Reply {
    /// The body as JSON (`null` when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

impl Client {
    /// A client of the server at `server` (`http://host:port`, or `https://` trusting the
    /// web's roots), authenticating with `token`.
    pub fn new(server: &str, token: Option<String>) -> Result<Self, String> {
        Self::trusting(server, token, None)
    }

    /// As [`Client::new`], an `https://` server's certificate checked against the CA
    /// certificates of `ca_file` (PEM) instead of the web's roots.
    pub fn trusting(
        server: &str,
        token: Option<String>,
        ca_file: Option<&std::path::Path>,
    ) -> Result<Self, String> {
        let base = server.trim_end_matches('/').to_owned();
        if !base.starts_with("http://") && !base.starts_with("https://") {
            return Err(format!(
                "server `{server}`: give an http:// or https:// address, e.g. http://127.0.0.1:8080"
            ));
        }
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(super::tls::client_config(ca_file)?)
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Self {
            base,
            token,
            timeout: CLIENT_TIMEOUT,
            http: Hyper::builder(TokioExecutor::new()).build(connector),
        })
    }

    /// Whether this client speaks plain HTTP to another machine (tokens in the clear).
    pub fn plain_off_loopback(&self) -> bool {
        let Some(rest) = self.base.strip_prefix("http://") else {
            return false;
        };
        let host = rest.split('/').next().unwrap_or_default();
        let host = host.rsplit_once(':').map_or(host, |(h, _)| h);
        let host = host.trim_start_matches('[').trim_end_matches(']');
        !(host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback()))
    }

    /// The same client, waiting `timeout` for each answer (a long poll's, say).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sends one request; `headers` are added as given.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
        headers: &[(&str, &str)],
    ) -> Result<Reply, String> {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        if body.is_some() {
            request = request.header("content-type", "application/json");
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| format!("bad request: {e}"))?;
        let call = async {
            let response = self.http.request(request).await.map_err(|e| {
                format!(
                    "cannot reach {}: {}",
                    self.base,
                    super::outbound::with_sources(&e)
                )
            })?;
            let status = response.status().as_u16();
            let headers = response
                .headers()
                .iter()
                .map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
                .collect();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| format!("reading the response: {e}"))?
                .to_bytes()
                .to_vec();
            Ok(Reply {
                status,
                headers,
                body,
            })
        };
        let timeout = self.timeout;
        tokio::time::timeout(timeout, call)
            .await
            .map_err(|_| format!("{} did not answer within {timeout:?}", self.base))?
    }

    /// GET.
    pub async fn get(&self, path: &str) -> Result<Reply, String> {
        self.send("GET", path, None, &[]).await
    }

    /// Opens a server-sent event stream (`?follow=true` routes). A refusal comes back as the
    /// reply that carried it.
    pub async fn events(&self, path: &str) -> Result<Events, Result<Reply, String>> {
        self.events_after(path, None).await
    }

    /// Opens a server-sent event stream that carries on after event `last` (the id of the
    /// last event received, sent as `Last-Event-ID`), if given.
    pub async fn events_after(
        &self,
        path: &str,
        last: Option<&str>,
    ) -> Result<Events, Result<Reply, String>> {
        let mut request = Request::builder()
            .method("GET")
            .uri(format!("{}{path}", self.base))
            .header("accept", "text/event-stream");
        if let Some(last) = last {
            request = request.header("last-event-id", last);
        }
        if let Some(token) = &self.token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let request = request
            .body(Full::new(Bytes::new()))
            .map_err(|e| Err(format!("bad request: {e}")))?;
        let response = tokio::time::timeout(CLIENT_TIMEOUT, self.http.request(request))
            .await
            .map_err(|_| {
                Err(format!(
                    "{} did not answer within {CLIENT_TIMEOUT:?}",
                    self.base
                ))
            })?
            .map_err(|e| {
                Err(format!(
                    "cannot reach {}: {}",
                    self.base,
                    super::outbound::with_sources(&e)
                ))
            })?;
        let status = response.status().as_u16();
        if status != 200 {
            let headers = response
                .headers()
                .iter()
                .map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
                .collect();
            let body = response
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes().to_vec())
                .unwrap_or_default();
            return Err(Ok(Reply {
                status,
                headers,
                body,
            }));
        }
        Ok(Events {
            body: response.into_body(),
            buffer: Vec::new(),
        })
    }

    /// POST a JSON value.
    pub async fn post(&self, path: &str, body: &serde_json::Value) -> Result<Reply, String> {
        self.send("POST", path, Some(body.to_string().into_bytes()), &[])
            .await
    }
}

/// One server-sent event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerEvent {
    /// `event:` (empty when not given).
    pub event: String,
    /// `data:` lines, joined with newlines.
    pub data: String,
    /// `id:`.
    pub id: Option<String>,
}

/// A stream of server-sent events.
pub struct Events {
    body: hyper::body::Incoming,
    buffer: Vec<u8>,
}

impl Events {
    /// The next event; `None` when the server ends the stream.
    pub async fn next(&mut self) -> Result<Option<ServerEvent>, String> {
        loop {
            if let Some(event) = self.parse() {
                return Ok(Some(event));
            }
            match self.body.frame().await {
                None => return Ok(None),
                Some(Err(e)) => return Err(format!("reading the event stream: {e}")),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.buffer.extend_from_slice(&data);
                    }
                }
            }
        }
    }

    /// Takes one complete event off the buffer (comments, such as keep-alives, are skipped).
    fn parse(&mut self) -> Option<ServerEvent> {
        loop {
            let end = self.buffer.windows(2).position(|w| w == b"\n\n")?;
            let block: Vec<u8> = self.buffer.drain(..end + 2).collect();
            let mut event = ServerEvent::default();
            let mut data = Vec::new();
            let mut any = false;
            for line in String::from_utf8_lossy(&block).lines() {
                let (field, value) = line.split_once(':').unwrap_or((line, ""));
                let value = value.strip_prefix(' ').unwrap_or(value);
                match field {
                    "event" => event.event = value.to_owned(),
                    "data" => data.push(value.to_owned()),
                    "id" => event.id = Some(value.to_owned()),
                    _ => continue,
                }
                any = true;
            }
            if any {
                event.data = data.join("\n");
                return Some(event);
            }
        }
    }
}
