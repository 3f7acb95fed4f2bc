//! The character level of the JDL: a cursor that knows its line and column,
//! whitespace and the three comment forms, strings, names and number literals.
//!
//! The parser works on characters rather than on a token stream because bare words
//! and expressions are kept as source text, and where they end depends on which
//! attribute they belong to.

use super::{Diagnostic, Severity};
use thiserror::Error;

/// A place in the source. Lines and columns count from 1; columns count characters,
/// so a message points at the right place in a line with non-ASCII text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pos {
    pub offset: usize,
    pub line: u32,
    pub col: u32,
}

impl Pos {
    pub const START: Pos = Pos {
        offset: 0,
        line: 1,
        col: 1,
    };
}

impl std::fmt::Display for Pos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

/// The first syntax error in a text; parsing stops there.
#[derive(Debug, Clone, PartialEq, Error)]
#[error("{pos}: {message}")]
pub(crate) struct SyntaxError {
    pub pos: Pos,
    pub message: String,
}

impl SyntaxError {
    pub fn new(pos: Pos, message: impl Into<String>) -> Self {
        SyntaxError {
            pos,
            message: message.into(),
        }
    }

    pub fn into_diagnostic(self) -> Diagnostic {
        diagnostic(Severity::Error, self.pos, self.message)
    }
}

pub(crate) fn diagnostic(severity: Severity, pos: Pos, message: impl Into<String>) -> Diagnostic {
    Diagnostic {
        severity,
        line: pos.line,
        col: pos.col,
        message: message.into(),
    }
}

pub(crate) type Result<T> = std::result::Result<T, SyntaxError>;

/// Whitespace between tokens. `\r` is here so that CRLF files read like LF files.
pub(crate) fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\x0c' | '\u{feff}')
}

pub(crate) fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

pub(crate) fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '.'
}

/// A character as it should appear in a message: printable ones as themselves.
pub(crate) fn show_char(c: char) -> String {
    if c.is_control() {
        format!("{:?}", c)
    } else {
        format!("`{c}`")
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Cursor<'a> {
    src: &'a str,
    pos: Pos,
}

impl<'a> Cursor<'a> {
    pub fn new(src: &'a str) -> Self {
        Cursor {
            src,
            pos: Pos::START,
        }
    }

    pub fn pos(&self) -> Pos {
        self.pos
    }

    pub fn src(&self) -> &'a str {
        self.src
    }

    pub fn rest(&self) -> &'a str {
        self.src.get(self.pos.offset..).unwrap_or("")
    }

    pub fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    pub fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos.offset += c.len_utf8();
        if c == '\n' {
            self.pos.line = self.pos.line.saturating_add(1);
            self.pos.col = 1;
        } else {
            self.pos.col = self.pos.col.saturating_add(1);
        }
        Some(c)
    }

    /// Does a comment start here? `#` and `//` run to the end of the line, `/*` to `*/`.
    pub fn at_comment(&self) -> bool {
        let rest = self.rest();
        rest.starts_with('#') || rest.starts_with("//") || rest.starts_with("/*")
    }

    /// Skips one comment; the cursor must be `at_comment`. A line comment stops
    /// before its newline, so that the newline can still end a statement.
    pub fn skip_comment(&mut self) -> Result<()> {
        let start = self.pos;
        if self.rest().starts_with("/*") {
            self.bump();
            self.bump();
            loop {
                if self.rest().starts_with("*/") {
                    self.bump();
                    self.bump();
                    return Ok(());
                }
                if self.bump().is_none() {
                    return Err(SyntaxError::new(
                        start,
                        "unterminated comment: `/*` has no closing `*/`",
                    ));
                }
            }
        }
        while let Some(c) = self.peek() {
            if c == '\n' {
                break;
            }
            self.bump();
        }
        Ok(())
    }

    /// Skips whitespace and comments, newlines too when `newlines` is set.
    pub fn skip_trivia(&mut self, newlines: bool) -> Result<()> {
        while let Some(c) = self.peek() {
            if is_space(c) || (newlines && c == '\n') {
                self.bump();
            } else if self.at_comment() {
                self.skip_comment()?;
            } else {
                break;
            }
        }
        Ok(())
    }

    /// A name: a letter or `_`, then letters, digits, `_` and `.`.
    pub fn name(&mut self) -> &'a str {
        let start = self.pos.offset;
        while self.peek().is_some_and(is_name_char) {
            self.bump();
        }
        self.src.get(start..self.pos.offset).unwrap_or("")
    }

    /// A quoted string; the cursor is on the opening `"`. Unknown escapes are kept
    /// as written (with a warning) because Windows-style paths turn up in real files.
    pub fn string(&mut self, warnings: &mut Vec<Diagnostic>) -> Result<String> {
        let open = self.pos;
        self.bump();
        let mut out = String::new();
        loop {
            let at = self.pos;
            match self.bump() {
                None | Some('\n') => {
                    return Err(SyntaxError::new(
                        open,
                        "unterminated string: a string must end with `\"` on the line it \
                         starts (write `\\n` for a newline inside it)",
                    ))
                }
                Some('"') => return Ok(out),
                Some('\\') => match self.peek() {
                    Some('"') => push_bumped(self, &mut out, '"'),
                    Some('\\') => push_bumped(self, &mut out, '\\'),
                    Some('n') => push_bumped(self, &mut out, '\n'),
                    Some('t') => push_bumped(self, &mut out, '\t'),
                    Some('r') => push_bumped(self, &mut out, '\r'),
                    Some(c) if c != '\n' => {
                        warnings.push(diagnostic(
                            Severity::Warning,
                            at,
                            format!(
                                "unknown escape `\\{c}` in a string, kept as written; \
                                 write `\\\\` for a backslash"
                            ),
                        ));
                        out.push('\\');
                    }
                    _ => out.push('\\'),
                },
                Some(c) => out.push(c),
            }
        }
    }
}

fn push_bumped(cur: &mut Cursor<'_>, out: &mut String, c: char) {
    cur.bump();
    out.push(c);
}

/// A number literal, or `None` when `text` is not one: an optional sign, digits,
/// optionally a fraction and an exponent. Integers that do not fit an i64 are an
/// error rather than silently becoming reals.
pub(crate) fn number(text: &str) -> Option<std::result::Result<Number, String>> {
    let body = text.strip_prefix(['+', '-']).unwrap_or(text);
    let bytes = body.as_bytes();
    let mut i = 0;
    let digits = |i: &mut usize| {
        let from = *i;
        while bytes.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i - from
    };
    let mut mantissa = digits(&mut i);
    let mut is_real = false;
    if bytes.get(i) == Some(&b'.') {
        i += 1;
        is_real = true;
        mantissa += digits(&mut i);
    }
    if mantissa == 0 {
        return None;
    }
    if matches!(bytes.get(i), Some(b'e' | b'E')) {
        i += 1;
        is_real = true;
        if matches!(bytes.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return None;
        }
    }
    if i != bytes.len() {
        return None;
    }
    if is_real {
        return Some(
            text.parse::<f64>()
                .map(Number::Real)
                .map_err(|e| format!("`{text}` is not a number: {e}")),
        );
    }
    if let Ok(i) = text.parse::<i64>() {
        return Some(Ok(Number::Int(i)));
    }
    // Above i64 but within u64: only MaxWallTime and the counts can hold it, and
    // the lowering says so for any other attribute.
    if let Ok(u) = text.strip_prefix('+').unwrap_or(text).parse::<u64>() {
        return Some(Ok(Number::UInt(u)));
    }
    Some(Err(format!(
        "the integer `{text}` is out of range (from {} to {})",
        i64::MIN,
        u64::MAX
    )))
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Number {
    Int(i64),
    /// An integer above `i64::MAX`.
    UInt(u64),
    Real(f64),
}
