//! Plugins in OCI registries: `oci://` references, the Distribution client, and the CNCF Wasm
//! OCI artifact layout a component is pushed and pulled as. Only this module (besides the API
//! and the CLI's client of it) speaks HTTP from the host; what it pulls is verified by digest
//! before it reaches the plugin host.

mod client;
mod pull;
mod reference;
mod wasm;

pub use client::{Client, Credentials};
pub use pull::{Pin, Registries, pin, pin_known, pinned_source, pins_in, pull};
pub use reference::{OciRef, SCHEME};
pub use wasm::{ARTIFACT_TYPE, Pulled, layer_of, pull_component, push_component, resolve};

/// Credentials for registries from the environment: `SLUICE_REGISTRY_USERNAME` and
/// `SLUICE_REGISTRY_PASSWORD`, or none.
pub fn credentials_from_env() -> Credentials {
    match (
        std::env::var("SLUICE_REGISTRY_USERNAME"),
        std::env::var("SLUICE_REGISTRY_PASSWORD"),
    ) {
        (Ok(username), Ok(password)) => Credentials::Basic { username, password },
        _ => Credentials::Anonymous,
    }
}
