//! The engine's key: `SLUICE_SECRET_KEY` (64 hex digits) when it is set, else
//! `<data-dir>/secret.key`, created owner-only (0600) the first time a secret is sealed and
//! refused when others may read or write it, or when it is not a regular file.

use std::fmt;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::{KEY_ENV, KEY_FILE, Place, SecretError, SecretKey};
use crate::types::{Sealed, Variable};

/// 64 hex digits (surrounding whitespace ignored) as a key.
fn parse_key(text: &str) -> Result<[u8; 32], String> {
    let text = text.trim();
    let bytes = hex::decode(text).map_err(|_| {
        format!(
            "found {} characters that are not 64 hex digits",
            text.chars().count()
        )
    })?;
    bytes
        .try_into()
        .map_err(|b: Vec<u8>| format!("found {} bytes, a key is 32", b.len()))
}

/// The engine's key: from the environment, or the data directory's key file (created when a
/// secret is first sealed). Loaded once it is usable; a refusal is not kept, so a fixed file is
/// used without a restart.
pub struct Keyring {
    file: PathBuf,
    env: Option<String>,
    key: Mutex<Option<Arc<SecretKey>>>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Keyring({})", self.file.display())
    }
}

impl Keyring {
    /// The key of the engine over `data_dir`: `SLUICE_SECRET_KEY` if set, else the key file.
    pub fn from_env(data_dir: &Path) -> Self {
        let env = std::env::var_os(KEY_ENV).map(|v| v.to_string_lossy().into_owned());
        Self::new(data_dir, env)
    }

    /// The key `env` (hex) if given, else `<data_dir>/secret.key`.
    pub fn new(data_dir: &Path, env: Option<String>) -> Self {
        Self {
            file: data_dir.join(KEY_FILE),
            env,
            key: Mutex::new(None),
        }
    }

    /// The key file's path (used whenever `SLUICE_SECRET_KEY` is not set).
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// At start: refuses a key that is there but unusable (a malformed `SLUICE_SECRET_KEY`, a
    /// key file others may read); creates nothing.
    pub fn check(&self) -> Result<(), SecretError> {
        self.existing().map(|_| ())
    }

    /// Seals `value` for `place`, creating the key file if there is no key yet.
    pub fn seal(&self, place: &Place<'_>, value: &str) -> Result<Sealed, SecretError> {
        let key = match self.existing()? {
            Some(key) => key,
            None => self.create()?,
        };
        key.seal(place, value)
    }

    /// Opens what was sealed for `place`; with no key at all, says so (never creates one).
    pub fn open(&self, place: &Place<'_>, sealed: &Sealed) -> Result<String, SecretError> {
        let key = self.existing()?.ok_or_else(|| SecretError::Missing {
            place: place.to_string(),
            stage: place.stage.to_owned(),
            path: self.file.clone(),
            sealed_with: sealed.key.clone(),
        })?;
        key.open(place, sealed)
    }

    /// Seals every secret output of one task's run in place: the store keeps the sealed value,
    /// and `***` where the clear value was.
    pub fn seal_outputs(
        &self,
        release: &str,
        stage: &str,
        attempt: u32,
        task: &str,
        outputs: &mut [Variable],
    ) -> Result<(), SecretError> {
        for output in outputs.iter_mut().filter(|o| o.secret) {
            let place = Place {
                release,
                stage,
                attempt,
                task,
                output: &output.name,
            };
            let sealed = self.seal(&place, &output.value)?;
            output.sealed = Some(sealed);
            output.value = "***".into();
        }
        Ok(())
    }

    /// The key, if there is one.
    fn existing(&self) -> Result<Option<Arc<SecretKey>>, SecretError> {
        let mut held = self.key.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(key) = &*held {
            return Ok(Some(key.clone()));
        }
        let key = match &self.env {
            Some(text) => {
                let bytes = parse_key(text).map_err(SecretError::BadEnv)?;
                Some(SecretKey::new(&bytes, format!("from {KEY_ENV}")))
            }
            None => read_file(&self.file)?,
        };
        let key = key.map(Arc::new);
        held.clone_from(&key);
        Ok(key)
    }

    /// Creates the key file: written aside (0600, synced), then linked into place, which fails
    /// if another writer got there first (then its key is the key).
    fn create(&self) -> Result<Arc<SecretKey>, SecretError> {
        let mut held = self.key.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(key) = &*held {
            return Ok(key.clone());
        }
        let failed = |why: String| SecretError::Create {
            path: self.file.clone(),
            why,
        };
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| failed(format!("no randomness: {e}")))?;
        let aside = self
            .file
            .with_file_name(format!(".{KEY_FILE}.{}.new", std::process::id()));
        let _ = std::fs::remove_file(&aside);
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&aside)
            .and_then(|mut f| {
                writeln!(f, "{}", hex::encode(bytes))?;
                f.sync_all()
            });
        let linked = written.and_then(|()| std::fs::hard_link(&aside, &self.file));
        let _ = std::fs::remove_file(&aside);
        let key = match linked {
            Ok(()) => {
                // The key must be durable before anything it sealed is committed.
                if let Some(dir) = self.file.parent() {
                    std::fs::File::open(dir)
                        .and_then(|d| d.sync_all())
                        .map_err(|e| failed(e.to_string()))?;
                }
                SecretKey::new(&bytes, self.file.display().to_string())
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => read_file(&self.file)?
                .ok_or_else(|| failed("it vanished while being created".into()))?,
            Err(e) => return Err(failed(e.to_string())),
        };
        let key = Arc::new(key);
        *held = Some(key.clone());
        Ok(key)
    }
}

/// Reads the key file: `None` when it does not exist; refused when it is not a regular file,
/// others may read or write it, or it does not hold a key.
fn read_file(path: &Path) -> Result<Option<SecretKey>, SecretError> {
    let bad = |why: String| SecretError::BadFile {
        path: path.to_owned(),
        why,
    };
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(bad(format!("cannot be read: {e}"))),
        Ok(meta) if !meta.file_type().is_file() => {
            return Err(bad(
                "is not a regular file (a symlink or a directory?): put the key file itself there"
                    .into(),
            ));
        }
        Ok(_) => {}
    }
    let file = std::fs::File::open(path).map_err(|e| bad(format!("cannot be read: {e}")))?;
    let meta = file
        .metadata()
        .map_err(|e| bad(format!("cannot be read: {e}")))?;
    let mode = meta.mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(bad(format!(
            "may be read or written by others (mode {mode:03o}): run `chmod 600 {}`",
            path.display()
        )));
    }
    let mut text = String::new();
    // A key is 65 bytes; a larger file is not one, and is not read whole.
    file.take(1024)
        .read_to_string(&mut text)
        .map_err(|e| bad(format!("cannot be read: {e}")))?;
    let bytes = parse_key(&text).map_err(|why| {
        bad(format!(
            "does not hold a key (64 hex digits): {why}; restore it from a backup"
        ))
    })?;
    Ok(Some(SecretKey::new(&bytes, path.display().to_string())))
}
