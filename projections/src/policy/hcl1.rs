//! Rewrites HCL1 layouts that Vault accepts but the HCL2 parser (hcl-edit) rejects into
//! an equivalent HCL2 layout. Only used after a direct HCL2 parse has failed.
//!
//! The rewrite re-emits the original tokens (strings and numbers verbatim) with canonical
//! whitespace, and so handles:
//!
//! * a block's `{` on a later line than its labels (`path "x"` newline `{`);
//! * several attributes on one line, and `}` on the line of the last attribute
//!   (`path "a" { capabilities = ["read"]  policy = "read" }`);
//! * commas between attributes (`{ capabilities = ["read"], policy = "write" }`);
//! * quoted attribute and block names (`"capabilities" = [...]`);
//! * object values whose items are split by newlines or commas;
//! * an object written as a block inside a block (`allowed_parameters { "*" = [] }`);
//! * repeated attributes (renamed apart, see [`Normalised::renamed`]).
//!
//! Anything else it does not understand makes it give up (`None`), and the caller
//! reports the HCL2 parser's error on the original text.
//!
//! Separately, [`escape_templates`] keeps `${…}` and `%{…}` literal, as HCL1 does.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

/// The rewritten text, and for each of its lines (0-based) the 1-based line of the
/// original text it came from, so errors can name the line the author wrote.
pub struct Normalised {
    pub text: String,
    pub line_origins: Vec<usize>,
    /// Attribute names given to repeated attributes (HCL1 allows repeats, HCL2 does not),
    /// mapped to the name written in the policy.
    pub renamed: HashMap<String, String>,
}

impl Normalised {
    /// The name written in the policy for an attribute name of the rewritten text.
    pub fn original_name<'a>(&'a self, name: &'a str) -> &'a str {
        self.renamed.get(name).map_or(name, String::as_str)
    }

    /// The original 1-based line of the rewritten text's 1-based `line`.
    pub fn original_line(&self, line: usize) -> usize {
        line.checked_sub(1).and_then(|i| self.line_origins.get(i)).copied().unwrap_or(line)
    }
}

/// Escapes `${` and `%{` inside quoted strings and heredocs (`$${`, `%%{`), so that HCL2
/// reads them literally, as HCL1 did (`"${x}"` is the three characters `${x}` to Vault).
/// Comments are left alone; no newline is added, so line numbers stay the same.
pub fn escape_templates(text: &str) -> Cow<'_, str> {
    if !text.contains("${") && !text.contains("%{") {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        let len = match c {
            '"' => quoted_len(rest),
            '#' => rest.find('\n').unwrap_or(rest.len()),
            '/' if rest.starts_with("//") => rest.find('\n').unwrap_or(rest.len()),
            '/' if rest.starts_with("/*") => rest.find("*/").map_or(rest.len(), |i| i + 2),
            '<' if rest.starts_with("<<") => heredoc_len(rest),
            _ => c.len_utf8(),
        };
        let (piece, tail) = rest.split_at(len.min(rest.len()));
        if c == '"' || (c == '<' && len > 2) {
            out.push_str(&piece.replace("${", "$${").replace("%{", "%%{"));
        } else {
            out.push_str(piece);
        }
        rest = tail;
    }
    Cow::Owned(out)
}

/// The length of the quoted string at the start of `s` (to the end if unterminated).
fn quoted_len(s: &str) -> usize {
    let mut escaped = false;
    for (i, c) in s.char_indices().skip(1) {
        match c {
            '\\' if !escaped => escaped = true,
            '"' if !escaped => return i + 1,
            '\n' => return i,
            _ => escaped = false,
        }
    }
    s.len()
}

/// The length of the heredoc at the start of `s`, through its closing marker line; 2 (just
/// `<<`) when `s` does not start a heredoc.
fn heredoc_len(s: &str) -> usize {
    let Some(header_end) = s.find('\n') else {
        return 2;
    };
    let marker = s[2..header_end].trim_start_matches('-').trim_end_matches('\r');
    if marker.is_empty() || !marker.chars().all(|c| c.is_alphanumeric() || c == '_') {
        return 2;
    }
    let mut offset = header_end + 1;
    while offset < s.len() {
        let line_end = s[offset..].find('\n').map_or(s.len(), |i| offset + i);
        if s[offset..line_end].trim() == marker {
            return line_end;
        }
        offset = line_end + 1;
    }
    s.len()
}

/// Rewrites `text`, or `None` when it is not in the HCL1 subset this module knows.
pub fn normalise(text: &str) -> Option<Normalised> {
    let tokens = lex(text)?;
    let mut emitter = Emitter {
        tokens: &tokens,
        pos: 0,
        out: String::new(),
        lines: 0,
        line_origins: Vec::new(),
        renamed: HashMap::new(),
        taken: tokens.iter().filter_map(identifier_text).collect(),
        next_suffix: HashMap::new(),
        depth: 0,
    };
    emitter.body(false)?;
    Some(Normalised { text: emitter.out, line_origins: emitter.line_origins, renamed: emitter.renamed })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// A quoted string, verbatim with its quotes.
    Str,
    /// A bare word: identifier, number, `true`, …
    Word,
    /// A heredoc, verbatim from `<<` to the end of its closing line (inclusive).
    Heredoc,
    /// One of `{ } [ ] = , :`.
    Punct(u8),
    Newline,
}

#[derive(Debug)]
struct Token<'a> {
    kind: Kind,
    text: &'a str,
    line: usize,
}

fn lex(text: &str) -> Option<Vec<Token<'_>>> {
    let mut lexer = Lexer { text, pos: 0, line: 1, tokens: Vec::new() };
    while lexer.pos < text.len() {
        lexer.next()?;
    }
    Some(lexer.tokens)
}

struct Lexer<'a> {
    text: &'a str,
    pos: usize,
    line: usize,
    tokens: Vec<Token<'a>>,
}

impl<'a> Lexer<'a> {
    fn rest(&self) -> &'a str {
        self.text.get(self.pos..).unwrap_or("")
    }

    fn next(&mut self) -> Option<()> {
        let rest = self.rest();
        let c = rest.chars().next()?;
        match c {
            '\n' => {
                self.push(Kind::Newline, 1);
                self.line += 1;
            }
            ' ' | '\t' | '\r' => self.pos += 1,
            '#' => self.skip_line_comment(),
            '/' if rest.starts_with("//") => self.skip_line_comment(),
            '/' if rest.starts_with("/*") => self.skip_block_comment()?,
            '"' => self.string()?,
            '<' if rest.starts_with("<<") => self.heredoc()?,
            '{' | '}' | '[' | ']' | '=' | ',' | ':' => self.push(Kind::Punct(c as u8), 1),
            _ => self.word()?,
        }
        Some(())
    }

    fn push(&mut self, kind: Kind, len: usize) {
        let text = self.text.get(self.pos..self.pos + len).unwrap_or("");
        self.tokens.push(Token { kind, text, line: self.line });
        self.pos += len;
    }

    fn skip_line_comment(&mut self) {
        self.pos += self.rest().find('\n').unwrap_or(self.rest().len());
    }

    fn skip_block_comment(&mut self) -> Option<()> {
        let end = self.rest().find("*/")? + 2;
        self.line += self.rest()[..end].matches('\n').count();
        self.pos += end;
        Some(())
    }

    fn string(&mut self) -> Option<()> {
        let mut escaped = false;
        for (i, c) in self.rest().char_indices().skip(1) {
            match c {
                '\n' => return None,
                '\\' if !escaped => escaped = true,
                '"' if !escaped => {
                    self.push(Kind::Str, i + 1);
                    return Some(());
                }
                _ => escaped = false,
            }
        }
        None
    }

    fn heredoc(&mut self) -> Option<()> {
        let rest = self.rest();
        let header_end = rest.find('\n')?;
        let marker = rest[2..header_end].trim_start_matches('-').trim_end_matches('\r');
        if marker.is_empty() || !marker.chars().all(|c| c.is_alphanumeric() || c == '_') {
            return None;
        }
        let mut offset = header_end + 1;
        let mut lines = 1;
        loop {
            let line_end = rest[offset..].find('\n').map_or(rest.len(), |i| offset + i);
            lines += 1;
            let line = rest[offset..line_end].trim_end_matches('\r');
            if line.trim() == marker {
                let len = (line_end + 1).min(rest.len());
                let start_line = self.line;
                self.push(Kind::Heredoc, len);
                self.line = start_line + lines - 1;
                return Some(());
            }
            if line_end >= rest.len() {
                return None;
            }
            offset = line_end + 1;
        }
    }

    fn word(&mut self) -> Option<()> {
        let len = self
            .rest()
            .find(|c: char| c.is_whitespace() || "{}[]=,:\"#".contains(c) || c == '/')
            .unwrap_or(self.rest().len());
        let word = &self.rest()[..len];
        if len == 0 || !word.chars().all(|c| c.is_alphanumeric() || "_-.+".contains(c)) {
            return None;
        }
        self.push(Kind::Word, len);
        Some(())
    }
}

struct Emitter<'t, 'a> {
    tokens: &'t [Token<'a>],
    pos: usize,
    out: String,
    /// Newlines written to `out` so far.
    lines: usize,
    line_origins: Vec<usize>,
    renamed: HashMap<String, String>,
    /// Every name in the text or given by the rewrite, so fresh names are unique.
    taken: HashSet<String>,
    /// The next suffix to try per repeated name.
    next_suffix: HashMap<String, usize>,
    /// Current nesting of blocks, lists and objects (bounded, so input cannot overflow
    /// the stack).
    depth: usize,
}

/// Deeper nesting makes the rewrite give up (hcl-edit itself refuses much less).
const MAX_DEPTH: usize = 64;

impl Emitter<'_, '_> {
    fn peek(&self) -> Option<&Token<'_>> {
        self.tokens.get(self.pos)
    }

    fn peek_kind(&self) -> Option<Kind> {
        self.peek().map(|t| t.kind)
    }

    fn skip_newlines(&mut self) {
        while self.peek_kind() == Some(Kind::Newline) {
            self.pos += 1;
        }
    }

    fn skip_separators(&mut self) {
        while matches!(self.peek_kind(), Some(Kind::Newline | Kind::Punct(b','))) {
            self.pos += 1;
        }
    }

    fn eat(&mut self, punct: u8) -> Option<()> {
        self.skip_newlines();
        (self.peek_kind() == Some(Kind::Punct(punct))).then(|| self.pos += 1)
    }

    /// Appends `text`, whose first line came from original line `line`.
    fn emit(&mut self, text: &str, line: usize) {
        for (k, segment) in text.split('\n').enumerate() {
            if k > 0 {
                self.lines += 1;
            }
            if !segment.is_empty() && self.line_origins.len() <= self.lines {
                self.line_origins.push(line + k);
            }
        }
        self.out.push_str(text);
    }

    fn newline(&mut self) {
        if !self.out.ends_with('\n') {
            self.out.push('\n');
            self.lines += 1;
        }
    }

    /// A body: attributes and blocks until `}` (nested) or the end (top level).
    fn body(&mut self, nested: bool) -> Option<()> {
        let mut attributes = HashSet::new();
        loop {
            self.skip_separators();
            match self.peek_kind() {
                None if !nested => return Some(()),
                Some(Kind::Punct(b'}')) if nested => return Some(()),
                Some(Kind::Str | Kind::Word) => self.item(&mut attributes)?,
                _ => return None,
            }
        }
    }

    /// An attribute or a block. `attributes` holds the attribute names of the body so far:
    /// a repeated name is replaced by a fresh one, recorded in `renamed`.
    fn item(&mut self, attributes: &mut HashSet<String>) -> Option<()> {
        let first = self.tokens.get(self.pos)?;
        let (mut name, line) = (identifier_text(first)?, first.line);
        self.pos += 1;
        if self.is_attribute() && !attributes.insert(name.clone()) {
            let fresh = self.fresh_name(&name);
            self.renamed.insert(fresh.clone(), name);
            name = fresh;
        }
        self.emit(&name, line);
        let mut labels = 0;
        loop {
            self.skip_newlines();
            let token = self.peek()?;
            match token.kind {
                Kind::Str | Kind::Word => {
                    let (text, line) = (format!(" {}", token.text), token.line);
                    self.pos += 1;
                    labels += 1;
                    self.emit(&text, line);
                }
                Kind::Punct(b'=') if labels == 0 => {
                    let line = token.line;
                    self.pos += 1;
                    self.emit(" = ", line);
                    self.value()?;
                    self.newline();
                    return Some(());
                }
                Kind::Punct(b'{') if labels == 0 && self.depth > 0 => {
                    // `allowed_parameters { … }` inside a block: HCL1 reads an object value.
                    let line = token.line;
                    self.emit(" = ", line);
                    self.value()?;
                    self.newline();
                    return Some(());
                }
                Kind::Punct(b'{') => {
                    let line = token.line;
                    self.pos += 1;
                    self.emit(" {\n", line);
                    self.enter()?;
                    self.body(true)?;
                    self.depth -= 1;
                    let close_line = self.peek().map_or(line, |t| t.line);
                    self.eat(b'}')?;
                    self.newline();
                    self.emit("}\n", close_line);
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// Whether the item being read is an attribute (its name is followed by `=`).
    fn is_attribute(&self) -> bool {
        let mut rest = self.tokens.get(self.pos..).unwrap_or_default().iter();
        rest.find(|t| t.kind != Kind::Newline).is_some_and(|t| t.kind == Kind::Punct(b'='))
    }

    /// A name for a repeated attribute that appears nowhere in the text.
    fn fresh_name(&mut self, name: &str) -> String {
        let mut suffix = self.next_suffix.get(name).copied().unwrap_or(1);
        let mut candidate = format!("{name}_{suffix}");
        while self.taken.contains(&candidate) {
            suffix += 1;
            candidate = format!("{name}_{suffix}");
        }
        self.next_suffix.insert(name.to_string(), suffix + 1);
        self.taken.insert(candidate.clone());
        candidate
    }

    fn value(&mut self) -> Option<()> {
        self.skip_newlines();
        let token = self.peek()?;
        let (kind, text, line) = (token.kind, token.text.to_string(), token.line);
        self.pos += 1;
        match kind {
            Kind::Str | Kind::Word => self.emit(&text, line),
            Kind::Heredoc => {
                self.emit(&text, line);
                // The closing marker must stay alone on its line.
                self.newline();
            }
            Kind::Punct(b'[') => {
                self.enter()?;
                self.list(line)?;
                self.depth -= 1;
            }
            Kind::Punct(b'{') => {
                self.enter()?;
                self.object(line)?;
                self.depth -= 1;
            }
            _ => return None,
        }
        Some(())
    }

    /// One level deeper, or `None` beyond [`MAX_DEPTH`].
    fn enter(&mut self) -> Option<()> {
        self.depth += 1;
        (self.depth <= MAX_DEPTH).then_some(())
    }

    fn list(&mut self, line: usize) -> Option<()> {
        self.emit("[", line);
        loop {
            self.skip_newlines();
            if let Some(Token { kind: Kind::Punct(b']'), line, .. }) = self.peek() {
                let line = *line;
                self.pos += 1;
                self.emit("]", line);
                return Some(());
            }
            self.value()?;
            self.skip_newlines();
            match self.peek_kind()? {
                Kind::Punct(b',') => {
                    self.pos += 1;
                    self.emit(", ", line);
                }
                Kind::Punct(b']') => {}
                _ => return None,
            }
        }
    }

    fn object(&mut self, line: usize) -> Option<()> {
        self.emit("{\n", line);
        loop {
            self.skip_separators();
            let token = self.peek()?;
            match token.kind {
                Kind::Punct(b'}') => {
                    let line = token.line;
                    self.pos += 1;
                    self.newline();
                    self.emit("}", line);
                    return Some(());
                }
                Kind::Str | Kind::Word => {
                    let (text, line) = (token.text.to_string(), token.line);
                    self.pos += 1;
                    self.emit(&text, line);
                    self.skip_newlines();
                    if !matches!(self.peek_kind(), Some(Kind::Punct(b'=' | b':'))) {
                        return None;
                    }
                    self.pos += 1;
                    self.emit(" = ", line);
                    self.value()?;
                    self.newline();
                }
                _ => return None,
            }
        }
    }
}

/// The name of an attribute or block: a bare identifier, or a quoted one unquoted.
fn identifier_text(token: &Token<'_>) -> Option<String> {
    let name = match token.kind {
        Kind::Word => token.text,
        Kind::Str => token.text.get(1..token.text.len().checked_sub(1)?)?,
        _ => return None,
    };
    let valid = name.chars().next().is_some_and(|c| c.is_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_alphanumeric() || c == '_' || c == '-');
    valid.then(|| name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(text: &str) -> String {
        match normalise(text) {
            Some(n) => n.text,
            None => "<none>".to_string(),
        }
    }

    #[test]
    fn brace_on_next_line() {
        assert_eq!(norm("path \"a\"\n{\n capabilities=[\"read\"]\n}"), "path \"a\" {\ncapabilities = [\"read\"]\n}\n");
    }

    #[test]
    fn attributes_on_one_line() {
        assert_eq!(
            norm("path \"a\" { capabilities = [\"read\"]  denied_parameters = { \"x\" = [] } }"),
            "path \"a\" {\ncapabilities = [\"read\"]\ndenied_parameters = {\n\"x\" = []\n}\n}\n"
        );
    }

    #[test]
    fn commas_between_attributes_and_quoted_keys() {
        assert_eq!(
            norm("path \"a\" { \"capabilities\" = [\"read\"], policy = \"write\" }"),
            "path \"a\" {\ncapabilities = [\"read\"]\npolicy = \"write\"\n}\n"
        );
    }

    #[test]
    fn line_origins_follow_the_source() {
        let n = normalise("# c\npath \"a\" { capabilities = [\"read\"]\n\n  nonsense = 1 }").map(|n| n.line_origins);
        assert_eq!(n, Some(vec![2, 2, 4, 4]));
    }

    #[test]
    fn gives_up_on_unknown_syntax() {
        assert_eq!(norm("path \"a\" { capabilities = [\"read\"]; }"), "<none>");
        assert_eq!(norm("path \"a\" { capabilities : [\"read\"] }"), "<none>");
        assert_eq!(norm("path \"a\" { capabilities = [\"read\" \"x\"] }"), "<none>");
        assert_eq!(norm("path \"a"), "<none>");
        assert_eq!(norm("path \"a\" {"), "<none>");
    }

    #[test]
    fn repeated_attributes_get_fresh_names() {
        let n = normalise("path \"a\" {\n a = 1\n a = 2\n a_1 = 3\n a = 4\n}");
        let renamed = n.as_ref().map(|n| n.renamed.clone());
        let expected = [("a_2", "a"), ("a_3", "a")].map(|(new, old)| (new.to_string(), old.to_string()));
        assert_eq!(renamed, Some(HashMap::from(expected)));
        assert_eq!(n.map(|n| n.original_name("a_3").to_string()), Some("a".to_string()));
    }

    #[test]
    fn templates_are_escaped_in_strings_and_heredocs_only() {
        let text = "a = \"${x} %{y} $${z}\" # ${c}\nb = <<EOF\n${h}\nEOF\n// ${d}\n";
        let expected = "a = \"$${x} %%{y} $$${z}\" # ${c}\nb = <<EOF\n$${h}\nEOF\n// ${d}\n";
        assert_eq!(escape_templates(text), expected);
        assert!(matches!(escape_templates("a = \"b\""), Cow::Borrowed(_)));
        assert_eq!(escape_templates("a = \"${"), "a = \"$${");
        assert_eq!(escape_templates("<<"), "<<");
    }

    #[test]
    fn heredocs_are_kept() {
        assert_eq!(norm("a = <<EOF\nx\nEOF\n"), "a = <<EOF\nx\nEOF\n");
    }
}
