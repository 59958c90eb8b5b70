//! `template`: a built-in Sluice task that renders configuration files from the deployment's
//! workspace into a granted directory, with the release's variables.
//!
//! Two kinds of substitution, in this order:
//! - **tokens** in any text file: `#{name}#` (the convention of Azure's "Replace Tokens" task),
//!   or `$(name)` with `tokens = "dollar"`, replaced by the variable `name`;
//! - **key paths** in JSON, YAML and TOML files matched by `transform`: each entry of `set`
//!   (`"ConnectionStrings.Default" = "$(db)"`, the engine substituting `$(db)`) replaces the
//!   value at that path (Azure's "File transform").
//!
//! A token whose variable is not set fails the task with the file, line and token, unless
//! `missing = "keep"` (left as it is) or `"empty"`. Files that are not UTF-8 text are copied as
//! they are. Each file is written aside and renamed into place. The log names the files and
//! variables used, never a value.
//!
//! ```toml
//! [[stages.tasks]]
//! plugin = "template"
//! config = { from = "config", to = "/target", set = { "ConnectionStrings.Default" = "$(db)" } }
//! grants.dirs = [{ host = "/srv/app", guest = "/target", access = "rw" }]   # the workspace is read-only
//! ```

mod tokens;
mod transform;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use serde::Deserialize;
use sluice_plugin_sdk::files::{self, Filter};
use sluice_plugin_sdk::{Error, Report, Task, TaskInput, Variables, log};

use tokens::{Missing, Style};
use transform::Format;

/// A file larger than this is copied as it is, not rendered.
const MAX_RENDERED: u64 = 16 << 20;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Config {
    /// Source directory: relative to the workspace, or an absolute guest path.
    from: String,
    /// Target directory: a guest path inside a read-write grant (it may be `from` itself).
    to: String,
    /// Globs (relative to `from`) of the files to render; everything by default.
    #[serde(default = "everything")]
    files: Vec<String>,
    /// Globs of files to leave out.
    #[serde(default)]
    exclude: Vec<String>,
    /// `"hash"` for `#{name}#` tokens (the default), `"dollar"` for `$(name)`.
    #[serde(default)]
    tokens: TokenStyle,
    /// What a token whose variable is not set becomes.
    #[serde(default)]
    missing: MissingPolicy,
    /// Globs of the JSON, YAML and TOML files whose keys `set` replaces; when `set` is given
    /// and this is not, every such file.
    transform: Option<Vec<String>>,
    /// Key path → value.
    #[serde(default)]
    set: BTreeMap<String, String>,
}

fn everything() -> Vec<String> {
    vec!["**".to_owned()]
}

#[derive(Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "kebab-case")]
enum TokenStyle {
    #[default]
    Hash,
    Dollar,
}

#[derive(Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "kebab-case")]
enum MissingPolicy {
    #[default]
    Fail,
    Keep,
    Empty,
}

/// What the whole run changed.
#[derive(Default)]
struct Totals {
    files: usize,
    tokens: usize,
    keys: usize,
    copied: usize,
    /// Key paths of `set` that some file had.
    keys_found: std::collections::BTreeSet<String>,
    warnings: Vec<String>,
}

struct Template;

impl Task for Template {
    fn run(input: TaskInput) -> Result<Report, Error> {
        let config: Config = input.config.parse()?;
        let from = files::source_dir("from", &config.from, &input.context)?;
        let to = files::target_dir("to", &config.to)?;
        let filter = Filter::new(&config.files, &config.exclude)?;
        let transform = match (&config.transform, config.set.is_empty()) {
            (Some(globs), _) => Some(Filter::any_of("transform", globs)?),
            (None, false) => Some(Filter::any_of("transform", &everything())?),
            (None, true) => None,
        };
        if let Some(path) = config.set.keys().find(|p| p.split('.').any(str::is_empty)) {
            return Err(Error::invalid_config(format!(
                "`set` key path `{path}` has an empty segment: write `Parent.Child`"
            )));
        }
        let rules = Rules {
            style: match config.tokens {
                TokenStyle::Hash => Style::Hash,
                TokenStyle::Dollar => Style::Dollar,
            },
            missing: match config.missing {
                MissingPolicy::Fail => Missing::Fail,
                MissingPolicy::Keep => Missing::Keep,
                MissingPolicy::Empty => Missing::Empty,
            },
            transform,
            set: &config.set,
            variables: &input.variables,
        };

        let sources = files::walk(&from)
            .map_err(|e| Error::failed(format!("cannot read source {}: {e}", from.display())))?;
        let mut totals = Totals::default();
        for rel in sources.iter().filter(|rel| filter.matches(rel)) {
            render_one(&from.join(rel), &to.join(rel), rel, &rules, &mut totals)?;
        }

        let summary = format!(
            "{} files rendered, {} tokens and {} keys replaced, {} copied as they are",
            totals.files, totals.tokens, totals.keys, totals.copied
        );
        log::info(&summary);
        let mut report = Report::new()
            .output("files-rendered", totals.files.to_string())
            .output("tokens-replaced", totals.tokens.to_string())
            .output("keys-replaced", totals.keys.to_string())
            .output("summary", summary);
        for path in config.set.keys() {
            if !totals.keys_found.contains(path) {
                totals
                    .warnings
                    .push(format!("`set` key path `{path}` is in no transformed file"));
            }
        }
        if totals.files + totals.copied == 0 {
            totals.warnings.push(format!(
                "no file under {} matched files {:?} and exclude {:?}",
                from.display(),
                config.files,
                config.exclude
            ));
        }
        for warning in totals.warnings {
            report = report.warn(warning);
        }
        Ok(report)
    }
}

/// How every file is rendered.
struct Rules<'a> {
    style: Style,
    missing: Missing,
    transform: Option<Filter>,
    set: &'a BTreeMap<String, String>,
    variables: &'a Variables,
}

/// Renders one file into place, or copies it when it is not text it can render.
fn render_one(
    src: &Path,
    dst: &Path,
    rel: &str,
    rules: &Rules<'_>,
    totals: &mut Totals,
) -> Result<(), Error> {
    let failed =
        |what: &str, e: &dyn std::fmt::Display| Error::failed(format!("cannot {what} {rel}: {e}"));
    let size = fs::metadata(src).map_err(|e| failed("read", &e))?.len();
    let content = if size <= MAX_RENDERED {
        Some(fs::read(src).map_err(|e| failed("read", &e))?)
    } else {
        None
    };
    let Some(text) = content.as_deref().and_then(|c| std::str::from_utf8(c).ok()) else {
        match &content {
            Some(bytes) => files::write_atomic(dst, bytes).map_err(|e| failed("write", &e))?,
            None => copy_large(src, dst).map_err(|e| failed("copy", &e))?,
        }
        log::info(format!(
            "copied {rel} as it is (not UTF-8 text, or over 16 MiB)"
        ));
        totals.copied += 1;
        return Ok(());
    };

    let replaced = tokens::replace(text, rules.style, rules.missing, |name| {
        rules.variables.get(name).map(str::to_owned)
    });
    if rules.missing == Missing::Fail
        && let Some(first) = replaced.unset.first()
    {
        let more = match replaced.unset.len() {
            1 => String::new(),
            n => format!(" (and {} more in this file)", n - 1),
        };
        return Err(Error::failed(format!(
            "{rel}:{}: `{}` names a variable that is not set{more}: declare it, or set \
             `missing = \"keep\"` or `\"empty\"`",
            first.line, first.token
        )));
    }
    let mut text = replaced.text;
    let mut keys = Vec::new();
    if let (Some(filter), Some(format)) = (&rules.transform, Format::of(rel))
        && filter.matches(rel)
    {
        let out = transform::apply(format, &text, rules.set)
            .map_err(|e| Error::failed(format!("{rel}: {e}")))?;
        text = out.text;
        keys = out.set;
    }
    files::write_atomic(dst, text.as_bytes()).map_err(|e| failed("write", &e))?;

    let mut line = format!("rendered {rel}: {} tokens", replaced.count);
    if !replaced.names.is_empty() {
        let names: Vec<&str> = replaced.names.iter().map(String::as_str).collect();
        line.push_str(&format!(" ({})", names.join(", ")));
    }
    if !keys.is_empty() {
        line.push_str(&format!(", keys {}", keys.join(", ")));
    }
    if !replaced.unset.is_empty() {
        line.push_str(&format!(
            ", {} tokens without a variable",
            replaced.unset.len()
        ));
    }
    log::info(line);
    totals.files += 1;
    totals.tokens += replaced.count;
    totals.keys += keys.len();
    totals.keys_found.extend(keys);
    Ok(())
}

/// Copies a file too large to render, through a file written aside.
fn copy_large(src: &Path, dst: &Path) -> std::io::Result<()> {
    let aside = files::aside(dst)?;
    fs::copy(src, &aside)
        .and_then(|_| fs::rename(&aside, dst))
        .inspect_err(|_| {
            let _ = fs::remove_file(&aside);
        })
}

sluice_plugin_sdk::export_task!(Template);
