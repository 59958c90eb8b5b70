//! How long each string in a request (body or query) may be: the one list the document's `maxLength`s and the
//! handlers' checks both read, so a string the document allows is never refused for its
//! length and a longer one always is (400 naming the field). Lengths are in characters
//! (Unicode scalar values), as JSON Schema counts them.

use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};

use super::error::ApiError;
use crate::types::Name;

/// A comment on a decision or a reassignment, a release's description.
pub(super) const TEXT: usize = 2_000;
/// A variable's value set at release time.
pub(super) const VALUE: usize = 4_096;
/// An artifact version's id.
pub(super) const VERSION: usize = 256;
/// A name: a variable, an artifact alias, a user ([`Name::MAX_LEN`]).
pub(super) const NAME: usize = Name::MAX_LEN;
/// A pipeline's name ([`Name::MAX_PIPELINE_LEN`]).
pub(super) const PIPELINE: usize = Name::MAX_PIPELINE_LEN;
/// Whom an approval is reassigned to: a user, or `group:` and a group's name.
pub(super) const ASSIGNEE: usize = "group:".len() + Name::MAX_LEN;

/// 400 unless `value` (the field `field`) is at most `max` characters.
pub(super) fn at_most(field: &str, value: &str, max: usize) -> Result<(), ApiError> {
    let length = value.chars().count();
    if length > max {
        return Err(ApiError::bad_request(format!(
            "{field} is {length} characters: keep it to at most {max}"
        )));
    }
    Ok(())
}

/// 400 unless every key of `map` (the field `field`) is 1 to [`NAME`] characters and every
/// value at most `max`.
pub(super) fn map<'a>(
    field: &str,
    map: impl IntoIterator<Item = (&'a String, &'a String)>,
    max: usize,
) -> Result<(), ApiError> {
    for (key, value) in map {
        if key.is_empty() {
            return Err(ApiError::bad_request(format!(
                "{field}: a name is empty: give each its name"
            )));
        }
        at_most(&format!("{field} name `{}`", shown(key)), key, NAME)?;
        at_most(&format!("{field}.{}", shown(key)), value, max)?;
    }
    Ok(())
}

/// A key as a message quotes it: escaped, at most 40 characters.
fn shown(key: &str) -> String {
    let mut shown: String = key.chars().take(40).collect();
    if key.chars().count() > 40 {
        shown.push('…');
    }
    crate::types::text::escape(&shown).into_owned()
}

/// The schema of a map of names (1 to [`NAME`] characters) to strings of at most `max`.
fn map_schema(max: usize, description: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .property_names(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(NAME)),
        ))
        .additional_properties(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .max_length(Some(max)),
        ))
        .description(Some(description))
        .into()
}

/// `artifacts` of a new release.
pub(super) fn artifacts_schema() -> RefOr<Schema> {
    map_schema(
        VERSION,
        "Artifact alias -> version id (an alias the pipeline lacks, or a version its source does not list, is a 422)",
    )
}

/// `variables` of a new release.
pub(super) fn variables_schema() -> RefOr<Schema> {
    map_schema(
        VALUE,
        "Variable name -> value: only variables the pipeline declares `settable = true` (any other, `sluice.*` included, is a 422)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_are_characters_and_the_refusal_names_the_field() {
        assert!(at_most("comment", &"é".repeat(TEXT), TEXT).is_ok());
        let error = at_most("comment", &"é".repeat(TEXT + 1), TEXT).unwrap_err();
        assert_eq!(
            error.body.error,
            "comment is 2001 characters: keep it to at most 2000"
        );
        let long = BTreeMapLike::from([("a".repeat(NAME + 1), String::new())]);
        let error = map("variables", &long, VALUE).unwrap_err();
        assert!(
            error.body.error.starts_with("variables name `aaaa"),
            "{}",
            error.body.error
        );
        let empty = BTreeMapLike::from([(String::new(), "1".into())]);
        assert!(map("artifacts", &empty, VERSION).is_err());
        let value = BTreeMapLike::from([("v".into(), "x".repeat(VALUE + 1))]);
        let error = map("variables", &value, VALUE).unwrap_err();
        assert!(
            error.body.error.starts_with("variables.v is 4097"),
            "{}",
            error.body.error
        );
    }

    type BTreeMapLike = std::collections::BTreeMap<String, String>;
}
