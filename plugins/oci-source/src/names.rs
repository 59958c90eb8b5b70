//! The Distribution specification's grammar for what goes into a registry URL: repository
//! names, tags and digests. Anything else is refused before a request is built, so a pipeline
//! cannot steer a request elsewhere (`../`, `?`, `#`, spaces).

/// `[a-z0-9]+([._-][a-z0-9]+)*` components joined by `/`, at most 255 characters.
pub(crate) fn repository(name: &str) -> Result<(), String> {
    let component = |c: &str| {
        !c.is_empty()
            && c.split(['.', '_', '-']).all(|part| {
                !part.is_empty()
                    && part
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            })
    };
    if name.len() <= 255 && name.split('/').all(component) {
        Ok(())
    } else {
        Err(format!(
            "repository `{name}` is not a registry repository name: lower-case letters, digits \
             and `.`, `_`, `-` between them, in `/`-separated parts (e.g. `team/site`)"
        ))
    }
}

/// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
pub(crate) fn tag(tag: &str) -> bool {
    let mut bytes = tag.bytes();
    let first = bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_');
    first
        && tag.len() <= 128
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// `sha256:` and 64 lower-case hex digits (the only algorithm Sluice verifies).
pub(crate) fn digest(digest: &str) -> bool {
    digest.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// A layer's title as a relative path inside the destination: no `..`, `.`, empty or absolute
/// parts, no backslash or NUL.
pub(crate) fn title(title: &str) -> Result<(), String> {
    let bad = title.is_empty()
        || title.starts_with('/')
        || title.contains(['\\', '\0'])
        || title.split('/').any(|part| matches!(part, "" | "." | ".."));
    if bad {
        Err(format!(
            "layer title `{}` is not a relative path inside the destination",
            title.escape_debug()
        ))
    } else {
        Ok(())
    }
}
