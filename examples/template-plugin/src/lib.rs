//! A Sluice task plugin to copy and start from: it writes a greeting into a file in a granted
//! directory and hands the file's path to later tasks.
//!
//! Build: `cargo build --release --target wasm32-wasip2`
//! Try:   `sluice plugin run target/wasm32-wasip2/release/sluice_template_plugin.wasm \
//!           --config task.toml --grant-dir /tmp/out:/out:rw`

use serde::Deserialize;
use sluice_plugin_sdk::{Error, Report, Task, TaskInput, log};

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

struct Greet;

impl Task for Greet {
    fn run(input: TaskInput) -> Result<Report, Error> {
        let config: Config = input.config.parse()?;
        let ctx = &input.context;
        let greeting = format!(
            "Hello, {}! ({} on {})\n",
            config.name, ctx.release, ctx.stage
        );

        log::info(format!("writing greeting to {}", config.file));
        std::fs::write(&config.file, &greeting)
            .map_err(|e| Error::failed(format!("cannot write {}: {e}", config.file)))?;

        Ok(Report::new().output("greeting-file", config.file))
    }
}

sluice_plugin_sdk::export_task!(Greet);
