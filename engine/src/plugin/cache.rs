//! Compiled components on disk, keyed by the component's sha256 digest, the compiler and the
//! engine's compatibility hash, so a cached artifact is only ever loaded into an engine that
//! can run it (a Winch compilation and a Cranelift one of the same plugin are two files).
//!
//! A file's name is not trusted: `Component::deserialize` of a hand-made file would run its
//! native code in the engine. Each file starts with an HMAC-SHA256 tag over the component's
//! digest, the engine hash and the compiled bytes, keyed by a random key kept owner-only
//! (0600) in the cache directory, which lies in the data directory that no grant may reach.
//! A file whose tag does not verify — forged, copied from another plugin's name, truncated,
//! or from before tags — is deleted, a warning traced, and the component compiled again.
//! Files are read into memory (not mapped), written aside and renamed into place, and the
//! directory is owner-only. The cache is bounded: after each store, the least recently used
//! compilations (by modification time, which every load refreshes) are removed until the
//! compilations fit under the cap; the one just stored always stays.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};
use wasmtime::component::Component;

use super::Digest;
use super::tier::Tier;

/// The key file's name in the cache directory.
const KEY_FILE: &str = "key";
/// What the tag covers first: this format.
const FORMAT: &[u8] = b"sluice-compiled-component-v1";
const TAG_LEN: usize = 32;

pub(crate) struct Cache {
    dir: PathBuf,
    /// The HMAC key.
    key: [u8; 32],
    /// The most bytes of compilations kept.
    max_bytes: u64,
}

impl Cache {
    pub(crate) fn new(dir: PathBuf, max_bytes: u64) -> std::io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
        }
        let key = key(&dir)?;
        Ok(Self {
            dir,
            key,
            max_bytes,
        })
    }

    /// Whether `tier` has a compilation of `digest` stored (not checked: `load` does that).
    pub(crate) fn has(&self, tier: &Tier, digest: &Digest) -> bool {
        self.path(tier, digest).is_file()
    }

    fn path(&self, tier: &Tier, digest: &Digest) -> PathBuf {
        self.dir
            .join(format!("{}-{}.cwasm", digest.hex(), tier.cache_key))
    }

    fn tag(&self, tier: &Tier, digest: &Digest, compiled: &[u8]) -> [u8; TAG_LEN] {
        let engine = tier.cache_key.as_bytes();
        hmac_sha256(&self.key, &[FORMAT, &digest.0, engine, compiled])
    }

    /// `tier`'s cached compilation of `digest`, if there is a genuine, usable one.
    pub(crate) fn load(&self, tier: &Tier, digest: &Digest) -> Option<Component> {
        let path = self.path(tier, digest);
        // Read into memory rather than map the file: a mapped file truncated by someone else
        // would crash the engine (SIGBUS) instead of just costing a recompilation.
        let bytes = std::fs::read(&path).ok()?;
        let discard = |why: &str| {
            tracing::warn!(path = %path.display(), reason = why, "discarding compiled plugin");
            let _ = std::fs::remove_file(&path);
            None
        };
        let Some((tag, compiled)) = bytes.split_at_checked(TAG_LEN) else {
            return discard("too short to carry its tag");
        };
        if !same(tag, &self.tag(tier, digest, compiled)) {
            return discard("its tag does not verify: this cache did not write it for this plugin");
        }
        // SAFETY: the tag verified, so these bytes are what `store` below wrote from
        // `Component::serialize` of this component, in an engine with the same compatibility
        // hash; only a holder of the key (never granted to a plugin) can make a valid tag.
        #[allow(unsafe_code)]
        let loaded = unsafe { Component::deserialize(&tier.engine, compiled) };
        match loaded {
            Ok(component) => {
                // Used now: the last to go when the cache is over its cap.
                let _ = std::fs::File::options()
                    .write(true)
                    .open(&path)
                    .and_then(|f| f.set_modified(std::time::SystemTime::now()));
                Some(component)
            }
            Err(e) => discard(&format!("wasmtime refused it: {e}")),
        }
    }

    /// Stores a compilation; failures only cost a recompilation later, so they are logged.
    pub(crate) fn store(&self, tier: &Tier, digest: &Digest, component: &Component) {
        let path = self.path(tier, digest);
        let result = component
            .serialize()
            .map_err(|e| std::io::Error::other(e.to_string()))
            .and_then(|compiled| {
                let aside = path.with_extension(format!("tmp{}", std::process::id()));
                let mut file = std::fs::File::create(&aside)?;
                file.write_all(&self.tag(tier, digest, &compiled))?;
                file.write_all(&compiled)?;
                drop(file);
                std::fs::rename(&aside, &path)
            });
        if let Err(e) = result {
            tracing::warn!(path = %path.display(), error = %e, "could not cache compiled plugin");
        }
        self.evict(&path);
    }

    /// Removes `tier`'s compilation of `digest` (one superseded by Cranelift's).
    pub(crate) fn remove(&self, tier: &Tier, digest: &Digest) {
        let _ = std::fs::remove_file(self.path(tier, digest));
    }

    /// Removes the least recently used compilations (never `keep`) until the rest fit under
    /// the cap.
    fn evict(&self, keep: &Path) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let mut files: Vec<(std::time::SystemTime, u64, PathBuf)> = entries
            .filter_map(Result::ok)
            .filter(|e| e.path().extension().is_some_and(|x| x == "cwasm"))
            .filter_map(|e| {
                let meta = e.metadata().ok()?;
                Some((meta.modified().ok()?, meta.len(), e.path()))
            })
            .collect();
        let mut total: u64 = files.iter().map(|(_, len, _)| len).sum();
        files.sort();
        for (_, len, path) in files {
            if total <= self.max_bytes {
                break;
            }
            if path != keep && std::fs::remove_file(&path).is_ok() {
                tracing::info!(path = %path.display(), "compile cache over its cap: removed the least recently used");
                total -= len;
            }
        }
    }
}

/// The cache's key: read from `dir/key`, or made (32 random bytes, owner-only) and linked
/// into place so that two processes starting at once agree on one.
fn key(dir: &Path) -> std::io::Result<[u8; 32]> {
    let path = dir.join(KEY_FILE);
    for _ in 0..2 {
        match std::fs::read(&path) {
            Ok(bytes) => {
                if let Ok(key) = <[u8; 32]>::try_from(bytes.as_slice()) {
                    return Ok(key);
                }
                // Not a key this cache made: every file it tagged is void anyway.
                tracing::warn!(path = %path.display(), "replacing a malformed cache key");
                std::fs::remove_file(&path)?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let mut key = [0; 32];
        std::fs::File::open("/dev/urandom")?.read_exact(&mut key)?;
        let aside = dir.join(format!("{KEY_FILE}.tmp{}", std::process::id()));
        let mut open = std::fs::OpenOptions::new();
        open.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            open.mode(0o600);
        }
        open.open(&aside)?.write_all(&key)?;
        let linked = std::fs::hard_link(&aside, &path);
        let _ = std::fs::remove_file(&aside);
        match linked {
            Ok(()) => return Ok(key),
            // Another process made one first: read it.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other(format!(
        "cannot settle on a cache key in {}",
        path.display()
    )))
}

/// HMAC-SHA256 (RFC 2104) of the concatenation of `parts`, for a key of at most 64 bytes.
fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    const BLOCK: usize = 64;
    assert!(key.len() <= BLOCK, "a cache key fits one SHA-256 block");
    let (mut inner_pad, mut outer_pad) = ([0x36u8; BLOCK], [0x5cu8; BLOCK]);
    for (i, byte) in key.iter().enumerate() {
        inner_pad[i] ^= byte;
        outer_pad[i] ^= byte;
    }
    let mut inner = Sha256::new();
    inner.update(inner_pad);
    for part in parts {
        inner.update(part);
    }
    let mut outer = Sha256::new();
    outer.update(outer_pad);
    outer.update(inner.finalize());
    outer.finalize().into()
}

/// Compares in time independent of where the bytes differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_sha256_matches_rfc_4231() {
        // Test case 2: key "Jefe".
        let tag = hmac_sha256(b"Jefe", &[b"what do ya want ", b"for nothing?"]);
        assert_eq!(
            hex::encode(tag),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Test case 1: twenty 0x0b bytes.
        let tag = hmac_sha256(&[0x0b; 20], &[b"Hi There"]);
        assert_eq!(
            hex::encode(tag),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
        assert!(same(&tag, &tag) && !same(&tag, &[0; 32]) && !same(&tag, &tag[1..]));
    }

    #[test]
    fn the_key_is_made_once_owner_only_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let first = key(dir.path()).unwrap();
        assert_eq!(key(dir.path()).unwrap(), first);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(dir.path().join(KEY_FILE), b"short").unwrap();
        let replaced = key(dir.path()).unwrap();
        assert_ne!(replaced, first);
        assert_eq!(std::fs::read(dir.path().join(KEY_FILE)).unwrap(), replaced);
    }
}
