//! What a task, gate or artifact source runs: plugin references (built-in, path,
//! `plugins/NAME.wasm`, or `oci://`), and the names tasks and gates are given.

use std::collections::BTreeSet;
use std::path::Path;

use toml::Spanned;

use super::Validator;
use crate::builtin::builtin;

impl Validator<'_> {
    /// A plugin reference: a built-in name, a path (relative to the pipeline), or a name found
    /// as `plugins/NAME.wasm` next to the pipeline.
    pub(super) fn plugin(&mut self, text: &Spanned<String>) -> String {
        let name = text.get_ref();
        if builtin(name).is_some() {
            return name.clone();
        }
        if name.starts_with(crate::registry::SCHEME) {
            if let Err(e) = crate::registry::OciRef::parse(name) {
                self.error(Some(text.span()), e, None);
            }
            return name.clone();
        }
        if name.contains('/') || name.ends_with(".wasm") {
            return self.dir.join(name).display().to_string();
        }
        let local = self.dir.join("plugins").join(format!("{name}.wasm"));
        if local.is_file() {
            return local.display().to_string();
        }
        self.error(
            Some(text.span()),
            format!("unknown plugin `{name}`"),
            Some(&format!(
                "use a built-in ({}), a path to a component (`./plugins/x.wasm`), a component in a registry \
                 (`oci://HOST/REPO:TAG`), or put `plugins/{name}.wasm` next to the pipeline",
                crate::builtin::BUILTINS.iter().map(|b| b.name).collect::<Vec<_>>().join(", ")
            )),
        );
        name.clone()
    }

    /// The name of a task or gate: as written (checked: a valid name, not taken in `names`), or
    /// `prefix` + the plugin's file stem, numbered if taken.
    pub(super) fn call_name(
        &mut self,
        what: &str,
        written: Option<&Spanned<String>>,
        plugin: &Spanned<String>,
        prefix: &str,
        names: &mut BTreeSet<String>,
        unique: &str,
    ) -> String {
        if let Some(n) = written {
            self.check_name(&format!("{what} name"), n);
            if !names.insert(n.get_ref().clone()) {
                self.error(
                    Some(n.span()),
                    format!("duplicate {what} name `{}`", n.get_ref()),
                    Some(unique),
                );
            }
            return n.get_ref().clone();
        }
        let base = match crate::registry::OciRef::parse(plugin.get_ref()) {
            // `oci://host/team/deploy:1.2` -> `deploy`
            Ok(oci) => oci.repository.rsplit('/').next().unwrap_or(what).to_owned(),
            Err(_) => Path::new(plugin.get_ref())
                .file_stem()
                .map_or_else(|| what.to_owned(), |s| s.to_string_lossy().into_owned()),
        };
        let mut candidate = format!("{prefix}{base}");
        let mut n = 2;
        while !names.insert(candidate.clone()) {
            candidate = format!("{prefix}{base}-{n}");
            n += 1;
        }
        candidate
    }
}
