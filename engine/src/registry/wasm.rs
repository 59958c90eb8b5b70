//! A component as an OCI artifact, the CNCF Wasm OCI layout: a manifest whose config has media
//! type `application/vnd.wasm.config.v0+json` and whose one layer is the component,
//! `application/wasm`. Pulling checks the manifest against the reference's digest and the
//! layer against the manifest's, so the bytes that reach the plugin host are the ones pinned.

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::client::Client;
use super::reference::OciRef;
use crate::plugin::Digest;

/// The manifest's media type.
pub const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// The config's media type: what marks the artifact as a Wasm component.
pub const ARTIFACT_TYPE: &str = "application/vnd.wasm.config.v0+json";
/// The layer's media type.
pub const LAYER_TYPE: &str = "application/wasm";

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Manifest {
    config: Descriptor,
    layers: Vec<Descriptor>,
}

#[derive(Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    media_type: String,
    digest: String,
    size: u64,
}

/// A component pulled from a registry.
#[derive(Debug)]
pub struct Pulled {
    /// The manifest's digest (what the reference pins).
    pub manifest: Digest,
    /// The manifest's bytes.
    pub manifest_bytes: Vec<u8>,
    /// The component's bytes, verified against the layer's digest.
    pub component: Vec<u8>,
}

/// Pushes `component` to `reference` (which names a tag); returns the manifest's digest.
pub async fn push_component(
    client: &Client,
    reference: &OciRef,
    component: &[u8],
) -> Result<Digest, String> {
    let tag = reference.tag.as_deref().ok_or_else(|| {
        format!("`{reference}` names no tag to push to: write oci://HOST/REPO:TAG")
    })?;
    let config = br#"{"architecture":"wasm","os":"wasip2"}"#;
    let config_digest = client.push_blob(&reference.repository, config).await?;
    let layer_digest = client.push_blob(&reference.repository, component).await?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "artifactType": ARTIFACT_TYPE,
        "config": {"mediaType": ARTIFACT_TYPE, "digest": config_digest.to_string(), "size": config.len()},
        "layers": [{"mediaType": LAYER_TYPE, "digest": layer_digest.to_string(), "size": component.len()}],
    });
    let bytes = serde_json::to_vec(&manifest).map_err(|e| e.to_string())?;
    client
        .push_manifest(&reference.repository, tag, &bytes, MANIFEST_TYPE)
        .await
}

/// The digest `reference` pins, resolving its tag when it has none.
pub async fn resolve(client: &Client, reference: &OciRef) -> Result<Digest, String> {
    match (&reference.digest, &reference.tag) {
        (Some(digest), _) => Ok(*digest),
        (None, Some(tag)) => {
            client
                .resolve(&reference.repository, tag, MANIFEST_TYPE)
                .await
        }
        (None, None) => Err(format!("`{reference}` has neither a tag nor a digest")),
    }
}

/// Pulls the component `reference` pins (it must have a digest), of at most `max_size` bytes.
pub async fn pull_component(
    client: &Client,
    reference: &OciRef,
    max_size: u64,
) -> Result<Pulled, String> {
    let digest = reference
        .digest
        .ok_or_else(|| format!("`{reference}` is not pinned to a digest"))?;
    let manifest_bytes = client
        .manifest(&reference.repository, &digest, MANIFEST_TYPE)
        .await?;
    let component = component_of(client, reference, &manifest_bytes, max_size).await?;
    Ok(Pulled {
        manifest: digest,
        manifest_bytes,
        component,
    })
}

/// The component layer a (verified) manifest names.
pub fn layer_of(manifest: &[u8]) -> Result<(Digest, u64), String> {
    let manifest: Manifest = serde_json::from_slice(manifest)
        .map_err(|e| format!("its manifest is not an OCI image manifest: {e}"))?;
    if manifest.config.media_type != ARTIFACT_TYPE {
        return Err(format!(
            "it is not a Wasm component artifact: its config is `{}`, not `{ARTIFACT_TYPE}`",
            manifest.config.media_type
        ));
    }
    let wasm: Vec<&Descriptor> = manifest
        .layers
        .iter()
        .filter(|l| l.media_type == LAYER_TYPE)
        .collect();
    let [layer] = wasm.as_slice() else {
        return Err(format!(
            "it has {} `{LAYER_TYPE}` layers: a component artifact has exactly one",
            wasm.len()
        ));
    };
    let digest = Digest::parse(&layer.digest)
        .filter(|_| layer.digest.starts_with("sha256:"))
        .ok_or_else(|| format!("its layer digest `{}` is not sha256", layer.digest))?;
    Ok((digest, layer.size))
}

async fn component_of(
    client: &Client,
    reference: &OciRef,
    manifest: &[u8],
    max_size: u64,
) -> Result<Vec<u8>, String> {
    let (digest, size) = layer_of(manifest)?;
    if size > max_size {
        return Err(format!(
            "its component is {size} bytes, over the limit of {max_size} (limits.plugin-size)"
        ));
    }
    client
        .blob(
            &reference.repository,
            &digest,
            usize::try_from(max_size).unwrap_or(usize::MAX),
        )
        .await
}
