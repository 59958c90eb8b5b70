//! `[[pools]]` and `[agents]` in `sluice.toml`: the agent pools a stage's `pool` may name, and
//! which agent tokens (stored hashed, as users' are) may join which pool. None by default: a
//! service without pools runs every stage itself, and refuses a pipeline that names a pool.
//!
//! ```toml
//! [[pools]]
//! name = "eu-prod"
//! tokens-sha256 = ["<sha256 of an agent token>"]   # see `sluice token new` / `token hash`
//! tokens-env = ["EU_AGENT_TOKEN"]                  # or read from the environment at start
//!
//! [agents]
//! renew = "10s"    # how often an agent renews its leases; three missed and it is lost
//! poll = "30s"     # how long an idle agent's request for a job is held open
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::hash_token;
use crate::types::{Name, parse_duration};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawPool {
    name: String,
    #[serde(default)]
    tokens_sha256: Vec<String>,
    #[serde(default)]
    tokens_env: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawAgents {
    renew: Option<String>,
    poll: Option<String>,
}

/// The pools, the agent tokens that may join them, and the lease timing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pools {
    /// Pool names, sorted.
    pub names: Vec<String>,
    /// Agent token hashes -> the pools each may join.
    pub tokens: BTreeMap<String, Vec<String>>,
    /// How often an agent renews its leases (it is lost after three renewals missed).
    pub renew: Duration,
    /// How long an idle agent's request for a job is held open.
    pub poll: Duration,
}

impl Default for Pools {
    fn default() -> Self {
        Self {
            names: Vec::new(),
            tokens: BTreeMap::new(),
            renew: Duration::from_secs(10),
            poll: Duration::from_secs(30),
        }
    }
}

impl Pools {
    /// Whether `pool` is declared.
    pub fn has(&self, pool: &str) -> bool {
        self.names.iter().any(|p| p == pool)
    }

    /// How long a lease lasts without a renewal: three renewals.
    pub fn lease(&self) -> Duration {
        self.renew.saturating_mul(3)
    }
}

/// The `[[pools]]` and `[agents]` of the file `shown`; each problem names the entry and what to
/// write. A token that is also a user's is refused: user tokens never reach agent routes.
pub(super) fn read(
    raw: &[RawPool],
    agents: &RawAgents,
    users: &BTreeMap<String, super::User>,
    shown: &std::path::Display<'_>,
    problems: &mut Vec<String>,
) -> Pools {
    let mut pools = Pools::default();
    for (i, pool) in raw.iter().enumerate() {
        let at = format!("{shown}: pools[{i}] ({})", pool.name);
        if let Err(e) = Name::new(&pool.name) {
            problems.push(format!("{shown}: pools[{i}].name: {e}"));
            continue;
        }
        if pools.has(&pool.name) {
            problems.push(format!("{at}: a pool of this name is listed twice"));
            continue;
        }
        let mut hashes = Vec::new();
        for hash in &pool.tokens_sha256 {
            let hash = hash.to_ascii_lowercase();
            if hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()) {
                hashes.push(hash);
            } else {
                problems.push(format!(
                    "{at}: tokens-sha256: `{}` is not 64 hex digits (see `sluice token hash`)",
                    crate::types::escape(&hash)
                ));
            }
        }
        for var in &pool.tokens_env {
            match std::env::var(var) {
                Ok(token) if token.len() >= 16 => hashes.push(hash_token(&token)),
                Ok(_) => problems.push(format!(
                    "{at}: tokens-env: the token in ${var} is shorter than 16 characters (see `sluice token new`)"
                )),
                Err(_) => problems.push(format!("{at}: tokens-env: ${var} is not set")),
            }
        }
        if hashes.is_empty() && pool.tokens_sha256.is_empty() && pool.tokens_env.is_empty() {
            problems.push(format!(
                "{at}: no agent may join it: list tokens-sha256 or tokens-env"
            ));
        }
        for hash in hashes {
            if let Some(user) = users.get(&hash) {
                problems.push(format!(
                    "{at}: an agent token is also the token of user {}: give agents tokens of their own",
                    user.name
                ));
                continue;
            }
            let joins = pools.tokens.entry(hash).or_default();
            if !joins.contains(&pool.name) {
                joins.push(pool.name.clone());
            }
        }
        pools.names.push(pool.name.clone());
    }
    pools.names.sort();
    let mut duration = |key: &str, text: Option<&str>, default: Duration, least: Duration| {
        let problem = match text.map(parse_duration) {
            None => return default,
            Some(Ok(d)) if d >= least => return d,
            Some(Ok(_)) => format!("must be at least {}ms", least.as_millis()),
            Some(Err(e)) => e,
        };
        problems.push(format!("{shown}: agents.{key}: {problem}"));
        default
    };
    let least = Duration::from_millis(100);
    pools.renew = duration("renew", agents.renew.as_deref(), pools.renew, least);
    pools.poll = duration("poll", agents.poll.as_deref(), pools.poll, least);
    pools
}

#[cfg(test)]
mod tests {
    use super::super::ServiceConfig;
    use super::*;

    fn load(text: &str) -> Result<ServiceConfig, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sluice.toml");
        std::fs::write(&path, format!("pipelines = \"p\"\n{text}")).unwrap();
        ServiceConfig::load(&path)
    }

    #[test]
    fn pools_and_their_tokens_are_read_hashed() {
        let hash = hash_token("agent-token-of-sixteen");
        let config = load(&format!(
            "[[pools]]\nname = \"eu-prod\"\ntokens-sha256 = [\"{}\"]\n\
             [[pools]]\nname = \"us\"\ntokens-sha256 = [\"{hash}\"]\n\
             [agents]\nrenew = \"2s\"\npoll = \"5s\"\n",
            hash.to_uppercase()
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.pools.names, ["eu-prod", "us"]);
        assert_eq!(config.pools.tokens[&hash], ["eu-prod", "us"]);
        assert_eq!(config.pools.lease(), Duration::from_secs(6));
        assert_eq!(config.pools.poll, Duration::from_secs(5));
        assert_eq!(load("").unwrap().pools, Pools::default());
    }

    #[test]
    fn bad_pools_are_refused_naming_the_entry() {
        let user = hash_token("a-user-token-of-sixteen");
        let e = load(&format!(
            "[[users]]\nname = \"ada\"\ntoken-sha256 = \"{user}\"\nroles = [\"admin\"]\n\
             [[pools]]\nname = \"Bad Pool\"\ntokens-sha256 = [\"{user}\"]\n\
             [[pools]]\nname = \"empty\"\n\
             [[pools]]\nname = \"shared\"\ntokens-sha256 = [\"{user}\", \"xyz\"]\n\
             [[pools]]\nname = \"shared\"\ntokens-env = [\"SLUICE_TEST_NO_SUCH_VAR\"]\n\
             [agents]\nrenew = \"0s\"\n"
        ))
        .unwrap_err();
        for problem in [
            "pools[0].name: `Bad Pool` is not a valid name",
            "pools[1] (empty): no agent may join it",
            "pools[2] (shared): an agent token is also the token of user ada",
            "pools[2] (shared): tokens-sha256: `xyz` is not 64 hex digits",
            "pools[3] (shared): a pool of this name is listed twice",
            "agents.renew: must be at least 100ms",
        ] {
            assert!(e.contains(problem), "{problem}\nin: {e}");
        }
    }
}
