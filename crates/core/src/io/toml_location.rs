//! Where a key sits in a TOML file, so that every error about a pipeline file or a model file
//! names the file, the dotted key, the line and the column — the one home for both.
//!
//! These files are edited by operators who read the message in a cron mail, not in an IDE: the
//! location has to be enough to find the value to fix.

use crate::Error;
use std::ops::Range;
use std::path::Path;

/// A byte range of the file's text.
pub type Span = Range<usize>;

/// Every value written in a TOML text with its dotted key (`typing.rules[2].conditions[0].value`)
/// and the byte span of the value, tables and arrays included (the root table has the key `""`).
/// Empty when the text is not TOML at all.
pub fn value_keys(text: &str) -> Vec<(String, Span)> {
    fn walk(key: &str, v: &toml::Spanned<toml::de::DeValue>, out: &mut Vec<(String, Span)>) {
        out.push((key.to_string(), v.span()));
        match v.get_ref() {
            toml::de::DeValue::Table(t) => {
                for (k, v) in t.iter() {
                    let sub = if key.is_empty() {
                        k.get_ref().to_string()
                    } else {
                        format!("{key}.{}", k.get_ref())
                    };
                    walk(&sub, v, out);
                }
            }
            toml::de::DeValue::Array(a) => {
                for (i, v) in a.iter().enumerate() {
                    walk(&format!("{key}[{i}]"), v, out);
                }
            }
            _ => {}
        }
    }
    let Ok(doc) = toml::de::DeTable::parse(text) else {
        return Vec::new();
    };
    let root = toml::Spanned::new(doc.span(), toml::de::DeValue::Table(doc.into_inner()));
    let mut out = Vec::new();
    walk("", &root, &mut out);
    out
}

/// 1-based line and column (in characters) of byte `offset` of `text`.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut end = offset.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let before = &text[..end];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// A configuration error (exit 2) about `key` of `path`, located at `span` when it is known:
/// `file: key: line L, column C: msg`.
pub fn error_at(path: &Path, text: &str, key: &str, span: Option<&Span>, msg: &str) -> Error {
    match span {
        Some(s) => {
            let (line, col) = line_col(text, s.start);
            Error::config(path, key, format!("line {line}, column {col}: {msg}"))
        }
        None => Error::config(path, key, msg.to_string()),
    }
}

/// Turns a TOML or serde error (`message` at `span`) into a configuration error naming the
/// dotted key it is about, its line and its column.
pub fn parse_error(path: &Path, text: &str, message: &str, span: Option<Span>) -> Error {
    let message = message.trim().replace('\n', " ");
    let key = match &span {
        Some(s) => key_at(text, s.start, &message),
        None => backticked_field(&message).unwrap_or_else(|| "file".into()),
    };
    error_at(path, text, &key, span.as_ref(), &message)
}

/// The dotted key an error at `offset` is about, plus the field the message names (an unknown,
/// missing or duplicate field). A value holding `offset` names itself; otherwise (the error is
/// at a key, a `[table]` header or text that does not parse — a table's span covers its header,
/// not its body) the enclosing header and the key written on the line are used.
fn key_at(text: &str, offset: usize, message: &str) -> String {
    let holder = value_keys(text)
        .into_iter()
        .filter(|(k, span)| !k.is_empty() && span.contains(&offset))
        .min_by_key(|(_, span)| span.len())
        .map_or_else(|| key_on_line(text, offset), |(k, _)| k);
    match backticked_field(message) {
        Some(field) if holder.is_empty() => field,
        Some(field) if holder == field || holder.ends_with(&format!(".{field}")) => holder,
        Some(field) => format!("{holder}.{field}"),
        None if holder.is_empty() => "file".into(),
        None => holder,
    }
}

/// `[table].key` read off the text around `offset`, for text that does not parse.
fn key_on_line(text: &str, offset: usize) -> String {
    let upto = &text[..offset.min(text.len())];
    let line_start = upto.rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[line_start..].find('\n').map_or(text.len(), |i| line_start + i);
    let table = text[..line_end]
        .lines()
        .rev()
        .find_map(table_header)
        .unwrap_or_default();
    let on_line = text[line_start..line_end]
        .split_once('=')
        .map(|(k, _)| k.trim().trim_matches('"').to_string())
        .filter(|k| !k.starts_with('['))
        .unwrap_or_default();
    match (table.is_empty(), on_line.is_empty()) {
        (true, _) => on_line,
        (false, true) => table,
        (false, false) => format!("{table}.{on_line}"),
    }
}

fn table_header(line: &str) -> Option<String> {
    let t = line.trim();
    (t.starts_with('[') && t.ends_with(']')).then(|| t.trim_matches(|c| c == '[' || c == ']').trim().to_string())
}

/// `unknown field `foo`, expected ...` / `missing field `bar`` → the field name.
fn backticked_field(message: &str) -> Option<String> {
    ["unknown field `", "missing field `", "duplicate field `"]
        .iter()
        .find_map(|prefix| message.split(prefix).nth(1))
        .and_then(|rest| rest.split('`').next())
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn located(text: &str, at: &str, message: &str) -> String {
        let offset = text.find(at).expect("marker in text");
        parse_error(Path::new("f.toml"), text, message, Some(offset..offset + at.len())).to_string()
    }

    #[test]
    fn a_wrong_value_names_its_dotted_key_line_and_column() {
        let text = "name = \"x\"\n[detect]\nblock_size = -3\n";
        let msg = located(text, "-3", "invalid value: integer `-3`, expected usize");
        assert_eq!(
            msg,
            "f.toml: detect.block_size: line 3, column 14: invalid value: integer `-3`, expected usize"
        );
    }

    #[test]
    fn an_unknown_field_is_named_inside_its_table() {
        let text = "[fetch]\nretries = 3\nretires = 4\n";
        let msg = located(text, "retires", "unknown field `retires`, expected one of …");
        assert!(msg.starts_with("f.toml: fetch.retires: line 3, column 1:"), "{msg}");
    }

    #[test]
    fn a_syntax_error_still_names_table_key_and_line() {
        let text = "[fetch]\nretries = = 3\n";
        let msg = located(text, "= 3", "expected a value");
        assert!(msg.starts_with("f.toml: fetch.retries: line 2, column 11:"), "{msg}");
    }

    #[test]
    fn array_elements_get_their_index() {
        let text = "[[rules]]\nvalue = 1\n[[rules]]\nvalue = \"x\"\n";
        let msg = located(text, "\"x\"", "invalid type: string \"x\", expected f64");
        assert!(msg.starts_with("f.toml: rules[1].value: line 4, column 9:"), "{msg}");
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        assert_eq!(line_col("名 = 1", "名 = ".len()), (1, 5));
    }
}
