//! Secret outputs at rest: a task's secret output is sealed (ChaCha20-Poly1305, a random
//! 96-bit nonce per value, the release / stage / attempt / task / output as associated data,
//! so a ciphertext opens only where it was made) before the core sees it, and opened when a
//! later task's scope is built. The store only ever holds the [`Sealed`] value.
//!
//! The key: 32 bytes, as 64 hex digits, from `SLUICE_SECRET_KEY` when it is set, else from
//! `<data-dir>/secret.key` — created owner-only (0600) the first time a secret is sealed, and
//! refused when others may read it. No redb, no wasmtime here.

mod keyring;

use std::fmt;
use std::path::PathBuf;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use sha2::{Digest, Sha256};

use crate::types::{LogLine, Sealed, Variable};

pub use keyring::Keyring;

/// The environment variable that holds the key (64 hex digits); it wins over the key file.
pub const KEY_ENV: &str = "SLUICE_SECRET_KEY";
/// The key file's name in the data directory.
pub const KEY_FILE: &str = "secret.key";

/// Where a secret output belongs; bound into its ciphertext.
#[derive(Debug, Clone, Copy)]
pub struct Place<'a> {
    /// The release.
    pub release: &'a str,
    /// The stage.
    pub stage: &'a str,
    /// The stage's attempt.
    pub attempt: u32,
    /// The task that output it.
    pub task: &'a str,
    /// The output's name.
    pub output: &'a str,
}

impl Place<'_> {
    /// The associated data: every part, length-prefixed (no part can run into the next).
    fn aad(&self) -> Vec<u8> {
        let attempt = self.attempt.to_string();
        let mut aad = b"sluice secret output v1".to_vec();
        for part in [self.release, self.stage, &attempt, self.task, self.output] {
            aad.extend_from_slice(&(part.len() as u64).to_le_bytes());
            aad.extend_from_slice(part.as_bytes());
        }
        aad
    }
}

impl fmt::Display for Place<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "secret output `{}.{}` of release {} (stage {}, attempt {})",
            self.task, self.output, self.release, self.stage, self.attempt
        )
    }
}

/// Why a secret could not be sealed or opened; each says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// `SLUICE_SECRET_KEY` is set but is not a key.
    #[error(
        "{KEY_ENV} must be 64 hex digits (32 random bytes, e.g. `openssl rand -hex 32`): {0}; \
         fix it, or unset it to use <data-dir>/{KEY_FILE}"
    )]
    BadEnv(String),
    /// The key file is there but unusable.
    #[error("the secret key {}: {why}", path.display())]
    BadFile {
        /// The key file.
        path: PathBuf,
        /// What is wrong and what to do.
        why: String,
    },
    /// The key file could not be created.
    #[error(
        "cannot create the secret key {}: {why}; make the data directory writable, or set {KEY_ENV}",
        path.display()
    )]
    Create {
        /// The key file.
        path: PathBuf,
        /// Why.
        why: String,
    },
    /// A sealed value, and no key at all.
    #[error(
        "{place} cannot be decrypted: there is no secret key ({KEY_ENV} is not set and {} does \
         not exist); restore the key it was sealed with (key id {sealed_with}), or redeploy \
         stage {stage} to output it again",
        path.display()
    )]
    Missing {
        /// What could not be opened.
        place: String,
        /// Its stage.
        stage: String,
        /// Where the key file was looked for.
        path: PathBuf,
        /// The id of the key that sealed it.
        sealed_with: String,
    },
    /// A sealed value, and another key.
    #[error(
        "{place} cannot be decrypted: it was sealed with key id {sealed_with}, but this engine's \
         key ({from}) has id {current}; restore the key it was sealed with, or redeploy stage \
         {stage} to output it again"
    )]
    WrongKey {
        /// What could not be opened.
        place: String,
        /// Its stage.
        stage: String,
        /// The id of the key that sealed it.
        sealed_with: String,
        /// This engine's key's id.
        current: String,
        /// Where this engine's key comes from.
        from: String,
    },
    /// The right key, and a ciphertext that does not open where it is.
    #[error(
        "{place} cannot be decrypted: its stored value was altered or copied from elsewhere; \
         redeploy stage {stage} to output it again"
    )]
    Damaged {
        /// What could not be opened.
        place: String,
        /// Its stage.
        stage: String,
    },
    /// No randomness, or the cipher refused.
    #[error("cannot seal {place}: {why}")]
    Seal {
        /// What could not be sealed.
        place: String,
        /// Why.
        why: String,
    },
}

/// One key: the cipher, the key's id, where it came from.
pub struct SecretKey {
    cipher: ChaCha20Poly1305,
    id: String,
    source: String,
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey(id {}, from {})", self.id, self.source)
    }
}

impl SecretKey {
    fn new(bytes: &[u8; 32], source: String) -> Self {
        let mut hash = Sha256::new();
        hash.update(b"sluice secret key id\0");
        hash.update(bytes);
        Self {
            cipher: ChaCha20Poly1305::new(Key::from_slice(bytes)),
            id: hex::encode(&hash.finalize()[..8]),
            source,
        }
    }

    /// The key's id (a hash of it): names it in errors without giving it away.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Encrypts `value` for `place` under a fresh random nonce.
    pub fn seal(&self, place: &Place<'_>, value: &str) -> Result<Sealed, SecretError> {
        let failed = |why: String| SecretError::Seal {
            place: place.to_string(),
            why,
        };
        let mut nonce = [0u8; 12];
        getrandom::fill(&mut nonce).map_err(|e| failed(format!("no randomness: {e}")))?;
        let aad = place.aad();
        let payload = Payload {
            msg: value.as_bytes(),
            aad: &aad,
        };
        let data = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), payload)
            .map_err(|_| failed("the cipher refused the value".into()))?;
        Ok(Sealed {
            key: self.id.clone(),
            nonce: hex::encode(nonce),
            data: hex::encode(data),
        })
    }

    /// Decrypts what was sealed for `place`; a value sealed elsewhere or by another key fails.
    pub fn open(&self, place: &Place<'_>, sealed: &Sealed) -> Result<String, SecretError> {
        if sealed.key != self.id {
            return Err(SecretError::WrongKey {
                place: place.to_string(),
                stage: place.stage.to_owned(),
                sealed_with: sealed.key.clone(),
                current: self.id.clone(),
                from: self.source.clone(),
            });
        }
        let damaged = || SecretError::Damaged {
            place: place.to_string(),
            stage: place.stage.to_owned(),
        };
        let nonce = hex::decode(&sealed.nonce)
            .ok()
            .filter(|n| n.len() == 12)
            .ok_or_else(damaged)?;
        let data = hex::decode(&sealed.data).map_err(|_| damaged())?;
        let aad = place.aad();
        let payload = Payload {
            msg: &data,
            aad: &aad,
        };
        let clear = self
            .cipher
            .decrypt(Nonce::from_slice(&nonce), payload)
            .map_err(|_| damaged())?;
        String::from_utf8(clear).map_err(|_| damaged())
    }
}

/// Masks a task's own secret outputs in the log it wrote before it returned them (the lines
/// are stored after the task ends; a live follower already saw them as written).
pub fn mask_own_outputs(lines: &mut [LogLine], outputs: &[Variable]) {
    let own: Vec<&str> = (outputs.iter())
        .filter(|o| o.secret && !o.value.is_empty())
        .map(|o| o.value.as_str())
        .collect();
    if own.is_empty() {
        return;
    }
    for line in lines {
        let fields = line.fields.iter_mut().map(|(_, value)| value);
        for text in std::iter::once(&mut line.message).chain(fields) {
            for secret in &own {
                if text.contains(secret) {
                    *text = text.replace(secret, "***");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
