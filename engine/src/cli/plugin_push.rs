//! `sluice plugin push FILE oci://HOST/REPO:TAG`: a component published to an OCI registry in
//! the CNCF Wasm layout, its manifest digest printed for pipelines to pin.

use std::path::Path;

use anyhow::{Context as _, bail};
use sluice::builtin::builtin;
use sluice::plugin::{Digest, worlds_of};
use sluice::registry::{self, Client, OciRef};

use super::Exit;

pub(super) fn push(plugin: &str, reference: &str, cwd: &Path) -> anyhow::Result<Exit> {
    let target = OciRef::parse(reference).map_err(anyhow::Error::msg)?;
    if target.digest.is_some() || target.tag.is_none() {
        bail!(
            "push to a tag, without a digest: oci://{}/{}:TAG",
            target.registry,
            target.repository
        );
    }
    let bytes = match builtin(plugin) {
        Some(found) => found.bytes.to_vec(),
        None => {
            let path = cwd.join(plugin);
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?
        }
    };
    // What is pushed is what was checked: a component exporting a plugin world.
    let worlds = worlds_of(&bytes, plugin.to_owned())?;
    let client = Client::new(&target.registry, registry::credentials_from_env());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let digest = runtime
        .block_on(registry::push_component(&client, &target, &bytes))
        .map_err(anyhow::Error::msg)?;
    let names: Vec<String> = worlds.iter().map(ToString::to_string).collect();
    println!(
        "pushed {plugin} ({} bytes, {}, component {}) to {reference}",
        bytes.len(),
        names.join(", "),
        Digest::of(&bytes)
    );
    println!("{digest}");
    println!("use it as: plugin = \"{}\"", target.pinned(digest));
    Ok(Exit::Success)
}
