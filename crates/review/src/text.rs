//! Checks on free text that users type (notes, user names): characters that would hide or
//! reorder what an auditor later reads are refused.
//!
//! Refused: every control character (C0 such as NUL or ESC, DEL, C1) except newline and tab
//! in multi-line text, and the bidirectional embedding/override/isolate characters
//! U+202A–U+202E and U+2066–U+2069, which can make `exe.png` display as `gnp.exe` or flip the
//! order of words in a note, the audit trail and the exported report.

use super::store::{ReviewError, ReviewResult};

/// Whether `c` reorders the text around it (bidi embeddings, overrides and isolates).
pub fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Whether `c` is refused in text, where `multi_line` text may hold newlines and tabs.
fn is_forbidden(c: char, multi_line: bool) -> bool {
    if multi_line && (c == '\n' || c == '\t') {
        return false;
    }
    c.is_control() || is_bidi_control(c)
}

fn check(field: &str, value: &str, multi_line: bool) -> ReviewResult<()> {
    match value.chars().find(|&c| is_forbidden(c, multi_line)) {
        None => Ok(()),
        Some(c) => {
            let allowed = if multi_line { " (newline and tab are fine)" } else { "" };
            Err(ReviewError::BadInput(format!(
                "{field} contains the control or text-direction character U+{:04X}; remove it{allowed}",
                c as u32
            )))
        }
    }
}

/// Refuses control and bidi characters in a multi-line field such as a note.
pub fn check_multi_line(field: &str, value: &str) -> ReviewResult<()> {
    check(field, value, true)
}

/// Refuses control (newline and tab included) and bidi characters in a one-line field.
pub fn check_single_line(field: &str, value: &str) -> ReviewResult<()> {
    check(field, value, false)
}

/// `value` made safe for one log line: at most `max_chars` characters, control and bidi
/// characters written as escapes (`\n`, `\u{202e}`), so a crafted value cannot forge lines
/// or reorder what an operator reads.
pub fn escape_for_log(value: &str, max_chars: usize) -> String {
    let mut out = String::new();
    for c in value.chars().take(max_chars) {
        if is_bidi_control(c) {
            out.extend(c.escape_unicode());
        } else {
            out.extend(c.escape_debug());
        }
    }
    if value.chars().count() > max_chars {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_keep_newlines_and_tabs_but_lose_controls_and_bidi() {
        assert!(check_multi_line("note", "批文 2026-12\n第二行\tx").is_ok());
        for bad in [
            "\0", "\u{7}", "\r", "\u{1b}", "\u{7f}", "\u{85}", "\u{202a}", "\u{202e}", "\u{2066}", "\u{2069}",
        ] {
            let e = check_multi_line("note", &format!("a{bad}b")).unwrap_err().to_string();
            assert!(e.starts_with("note contains"), "{e}");
            assert!(
                e.contains(&format!("U+{:04X}", bad.chars().next().unwrap() as u32)),
                "{e}"
            );
        }
        // Marks that do not override direction stay allowed (Arabic and Hebrew text use them).
        assert!(check_multi_line("note", "\u{200f}שלום").is_ok());
    }

    #[test]
    fn one_line_fields_refuse_newline_and_tab_too() {
        assert!(check_single_line("name", "张三").is_ok());
        assert!(check_single_line("name", "a\nb").is_err());
        assert!(check_single_line("name", "a\tb").is_err());
    }

    #[test]
    fn log_escaping_keeps_one_line_and_shows_hidden_characters() {
        assert_eq!(escape_for_log("a\u{202e}b\nc", 64), "a\\u{202e}b\\nc");
        assert_eq!(escape_for_log("abcdef", 3), "abc…");
    }
}
