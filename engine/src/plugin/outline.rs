//! A plugin's outline: the plugin worlds a component exports, known without compiling it.
//! Start-up checks every pipeline's plugins this way (compiling a component takes seconds),
//! and compiles them afterwards in the background or at first use. The bytes are read and
//! refused exactly as [`PluginHost::load`] reads them (roots, regular file, size, header);
//! then the whole binary is validated (a truncated or damaged file is refused here, as a
//! compilation would) and its top-level exports are read. A plugin already loaded, or whose
//! compilation is in the cache, is loaded instead: cheap, and it checks its imports too.

use std::borrow::Cow;

use super::{Digest, LoadError, PluginHost, PluginRef, World};
use crate::builtin::builtin;

/// Each plugin world by the interface its components export.
const EXPORTS: [(&str, World); 3] = [
    ("sluice:plugin/task@0.1.0", World::Task),
    ("sluice:plugin/artifact-source@0.1.0", World::ArtifactSource),
    ("sluice:plugin/gate@0.1.0", World::Gate),
];

impl PluginHost {
    /// The plugin worlds `reference` exports, compiling nothing the host has not compiled
    /// already (see the module).
    pub fn outline(&self, reference: &PluginRef) -> Result<Vec<World>, LoadError> {
        let (bytes, origin) = match reference {
            // Pulled by `registry::pin` and loaded then: only its store entry is looked up.
            PluginRef::Oci(text) => return Ok(self.load_oci(text)?.worlds().to_vec()),
            _ => self.bytes_of(reference)?,
        };
        let digest = Digest::of(&bytes);
        if let Some(plugin) = self.lock_loaded().get(&digest) {
            return Ok(plugin.worlds().to_vec());
        }
        let tiers = std::iter::once(&self.tier).chain(&self.quick);
        if let Some(cache) = &self.cache
            && tiers.into_iter().any(|tier| cache.has(tier, &digest))
        {
            return Ok(self.load_bytes(&bytes, origin)?.worlds().to_vec());
        }
        worlds_of(&bytes, origin)
    }

    /// The bytes of a built-in or a component file, read as `load` reads them, and the name
    /// messages give it.
    fn bytes_of(&self, reference: &PluginRef) -> Result<(Cow<'static, [u8]>, String), LoadError> {
        match reference {
            PluginRef::Builtin(name) => {
                let found = builtin(name).ok_or_else(|| LoadError::UnknownBuiltin(name.clone()))?;
                Ok((Cow::Borrowed(found.bytes), reference.to_string()))
            }
            PluginRef::File(given) => {
                let shown = given.display().to_string();
                let path = self.loading.resolve(given)?;
                let bytes = self.loading.read(&path, &shown)?;
                Ok((Cow::Owned(bytes), shown))
            }
            PluginRef::Oci(text) => Err(LoadError::Oci {
                reference: text.clone(),
                reason: "it is read from the plugin store, not a file".into(),
            }),
        }
    }
}

/// The plugin worlds a component's binary exports, after validating all of it (`origin` names
/// it in errors).
pub fn worlds_of(bytes: &[u8], origin: String) -> Result<Vec<World>, LoadError> {
    const CORE_MODULE: [u8; 8] = *b"\0asm\x01\0\0\0";
    if bytes.starts_with(&CORE_MODULE) {
        return Err(LoadError::NotAComponent(origin));
    }
    if !bytes.starts_with(b"\0asm") {
        return Err(super::FileError::NotWasm(origin).into());
    }
    let invalid = |e: wasmparser::BinaryReaderError| LoadError::Compile {
        origin: origin.clone(),
        reason: e.message().to_owned(),
    };
    wasmparser::Validator::new_with_features(wasmparser::WasmFeatures::all())
        .validate_all(bytes)
        .map_err(invalid)?;
    let mut worlds = Vec::new();
    // Nested modules and components have exports of their own: only the outer ones count.
    let mut depth = 0usize;
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        match payload.map_err(invalid)? {
            wasmparser::Payload::ModuleSection { .. }
            | wasmparser::Payload::ComponentSection { .. } => depth += 1,
            wasmparser::Payload::End(_) => depth = depth.saturating_sub(1),
            wasmparser::Payload::ComponentExportSection(exports) if depth == 0 => {
                for export in exports {
                    let name = export.map_err(invalid)?.name.name;
                    worlds.extend(EXPORTS.iter().filter(|(n, _)| *n == name).map(|(_, w)| *w));
                }
            }
            _ => {}
        }
    }
    if worlds.is_empty() {
        return Err(LoadError::NoPluginExports(origin));
    }
    worlds.sort_by_key(|w| EXPORTS.iter().position(|(_, x)| x == w));
    Ok(worlds)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::HostConfig;

    #[test]
    fn the_outline_of_every_built_in_is_the_worlds_its_compilation_finds() {
        let host = PluginHost::new(HostConfig::default()).unwrap();
        for b in crate::builtin::BUILTINS {
            let reference = PluginRef::Builtin(b.name.to_owned());
            let outlined = worlds_of(b.bytes, b.name.to_owned()).unwrap();
            let loaded = host.load(&reference).unwrap();
            assert_eq!(outlined, loaded.worlds(), "{}", b.name);
            assert_eq!(host.outline(&reference).unwrap(), loaded.worlds());
        }
    }

    #[test]
    fn a_damaged_component_is_refused_without_compiling_it() {
        let copy = builtin("copy").unwrap().bytes;
        let truncated = &copy[..copy.len() / 2];
        let e = worlds_of(truncated, "cut.wasm".into()).unwrap_err();
        assert!(
            matches!(&e, LoadError::Compile { origin, .. } if origin == "cut.wasm"),
            "{e}"
        );
        let e = worlds_of(b"\0asm\x01\0\0\0", "core.wasm".into()).unwrap_err();
        assert!(matches!(e, LoadError::NotAComponent(_)), "{e}");
        let e = worlds_of(b"hello", "text.wasm".into()).unwrap_err();
        assert!(e.to_string().contains("not a WebAssembly component"), "{e}");
        // A valid component exporting no plugin world.
        let empty = wat::parse_str("(component)").unwrap();
        let e = worlds_of(&empty, "empty.wasm".into()).unwrap_err();
        assert!(matches!(e, LoadError::NoPluginExports(_)), "{e}");
    }
}
