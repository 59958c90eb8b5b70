//! The configuration the pipeline gives a plugin.

use serde::de::DeserializeOwned;

use crate::Error;

/// The configuration the pipeline wrote under a task, gate or artifact, as JSON text.
///
/// Parse it into your own `serde` type with [`Config::parse`]; unknown or missing fields become
/// an [`Error::InvalidConfig`] naming the field.
#[derive(Debug, Clone, Default)]
pub struct Config(String);

impl Config {
    /// Wraps configuration JSON text.
    pub fn new(json: impl Into<String>) -> Self {
        Self(json.into())
    }

    /// Parses the configuration into `T`.
    ///
    /// ```
    /// # use sluice_plugin_sdk::Config;
    /// #[derive(Debug, serde::Deserialize)]
    /// #[serde(deny_unknown_fields)]
    /// struct Settings { url: String }
    ///
    /// let settings: Settings = Config::new(r#"{"url": "https://example.com"}"#).parse().unwrap();
    /// assert_eq!(settings.url, "https://example.com");
    ///
    /// let err = Config::new(r#"{"uri": "x"}"#).parse::<Settings>().unwrap_err();
    /// assert!(err.to_string().contains("unknown field `uri`"));
    /// ```
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, Error> {
        let json = if self.0.trim().is_empty() {
            "{}"
        } else {
            &self.0
        };
        serde_json::from_str(json).map_err(|e| Error::InvalidConfig(e.to_string()))
    }

    /// The configuration as JSON text.
    pub fn as_json(&self) -> &str {
        &self.0
    }
}
