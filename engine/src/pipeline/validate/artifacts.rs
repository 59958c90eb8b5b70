//! `[artifacts.ALIAS]`: an artifact's source plugin, configuration, version selector and grants.

use toml::Spanned;

use super::{Validator, toml_to_json};
use crate::pipeline::plan::*;
use crate::pipeline::schema::*;

impl Validator<'_> {
    pub(super) fn artifact(&mut self, alias: &Spanned<String>, raw: &RawArtifact) -> ArtifactSpec {
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
        ArtifactSpec {
            alias: alias.get_ref().clone(),
            source,
            config: toml_to_json(&raw.config),
            selector,
            grants,
        }
    }
}
