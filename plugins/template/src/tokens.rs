//! Token replacement: `#{name}#` (the convention of Azure's "Replace Tokens" task) or
//! `$(name)`, replaced by the value of the variable `name`.

use std::collections::BTreeSet;

/// Which tokens a file's text is searched for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Style {
    /// `#{name}#`
    Hash,
    /// `$(name)`
    Dollar,
}

impl Style {
    fn delimiters(self) -> (&'static str, &'static str) {
        match self {
            Style::Hash => ("#{", "}#"),
            Style::Dollar => ("$(", ")"),
        }
    }
}

/// What to do with a token whose variable is not set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Missing {
    /// Fail the task, naming the file, line and token.
    Fail,
    /// Leave the token as it is.
    Keep,
    /// Replace it with nothing.
    Empty,
}

/// A token with no variable, where it is (1-based line).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Unset {
    pub line: usize,
    pub token: String,
}

/// What replacing tokens in one text did.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Replaced {
    pub text: String,
    /// Tokens replaced (each occurrence counts).
    pub count: usize,
    /// The variables used, by name.
    pub names: BTreeSet<String>,
    /// Tokens whose variable is not set (kept or emptied, per `missing`).
    pub unset: Vec<Unset>,
}

/// A token's name: letters, digits, `-`, `_` and `.` (outputs are `task.output`), with spaces
/// around it allowed.
fn token_name(inner: &str) -> Option<&str> {
    let name = inner.trim();
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    valid.then_some(name)
}

/// Replaces the tokens of `style` in `text` with `lookup(name)`. With `Missing::Fail` the
/// unset tokens are listed and the text is not to be used.
pub(crate) fn replace(
    text: &str,
    style: Style,
    missing: Missing,
    lookup: impl Fn(&str) -> Option<String>,
) -> Replaced {
    let (open, close) = style.delimiters();
    let mut out = Replaced::default();
    let mut rest = text;
    let mut line = 1;
    while let Some(start) = rest.find(open) {
        let (before, after) = rest.split_at(start);
        out.text.push_str(before);
        line += before.matches('\n').count();
        let inner = &after[open.len()..];
        let token = inner
            .find(close)
            .and_then(|end| Some((token_name(&inner[..end])?, end)));
        let Some((name, end)) = token else {
            out.text.push_str(open);
            rest = inner;
            continue;
        };
        let whole = &after[..open.len() + end + close.len()];
        match lookup(name) {
            Some(value) => {
                out.text.push_str(&value);
                out.count += 1;
                out.names.insert(name.to_owned());
            }
            None => {
                out.unset.push(Unset {
                    line,
                    token: whole.to_owned(),
                });
                if missing == Missing::Keep {
                    out.text.push_str(whole);
                }
            }
        }
        rest = &after[whole.len()..];
    }
    out.text.push_str(rest);
    out
}
