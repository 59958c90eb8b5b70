//! Demands and capabilities: what a stage needs of the agent that runs it (`docker`, a bare
//! name: the capability exists; `region=eu`: it has that value), and what an agent offers. One
//! rule for the names and values on both sides, so a demand that could never be met is refused
//! where it is written.

use std::collections::BTreeMap;
use std::fmt;

/// The longest capability name.
pub const MAX_KEY: usize = 64;
/// The longest capability value.
pub const MAX_VALUE: usize = 128;

/// A stage's demand on an agent's capabilities.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Demand {
    /// The capability's name.
    pub key: String,
    /// The value it must have; `None`: it must exist.
    pub value: Option<String>,
}

/// An agent's capabilities, by name.
pub type Capabilities = BTreeMap<String, String>;

/// Checks a capability's name: 1 to 64 ASCII letters, digits, `.`, `_` or `-`.
pub fn check_key(key: &str) -> Result<(), String> {
    if key.is_empty() || key.len() > MAX_KEY {
        return Err(format!(
            "capability name `{}` must be 1 to {MAX_KEY} characters",
            super::escape(key)
        ));
    }
    if let Some(c) = key
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "capability name `{}` holds `{}`: use ASCII letters, digits, `.`, `_` and `-`",
            super::escape(key),
            super::escape(&c.to_string())
        ));
    }
    Ok(())
}

/// Checks a capability's value: up to 128 visible ASCII characters (no spaces).
pub fn check_value(key: &str, value: &str) -> Result<(), String> {
    if value.len() > MAX_VALUE || !value.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "the value of capability `{key}` must be at most {MAX_VALUE} visible ASCII \
             characters, without spaces: `{}`",
            super::escape(value)
        ));
    }
    Ok(())
}

/// Parses `name` or `name=value` (a demand, or a capability on `sluice agent`'s command line).
pub fn parse_pair(text: &str) -> Result<(String, Option<String>), String> {
    let (key, value) = match text.split_once('=') {
        Some((key, value)) => (key, Some(value)),
        None => (text, None),
    };
    check_key(key)?;
    if let Some(value) = value {
        check_value(key, value)?;
    }
    Ok((key.to_owned(), value.map(str::to_owned)))
}

impl Demand {
    /// Parses `name` or `name=value`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (key, value) = parse_pair(text)?;
        Ok(Self { key, value })
    }

    /// Whether `capabilities` meet this demand.
    pub fn met_by(&self, capabilities: &Capabilities) -> bool {
        match (&self.value, capabilities.get(&self.key)) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some(want), Some(have)) => want == have,
        }
    }
}

impl fmt::Display for Demand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Some(value) => write!(f, "{}={value}", self.key),
            None => f.write_str(&self.key),
        }
    }
}

/// The demands of a plan's stage (stored as written, checked when the pipeline was validated);
/// one that does not parse any more is kept as a demand nothing meets.
pub fn demands_of(written: &[String]) -> Vec<Demand> {
    written
        .iter()
        .map(|text| {
            Demand::parse(text).unwrap_or_else(|_| Demand {
                key: text.clone(),
                value: Some(String::new()),
            })
        })
        .collect()
}

/// The demands `capabilities` do not meet.
pub fn unmet<'a>(demands: &'a [Demand], capabilities: &Capabilities) -> Vec<&'a Demand> {
    demands.iter().filter(|d| !d.met_by(capabilities)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_name_needs_the_capability_and_a_pair_needs_its_value() {
        let caps: Capabilities = [("region".into(), "eu".into()), ("docker".into(), "".into())]
            .into_iter()
            .collect();
        let demands = demands_of(&["docker".into(), "region=eu".into()]);
        assert!(unmet(&demands, &caps).is_empty());
        let demands = demands_of(&["region=us".into(), "gpu".into(), "docker".into()]);
        let missing: Vec<String> = unmet(&demands, &caps)
            .iter()
            .map(|d| d.to_string())
            .collect();
        assert_eq!(missing, ["region=us", "gpu"]);
    }

    #[test]
    fn names_and_values_outside_the_rule_are_refused_naming_the_character() {
        assert!(Demand::parse("region=eu").is_ok());
        assert!(Demand::parse("node.version=22.1").is_ok());
        let e = Demand::parse("re gion").unwrap_err();
        assert!(
            e.contains("holds `U+0020`") || e.contains("holds ` `"),
            "{e}"
        );
        assert!(Demand::parse("").unwrap_err().contains("1 to 64"));
        assert!(
            Demand::parse("a=b c")
                .unwrap_err()
                .contains("without spaces")
        );
        assert!(Demand::parse(&"k".repeat(65)).is_err());
        assert!(Demand::parse(&format!("k={}", "v".repeat(129))).is_err());
        // A value may be empty: `docker=` demands the capability with an empty value.
        assert_eq!(Demand::parse("docker=").unwrap().value.as_deref(), Some(""));
    }
}
