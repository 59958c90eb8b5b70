//! Secret outputs between tasks: one action mints a secret output (logging it first, as a
//! careless plugin would), another checks that a variable it is given holds the value it
//! expects — failing otherwise, and never printing the value it got. Both read the value from
//! a granted file, so that it is in no pipeline (a release stores its plan).

use sluice_plugin_sdk::{Error, Report, TaskInput, log};

fn read(path: &str) -> Result<String, Error> {
    std::fs::read_to_string(path).map_err(|e| Error::failed(format!("cannot read {path}: {e}")))
}

/// Outputs the content of `path` as the secret output `name`, after writing it to the log.
pub(crate) fn mint(name: &str, path: &str) -> Result<Report, Error> {
    let value = read(path)?;
    log::info(format!("minted {value}"));
    Ok(Report::new().secret_output(name, value))
}

/// Succeeds when variable `name` holds the content of `path` and is marked secret; otherwise
/// fails saying which.
pub(crate) fn expect(input: &TaskInput, name: &str, path: &str) -> Result<Report, Error> {
    let value = read(path)?;
    let Some(variable) = input.variables.iter().find(|v| v.name == name) else {
        return Err(Error::failed(format!("variable `{name}` is not set")));
    };
    if !variable.secret {
        return Err(Error::failed(format!("variable `{name}` is not secret")));
    }
    if variable.value != value {
        let got = if variable.value == "***" {
            "`***`"
        } else {
            "another value"
        };
        return Err(Error::failed(format!(
            "variable `{name}` is {got}, not the expected value"
        )));
    }
    log::info(format!("variable `{name}` holds {value}"));
    Ok(Report::new())
}
