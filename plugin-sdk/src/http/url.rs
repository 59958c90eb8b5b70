//! The URLs an HTTP request goes to: absolute `http` and `https` URLs, and references resolved
//! against them (an index's relative links, a redirect's `location`).

/// An absolute `http` or `https` URL, split into what `wasi:http` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// `http` or `https`.
    pub scheme: String,
    /// The host name or address (IPv6 in brackets).
    pub host: String,
    /// The port, if the URL names one.
    pub port: Option<u16>,
    /// The path and query, starting with `/`. The fragment is dropped.
    pub path: String,
}

impl Url {
    /// Parses `text`, refusing anything but an absolute `http` or `https` URL with a host.
    ///
    /// ```
    /// # use sluice_plugin_sdk::http::Url;
    /// let url = Url::parse("http://127.0.0.1:8080/v2/site/tags/list?n=10#top").unwrap();
    /// assert_eq!(url.authority(), "127.0.0.1:8080");
    /// assert_eq!(url.path, "/v2/site/tags/list?n=10");
    /// assert!(Url::parse("ftp://example.com/").is_err());
    /// assert!(Url::parse("http://user:pw@example.com/").is_err());
    /// ```
    pub fn parse(text: &str) -> Result<Self, String> {
        let (scheme, rest) = text
            .split_once("://")
            .ok_or_else(|| format!("`{text}` is not an absolute URL (http://host/path)"))?;
        let scheme = scheme.to_ascii_lowercase();
        if scheme != "http" && scheme != "https" {
            return Err(format!(
                "unsupported URL scheme `{scheme}` in `{text}` (use http or https)"
            ));
        }
        let rest = rest.split_once('#').map_or(rest, |(r, _)| r);
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(end);
        if authority.contains('@') {
            return Err(format!(
                "`{text}` carries credentials in the URL: put them in a header instead"
            ));
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) if !port.contains(']') => {
                let port = port
                    .parse::<u16>()
                    .map_err(|_| format!("invalid port `{port}` in `{text}`"))?;
                (host, Some(port))
            }
            _ => (authority, None),
        };
        if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!("`{text}` has no valid host"));
        }
        if path.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!(
                "`{text}` has spaces or control characters in its path: percent-encode them"
            ));
        }
        let path = match path {
            "" => "/".to_owned(),
            p if p.starts_with('?') => format!("/{p}"),
            p => p.to_owned(),
        };
        Ok(Self {
            scheme,
            host: host.to_owned(),
            port,
            path,
        })
    }

    /// `host` or `host:port`, as the request's authority and the pipeline's `hosts` grant
    /// write it.
    pub fn authority(&self) -> String {
        match self.port {
            Some(port) => format!("{}:{port}", self.host),
            None => self.host.clone(),
        }
    }

    /// The last segment of the path, without the query: a download's file name.
    pub fn file_name(&self) -> &str {
        let path = self.path.split(['?']).next().unwrap_or("");
        path.rsplit('/').next().unwrap_or("")
    }
}

/// Resolves `reference` against the absolute URL `base`: an absolute URL as it is, `//host/..`
/// with the base's scheme, `/path` on the base's host, anything else next to the base's last
/// segment (`..` and `.` segments resolved).
///
/// ```
/// # use sluice_plugin_sdk::http::join;
/// let base = "http://h:8080/builds/index.json";
/// assert_eq!(join(base, "site-1.0.tar.gz").unwrap(), "http://h:8080/builds/site-1.0.tar.gz");
/// assert_eq!(join(base, "/v2/x").unwrap(), "http://h:8080/v2/x");
/// assert_eq!(join(base, "../up/a.zip").unwrap(), "http://h:8080/up/a.zip");
/// assert_eq!(join(base, "https://cdn/x").unwrap(), "https://cdn/x");
/// ```
pub fn join(base: &str, reference: &str) -> Result<String, String> {
    if reference.contains("://") {
        Url::parse(reference)?;
        return Ok(reference.to_owned());
    }
    let url = Url::parse(base)?;
    if let Some(rest) = reference.strip_prefix("//") {
        return Ok(format!("{}://{rest}", url.scheme));
    }
    let path = if reference.starts_with('/') {
        reference.to_owned()
    } else {
        let dir = url.path.split('?').next().unwrap_or("/");
        let dir = &dir[..dir.rfind('/').map_or(0, |i| i + 1)];
        format!("{dir}{reference}")
    };
    let (path, query) = match path.split_once('?') {
        Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
        None => (path, None),
    };
    let mut segments: Vec<&str> = Vec::new();
    for segment in path.split('/').skip(1) {
        match segment {
            "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    if path.ends_with("/..") || path.ends_with("/.") {
        segments.push("");
    }
    let mut joined = format!(
        "{}://{}/{}",
        url.scheme,
        url.authority(),
        segments.join("/")
    );
    if let Some(query) = query {
        joined.push('?');
        joined.push_str(&query);
    }
    Ok(joined)
}
