//! {{name}}: a Sluice gate. Healthy when a file in a granted directory contains a text, e.g.
//! the version a deployment should have published.

use serde::Deserialize;
use sluice_plugin_sdk::{Error, Gate, Health, TaskInput};

/// The gate's configuration: what the pipeline writes under the gate's `config`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// A guest path inside a granted directory, e.g. `/site/index.html`.
    file: String,
    /// The text the file must contain.
    contains: String,
}

/// The plugin's logic, kept free of I/O so that the tests below can check it.
pub fn check(text: &str, expected: &str) -> Health {
    if text.contains(expected) {
        Health::Healthy
    } else {
        Health::Unhealthy(format!("the file does not contain {expected:?} yet"))
    }
}

struct Contains;

impl Gate for Contains {
    fn evaluate(input: TaskInput) -> Result<Health, Error> {
        let config: Config = input.config.parse()?;
        let text = std::fs::read_to_string(&config.file)
            .map_err(|e| Error::failed(format!("cannot read {}: {e}", config.file)))?;
        Ok(check(&text, &config.contains))
    }
}

sluice_plugin_sdk::export_gate!(Contains);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn healthy_when_the_text_is_there() {
        assert_eq!(
            check("<h1>Version 1.2</h1>", "Version 1.2"),
            Health::Healthy
        );
    }

    #[test]
    fn unhealthy_says_what_is_missing() {
        let Health::Unhealthy(why) = check("<h1>Version 1.1</h1>", "Version 1.2") else {
            panic!("expected unhealthy");
        };
        assert!(why.contains("Version 1.2"), "{why}");
    }
}
