//! The `sluice` binary: parse flags into a finished command, run it, print errors once as
//! `sluice: {err:#}`, and exit with a documented code.

use std::process::ExitCode;

use clap::Parser;

mod cli;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    let log = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SLUICE_LOG")
                .unwrap_or_else(|_| "warn,wasmtime_wasi_http=error".into()),
        )
        .with_writer(std::io::stderr);
    match args.log_format {
        cli::LogFormat::Text => log.init(),
        cli::LogFormat::Json => log.json().init(),
    }
    sluice::store::on_failure_exit(cli::fail_stop);
    match cli::run(args) {
        Ok(code) => code.into(),
        Err(err) => {
            // Engine text, several lines at times (diagnostics); what a plugin or a server
            // put in it is escaped line by line.
            let text = format!("{err:#}");
            eprintln!("sluice: {}", sluice::types::text::Lines(&text));
            cli::exit_for(&err).into()
        }
    }
}
