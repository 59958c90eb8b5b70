//! `Name`: a name checked once — of a pipeline, stage, task, gate, artifact or variable, and
//! the release ids made from them — and [`path_under`], the one way the engine turns names into
//! paths.
//!
//! A name uses lowercase ASCII letters, digits, `-` and `_`, starts with a letter or digit, and
//! is at most [`Name::MAX_LEN`] characters (a pipeline's at most [`Name::MAX_PIPELINE_LEN`], so
//! that its release ids, `NAME-N`, are names too). So a name is never empty, `.` or `..`, and
//! holds no `/`, `\`, `.` (approval ids are `release.stage.attempt.pre|post`), NUL or other
//! control character, bidi control, quote or space: it is safe as one path segment, in a header
//! and in an id.

use std::fmt;
use std::ops::Deref;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What a name may be, as the errors say it (without the length).
pub const NAME_RULE: &str =
    "names use lowercase letters, digits, `-` and `_`, and start with a letter or digit";

/// A valid name (see the module's rule). Made only by [`Name::new`] or [`Name::pipeline`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Name(String);

impl Name {
    /// The longest name, in characters.
    pub const MAX_LEN: usize = 100;
    /// The longest pipeline name: room for `-` and a release number inside [`Name::MAX_LEN`].
    pub const MAX_PIPELINE_LEN: usize = 64;

    /// `text` as a name, or why it is not one.
    pub fn new(text: &str) -> Result<Self, NameError> {
        check(text, Self::MAX_LEN).map(|()| Self(text.to_owned()))
    }

    /// `text` as a pipeline's name: a name of at most [`Name::MAX_PIPELINE_LEN`] characters.
    pub fn pipeline(text: &str) -> Result<Self, NameError> {
        check(text, Self::MAX_PIPELINE_LEN).map(|()| Self(text.to_owned()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name as an owned string.
    pub fn into_string(self) -> String {
        self.0
    }
}

fn check(text: &str, max: usize) -> Result<(), NameError> {
    let fail = |problem| {
        Err(NameError {
            shown: shown(text),
            problem,
            max,
        })
    };
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_';
    let Some(first) = text.chars().next() else {
        return fail(Problem::Empty);
    };
    if let Some(bad) = text.chars().find(|&c| !allowed(c)) {
        return fail(Problem::Holds(bad));
    }
    if !(first.is_ascii_lowercase() || first.is_ascii_digit()) {
        return fail(Problem::Starts(first));
    }
    let len = text.chars().count();
    if len > max {
        return fail(Problem::TooLong(len));
    }
    Ok(())
}

/// How a character reads in a message: itself if visible ASCII, else `U+XXXX`.
fn char_shown(c: char) -> String {
    if c.is_ascii_graphic() {
        c.to_string()
    } else {
        format!("U+{:04X}", c as u32)
    }
}

/// A refused name as a message shows it: at most 40 characters, control and other invisible
/// characters spelled as `U+XXXX`, so a message never carries a CR, LF, NUL or bidi control.
fn shown(text: &str) -> String {
    let mut out: String = text
        .chars()
        .take(40)
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c.to_string()
            } else {
                format!("<{}>", char_shown(c))
            }
        })
        .collect();
    if text.chars().count() > 40 {
        out.push('…');
    }
    out
}

/// Why a text is not a name. Its message says what is wrong and what is allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameError {
    shown: String,
    problem: Problem,
    max: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Problem {
    Empty,
    Holds(char),
    Starts(char),
    TooLong(usize),
}

impl NameError {
    /// The refused text as messages show it (shortened, invisible characters spelled out).
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// What is wrong with it, e.g. "it holds `/`".
    pub fn problem(&self) -> String {
        match &self.problem {
            Problem::Empty => "it is empty".into(),
            Problem::Holds(c) => format!("it holds `{}`", char_shown(*c)),
            Problem::Starts(c) => format!("it starts with `{}`", char_shown(*c)),
            Problem::TooLong(len) => format!("it is {len} characters long"),
        }
    }

    /// What a name may be: the character rule, or the length when only that is wrong.
    pub fn help(&self) -> String {
        match self.problem {
            Problem::TooLong(_) => format!("this name is at most {} characters", self.max),
            _ => NAME_RULE.to_owned(),
        }
    }

    /// Whether only the length is wrong.
    pub fn is_too_long(&self) -> bool {
        matches!(self.problem, Problem::TooLong(_))
    }
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` is not a valid name ({}): names use lowercase letters, digits, `-` and `_`, \
             start with a letter or digit, and are at most {} characters",
            self.shown,
            self.problem(),
            self.max
        )
    }
}

impl std::error::Error for NameError {}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Deref for Name {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Name {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl TryFrom<&str> for Name {
    type Error = NameError;

    fn try_from(text: &str) -> Result<Self, NameError> {
        Self::new(text)
    }
}

impl Serialize for Name {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Name {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::new(&text).map_err(serde::de::Error::custom)
    }
}

/// A path made from names that would leave its root (never, for valid names: the check is
/// defence in depth).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} is not a path under {}", path.display(), root.display())]
pub struct PathEscape {
    /// The root.
    pub root: PathBuf,
    /// The path refused.
    pub path: PathBuf,
}

/// `root/NAME/NAME/...` with `suffix` (empty, or an extension like `.toml`) on the last name,
/// checked to be exactly one plain segment a name under `root`.
pub fn path_under(root: &Path, names: &[&Name], suffix: &str) -> Result<PathBuf, PathEscape> {
    let mut path = root.to_path_buf();
    let last = names.len().saturating_sub(1);
    for (i, name) in names.iter().enumerate() {
        if i == last {
            path.push(format!("{name}{suffix}"));
        } else {
            path.push(name.as_str());
        }
    }
    let suffix_ok = suffix.is_empty()
        || (suffix.starts_with('.')
            && suffix.len() > 1
            && suffix[1..].bytes().all(|b| b.is_ascii_alphanumeric()));
    let inside = path.strip_prefix(root).is_ok_and(|rest| {
        let parts: Vec<Component<'_>> = rest.components().collect();
        parts.len() == names.len()
            && !names.is_empty()
            && parts.iter().all(|c| matches!(c, Component::Normal(_)))
    });
    if suffix_ok && inside {
        Ok(path)
    } else {
        Err(PathEscape {
            root: root.to_path_buf(),
            path,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(text: &str) -> NameError {
        Name::new(text).expect_err(text)
    }

    #[test]
    fn names_of_the_rule_are_accepted() {
        for text in ["a", "0", "web", "ring-1", "qa_east", "9lives", "a-", "a_"] {
            assert_eq!(Name::new(text).unwrap().as_str(), text);
        }
        let longest = "a".repeat(Name::MAX_LEN);
        assert_eq!(Name::new(&longest).unwrap().len(), Name::MAX_LEN);
        let pipeline = "p".repeat(Name::MAX_PIPELINE_LEN);
        assert!(Name::pipeline(&pipeline).is_ok());
        // A pipeline of the longest name has release ids that are names.
        assert!(Name::new(&format!("{pipeline}-{}", u64::MAX)).is_ok());
    }

    #[test]
    fn paths_separators_dots_and_controls_are_refused() {
        let probes = [
            ("", "it is empty"),
            (".", "it holds `.`"),
            ("..", "it holds `.`"),
            ("../../escaped", "it holds `.`"),
            ("../sluice", "it holds `.`"),
            ("/tmp/victim", "it holds `/`"),
            ("a/b", "it holds `/`"),
            ("a\\b", "it holds `\\`"),
            ("a\0b", "it holds `U+0000`"),
            ("a\r\nb", "it holds `U+000D`"),
            ("a\tb", "it holds `U+0009`"),
            ("a\u{7f}", "it holds `U+007F`"),
            ("a\u{202e}b", "it holds `U+202E`"),
            ("a\u{2066}b", "it holds `U+2066`"),
            ("a.b", "it holds `.`"),
            ("a\"b", "it holds `\"`"),
            ("a b", "it holds `U+0020`"),
            ("Web", "it holds `W`"),
            ("café", "it holds `U+00E9`"),
            ("-web", "it starts with `-`"),
            ("_web", "it starts with `_`"),
        ];
        for (text, problem) in probes {
            let e = refused(text);
            assert_eq!(e.problem(), problem, "{text:?}");
            assert!(e.to_string().contains("lowercase letters, digits"), "{e}");
            assert_eq!(e.help(), NAME_RULE);
        }
    }

    #[test]
    fn over_long_names_are_refused_with_the_limit() {
        let e = refused(&"a".repeat(Name::MAX_LEN + 1));
        assert_eq!(e.problem(), "it is 101 characters long");
        assert!(e.is_too_long());
        assert_eq!(e.help(), "this name is at most 100 characters");
        let e = Name::pipeline(&"a".repeat(Name::MAX_PIPELINE_LEN + 1)).unwrap_err();
        assert!(e.to_string().ends_with("at most 64 characters"), "{e}");
        assert!(refused(&"a".repeat(300)).to_string().contains("300"));
    }

    #[test]
    fn messages_never_carry_control_characters_and_stay_short() {
        let e = refused("x\r\nSet-Cookie: a=b\0\u{202e}");
        let message = e.to_string();
        assert!(
            !message.chars().any(|c| c.is_control() || c == '\u{202e}'),
            "{message:?}"
        );
        assert!(
            e.shown().starts_with("x<U+000D><U+000A>Set-Cookie"),
            "{}",
            e.shown()
        );
        let long = refused(&"/".repeat(300));
        assert_eq!(long.shown().chars().count(), 41);
    }

    #[test]
    fn serde_is_a_string_that_validates() {
        let name: Name = serde_json::from_str("\"web\"").unwrap();
        assert_eq!(&*name, "web");
        assert_eq!(serde_json::to_string(&name).unwrap(), "\"web\"");
        let e = serde_json::from_str::<Name>("\"../x\"").unwrap_err();
        assert!(e.to_string().contains("not a valid name"), "{e}");
        assert!(serde_json::from_str::<Name>("\"\"").is_err());
        assert!(serde_json::from_str::<Name>("7").is_err());
    }

    #[test]
    fn paths_stay_under_their_root() {
        let root = Path::new("/data/workspaces");
        let (release, stage, attempt) = (
            Name::new("web-1").unwrap(),
            Name::new("prod").unwrap(),
            Name::new("2").unwrap(),
        );
        assert_eq!(
            path_under(root, &[&release, &stage, &attempt], "").unwrap(),
            Path::new("/data/workspaces/web-1/prod/2")
        );
        let file = path_under(Path::new("pipelines"), &[&release], ".toml").unwrap();
        assert_eq!(file, Path::new("pipelines/web-1.toml"));
        // The suffix cannot smuggle a path in, and there must be a name.
        assert!(path_under(root, &[&release], "/../../x").is_err());
        assert!(path_under(root, &[&release], ".").is_err());
        assert!(path_under(root, &[], "").is_err());
        // A `Name` that was not checked (built here by hand) is still caught.
        for bad in ["..", "/tmp/victim", "../x", "a/../../b"] {
            let forged = Name(bad.to_owned());
            assert!(path_under(root, &[&forged], "").is_err(), "{bad}");
        }
    }
}
