//! The `sluice` binary: parse flags into a finished command, run it, print errors once as
//! `sluice: {err:#}`, and exit with a documented code.

use std::process::ExitCode;

use clap::Parser;

mod cli;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SLUICE_LOG")
                .unwrap_or_else(|_| "warn,wasmtime_wasi_http=error".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(code) => code.into(),
        Err(err) => {
            eprintln!("sluice: {err:#}");
            cli::Exit::Usage.into()
        }
    }
}
