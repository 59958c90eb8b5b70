//! Masking secrets: every place where any secret occurs — overlapping matches of one secret,
//! or of several — is replaced, as one union, by `***`. Masking runs over whole texts, before
//! any truncation or split, so no part of a secret survives a cut.

use std::borrow::Cow;

/// What replaces each masked stretch of text.
pub(crate) const MASK: &str = "***";

/// The secrets of one call.
#[derive(Debug, Default)]
pub(crate) struct Masker {
    secrets: Vec<String>,
}

impl Masker {
    /// Empty secrets are dropped (they would match everywhere and mean nothing).
    pub(crate) fn new(secrets: Vec<String>) -> Self {
        let mut secrets: Vec<String> = secrets.into_iter().filter(|s| !s.is_empty()).collect();
        secrets.sort();
        secrets.dedup();
        Self { secrets }
    }

    /// Whether `text` contains a secret.
    pub(crate) fn reveals(&self, text: &str) -> bool {
        self.secrets
            .iter()
            .any(|secret| text.contains(secret.as_str()))
    }

    /// `text` with the union of every secret's every match (overlapping ones included)
    /// replaced by [`MASK`]; borrowed when there is nothing to mask.
    pub(crate) fn mask<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut ranges = Vec::new();
        for secret in &self.secrets {
            let mut from = 0;
            while let Some(found) = text[from..].find(secret.as_str()) {
                let start = from + found;
                ranges.push((start, start + secret.len()));
                // The next match may overlap this one: look again from the next character.
                from = start + text[start..].chars().next().map_or(1, char::len_utf8);
            }
        }
        if ranges.is_empty() {
            return Cow::Borrowed(text);
        }
        ranges.sort_unstable();
        let mut masked = String::with_capacity(text.len());
        let mut copied = 0;
        let mut ranges = ranges.into_iter().peekable();
        while let Some((start, mut end)) = ranges.next() {
            // Merge every range that overlaps or touches this one.
            while let Some(&(next_start, next_end)) = ranges.peek() {
                if next_start > end {
                    break;
                }
                end = end.max(next_end);
                ranges.next();
            }
            masked.push_str(&text[copied..start]);
            masked.push_str(MASK);
            copied = end;
        }
        masked.push_str(&text[copied..]);
        Cow::Owned(masked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masker(secrets: &[&str]) -> Masker {
        Masker::new(secrets.iter().map(|s| (*s).to_owned()).collect())
    }

    #[test]
    fn every_occurrence_is_masked() {
        let m = masker(&["hunter2"]);
        assert_eq!(m.mask("hunter2 and hunter2"), "*** and ***");
        assert_eq!(m.mask("nothing here"), "nothing here");
        assert!(matches!(m.mask("nothing here"), Cow::Borrowed(_)));
    }

    #[test]
    fn overlapping_secrets_are_masked_as_one_union() {
        // `abcdef` and `defghi` overlap in `def`: a replace per secret would leave `ghi`.
        let m = masker(&["abcdef", "defghi"]);
        assert_eq!(m.mask("x abcdefghi y"), "x *** y");
        for text in ["abcdefghi", "defghiabcdef", "abcdefdefghi"] {
            let masked = m.mask(text);
            for part in ["abc", "ghi", "def"] {
                assert!(!masked.contains(part), "{text} -> {masked}");
            }
        }
    }

    #[test]
    fn a_secret_inside_another_and_overlapping_itself_is_masked() {
        let m = masker(&["secret", "cre", "aba"]);
        assert_eq!(m.mask("my secret"), "my ***");
        // `aba` overlaps itself in `ababa`.
        assert_eq!(m.mask("xababay"), "x***y");
    }

    #[test]
    fn adjacent_matches_do_not_tell_how_many_there_were() {
        let m = masker(&["s3"]);
        assert_eq!(m.mask("s3s3s3!"), "***!");
    }

    #[test]
    fn multibyte_text_is_masked_on_character_boundaries() {
        let m = masker(&["ééé", "é✓"]);
        assert_eq!(m.mask("aéééé✓b"), "a***b");
        assert!(m.reveals("xé✓"));
        assert!(!m.reveals("é"));
    }

    #[test]
    fn empty_secrets_mask_nothing() {
        let m = masker(&["", ""]);
        assert_eq!(m.mask("text"), "text");
        assert!(!m.reveals("text"));
    }
}
