//! Pinning a plan's `oci://` plugins: each tag is resolved to the manifest digest it names now,
//! the reference in the plan is rewritten to carry it (`oci://HOST/REPO:TAG@sha256:HEX`), and the
//! component is pulled into the plugin store — once, when the pipeline is stored (by the CLI or
//! the service). Everything after (checks, releases, deployments) reads the store, never the
//! network, so a tag that moves later changes nothing already stored.

use std::collections::BTreeMap;

use super::client::{Client, Credentials};
use super::reference::{OciRef, SCHEME};
use super::wasm::{pull_component, resolve};
use crate::pipeline::{Diagnostic, PipelineError, Plan};
use crate::plugin::{Digest, PluginHost};

/// Which registries plugins may be pulled from, and as whom.
#[derive(Debug, Clone)]
pub struct Registries {
    /// `None`: any registry, with `anywhere`'s credentials (the CLI, run by the pipeline's own
    /// author). `Some`: only these hosts (service mode: `[[registries]]` in `sluice.toml`).
    listed: Option<BTreeMap<String, Credentials>>,
    anywhere: Credentials,
}

impl Registries {
    /// Any registry, as the user `SLUICE_REGISTRY_USERNAME` / `_PASSWORD` name, if set.
    pub fn any_from_env() -> Self {
        Self {
            listed: None,
            anywhere: super::credentials_from_env(),
        }
    }

    /// Only the registries listed (host or host:port, as references write them).
    pub fn only(listed: BTreeMap<String, Credentials>) -> Self {
        Self {
            listed: Some(listed),
            anywhere: Credentials::Anonymous,
        }
    }

    /// The credentials for `registry`, or why it may not be used.
    fn credentials(&self, registry: &str) -> Result<Credentials, String> {
        match &self.listed {
            None => Ok(self.anywhere.clone()),
            Some(listed) => listed.get(registry).cloned().ok_or_else(|| {
                let known: Vec<&str> = listed.keys().map(String::as_str).collect();
                format!(
                    "registry `{registry}` is not one this service pulls plugins from (it pulls from: {}); \
                     an operator adds it under [[registries]] in sluice.toml",
                    if known.is_empty() { "none".to_owned() } else { known.join(", ") }
                )
            }),
        }
    }
}

impl Default for Registries {
    /// None at all: every `oci://` plugin is refused.
    fn default() -> Self {
        Self::only(BTreeMap::new())
    }
}

/// One reference pinned: as written, and as the plan now holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pin {
    /// As written in the pipeline.
    pub written: String,
    /// With the digest (the same text when it had one).
    pub pinned: String,
    /// The manifest's digest.
    pub digest: Digest,
}

/// Pins every `oci://` plugin of `plan` and pulls what `host` does not have (see the module).
/// Every reference that fails is reported, each naming what to fix; `plan` is changed only when
/// all succeed.
pub fn pin(
    plan: &mut Plan,
    host: &PluginHost,
    registries: &Registries,
) -> Result<Vec<Pin>, PipelineError> {
    pin_known(plan, host, registries, &BTreeMap::new())
}

/// [`pin`], keeping the pins in `known` (written -> pinned, see [`pins_in`]) whose components
/// the plugin store has: what the service does at start, where a stored pipeline's tags were
/// resolved once already (and a registry that is down does not stop the start).
pub fn pin_known(
    plan: &mut Plan,
    host: &PluginHost,
    registries: &Registries,
    known: &BTreeMap<String, String>,
) -> Result<Vec<Pin>, PipelineError> {
    let mut written: Vec<String> = plan
        .plugins()
        .filter(|p| p.starts_with(SCHEME))
        .cloned()
        .collect();
    written.sort();
    written.dedup();
    if written.is_empty() {
        return Ok(Vec::new());
    }
    let mut pins = Vec::new();
    let mut diagnostics = Vec::new();
    for text in &written {
        // A known pin still needs its registry listed: one taken off the list is refused.
        let kept = known.get(text).and_then(|pinned| {
            let reference = OciRef::parse(pinned).ok()?;
            let digest = reference.digest?;
            registries.credentials(&reference.registry).ok()?;
            host.has_pulled(&digest).then(|| (pinned.clone(), digest))
        });
        match kept.map_or_else(|| pin_one(text, host, registries), Ok) {
            Ok((pinned, digest)) => pins.push(Pin {
                written: text.clone(),
                pinned,
                digest,
            }),
            Err(reason) => diagnostics.push(Diagnostic {
                message: format!("plugin `{text}`: {reason}"),
                at: None,
                help: None,
            }),
        }
    }
    if !diagnostics.is_empty() {
        return Err(PipelineError { diagnostics });
    }
    for reference in plan.plugins_mut() {
        if let Some(pin) = pins.iter().find(|p| p.written == *reference) {
            reference.clone_from(&pin.pinned);
        }
    }
    Ok(pins)
}

/// The pins a stored pipeline text holds: each quoted `oci://HOST/REPO:TAG@sha256:…`, by the
/// reference as written (`oci://HOST/REPO:TAG`).
pub fn pins_in(source: &str) -> BTreeMap<String, String> {
    let mut pins = BTreeMap::new();
    for quote in ['"', '\''] {
        let opening = format!("{quote}{SCHEME}");
        let mut rest = source;
        while let Some(at) = rest.find(&opening) {
            let after = &rest[at + 1..];
            let Some(end) = after.find(quote) else { break };
            let text = &after[..end];
            if let Ok(reference) = OciRef::parse(text)
                && reference.tag.is_some()
                && reference.digest.is_some()
            {
                let written = OciRef {
                    digest: None,
                    ..reference
                };
                pins.insert(written.to_string(), text.to_owned());
            }
            rest = &after[end + 1..];
        }
    }
    pins
}

/// One `oci://` reference pinned and its component pulled into `host` (for the plugin commands,
/// which take a reference without a pipeline): the pinned text.
pub fn pull(text: &str, host: &PluginHost, registries: &Registries) -> Result<String, String> {
    pin_one(text, host, registries).map(|(pinned, _)| pinned)
}

/// Rewrites pipeline TOML `source` so it holds the pinned references: each written one, quoted,
/// replaced by its pin. What the service stores, so a restart reads the same digests.
pub fn pinned_source(source: &str, pins: &[Pin]) -> String {
    let mut text = source.to_owned();
    for pin in pins.iter().filter(|p| p.written != p.pinned) {
        for quote in ['"', '\''] {
            text = text.replace(
                &format!("{quote}{}{quote}", pin.written),
                &format!("{quote}{}{quote}", pin.pinned),
            );
        }
    }
    text
}

/// The pinned text of `text` and its digest, its component pulled into `host` unless already there.
fn pin_one(
    text: &str,
    host: &PluginHost,
    registries: &Registries,
) -> Result<(String, Digest), String> {
    let reference = OciRef::parse(text)?;
    let credentials = registries.credentials(&reference.registry)?;
    if let Some(digest) = reference.digest
        && host.has_pulled(&digest)
    {
        return Ok((text.to_owned(), digest));
    }
    let client = Client::new(&reference.registry, credentials);
    // The registry is reached from a thread of its own, with a runtime of its own: callers
    // are the CLI and the service's handlers alike, inside a runtime or not.
    let pulled = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| format!("cannot start a runtime to reach the registry: {e}"))?;
                runtime.block_on(async {
                    let digest = resolve(&client, &reference).await?;
                    if host.has_pulled(&digest) {
                        return Ok((digest, None));
                    }
                    let max_size = host.max_plugin_size();
                    let pulled =
                        pull_component(&client, &reference.pinned(digest), max_size).await?;
                    Ok::<_, String>((digest, Some(pulled)))
                })
            })
            .join()
            .unwrap_or_else(|_| Err("the registry client panicked".into()))
    })?;
    let (digest, pulled) = pulled;
    if let Some(pulled) = pulled {
        host.keep_pulled(&pulled, text).map_err(|e| e.to_string())?;
    }
    Ok((reference.pinned(digest).to_string(), digest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stored_text_carries_each_pin_where_it_is_quoted_and_nowhere_else() {
        let digest = Digest::of(b"manifest");
        let pins = [Pin {
            written: "oci://r.example/team/task:1".into(),
            pinned: format!("oci://r.example/team/task:1@{digest}"),
            digest,
        }];
        let source = "a = \"oci://r.example/team/task:1\"\nb = 'oci://r.example/team/task:1'\n\
                      c = \"oci://r.example/team/task:10\"\n# oci://r.example/team/task:1\n";
        assert_eq!(
            pinned_source(source, &pins),
            format!(
                "a = \"oci://r.example/team/task:1@{digest}\"\nb = 'oci://r.example/team/task:1@{digest}'\n\
                 c = \"oci://r.example/team/task:10\"\n# oci://r.example/team/task:1\n"
            )
        );
    }

    #[test]
    fn the_pins_of_a_stored_text_are_found_by_the_reference_as_written() {
        let digest = Digest::of(b"manifest");
        let source = format!(
            "a = \"oci://r.example/team/task:1@{digest}\"\nb = 'oci://r.example:5000/x:2@{digest}'\n\
             c = \"oci://r.example/team/only-digest@{digest}\"\nd = \"oci://r.example/team/tag:3\"\n\
             e = \"oci://bad host/x:1@{digest}\"\n"
        );
        let pinned = |written: &str| (written.to_owned(), format!("{written}@{digest}"));
        assert_eq!(
            pins_in(&source),
            BTreeMap::from([
                pinned("oci://r.example/team/task:1"),
                pinned("oci://r.example:5000/x:2")
            ])
        );
    }

    #[test]
    fn no_registry_is_allowed_unless_listed() {
        let none = Registries::default();
        let e = none.credentials("r.example").unwrap_err();
        assert!(e.contains("it pulls from: none"), "{e}");
        let one = Registries::only([("r.example".to_owned(), Credentials::Anonymous)].into());
        assert!(one.credentials("r.example").is_ok());
        let e = one.credentials("r.example:443").unwrap_err();
        assert!(e.contains("it pulls from: r.example"), "{e}");
        assert!(
            Registries::any_from_env()
                .credentials("anything.example")
                .is_ok()
        );
    }
}
