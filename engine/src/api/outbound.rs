//! Outbound HTTP from the host, for the registry client (`crate::registry`): one request over
//! HTTPS (rustls, the web's roots) or plain HTTP, its answer bounded in size and in time, as a
//! [`Reply`]. Here so that only this module imports hyper; which URLs may be asked, and with
//! what credentials, is the caller's rule.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::Request;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client as Hyper;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::client::Reply;

/// An HTTPS-or-HTTP client with bounded answers.
pub struct Outbound {
    http: Hyper<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl Default for Outbound {
    fn default() -> Self {
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .build();
        Self {
            http: Hyper::builder(TokioExecutor::new()).build(connector),
        }
    }
}

impl Outbound {
    /// `method url` with `headers` and `body`; the answer's body at most `limit` bytes, the
    /// whole exchange within `timeout`.
    pub async fn exchange(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Bytes,
        limit: usize,
        timeout: Duration,
    ) -> Result<Reply, String> {
        let mut request = Request::builder().method(method).uri(url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Full::new(body))
            .map_err(|e| format!("{method} {url}: {e}"))?;
        let exchange = async {
            let response = self
                .http
                .request(request)
                .await
                .map_err(|e| format!("{method} {url} failed: {}", with_sources(&e)))?;
            let status = response.status().as_u16();
            let headers = response
                .headers()
                .iter()
                .map(|(n, v)| {
                    (
                        n.as_str().to_owned(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect();
            let body = Limited::new(response.into_body(), limit)
                .collect()
                .await
                .map_err(|e| {
                    format!("{method} {url}: the answer is over {limit} bytes or broke off: {e}")
                })?
                .to_bytes()
                .to_vec();
            Ok(Reply {
                status,
                headers,
                body,
            })
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| format!("{method} {url}: no answer within {} s", timeout.as_secs()))?
    }
}

/// An error and its causes, `: `-separated (hyper's own says only "client error (Connect)").
pub(super) fn with_sources(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}
