//! A repository's tags: every page of `/v2/<name>/tags/list` (following `Link: <...>;
//! rel="next"`), then the ones a pipeline wants, newest first.

use std::cmp::Ordering;

use sluice_plugin_sdk::Error;
use sluice_plugin_sdk::files;

use crate::Settings;
use crate::names;
use crate::registry::Registry;

/// Tags asked for per page.
const PAGE: usize = 1000;
/// The most pages read: a registry that pages forever is cut off.
const MAX_PAGES: usize = 100;

/// Every tag of the repository.
pub(crate) fn list(registry: &Registry) -> Result<Vec<String>, Error> {
    #[derive(serde::Deserialize)]
    struct Page {
        #[serde(default)]
        tags: Option<Vec<String>>,
    }
    let mut url = registry.url(&format!("tags/list?n={PAGE}"));
    let mut out = Vec::new();
    for _ in 0..MAX_PAGES {
        let response = registry.document("GET", &url, None)?;
        match response.status {
            200 => {}
            404 => {
                return Err(Error::failed(format!(
                    "the repository is not in the registry (GET {url} answered 404)"
                )));
            }
            status => return Err(Error::failed(format!("GET {url} answered {status}"))),
        }
        let page: Page = serde_json::from_slice(&response.body)
            .map_err(|e| Error::failed(format!("the tag list at {url} is not valid: {e}")))?;
        out.extend(
            page.tags
                .unwrap_or_default()
                .into_iter()
                .filter(|t| names::tag(t)),
        );
        match response.headers.get("link").and_then(next_link) {
            Some(next) => url = sluice_plugin_sdk::http::join(&url, next).map_err(Error::failed)?,
            None => return Ok(out),
        }
    }
    Err(Error::failed(format!(
        "the registry kept paging tags past {MAX_PAGES} pages"
    )))
}

/// The target of `<...>; rel="next"` in a `Link` header.
fn next_link(link: &str) -> Option<&str> {
    link.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        params
            .contains("rel=\"next\"")
            .then(|| target.trim().trim_start_matches('<').trim_end_matches('>'))
    })
}

/// Which tags a pipeline wants.
pub(crate) struct Filter {
    globs: Option<files::Filter>,
    range: Option<semver::VersionReq>,
}

impl Filter {
    pub(crate) fn new(settings: &Settings) -> Result<Self, Error> {
        let globs = match settings.tags.is_empty() {
            true => None,
            false => Some(files::Filter::any_of("tags", &settings.tags)?),
        };
        let range = settings
            .semver
            .as_deref()
            .map(|r| {
                semver::VersionReq::parse(r).map_err(|e| {
                    Error::invalid_config(format!("semver `{r}` is not a version range: {e}"))
                })
            })
            .transpose()?;
        Ok(Self { globs, range })
    }

    /// The wanted tags, newest first (semver order when a range is given, else version order),
    /// at most `max`.
    pub(crate) fn choose(&self, tags: Vec<String>, max: usize) -> Vec<String> {
        let mut wanted: Vec<String> = tags
            .into_iter()
            .filter(|t| self.globs.as_ref().is_none_or(|g| g.matches(t)))
            .filter(|t| match &self.range {
                None => true,
                Some(range) => version(t).is_some_and(|v| range.matches(&v)),
            })
            .collect();
        wanted.sort_by(|a, b| newest_first(a, b));
        wanted.dedup();
        wanted.truncate(max);
        wanted
    }
}

/// A tag as a semver version (`v1.2.3` too).
fn version(tag: &str) -> Option<semver::Version> {
    semver::Version::parse(tag.strip_prefix('v').unwrap_or(tag)).ok()
}

fn newest_first(a: &str, b: &str) -> Ordering {
    match (version(a), version(b)) {
        (Some(x), Some(y)) => y.cmp(&x),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => b.cmp(a),
    }
}
