//! Values set by key path in JSON, YAML and TOML files (the idea of Azure's "File transform"):
//! `ConnectionStrings.Default` is the key `Default` of the table `ConnectionStrings`; a numeric
//! segment indexes an array (`servers.0.host`). The value keeps the type of the one it replaces
//! when it can (a number stays a number, a boolean a boolean); otherwise it becomes a string.
//! TOML keeps its comments and layout; JSON keeps its key order and indentation; YAML keeps
//! its key order but not its comments.

use std::collections::BTreeMap;

/// The formats a file can be transformed as, by its extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Json,
    Yaml,
    Toml,
}

impl Format {
    pub(crate) fn of(rel: &str) -> Option<Self> {
        let ext = rel.rsplit_once('.')?.1.to_ascii_lowercase();
        match ext.as_str() {
            "json" => Some(Self::Json),
            "yaml" | "yml" => Some(Self::Yaml),
            "toml" => Some(Self::Toml),
            _ => None,
        }
    }
}

/// Why one key path was not set in one file.
#[derive(Debug, PartialEq, Eq)]
enum Miss {
    /// The file has no such key: it is another file's key.
    Absent,
    /// The key holds a table or an array: set its keys instead.
    NotScalar,
}

/// What transforming one file did: its new text and the key paths it set.
#[derive(Debug, Default)]
pub(crate) struct Transformed {
    pub text: String,
    pub set: Vec<String>,
}

/// Sets one value by key path in a parsed document.
type Setter<'a> = dyn FnMut(&[&str], &str) -> Result<(), Miss> + 'a;

/// Sets each of `values` (key path → value) that `text` has. A file that does not parse as
/// its format, or a key path that names a table or array, is an error.
pub(crate) fn apply(
    format: Format,
    text: &str,
    values: &BTreeMap<String, String>,
) -> Result<Transformed, String> {
    let mut out = Transformed::default();
    let mut each = |set: &mut Setter<'_>| {
        for (path, value) in values {
            let segments: Vec<&str> = path.split('.').collect();
            match set(&segments, value) {
                Ok(()) => out.set.push(path.clone()),
                Err(Miss::Absent) => {}
                Err(Miss::NotScalar) => {
                    return Err(format!(
                        "`{path}` is a table or an array here: set the keys under it instead"
                    ));
                }
            }
        }
        Ok(())
    };
    let text = match format {
        Format::Json => {
            let mut doc: serde_json::Value =
                serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
            each(&mut |path, value| set_json(&mut doc, path, value))?;
            json_text(&doc, text)?
        }
        Format::Yaml => {
            let mut doc: serde_yaml_ng::Value =
                serde_yaml_ng::from_str(text).map_err(|e| format!("not valid YAML: {e}"))?;
            each(&mut |path, value| set_yaml(&mut doc, path, value))?;
            serde_yaml_ng::to_string(&doc).map_err(|e| e.to_string())?
        }
        Format::Toml => {
            let mut doc: toml_edit::DocumentMut =
                text.parse().map_err(|e| format!("not valid TOML: {e}"))?;
            each(&mut |path, value| set_toml_table(doc.as_table_mut(), path, value))?;
            doc.to_string()
        }
    };
    out.text = text;
    Ok(out)
}

fn index(segment: &str) -> Option<usize> {
    segment.parse().ok()
}

fn set_json(doc: &mut serde_json::Value, path: &[&str], value: &str) -> Result<(), Miss> {
    use serde_json::Value;
    let mut node = doc;
    for segment in path {
        node = match node {
            Value::Object(map) => map.get_mut(*segment),
            Value::Array(items) => index(segment).and_then(|i| items.get_mut(i)),
            _ => None,
        }
        .ok_or(Miss::Absent)?;
    }
    *node = match node {
        Value::Object(_) | Value::Array(_) => return Err(Miss::NotScalar),
        Value::Number(_) => serde_json::from_str::<serde_json::Number>(value)
            .map(Value::Number)
            .unwrap_or_else(|_| Value::String(value.to_owned())),
        Value::Bool(_) => value
            .parse()
            .map(Value::Bool)
            .unwrap_or_else(|_| Value::String(value.to_owned())),
        Value::Null | Value::String(_) => Value::String(value.to_owned()),
    };
    Ok(())
}

/// The document as text, indented as the original was (two spaces if it was not indented).
fn json_text(doc: &serde_json::Value, original: &str) -> Result<String, String> {
    use serde::Serialize;
    let indent = original
        .lines()
        .skip(1)
        .find_map(|line| {
            let width = line.len() - line.trim_start().len();
            (width > 0).then(|| &line[..width])
        })
        .unwrap_or("  ");
    let mut text = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(indent.as_bytes());
    let mut serializer = serde_json::Serializer::with_formatter(&mut text, formatter);
    doc.serialize(&mut serializer).map_err(|e| e.to_string())?;
    let mut text = String::from_utf8(text).map_err(|e| e.to_string())?;
    if original.ends_with('\n') {
        text.push('\n');
    }
    Ok(text)
}

fn set_yaml(doc: &mut serde_yaml_ng::Value, path: &[&str], value: &str) -> Result<(), Miss> {
    use serde_yaml_ng::Value;
    let mut node = doc;
    for segment in path {
        node = match node {
            Value::Mapping(map) => map.get_mut(*segment),
            Value::Sequence(items) => index(segment).and_then(|i| items.get_mut(i)),
            _ => None,
        }
        .ok_or(Miss::Absent)?;
    }
    *node = match node {
        Value::Mapping(_) | Value::Sequence(_) | Value::Tagged(_) => {
            return Err(Miss::NotScalar);
        }
        Value::Number(_) => value
            .parse::<serde_yaml_ng::Number>()
            .map(Value::Number)
            .unwrap_or_else(|_| Value::String(value.to_owned())),
        Value::Bool(_) => value
            .parse()
            .map(Value::Bool)
            .unwrap_or_else(|_| Value::String(value.to_owned())),
        Value::Null | Value::String(_) => Value::String(value.to_owned()),
    };
    Ok(())
}

fn set_toml_table(table: &mut toml_edit::Table, path: &[&str], value: &str) -> Result<(), Miss> {
    let (first, rest) = path.split_first().ok_or(Miss::NotScalar)?;
    set_toml_item(table.get_mut(first).ok_or(Miss::Absent)?, rest, value)
}

fn set_toml_item(item: &mut toml_edit::Item, path: &[&str], value: &str) -> Result<(), Miss> {
    use toml_edit::Item;
    match item {
        Item::Value(v) => set_toml_value(v, path, value),
        Item::Table(table) if !path.is_empty() => set_toml_table(table, path, value),
        Item::ArrayOfTables(tables) if !path.is_empty() => {
            let table = index(path[0])
                .and_then(|i| tables.get_mut(i))
                .ok_or(Miss::Absent)?;
            match &path[1..] {
                [] => Err(Miss::NotScalar),
                rest => set_toml_table(table, rest, value),
            }
        }
        Item::Table(_) | Item::ArrayOfTables(_) => Err(Miss::NotScalar),
        Item::None => Err(Miss::Absent),
    }
}

fn set_toml_value(node: &mut toml_edit::Value, path: &[&str], value: &str) -> Result<(), Miss> {
    use toml_edit::Value;
    if let Some((first, rest)) = path.split_first() {
        let next = match node {
            Value::InlineTable(table) => table.get_mut(first),
            Value::Array(items) => index(first).and_then(|i| items.get_mut(i)),
            _ => None,
        };
        return set_toml_value(next.ok_or(Miss::Absent)?, rest, value);
    }
    let string = || Value::from(value);
    let new = match node {
        Value::InlineTable(_) | Value::Array(_) => return Err(Miss::NotScalar),
        Value::Integer(_) => value
            .parse::<i64>()
            .map(Value::from)
            .unwrap_or_else(|_| string()),
        Value::Float(_) => value
            .parse::<f64>()
            .map(Value::from)
            .unwrap_or_else(|_| string()),
        Value::Boolean(_) => value
            .parse::<bool>()
            .map(Value::from)
            .unwrap_or_else(|_| string()),
        Value::Datetime(_) => value
            .parse::<toml_edit::Datetime>()
            .map(Value::from)
            .unwrap_or_else(|_| string()),
        Value::String(_) => string(),
    };
    let decor = node.decor().clone();
    *node = new;
    *node.decor_mut() = decor;
    Ok(())
}
