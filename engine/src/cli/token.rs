//! `sluice token`: new random API tokens, and the sha256 that `sluice.toml` lists for one.

use anyhow::Context as _;
use clap::Subcommand;
use sluice::service::hash_token;

use super::Exit;

#[derive(Debug, Subcommand)]
pub(super) enum TokenCommand {
    /// Print a new random API token and the sha256 to put in sluice.toml.
    New,
    /// Print the sha256 of a token read from standard input.
    Hash,
}

pub(super) fn token(command: TokenCommand) -> anyhow::Result<Exit> {
    match command {
        TokenCommand::New => {
            let mut bytes = [0u8; 24];
            getrandom(&mut bytes)?;
            let token = format!("slc_{}", hex::encode(bytes));
            println!("token:        {token}");
            println!("token-sha256: {}", hash_token(&token));
        }
        TokenCommand::Hash => {
            let mut token = String::new();
            std::io::stdin().read_line(&mut token)?;
            println!("{}", hash_token(token.trim()));
        }
    }
    Ok(Exit::Success)
}

fn getrandom(buf: &mut [u8]) -> anyhow::Result<()> {
    use std::io::Read as _;
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(buf))
        .context("reading /dev/urandom")
}
