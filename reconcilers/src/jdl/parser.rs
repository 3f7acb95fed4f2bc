//! The JDL's syntax: statements, records, lists, literals, bare words and
//! expressions, into a tree that remembers where everything was.
//!
//! How a value is read depends on its attribute (see `attrs::Mode`), so the parser
//! asks for the mode of each name before it reads the value. The first syntax error
//! ends the parse: after it, the parser cannot know where the next statement starts,
//! and guesses would only bury the real error under invented ones.

use super::attrs::{self, Mode};
use super::lexer::SyntaxError;
use super::lexer::{is_name_start, is_space, number, show_char, Cursor, Number, Pos, Result};
use super::{Diagnostic, MAX_NESTING};

/// `Name = value` as written.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Stmt {
    pub name: String,
    pub name_pos: Pos,
    pub value: Node,
}

/// A value and where it starts.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    pub pos: Pos,
    pub kind: Kind,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Kind {
    Str(String),
    Int(i64),
    /// An integer above `i64::MAX`, which `Value` cannot hold.
    UInt(u64),
    Real(f64),
    Bool(bool),
    List(Vec<Node>),
    Record(Record),
    Expr(String),
}

/// A bracketed record, or the whole file. `open` is the `[` (or 1:1 for a file
/// without brackets), where "this job has no Executable" is reported.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Record {
    pub open: Pos,
    pub stmts: Vec<Stmt>,
}

/// A parsed file: its top record and the warnings found while reading it.
pub(crate) struct Parsed {
    pub top: Record,
    pub warnings: Vec<Diagnostic>,
}

/// Parses a whole file; on error returns the error and the warnings found before it.
pub(crate) fn parse(src: &str) -> std::result::Result<Parsed, (SyntaxError, Vec<Diagnostic>)> {
    let mut p = Parser {
        cur: Cursor::new(src),
        depth: 0,
        brackets: 0,
        warnings: Vec::new(),
    };
    match p.file() {
        Ok(top) => Ok(Parsed {
            top,
            warnings: p.warnings,
        }),
        Err(e) => Err((e, p.warnings)),
    }
}

struct Parser<'a> {
    cur: Cursor<'a>,
    /// Open `[`, `{` and `(` around the cursor, bounded by `MAX_NESTING` so that
    /// hostile input cannot overflow the stack.
    depth: usize,
    /// Open `[` around the cursor: inside one, `]` also ends a bare word.
    brackets: usize,
    warnings: Vec<Diagnostic>,
}

impl<'a> Parser<'a> {
    fn file(&mut self) -> Result<Record> {
        self.cur.skip_trivia(true)?;
        if self.cur.peek() == Some('[') {
            let record = self.record()?;
            self.cur.skip_trivia(true)?;
            if let Some(c) = self.cur.peek() {
                return Err(SyntaxError::new(
                    self.cur.pos(),
                    format!(
                        "unexpected {} after the `]` that closes the job opened at {}",
                        show_char(c),
                        record.open
                    ),
                ));
            }
            return Ok(record);
        }
        let stmts = self.statements(None)?;
        Ok(Record {
            open: Pos::START,
            stmts,
        })
    }

    fn enter(&mut self, at: Pos) -> Result<()> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return Err(SyntaxError::new(
                at,
                format!("nesting deeper than {MAX_NESTING} levels of `[`, `{{` and `(`"),
            ));
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    /// `[ statements ]`; the cursor is on the `[`.
    fn record(&mut self) -> Result<Record> {
        let open = self.cur.pos();
        self.enter(open)?;
        self.cur.bump();
        self.brackets += 1;
        let stmts = self.statements(Some(open))?;
        self.brackets -= 1;
        self.leave();
        Ok(Record { open, stmts })
    }

    /// Statements up to the `]` that closes `close` (consumed), or to the end of
    /// the file when there is no bracket.
    fn statements(&mut self, close: Option<Pos>) -> Result<Vec<Stmt>> {
        let mut stmts = Vec::new();
        loop {
            self.cur.skip_trivia(true)?;
            let here = self.cur.pos();
            match (self.cur.peek(), close) {
                (None, None) => return Ok(stmts),
                (None, Some(open)) => {
                    return Err(SyntaxError::new(
                        here,
                        format!("missing `]` to close the `[` at {open}"),
                    ))
                }
                (Some(']'), Some(_)) => {
                    self.cur.bump();
                    return Ok(stmts);
                }
                (Some(']'), None) => {
                    return Err(SyntaxError::new(
                        here,
                        "unexpected `]`: there is no `[` for it to close",
                    ))
                }
                // A stray `;` (`;;`, or one after a newline) says nothing; accept it.
                (Some(';'), _) => {
                    self.cur.bump();
                }
                (Some(c), _) if is_name_start(c) => stmts.push(self.statement()?),
                (Some(c), _) => {
                    return Err(SyntaxError::new(
                        here,
                        format!("expected an attribute name, found {}", show_char(c)),
                    ))
                }
            }
        }
    }

    fn statement(&mut self) -> Result<Stmt> {
        let name_pos = self.cur.pos();
        let name = self.cur.name().to_string();
        let after_name = self.cur.pos();
        self.cur.skip_trivia(false)?;
        match self.cur.peek() {
            Some('=') => {
                self.cur.bump();
            }
            None | Some('\n') => {
                return Err(SyntaxError::new(
                    after_name,
                    format!("expected `=` after `{name}`"),
                ))
            }
            Some(c) => {
                return Err(SyntaxError::new(
                    self.cur.pos(),
                    format!("expected `=` after `{name}`, found {}", show_char(c)),
                ))
            }
        }
        let value = self.value_after_eq(&name)?;
        self.cur.skip_trivia(false)?;
        match self.cur.peek() {
            Some(';') => {
                self.cur.bump();
            }
            // A newline ends a complete value; a `]` or the end of the file ends the
            // record or file, and `statements` decides whether that is right.
            None | Some('\n') | Some(']') => {}
            Some(c) => {
                let unquoted = attrs::mode_of(&name) == Mode::Bare
                    && matches!(value.kind, Kind::Str(_))
                    && !self
                        .cur
                        .src()
                        .get(value.pos.offset..)
                        .is_some_and(|v| v.starts_with('"'));
                let hint = if unquoted && matches!(c, ',' | '}') {
                    "; put the value in quotes if it contains `,` or `}`"
                } else {
                    ""
                };
                return Err(SyntaxError::new(
                    self.cur.pos(),
                    format!(
                        "expected `;` or a new line after the value of `{name}`, found {}{hint}",
                        show_char(c)
                    ),
                ));
            }
        }
        Ok(Stmt {
            name,
            name_pos,
            value,
        })
    }

    fn value_after_eq(&mut self, name: &str) -> Result<Node> {
        let mode = attrs::mode_of(name);
        let after_eq = self.cur.pos();
        self.cur.skip_trivia(false)?;
        if self.cur.peek() == Some('\n') {
            self.cur.skip_trivia(true)?;
            // A bare word on the next line is much more likely the next statement
            // than this one's value (`Arguments =` then `Executable = x`).
            // For an expression, only a line that reads as a statement is refused.
            let next_is_value = match mode {
                Mode::Bare => matches!(self.cur.peek(), Some('"' | '{' | '[')),
                Mode::Expr => !starts_statement(self.cur),
            };
            if !next_is_value {
                return Err(missing_value(after_eq, name));
            }
        }
        match self.cur.peek() {
            None | Some(';' | ']' | '}' | ',') => Err(missing_value(after_eq, name)),
            _ => self.value(mode),
        }
    }

    fn value(&mut self, mode: Mode) -> Result<Node> {
        let pos = self.cur.pos();
        match (self.cur.peek(), mode) {
            (Some('['), _) => Ok(Node {
                pos,
                kind: Kind::Record(self.record()?),
            }),
            (Some('{'), Mode::Bare) => self.list(mode),
            (Some('{'), Mode::Expr) => {
                // `{1, 2}` is a list, but `{1, 2} == x` would be an expression.
                let saved = (self.cur, self.warnings.len());
                let list = self.list(mode)?;
                let mut ahead = self.cur;
                ahead.skip_trivia(false)?;
                if ahead.peek().is_some_and(is_operator) {
                    (self.cur, _) = saved;
                    self.warnings.truncate(saved.1);
                    return self.expr();
                }
                Ok(list)
            }
            (Some('"'), Mode::Bare) => Ok(Node {
                pos,
                kind: Kind::Str(self.cur.string(&mut self.warnings)?),
            }),
            (Some(_), Mode::Bare) => self.bare_word(),
            (Some(_), Mode::Expr) => self.expr(),
            (None, _) => Err(SyntaxError::new(
                pos,
                "expected a value, found the end of the file",
            )),
        }
    }

    /// `{ v, v, ... }`; the cursor is on the `{`. A trailing comma is accepted.
    fn list(&mut self, mode: Mode) -> Result<Node> {
        let open = self.cur.pos();
        self.enter(open)?;
        self.cur.bump();
        let mut items = Vec::new();
        loop {
            self.cur.skip_trivia(true)?;
            match self.cur.peek() {
                Some('}') => {
                    self.cur.bump();
                    break;
                }
                None => return Err(unclosed_list(self.cur.pos(), open)),
                Some(c @ (',' | ';' | ']')) => {
                    return Err(SyntaxError::new(
                        self.cur.pos(),
                        format!(
                            "expected a value in the list opened at {open}, found {}",
                            show_char(c)
                        ),
                    ))
                }
                Some(_) => {}
            }
            items.push(self.value(mode)?);
            self.cur.skip_trivia(true)?;
            match self.cur.peek() {
                Some(',') => {
                    self.cur.bump();
                }
                Some('}') => {
                    self.cur.bump();
                    break;
                }
                None => return Err(unclosed_list(self.cur.pos(), open)),
                Some(c) => {
                    return Err(SyntaxError::new(
                        self.cur.pos(),
                        format!(
                            "expected `,` or `}}` in the list opened at {open}, found {}",
                            show_char(c)
                        ),
                    ))
                }
            }
        }
        self.leave();
        Ok(Node {
            pos: open,
            kind: Kind::List(items),
        })
    }

    /// Unquoted text for a string attribute: it runs to `;`, `,`, `}`, the end of the
    /// line, a comment after a space, or (inside brackets) `]`, and is trimmed.
    /// Quotes inside it are kept, and what they enclose does not end it, so that
    /// `Arguments = --title "a, b; c"` reads as a shell user means it.
    fn bare_word(&mut self) -> Result<Node> {
        let pos = self.cur.pos();
        let mut end = pos.offset;
        let mut after_space = true;
        // Quote characters found to have no closing one on this line; a later one
        // of the same kind has none either, and looking again would be quadratic.
        let mut unclosed: Vec<char> = Vec::new();
        while let Some(c) = self.cur.peek() {
            let stops = matches!(c, ';' | ',' | '}' | '\n')
                || (c == ']' && self.brackets > 0)
                || (after_space && self.cur.at_comment());
            if stops {
                break;
            }
            if matches!(c, '"' | '\'') && !unclosed.contains(&c) {
                if let Some(after) = closing_quote(self.cur) {
                    self.cur = after;
                    end = self.cur.pos().offset;
                    after_space = false;
                    continue;
                }
                unclosed.push(c);
            }
            self.cur.bump();
            after_space = is_space(c);
            if !after_space {
                end = self.cur.pos().offset;
            }
        }
        let text = self.cur.src().get(pos.offset..end).unwrap_or("");
        if text.is_empty() {
            return Err(SyntaxError::new(pos, "expected a value"));
        }
        Ok(Node {
            pos,
            kind: Kind::Str(text.to_string()),
        })
    }

    /// An expression, kept as its source text unless it is exactly one literal.
    /// It runs to a `;`, `,`, `}` or `]` outside parentheses, or to a newline once it
    /// is complete: not after an operator, and not before a line that starts with one
    /// (multi-line Requirements are written both ways).
    fn expr(&mut self) -> Result<Node> {
        let start = self.cur.pos();
        let mut end = start.offset;
        let mut stack: Vec<(char, Pos)> = Vec::new();
        let mut last: Option<char> = None;
        let mut after_space = true;
        // The decoded value of a string that starts the expression, and where it ends.
        let mut leading_string: Option<(String, usize)> = None;
        while let Some(c) = self.cur.peek() {
            let here = self.cur.pos();
            match c {
                '"' => {
                    let s = self.cur.string(&mut self.warnings)?;
                    if here.offset == start.offset {
                        leading_string = Some((s, self.cur.pos().offset));
                    }
                }
                '(' | '[' | '{' => {
                    if self.depth + stack.len() + 1 > MAX_NESTING {
                        return Err(SyntaxError::new(
                            here,
                            format!(
                                "nesting deeper than {MAX_NESTING} levels of `[`, `{{` and `(`"
                            ),
                        ));
                    }
                    stack.push((c, here));
                    self.cur.bump();
                }
                ')' | ']' | '}' => match stack.pop() {
                    None if c == ')' => {
                        return Err(SyntaxError::new(here, "unbalanced `)`: nothing to close"))
                    }
                    None => break,
                    Some((open, at)) if closer(open) != c => {
                        return Err(SyntaxError::new(
                            here,
                            format!("`{c}` does not match the `{open}` at {at}"),
                        ))
                    }
                    Some(_) => {
                        self.cur.bump();
                    }
                },
                ';' | ',' if stack.is_empty() => break,
                '\n' if stack.is_empty() => {
                    if last.is_some_and(is_operator) {
                        self.cur.bump();
                        after_space = true;
                        continue;
                    }
                    let mut ahead = self.cur;
                    ahead.skip_trivia(true)?;
                    if ahead.peek().is_some_and(is_operator) {
                        self.cur = ahead;
                        after_space = true;
                        continue;
                    }
                    break;
                }
                _ if after_space && self.cur.at_comment() => {
                    self.cur.skip_comment()?;
                    after_space = true;
                    continue;
                }
                _ => {
                    self.cur.bump();
                }
            }
            after_space = is_space(c) || c == '\n';
            if !after_space {
                end = self.cur.pos().offset;
                last = Some(c);
            }
        }
        if let Some((open, at)) = stack.pop() {
            return Err(SyntaxError::new(
                self.cur.pos(),
                format!("the `{open}` at {at} is not closed with `{}`", closer(open)),
            ));
        }
        let text = self.cur.src().get(start.offset..end).unwrap_or("");
        if text.is_empty() {
            return Err(SyntaxError::new(start, "expected a value"));
        }
        let kind = match leading_string {
            Some((s, string_end)) if string_end == end => Kind::Str(s),
            _ => literal(text, start)?,
        };
        Ok(Node { pos: start, kind })
    }
}

/// Does a statement (`Name =`, not `Name ==`) start at the cursor?
fn starts_statement(mut cur: Cursor<'_>) -> bool {
    if !cur.peek().is_some_and(is_name_start) {
        return false;
    }
    cur.name();
    while cur.peek().is_some_and(is_space) {
        cur.bump();
    }
    cur.bump() == Some('=') && cur.peek() != Some('=')
}

/// The cursor just after the quote that closes the one `cur` is on, if it is
/// closed on the same line; a backslash escapes the next character in `"..."`.
fn closing_quote(mut cur: Cursor<'_>) -> Option<Cursor<'_>> {
    let quote = cur.bump()?;
    loop {
        match cur.bump()? {
            '\n' => return None,
            '\\' if quote == '"' => {
                if cur.peek() == Some('\n') {
                    return None;
                }
                cur.bump();
            }
            c if c == quote => return Some(cur),
            _ => {}
        }
    }
}

/// A number or boolean when `text` is exactly one, else an expression.
fn literal(text: &str, pos: Pos) -> Result<Kind> {
    if text.eq_ignore_ascii_case("true") {
        return Ok(Kind::Bool(true));
    }
    if text.eq_ignore_ascii_case("false") {
        return Ok(Kind::Bool(false));
    }
    match number(text) {
        Some(Ok(Number::Int(i))) => Ok(Kind::Int(i)),
        Some(Ok(Number::UInt(u))) => Ok(Kind::UInt(u)),
        Some(Ok(Number::Real(r))) => Ok(Kind::Real(r)),
        Some(Err(message)) => Err(SyntaxError::new(pos, message)),
        None => Ok(Kind::Expr(text.to_string())),
    }
}

fn closer(open: char) -> char {
    match open {
        '(' => ')',
        '[' => ']',
        _ => '}',
    }
}

/// Characters that, at the end of a line or the start of the next, show that an
/// expression goes on. `-` and `!` cannot start a statement, so they are safe too.
fn is_operator(c: char) -> bool {
    matches!(
        c,
        '&' | '|' | '+' | '-' | '*' | '/' | '%' | '<' | '>' | '=' | '!' | '?' | ':' | '^'
    )
}

fn missing_value(at: Pos, name: &str) -> SyntaxError {
    SyntaxError::new(
        at,
        format!("missing value for `{name}` (write `{name} = \"\";` for an empty one)"),
    )
}

fn unclosed_list(at: Pos, open: Pos) -> SyntaxError {
    SyntaxError::new(
        at,
        format!("the list opened at {open} is not closed with `}}`"),
    )
}
