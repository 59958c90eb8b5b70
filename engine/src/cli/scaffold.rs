//! `sluice plugin new`: a ready plugin project in Rust, Python or JavaScript, written offline
//! from templates compiled into the binary (spin's `new` is the model). Every project holds
//! the plugin's source, a test of its logic in the language's own runner, a sample config, a
//! README, the WIT it builds against (`wit/`, with the WASI packages it imports), the helper
//! library of its language (`sdk/`, `sluice_plugin/` or `sluice/`, copied, so it builds with no
//! Sluice checkout) and `sluice-plugin.toml`, which tells `sluice plugin build` what it is.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use clap::ValueEnum;
use serde::{Deserialize, Serialize};

/// The language of a plugin project.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum Lang {
    Rust,
    Python,
    Js,
}

/// What a plugin project exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(super) enum Kind {
    Task,
    Gate,
    ArtifactSource,
}

impl Kind {
    /// The world of `wit/worlds.wit` the project builds against.
    pub(super) fn world(self) -> &'static str {
        match self {
            Kind::Task => "task-plugin",
            Kind::Gate => "gate-plugin",
            Kind::ArtifactSource => "artifact-source-plugin",
        }
    }

    /// The plugin world a component of this kind must export.
    pub(super) fn plugin_world(self) -> sluice::plugin::World {
        use sluice::plugin::World;
        match self {
            Kind::Task => World::Task,
            Kind::Gate => World::Gate,
            Kind::ArtifactSource => World::ArtifactSource,
        }
    }

    fn file_stem(self) -> &'static str {
        match self {
            Kind::Task => "task",
            Kind::Gate => "gate",
            Kind::ArtifactSource => "artifact-source",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.file_stem())
    }
}

impl fmt::Display for Lang {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Lang::Rust => "rust",
            Lang::Python => "python",
            Lang::Js => "js",
        })
    }
}

/// `sluice-plugin.toml`: what `sluice plugin build` and `run` read in a project.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Manifest {
    pub(super) name: String,
    pub(super) lang: Lang,
    pub(super) kind: Kind,
}

pub(super) const MANIFEST: &str = "sluice-plugin.toml";

impl Manifest {
    /// The manifest of the project in `dir`.
    pub(super) fn read(dir: &Path) -> anyhow::Result<Self> {
        let path = dir.join(MANIFEST);
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "{} is not a plugin project: it has no {MANIFEST} (make one with `sluice plugin \
                 new NAME --lang rust|python|js`)",
                dir.display()
            )
        })?;
        let manifest: Self =
            toml::from_str(&text).with_context(|| format!("{} is not valid", path.display()))?;
        // A hand-edited name is held to `plugin new`'s rule: it names a file under build/.
        check_name(&manifest.name).with_context(|| format!("{}: `name`", path.display()))?;
        Ok(manifest)
    }

    /// Where `sluice plugin build` puts the component, relative to the project.
    pub(super) fn component(&self) -> PathBuf {
        PathBuf::from(component_of(&self.name))
    }
}

/// The WIT every project builds against, as `wit/` in this checkout.
const WIT: &[(&str, &str)] = &[
    ("wit/types.wit", include_str!("../../../wit/types.wit")),
    ("wit/worlds.wit", include_str!("../../../wit/worlds.wit")),
    (
        "wit/deps/cli.wit",
        include_str!("../../../wit/deps/cli.wit"),
    ),
    (
        "wit/deps/clocks.wit",
        include_str!("../../../wit/deps/clocks.wit"),
    ),
    (
        "wit/deps/filesystem.wit",
        include_str!("../../../wit/deps/filesystem.wit"),
    ),
    (
        "wit/deps/http.wit",
        include_str!("../../../wit/deps/http.wit"),
    ),
    ("wit/deps/io.wit", include_str!("../../../wit/deps/io.wit")),
    (
        "wit/deps/random.wit",
        include_str!("../../../wit/deps/random.wit"),
    ),
    (
        "wit/deps/sockets.wit",
        include_str!("../../../wit/deps/sockets.wit"),
    ),
];

macro_rules! sdk {
    ($($to:literal => $from:literal),* $(,)?) => {
        &[$(($to, include_str!(concat!("../../../plugin-sdk/", $from)))),*]
    };
}

const RUST_SDK: &[(&str, &str)] = sdk![
    "sdk/src/lib.rs" => "src/lib.rs",
    "sdk/src/__private.rs" => "src/__private.rs",
    "sdk/src/config.rs" => "src/config.rs",
    "sdk/src/files.rs" => "src/files.rs",
    "sdk/src/http.rs" => "src/http.rs",
    "sdk/src/http/url.rs" => "src/http/url.rs",
    "sdk/src/log.rs" => "src/log.rs",
    "sdk/src/report.rs" => "src/report.rs",
    "sdk/src/units.rs" => "src/units.rs",
    "sdk/macros/src/lib.rs" => "macros/src/lib.rs",
];

const PYTHON_SDK: &[(&str, &str)] = sdk![
    "sluice_plugin/__init__.py" => "python/sluice_plugin/__init__.py",
    "sluice_plugin/_wit.py" => "python/sluice_plugin/_wit.py",
    "sluice_plugin/config.py" => "python/sluice_plugin/config.py",
    "sluice_plugin/env.py" => "python/sluice_plugin/env.py",
    "sluice_plugin/errors.py" => "python/sluice_plugin/errors.py",
    "sluice_plugin/export.py" => "python/sluice_plugin/export.py",
    "sluice_plugin/files.py" => "python/sluice_plugin/files.py",
    "sluice_plugin/http.py" => "python/sluice_plugin/http.py",
    "sluice_plugin/log.py" => "python/sluice_plugin/log.py",
    "sluice_plugin/model.py" => "python/sluice_plugin/model.py",
];

const JS_SDK: &[(&str, &str)] = sdk![
    "sluice/index.js" => "js/index.js",
    "sluice/component.js" => "js/component.js",
    "sluice/node-host.js" => "js/node-host.js",
];

/// The pinned build tools, named in every project and checked by `sluice plugin build`.
pub(super) const COMPONENTIZE_PY: &str = "0.25.1";
pub(super) const COMPONENTIZE_JS: &str = "0.23.0";
const PYTEST: &str = "8.3.4";

/// The files of a new project named `name`, as (path, text).
fn files(name: &str, lang: Lang, kind: Kind) -> Vec<(String, String)> {
    // Templates get their placeholders filled in; the WIT and the helpers are copied as they are.
    let mut out: Vec<(String, String)> = Vec::new();
    let mut copied: Vec<(String, String)> = Vec::new();
    let mut add = |path: &str, text: &str| out.push((path.to_owned(), text.to_owned()));
    let mut copy = |path: &str, text: &str| copied.push((path.to_owned(), text.to_owned()));
    if lang != Lang::Rust {
        for (path, text) in WIT {
            copy(path, text);
        }
    }
    let config = match kind {
        Kind::Task => include_str!("../../../plugin-sdk/templates/config/task.toml"),
        Kind::Gate => include_str!("../../../plugin-sdk/templates/config/gate.toml"),
        Kind::ArtifactSource => {
            include_str!("../../../plugin-sdk/templates/config/artifact-source.toml")
        }
    };
    add(&format!("{kind}.toml"), config);
    add(MANIFEST, &manifest(name, lang, kind));
    match lang {
        Lang::Rust => {
            // The WIT goes inside the SDK: wit-bindgen in the plugin's own crate reads a `wit/`
            // beside its Cargo.toml, and would read the package twice.
            for (path, text) in WIT {
                copy(&format!("sdk/{path}"), text);
            }
            for (path, text) in RUST_SDK {
                let text = text.replace(r#"path: "../wit""#, r#"path: "wit""#).replace(
                    r#"include_str!("../../../wit/"#,
                    r#"include_str!("../../wit/"#,
                );
                copy(path, &text);
            }
            add("sdk/Cargo.toml", RUST_SDK_MANIFEST);
            add("sdk/macros/Cargo.toml", RUST_MACROS_MANIFEST);
            add("Cargo.toml", RUST_MANIFEST);
            add(".gitignore", "/target\n/build\n");
            add(
                "README.md",
                include_str!("../../../plugin-sdk/templates/rust/README.md"),
            );
            add(
                "src/lib.rs",
                match kind {
                    Kind::Task => include_str!("../../../examples/template-plugin/src/lib.rs"),
                    Kind::Gate => include_str!("../../../plugin-sdk/templates/rust/gate.rs"),
                    Kind::ArtifactSource => {
                        include_str!("../../../plugin-sdk/templates/rust/artifact_source.rs")
                    }
                },
            );
        }
        Lang::Python => {
            for (path, text) in PYTHON_SDK {
                copy(path, text);
            }
            let (source, test) = match kind {
                Kind::Task => (
                    include_str!("../../../plugin-sdk/templates/python/task.py"),
                    include_str!("../../../plugin-sdk/templates/python/test_task.py"),
                ),
                Kind::Gate => (
                    include_str!("../../../plugin-sdk/templates/python/gate.py"),
                    include_str!("../../../plugin-sdk/templates/python/test_gate.py"),
                ),
                Kind::ArtifactSource => (
                    include_str!("../../../plugin-sdk/templates/python/artifact_source.py"),
                    include_str!("../../../plugin-sdk/templates/python/test_artifact_source.py"),
                ),
            };
            add("app.py", source);
            add("test_app.py", test);
            add(
                "requirements-dev.txt",
                &format!("componentize-py=={COMPONENTIZE_PY}\npytest=={PYTEST}\n"),
            );
            add(".gitignore", "/build\n__pycache__/\n.venv/\n");
            add(
                "README.md",
                include_str!("../../../plugin-sdk/templates/python/README.md"),
            );
        }
        Lang::Js => {
            for (path, text) in JS_SDK {
                copy(path, text);
            }
            let (source, test, export, function) = match kind {
                Kind::Task => (
                    include_str!("../../../plugin-sdk/templates/js/task.js"),
                    include_str!("../../../plugin-sdk/templates/js/task.test.js"),
                    "export const task = exportTask(run);",
                    "exportTask",
                ),
                Kind::Gate => (
                    include_str!("../../../plugin-sdk/templates/js/gate.js"),
                    include_str!("../../../plugin-sdk/templates/js/gate.test.js"),
                    "export const gate = exportGate(evaluate);",
                    "exportGate",
                ),
                Kind::ArtifactSource => (
                    include_str!("../../../plugin-sdk/templates/js/artifact-source.js"),
                    include_str!("../../../plugin-sdk/templates/js/artifact-source.test.js"),
                    "export const artifactSource = exportArtifactSource({ listVersions, fetch });",
                    "exportArtifactSource",
                ),
            };
            let names = match kind {
                Kind::Task => "run",
                Kind::Gate => "evaluate",
                Kind::ArtifactSource => "fetch, listVersions",
            };
            add("src/plugin.js", source);
            add("src/plugin.test.js", test);
            add(
                "component.js",
                &format!(
                    "// The module componentize-js builds: it exports the plugin's functions as \
                     the WIT world\n// `{world}`. The logic lives in src/plugin.js.\n\
                     import {{ {function} }} from './sluice/component.js';\n\
                     import {{ {names} }} from './src/plugin.js';\n\n{export}\n",
                    world = kind.world(),
                ),
            );
            add("package.json", &js_package(name));
            add(".gitignore", "/build\nnode_modules/\n");
            add(
                "README.md",
                include_str!("../../../plugin-sdk/templates/js/README.md"),
            );
        }
    }
    let pipeline = match kind {
        Kind::Task => include_str!("../../../plugin-sdk/templates/config/task.pipeline.toml"),
        Kind::Gate => include_str!("../../../plugin-sdk/templates/config/gate.pipeline.toml"),
        Kind::ArtifactSource => {
            include_str!("../../../plugin-sdk/templates/config/artifact-source.pipeline.toml")
        }
    };
    let file = component_of(name);
    out.into_iter()
        .map(|(path, text)| {
            let text = text
                .replace("{{pipeline}}", pipeline.trim_end())
                .replace("{{name}}", name)
                .replace("{{crate}}", &name.replace('-', "_"))
                .replace("{{kind}}", kind.file_stem())
                .replace("{{world}}", kind.world())
                .replace("{{file}}", &file);
            (path, text)
        })
        .chain(copied)
        .collect()
}

/// `build/NAME.wasm`: where `sluice plugin build` puts a project's component.
fn component_of(name: &str) -> String {
    format!("build/{name}.wasm")
}

fn manifest(name: &str, lang: Lang, kind: Kind) -> String {
    let manifest = Manifest {
        name: name.to_owned(),
        lang,
        kind,
    };
    format!(
        "# Read by `sluice plugin build` (which writes build/{name}.wasm) and `sluice plugin run`.\n{}",
        toml::to_string(&manifest)
            .expect("a manifest serializes")
            .trim_end()
    ) + "\n"
}

const RUST_MANIFEST: &str = r#"[package]
name = "{{name}}"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
# A component for `wasm32-wasip2` is built from a cdylib; rlib lets `cargo test` run on the host.
crate-type = ["cdylib", "rlib"]

[dependencies]
serde = { version = "1", features = ["derive"] }
sluice-plugin-sdk = { path = "sdk" }

# A project of its own, not a member of any workspace around it.
[workspace]
"#;

const RUST_SDK_MANIFEST: &str = r#"# The Sluice plugin SDK, copied by `sluice plugin new` (it builds against ../wit).
[package]
name = "sluice-plugin-sdk"
version = "0.1.0"
edition = "2024"
publish = false

[dependencies]
serde = { version = "1", features = ["derive"] }
serde_json = "1"
globset = { version = "0.4", default-features = false }
wit-bindgen = { version = "0.63", default-features = false, features = ["macros", "realloc", "std", "bitflags"] }
wasip2 = "1"
sluice-plugin-sdk-macros = { path = "macros" }
"#;

const RUST_MACROS_MANIFEST: &str = r#"[package]
name = "sluice-plugin-sdk-macros"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
proc-macro = true
"#;

fn js_package(name: &str) -> String {
    format!(
        r#"{{
  "name": "{name}",
  "version": "0.1.0",
  "private": true,
  "type": "module",
  "scripts": {{
    "build": "sluice plugin build",
    "test": "node --test src/"
  }},
  "devDependencies": {{
    "@bytecodealliance/componentize-js": "{COMPONENTIZE_JS}"
  }}
}}
"#
    )
}

/// Checks a project name: it names a crate, a Python project and an npm package.
fn check_name(name: &str) -> anyhow::Result<()> {
    let ok = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-');
    if !ok {
        bail!(
            "`{name}` is not a usable plugin name: use lowercase letters, digits and `-`, \
             starting with a letter (e.g. `notify-chat`), at most 64 characters"
        );
    }
    Ok(())
}

/// Writes a new project at `dir` (which must not exist, or be empty). Returns the files written.
pub(super) fn create(dir: &Path, lang: Lang, kind: Kind) -> anyhow::Result<Vec<String>> {
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .with_context(|| format!("{} does not end in a project name", dir.display()))?;
    check_name(name)?;
    if let Ok(mut entries) = std::fs::read_dir(dir)
        && entries.next().is_some()
    {
        bail!(
            "{} already exists and is not empty: choose another name, or remove it first",
            dir.display()
        );
    }
    let files = files(name, lang, kind);
    for (path, text) in &files {
        let target = dir.join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&target, text)
            .with_context(|| format!("cannot write {}", target.display()))?;
    }
    Ok(files.into_iter().map(|(path, _)| path).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manifest_whose_name_leaves_build_is_refused_on_read() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["../x", "/etc/cron.d/x", "a/../../b", "A", ""] {
            let text = format!("name = {name:?}\nlang = \"python\"\nkind = \"task\"\n");
            std::fs::write(dir.path().join(MANIFEST), text).unwrap();
            let e = format!("{:#}", Manifest::read(dir.path()).unwrap_err());
            assert!(
                e.contains("`name`") && e.contains("not a usable plugin name"),
                "{e}"
            );
        }
        std::fs::write(
            dir.path().join(MANIFEST),
            "name = \"notify\"\nlang = \"js\"\nkind = \"gate\"\n",
        )
        .unwrap();
        let read = Manifest::read(dir.path()).unwrap();
        assert_eq!(read.component(), Path::new("build/notify.wasm"));
    }

    #[test]
    fn every_language_and_kind_fills_in_every_placeholder() {
        for lang in [Lang::Rust, Lang::Python, Lang::Js] {
            for kind in [Kind::Task, Kind::Gate, Kind::ArtifactSource] {
                let files = files("notify-chat", lang, kind);
                for (path, text) in &files {
                    let copied = ["sdk/", "sluice/", "sluice_plugin/", "wit/"];
                    if !copied.iter().any(|dir| path.starts_with(dir)) {
                        assert!(
                            !text.contains("{{"),
                            "{lang} {kind}: {path} keeps a placeholder"
                        );
                    }
                }
                let manifest = &files.iter().find(|(p, _)| p == MANIFEST).unwrap().1;
                let read: Manifest = toml::from_str(manifest).unwrap();
                assert_eq!((read.lang, read.kind), (lang, kind));
                let wit = if lang == Lang::Rust {
                    "sdk/wit/deps/http.wit"
                } else {
                    "wit/deps/http.wit"
                };
                assert!(
                    files.iter().any(|(p, _)| p == wit),
                    "{lang} {kind}: no {wit}"
                );
            }
        }
    }

    #[test]
    fn a_name_that_is_no_package_name_is_refused_with_the_rule() {
        for bad in ["Notify", "1st", "a_b", "a/b", "ends-", "", "ä"] {
            let err = check_name(bad).unwrap_err().to_string();
            assert!(
                err.contains("lowercase letters, digits and `-`"),
                "{bad}: {err}"
            );
        }
        check_name("notify-chat2").unwrap();
    }

    #[test]
    fn a_directory_with_files_is_never_written_into() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("taken");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("keep.txt"), "mine").unwrap();
        let err = create(&dir, Lang::Python, Kind::Task)
            .unwrap_err()
            .to_string();
        assert!(err.contains("already exists and is not empty"), "{err}");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        assert_eq!(
            std::fs::read_to_string(dir.join("keep.txt")).unwrap(),
            "mine"
        );
    }
}
