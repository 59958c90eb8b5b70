//! Which variables a release request may set: the one rule, read from the plan. Only the
//! pipeline's variables declared `settable = true` may be; `sluice.*` is reserved and a secret
//! never is (validation refuses `settable` on a secret or a stage's variable). Creating a
//! release refuses anything else; the scope a task sees drops anything else (releases stored
//! before the rule existed).

use super::plan::Plan;

/// The reserved prefix of the built-in variables.
pub const RESERVED_PREFIX: &str = "sluice.";

impl Plan {
    /// The variables a release request may set, in name order.
    pub fn settable(&self) -> Vec<&str> {
        self.variables
            .iter()
            .filter(|v| v.settable && !v.secret)
            .map(|v| v.name.as_str())
            .collect()
    }

    /// Whether a release request may set `name`; if not, why.
    pub fn settable_at_release(&self, name: &str) -> Result<(), String> {
        if name.starts_with(RESERVED_PREFIX) {
            return Err("`sluice.*` is reserved".into());
        }
        match self.variables.iter().find(|v| v.name == name) {
            None => Err("the pipeline declares no such variable".into()),
            Some(v) if v.secret => Err(
                "it is a secret (secrets come from the environment or a file, never from a release)"
                    .into(),
            ),
            Some(v) if !v.settable => Err("the pipeline does not declare it `settable = true`".into()),
            Some(_) => Ok(()),
        }
    }

    /// Refuses the first variable of `variables` a release request may not set, naming it and
    /// the ones that may be set.
    pub fn check_release_variables(
        &self,
        variables: &[(String, String)],
    ) -> Result<(), NotSettable> {
        for (name, _) in variables {
            if let Err(reason) = self.settable_at_release(name) {
                return Err(NotSettable {
                    name: name.clone(),
                    reason,
                    settable: self.settable().into_iter().map(str::to_owned).collect(),
                });
            }
        }
        Ok(())
    }
}

/// A variable a release request may not set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "variable `{name}` cannot be set at release time: {reason}; settable: {}",
    list(.settable)
)]
pub struct NotSettable {
    /// The variable.
    pub name: String,
    /// Why not.
    pub reason: String,
    /// The variables that may be set.
    pub settable: Vec<String>,
}

fn list(names: &[String]) -> String {
    match names.is_empty() {
        true => "none (declare one with `settable = true` under `[variables]`)".into(),
        false => names.join(", "),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    const PIPELINE: &str = r#"
version = 1
[variables]
site-title = { value = "Space Game", settable = true }
region = "eu"
token = { secret = true, from-env = "TOKEN" }
[[stages]]
name = "dev"
"#;

    fn refusal(variables: &[(&str, &str)]) -> Option<String> {
        let plan = crate::pipeline::parse("p.toml", PIPELINE, Path::new("/p"), "p")
            .unwrap()
            .plan;
        let variables: Vec<(String, String)> = variables
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect();
        plan.check_release_variables(&variables)
            .err()
            .map(|e| e.to_string())
    }

    #[test]
    fn only_declared_settable_variables_may_be_set() {
        assert_eq!(refusal(&[("site-title", "Moon Base")]), None);
        assert_eq!(refusal(&[]), None);
        let refused = |name: &str, reason: &str| {
            Some(format!(
                "variable `{name}` cannot be set at release time: {reason}; settable: site-title"
            ))
        };
        assert_eq!(
            refusal(&[("site-title", "x"), ("sluice.data-dir", "/tmp/x")]),
            refused("sluice.data-dir", "`sluice.*` is reserved")
        );
        assert_eq!(
            refusal(&[("sluice.unknown", "x")]),
            refused("sluice.unknown", "`sluice.*` is reserved")
        );
        assert_eq!(
            refusal(&[("colour", "red")]),
            refused("colour", "the pipeline declares no such variable")
        );
        assert_eq!(
            refusal(&[("region", "us")]),
            refused(
                "region",
                "the pipeline does not declare it `settable = true`"
            )
        );
        assert_eq!(
            refusal(&[("token", "clear")]),
            refused(
                "token",
                "it is a secret (secrets come from the environment or a file, never from a release)"
            )
        );
    }
}
