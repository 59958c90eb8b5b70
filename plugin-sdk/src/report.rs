//! What tasks and gates report back.

/// What a successful task reports: warnings and output variables.
///
/// ```
/// # use sluice_plugin_sdk::Report;
/// let report = Report::new()
///     .warn("3 files were skipped")
///     .output("deployed-version", "1.4.2");
/// assert!(report.has_issues());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Issues worth a look. When non-empty the task *succeeded with issues*.
    pub warnings: Vec<String>,
    /// Variables for later tasks and stages.
    pub outputs: Vec<Output>,
}

/// A variable handed to later tasks and stages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// Name; later tasks read it as a variable of the same name.
    pub name: String,
    /// The value.
    pub value: String,
    /// True if the value must be masked in logs.
    pub secret: bool,
}

impl Report {
    /// A report of plain success: no warnings, no outputs.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a warning: the task will have *succeeded with issues*.
    pub fn warn(mut self, warning: impl Into<String>) -> Self {
        self.warnings.push(warning.into());
        self
    }

    /// Adds an output variable.
    pub fn output(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.outputs.push(Output {
            name: name.into(),
            value: value.into(),
            secret: false,
        });
        self
    }

    /// Adds a secret output variable: masked in logs like any other secret.
    pub fn secret_output(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.outputs.push(Output {
            name: name.into(),
            value: value.into(),
            secret: true,
        });
        self
    }

    /// True when the report carries warnings.
    pub fn has_issues(&self) -> bool {
        !self.warnings.is_empty()
    }
}

/// The result of one gate evaluation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// The condition holds.
    Healthy,
    /// The condition does not hold; the string says why.
    Unhealthy(String),
}
