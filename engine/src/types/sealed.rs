//! A secret output's value as the store keeps it: encrypted (ChaCha20-Poly1305, see
//! `crate::secrets`), never in clear. A plain value: sealing and opening happen in the
//! scheduler, so the core and the store only carry it.

use std::fmt;

use serde::{Deserialize, Serialize};

/// An encrypted value: which key sealed it, the nonce, the ciphertext with its tag.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sealed {
    /// The id of the key that sealed it (a hash of the key, never the key), so that a wrong
    /// key is named as such rather than reported as a damaged record.
    pub key: String,
    /// The random 96-bit nonce, hex.
    pub nonce: String,
    /// The ciphertext followed by its 128-bit tag, hex.
    pub data: String,
}

impl fmt::Debug for Sealed {
    /// Names the key only: a sealed value is never worth printing.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sealed(key {})", self.key)
    }
}
