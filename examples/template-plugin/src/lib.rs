//! {{name}}: a Sluice deployment task. It writes a greeting into a file in a granted directory
//! and hands the file's path and the greeting to later tasks and stages.
//!
//! This file is also what `sluice plugin new NAME --lang rust` writes (with `{{name}}` filled in).
//! Build: `sluice plugin build` (or `cargo build --release --target wasm32-wasip2`)
//! Try:   `sluice plugin run --config task.toml --grant-dir /tmp/out:/out:rw`

use serde::Deserialize;
use sluice_plugin_sdk::{Context, Error, Report, Task, TaskInput, log};

/// The task's configuration: what the pipeline writes under the task's `config`.
/// `deny_unknown_fields` turns a typo in the pipeline into a clear error.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// Who to greet.
    name: String,
    /// Where to write the greeting: a guest path inside a read-write grant.
    file: String,
}

/// The plugin's logic, kept free of I/O so that the tests below can check it.
pub fn greeting(name: &str, context: &Context) -> String {
    format!(
        "Hello, {name}! ({} on {})\n",
        context.release, context.stage
    )
}

struct Greet;

impl Task for Greet {
    fn run(input: TaskInput) -> Result<Report, Error> {
        let config: Config = input.config.parse()?;
        let greeting = greeting(&config.name, &input.context);

        log::info(format!("writing greeting to {}", config.file));
        std::fs::write(&config.file, &greeting)
            .map_err(|e| Error::failed(format!("cannot write {}: {e}", config.file)))?;

        Ok(Report::new()
            .output("greeting-file", config.file)
            .output("greeting", greeting.trim()))
    }
}

sluice_plugin_sdk::export_task!(Greet);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greets_by_name_release_and_stage() {
        let context = Context {
            pipeline: "web".into(),
            release: "web-7".into(),
            release_number: 7,
            stage: "prod".into(),
            attempt: 1,
            artifacts: vec![],
            workspace: None,
        };
        assert_eq!(greeting("Ada", &context), "Hello, Ada! (web-7 on prod)\n");
    }
}
