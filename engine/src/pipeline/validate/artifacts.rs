//! `[artifacts.ALIAS]`: an artifact's source plugin, configuration, version selector and grants.

use toml::Spanned;

use super::variables::{collect_strings, references};
use super::{Validator, toml_to_json};
use crate::pipeline::plan::*;
use crate::pipeline::schema::*;

impl Validator<'_> {
    pub(super) fn artifact(
        &mut self,
        alias: &Spanned<String>,
        raw: &RawArtifact,
        variables: &[VariableSpec],
    ) -> ArtifactSpec {
        self.check_name("artifact alias", alias);
        self.locations
            .artifacts
            .insert(alias.get_ref().clone(), self.location(raw.source.span()));
        let source = self.plugin(&raw.source);
        let selector = match raw.version.as_ref().map(Spanned::get_ref) {
            None => Selector::Latest,
            Some(RawSelector::Text(t)) if t == "latest" => Selector::Latest,
            Some(RawSelector::Text(t)) => Selector::Exact(t.clone()),
            Some(RawSelector::Filter(RawFilter {
                branch: Some(b),
                tag: None,
            })) => Selector::Branch(b.clone()),
            Some(RawSelector::Filter(RawFilter {
                branch: None,
                tag: Some(t),
            })) => Selector::Tag(t.clone()),
            Some(RawSelector::Filter(_)) => {
                self.error(
                    raw.version.as_ref().map(Spanned::span),
                    format!("artifact `{}`: a version filter names either a `branch` or a `tag`", alias.get_ref()),
                    Some("write `version = { branch = \"main\" }` or `version = { tag = \"stable\" }`"),
                );
                Selector::Latest
            }
        };
        let grants = self.grants(&raw.grants, None);
        let config = toml_to_json(&raw.config);
        self.source_references(alias, &config, variables, raw.source.span());
        ArtifactSpec {
            alias: alias.get_ref().clone(),
            source,
            config,
            selector,
            grants,
        }
    }
}

impl Validator<'_> {
    /// A source's configuration may name the pipeline's own variables (secrets included, for
    /// an `authorization` header) and `$(sluice.pipeline)`: a source lists versions before a
    /// release exists, so no release-time value, stage variable or task output is in scope.
    fn source_references(
        &mut self,
        alias: &Spanned<String>,
        config: &serde_json::Value,
        variables: &[VariableSpec],
        span: std::ops::Range<usize>,
    ) {
        let mut texts = Vec::new();
        collect_strings(config, &mut texts);
        for text in &texts {
            for reference in references(text) {
                let declared = variables.iter().find(|v| v.name == reference);
                let problem = match declared {
                    _ if reference == "sluice.pipeline" => continue,
                    Some(v) if !v.settable => continue,
                    Some(_) => {
                        "is settable at release time, and a source lists versions before a release exists"
                    }
                    None => "is not one of the pipeline's `[variables]`",
                };
                self.error(
                    Some(span.clone()),
                    format!("artifact `{}`: `$({reference})` {problem}", alias.get_ref()),
                    Some("an artifact source sees the pipeline's own variables (not settable ones) and `$(sluice.pipeline)`"),
                );
            }
        }
    }
}
