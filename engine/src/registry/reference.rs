//! `oci://HOST[:PORT]/REPO[:TAG][@sha256:HEX]`: a plugin in an OCI registry. A reference with
//! a digest names exact bytes; one with only a tag is resolved to a digest once, when the
//! pipeline is stored, and kept pinned as `oci://HOST/REPO:TAG@sha256:HEX`.

use std::fmt;

use crate::plugin::Digest;

/// The scheme of a plugin in a registry.
pub const SCHEME: &str = "oci://";

/// A parsed `oci://` reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OciRef {
    /// `host` or `host:port`.
    pub registry: String,
    /// The repository, e.g. `team/deploy-task`.
    pub repository: String,
    /// The tag, if written.
    pub tag: Option<String>,
    /// The manifest's digest, if written (or pinned).
    pub digest: Option<Digest>,
}

impl OciRef {
    /// Parses `text`, which starts with `oci://`; the error says what to write instead.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = |why: &str| {
            Err(format!(
                "`{text}` is not an OCI reference: {why} (write oci://HOST/REPO:TAG or oci://HOST/REPO@sha256:HEX)"
            ))
        };
        let Some(rest) = text.strip_prefix(SCHEME) else {
            return bad("it does not start with oci://");
        };
        let (rest, digest) = match rest.split_once('@') {
            Some((name, digest)) => match (digest.starts_with("sha256:"), Digest::parse(digest)) {
                (true, Some(d)) if digest.len() == 71 => (name, Some(d)),
                _ => return bad("the digest is not sha256: and 64 hex digits"),
            },
            None => (rest, None),
        };
        let Some((registry, path)) = rest.split_once('/') else {
            return bad("it names no repository");
        };
        let host_ok = !registry.is_empty()
            && registry.bytes().all(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']')
            });
        if !host_ok {
            return bad("the registry is not HOST or HOST:PORT");
        }
        // A tag follows the last `:` after the last `/`.
        let last = path.rsplit('/').next().unwrap_or(path);
        let (repository, tag) = match last.rsplit_once(':') {
            Some((_, tag)) => (&path[..path.len() - tag.len() - 1], Some(tag)),
            None => (path, None),
        };
        if !repository_name(repository) {
            return bad(
                "the repository is not lower-case letters, digits and . _ - in /-separated parts",
            );
        }
        if let Some(tag) = tag
            && !tag_name(tag)
        {
            return bad("the tag is not letters, digits, _ . - (at most 128)");
        }
        if tag.is_none() && digest.is_none() {
            return bad("it has neither a tag nor a digest");
        }
        Ok(Self {
            registry: registry.to_owned(),
            repository: repository.to_owned(),
            tag: tag.map(str::to_owned),
            digest,
        })
    }

    /// This reference pinned to `digest`.
    pub fn pinned(&self, digest: Digest) -> Self {
        Self {
            digest: Some(digest),
            ..self.clone()
        }
    }
}

impl fmt::Display for OciRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SCHEME}{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// `[a-z0-9]+([._-][a-z0-9]+)*` components joined by `/`, at most 255 characters.
pub(crate) fn repository_name(name: &str) -> bool {
    name.len() <= 255
        && name.split('/').all(|c| {
            !c.is_empty()
                && c.split(['.', '_', '-']).all(|part| {
                    !part.is_empty()
                        && part
                            .bytes()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
                })
        })
}

/// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
pub(crate) fn tag_name(tag: &str) -> bool {
    let mut bytes = tag.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
        && tag.len() <= 128
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tags_digests_and_both() {
        let hex = "a".repeat(64);
        let r = OciRef::parse("oci://127.0.0.1:5000/team/deploy:1.2").unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str(), r.tag.as_deref()),
            ("127.0.0.1:5000", "team/deploy", Some("1.2"))
        );
        assert!(r.digest.is_none());
        let pinned = format!("oci://ghcr.io/a/b:v1@sha256:{hex}");
        let r = OciRef::parse(&pinned).unwrap();
        assert_eq!(r.to_string(), pinned);
        let r = OciRef::parse(&format!("oci://h/x@sha256:{hex}")).unwrap();
        assert_eq!(r.tag, None);
        assert_eq!(r.pinned(Digest::of(b"x")).digest, Some(Digest::of(b"x")));
    }

    #[test]
    fn refuses_what_could_steer_a_request() {
        let hex = "a".repeat(64);
        for bad in [
            "oci://h/../etc:1".to_owned(),
            "oci://h/Team/x:1".to_owned(),
            "oci://h/x".to_owned(),
            "oci://h/x:1?y".to_owned(),
            "oci://h/x:1#y".to_owned(),
            "oci://user@h/x:1".to_owned(),
            format!("oci://h/x@sha256:{}", &hex[..10]),
            format!("oci://h/x@md5:{hex}"),
            "oci:///x:1".to_owned(),
            "http://h/x:1".to_owned(),
        ] {
            assert!(OciRef::parse(&bad).is_err(), "{bad}");
        }
    }
}
