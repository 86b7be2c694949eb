//! The subset of Go's `text/template` that Vault's `username_template` is written in.
//!
//! Supported: text, `{{ }}` actions with `{{-`/`-}}` trimming, `{{/* comments */}}`, the fields
//! `.DisplayName` and `.RoleName`, string (`"…"`, `` `…` ``) and integer literals, `( )`,
//! pipes (`a | f x` calls `f x a`), and Vault's functions `random`, `truncate`,
//! `truncate_sha256`, `uppercase`, `lowercase`, `replace`, `sha256`, `base64`, `decode_base64`,
//! `hex`, `decode_hex`, `unix_time`, `unix_time_millis`, `uuid`, plus Go's `printf` with
//! `%s`, `%v`, `%d`, `%q`, `%%` and a precision (`%.8s`). Anything else (`if`, `range`,
//! variables, `timestamp`, `glob`, …) is refused with an error that names it.
//!
//! Go truncates by bytes and may cut a character in two; here a cut never splits a character.
//! Sizes are bounded (template text, every intermediate value, nesting), so no template can
//! exhaust memory or the stack.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use sha2::{Digest, Sha256};

use super::DbError;

/// Longest template text, and longest value any step may produce (a username is far shorter).
const MAX_TEMPLATE: usize = 16 * 1024;
const MAX_VALUE: usize = 4 * 1024;
/// Deepest nesting of parentheses.
const MAX_DEPTH: usize = 32;

/// Parses `text` and runs it with these field values.
pub(super) fn expand(text: &str, display_name: &str, role: &str) -> Result<String, DbError> {
    let fields = Fields { display_name, role };
    let nodes = parse(text).map_err(|e| DbError::Template(format!("unable to initialize username template: {e}")))?;
    let mut out = String::new();
    for node in &nodes {
        match node {
            Node::Text(t) => out.push_str(t),
            Node::Action(p) => out.push_str(&eval_pipeline(p, &fields)?.into_text()),
        }
        if out.len() > MAX_VALUE {
            return Err(apply_error("the username is too long"));
        }
    }
    Ok(out)
}

fn apply_error(msg: impl std::fmt::Display) -> DbError {
    DbError::Template(format!("unable to apply template: {msg}"))
}

struct Fields<'a> {
    display_name: &'a str,
    role: &'a str,
}

enum Node {
    Text(String),
    Action(Pipeline),
}

type Pipeline = Vec<Command>;
type Command = Vec<Arg>;

enum Arg {
    Field(String),
    Str(String),
    Int(i64),
    Func(String),
    Sub(Pipeline),
}

enum Value {
    Str(String),
    Int(i64),
}

impl Value {
    fn into_text(self) -> String {
        match self {
            Value::Str(s) => s,
            Value::Int(i) => i.to_string(),
        }
    }

    fn type_name(&self) -> &'static str {
        match self {
            Value::Str(_) => "string",
            Value::Int(_) => "int",
        }
    }
}

// ---------------------------------------------------------------- parsing

/// Splits the template into text and actions, applying trim markers and dropping comments.
fn parse(text: &str) -> Result<Vec<Node>, String> {
    if text.len() > MAX_TEMPLATE {
        return Err(format!("template longer than {MAX_TEMPLATE} bytes"));
    }
    let mut nodes = Vec::new();
    let mut rest = text;
    let mut trim_next_text = false;
    while !rest.is_empty() {
        let open = rest.find("{{").unwrap_or(rest.len());
        let mut literal = &rest[..open];
        if trim_next_text {
            literal = literal.trim_start();
        }
        rest = &rest[open..];
        let Some(inner_start) = rest.strip_prefix("{{") else {
            push_text(&mut nodes, literal);
            break;
        };
        let (body_start, trim_left) = match inner_start.strip_prefix('-') {
            Some(after) if after.starts_with(is_space) => (after, true),
            _ => (inner_start, false),
        };
        if trim_left {
            literal = literal.trim_end();
        }
        push_text(&mut nodes, literal);
        let close = find_close(body_start).ok_or("unclosed action")?;
        let mut body = &body_start[..close];
        trim_next_text = false;
        if let Some(before) = body.strip_suffix('-')
            && before.ends_with(is_space)
        {
            body = before;
            trim_next_text = true;
        }
        rest = &body_start[close + 2..];
        let body = body.trim();
        if body.starts_with("/*") {
            if !body.ends_with("*/") || body.len() < 4 {
                return Err("unclosed comment".into());
            }
            continue;
        }
        let tokens = lex(body)?;
        let mut pos = 0;
        let pipeline = parse_pipeline(&tokens, &mut pos, 0)?;
        if pos != tokens.len() {
            return Err(format!("unexpected {} in action", describe(&tokens[pos])));
        }
        nodes.push(Node::Action(pipeline));
    }
    Ok(nodes)
}

fn push_text(nodes: &mut Vec<Node>, text: &str) {
    if !text.is_empty() {
        nodes.push(Node::Text(text.to_string()));
    }
}

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

/// The offset of the `}}` that ends an action, skipping any inside string literals.
fn find_close(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'`' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'`' {
                    i += 1;
                }
            }
            b'}' if bytes.get(i + 1) == Some(&b'}') => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

enum Token {
    Field(String),
    Str(String),
    Int(i64),
    Ident(String),
    Pipe,
    Open,
    Close,
}

fn describe(t: &Token) -> String {
    match t {
        Token::Field(f) => format!("field .{f}"),
        Token::Str(s) => format!("string {s:?}"),
        Token::Int(i) => format!("number {i}"),
        Token::Ident(i) => format!("identifier {i}"),
        Token::Pipe => "'|'".into(),
        Token::Open => "'('".into(),
        Token::Close => "')'".into(),
    }
}

const KEYWORDS: &[&str] =
    &["if", "else", "end", "range", "with", "define", "template", "block", "break", "continue", "nil", "true", "false"];

fn lex(body: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut chars = body.char_indices().peekable();
    while let Some((start, c)) = chars.next() {
        match c {
            c if is_space(c) => {}
            '|' => tokens.push(Token::Pipe),
            '(' => tokens.push(Token::Open),
            ')' => tokens.push(Token::Close),
            '"' => {
                let mut s = String::new();
                loop {
                    match chars.next() {
                        None => return Err("unterminated quoted string".into()),
                        Some((_, '"')) => break,
                        Some((_, '\\')) => match chars.next() {
                            Some((_, 'n')) => s.push('\n'),
                            Some((_, 't')) => s.push('\t'),
                            Some((_, 'r')) => s.push('\r'),
                            Some((_, e @ ('\\' | '"' | '\''))) => s.push(e),
                            _ => return Err("unsupported escape in quoted string".into()),
                        },
                        Some((_, ch)) => s.push(ch),
                    }
                }
                tokens.push(Token::Str(s));
            }
            '`' => {
                let mut s = String::new();
                loop {
                    match chars.next() {
                        None => return Err("unterminated raw quoted string".into()),
                        Some((_, '`')) => break,
                        Some((_, ch)) => s.push(ch),
                    }
                }
                tokens.push(Token::Str(s));
            }
            '.' => {
                let name = take_while(body, &mut chars, start + 1, is_ident_char);
                if name.is_empty() {
                    return Err("'.' (the whole data) is not supported; use .DisplayName or .RoleName".into());
                }
                tokens.push(Token::Field(name.to_string()));
            }
            '0'..='9' | '-' | '+' => {
                let text = take_while(body, &mut chars, start + c.len_utf8(), |ch| ch.is_ascii_digit());
                let full = &body[start..start + c.len_utf8() + text.len()];
                let n = full.parse::<i64>().map_err(|_| format!("bad number syntax: {full:?}"))?;
                tokens.push(Token::Int(n));
            }
            c if is_ident_char(c) => {
                let rest = take_while(body, &mut chars, start + c.len_utf8(), is_ident_char);
                let name = &body[start..start + c.len_utf8() + rest.len()];
                if KEYWORDS.contains(&name) {
                    return Err(format!("{name:?} is not supported in username templates"));
                }
                tokens.push(Token::Ident(name.to_string()));
            }
            '$' => return Err("variables are not supported in username templates".into()),
            other => return Err(format!("unexpected {other:?} in action")),
        }
    }
    Ok(tokens)
}

fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Consumes the characters matching `keep` that follow; returns them (starting at byte `from`).
fn take_while<'a>(
    body: &'a str,
    chars: &mut std::iter::Peekable<std::str::CharIndices<'_>>,
    from: usize,
    keep: impl Fn(char) -> bool,
) -> &'a str {
    let mut end = from;
    while let Some(&(i, ch)) = chars.peek() {
        if !keep(ch) {
            break;
        }
        end = i + ch.len_utf8();
        chars.next();
    }
    body.get(from..end).unwrap_or("")
}

fn parse_pipeline(tokens: &[Token], pos: &mut usize, depth: usize) -> Result<Pipeline, String> {
    if depth > MAX_DEPTH {
        return Err("parentheses nested too deeply".into());
    }
    let mut pipeline = vec![parse_command(tokens, pos, depth)?];
    while matches!(tokens.get(*pos), Some(Token::Pipe)) {
        *pos += 1;
        pipeline.push(parse_command(tokens, pos, depth)?);
    }
    Ok(pipeline)
}

fn parse_command(tokens: &[Token], pos: &mut usize, depth: usize) -> Result<Command, String> {
    let mut command = Vec::new();
    while let Some(token) = tokens.get(*pos) {
        let arg = match token {
            Token::Pipe | Token::Close => break,
            Token::Field(f) => Arg::Field(f.clone()),
            Token::Str(s) => Arg::Str(s.clone()),
            Token::Int(i) => Arg::Int(*i),
            Token::Ident(name) => Arg::Func(name.clone()),
            Token::Open => {
                *pos += 1;
                let inner = parse_pipeline(tokens, pos, depth + 1)?;
                if !matches!(tokens.get(*pos), Some(Token::Close)) {
                    return Err("unclosed left paren".into());
                }
                Arg::Sub(inner)
            }
        };
        *pos += 1;
        command.push(arg);
    }
    if command.is_empty() { Err("missing value for command".into()) } else { Ok(command) }
}

// ---------------------------------------------------------------- evaluation

fn eval_pipeline(pipeline: &Pipeline, fields: &Fields) -> Result<Value, DbError> {
    let mut piped: Option<Value> = None;
    for command in pipeline {
        piped = Some(eval_command(command, piped, fields)?);
    }
    piped.ok_or_else(|| apply_error("empty pipeline"))
}

fn eval_command(command: &Command, piped: Option<Value>, fields: &Fields) -> Result<Value, DbError> {
    let Some((first, rest)) = command.split_first() else {
        return Err(apply_error("empty command"));
    };
    let Arg::Func(name) = first else {
        if !rest.is_empty() {
            return Err(apply_error("can't give argument to non-function"));
        }
        if piped.is_some() {
            return Err(apply_error("can't pipe a value into a non-function"));
        }
        return eval_arg(first, fields);
    };
    let mut args = rest.iter().map(|a| eval_arg(a, fields)).collect::<Result<Vec<_>, _>>()?;
    args.extend(piped);
    let value = call(name, args)?;
    if let Value::Str(s) = &value
        && s.len() > MAX_VALUE
    {
        return Err(apply_error(format!("{name} produced more than {MAX_VALUE} bytes")));
    }
    Ok(value)
}

fn eval_arg(arg: &Arg, fields: &Fields) -> Result<Value, DbError> {
    match arg {
        Arg::Field(f) => match f.as_str() {
            "DisplayName" => Ok(Value::Str(fields.display_name.to_string())),
            "RoleName" => Ok(Value::Str(fields.role.to_string())),
            other => Err(apply_error(format!("can't evaluate field {other}"))),
        },
        Arg::Str(s) => Ok(Value::Str(s.clone())),
        Arg::Int(i) => Ok(Value::Int(*i)),
        Arg::Func(name) => call(name, Vec::new()),
        Arg::Sub(p) => eval_pipeline(p, fields),
    }
}

fn call(name: &str, args: Vec<Value>) -> Result<Value, DbError> {
    let want = |n: usize| -> Result<(), DbError> {
        if args.len() == n {
            Ok(())
        } else {
            Err(apply_error(format!("wrong number of args for {name}: want {n} got {}", args.len())))
        }
    };
    let mut it = args.iter();
    let s = |v: Option<&Value>| -> Result<String, DbError> {
        match v {
            Some(Value::Str(s)) => Ok(s.clone()),
            Some(other) => {
                Err(apply_error(format!("{name}: wrong type for value; expected string; got {}", other.type_name())))
            }
            None => Err(apply_error(format!("{name}: missing argument"))),
        }
    };
    let int = |v: Option<&Value>| -> Result<i64, DbError> {
        match v {
            Some(Value::Int(i)) => Ok(*i),
            Some(other) => {
                Err(apply_error(format!("{name}: wrong type for value; expected int; got {}", other.type_name())))
            }
            None => Err(apply_error(format!("{name}: missing argument"))),
        }
    };
    let text = match name {
        "random" => {
            want(1)?;
            let n = int(it.next())?;
            let n = usize::try_from(n)
                .ok()
                .filter(|&n| n <= MAX_VALUE)
                .ok_or_else(|| apply_error(format!("random: length must be between 0 and {MAX_VALUE}")))?;
            random_base62(n)?
        }
        "truncate" => {
            want(2)?;
            let (n, v) = (int(it.next())?, s(it.next())?);
            if n <= 0 {
                return Err(apply_error(format!("max length must be > 0 but was {n}")));
            }
            cut(&v, n)
        }
        "truncate_sha256" => {
            want(2)?;
            let (n, v) = (int(it.next())?, s(it.next())?);
            if n <= 8 {
                return Err(apply_error(format!("max length must be > 8 but was {n}")));
            }
            if usize::try_from(n).is_ok_and(|n| v.len() <= n) {
                v
            } else {
                let keep = cut(&v, n - 8);
                let hash = sha256_hex(&v[keep.len()..]);
                format!("{keep}{}", &hash[..8])
            }
        }
        "uppercase" => {
            want(1)?;
            s(it.next())?.to_uppercase()
        }
        "lowercase" => {
            want(1)?;
            s(it.next())?.to_lowercase()
        }
        "replace" => {
            want(3)?;
            let (find, with, v) = (s(it.next())?, s(it.next())?, s(it.next())?);
            let hits = if find.is_empty() { v.chars().count() + 1 } else { v.matches(find.as_str()).count() };
            if v.len().saturating_add(hits.saturating_mul(with.len())) > MAX_VALUE {
                return Err(apply_error(format!("replace produced more than {MAX_VALUE} bytes")));
            }
            go_replace_all(&v, &find, &with)
        }
        "sha256" => {
            want(1)?;
            sha256_hex(&s(it.next())?)
        }
        "base64" => {
            want(1)?;
            base64::engine::general_purpose::STANDARD.encode(s(it.next())?)
        }
        "decode_base64" => {
            want(1)?;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(s(it.next())?)
                .map_err(|e| apply_error(format!("decode_base64: {e}")))?;
            String::from_utf8(bytes).map_err(|_| apply_error("decode_base64: the result is not text"))?
        }
        "hex" => {
            want(1)?;
            hex::encode(s(it.next())?)
        }
        "decode_hex" => {
            want(1)?;
            let bytes = hex::decode(s(it.next())?).map_err(|e| apply_error(format!("decode_hex: {e}")))?;
            String::from_utf8(bytes).map_err(|_| apply_error("decode_hex: the result is not text"))?
        }
        "unix_time" => {
            want(0)?;
            now().as_secs().to_string()
        }
        "unix_time_millis" => {
            want(0)?;
            now().as_millis().to_string()
        }
        "uuid" => {
            want(0)?;
            uuid::Uuid::new_v4().to_string()
        }
        "printf" => {
            let format = s(it.next())?;
            printf(&format, it.as_slice())?
        }
        "timestamp" | "glob" | "print" | "println" | "len" | "index" | "slice" | "and" | "or" | "not" | "eq" | "ne"
        | "lt" | "le" | "gt" | "ge" | "html" | "js" | "urlquery" | "call" => {
            return Err(apply_error(format!("function {name:?} is not supported in username templates")));
        }
        other => return Err(apply_error(format!("function {other:?} not defined"))),
    };
    Ok(Value::Str(text))
}

fn now() -> std::time::Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default()
}

/// The first `n` bytes of `s` (fewer if a character would be split); `n` > 0.
fn cut(s: &str, n: i64) -> String {
    let n = usize::try_from(n).unwrap_or(usize::MAX);
    s[..floor_char_boundary(s, n)].to_string()
}

/// The largest character boundary of `s` at or below `n`.
pub(super) fn floor_char_boundary(s: &str, n: usize) -> usize {
    if n >= s.len() {
        return s.len();
    }
    (0..=n).rev().find(|&i| s.is_char_boundary(i)).unwrap_or(0)
}

fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// Go's `strings.ReplaceAll`: an empty `find` inserts `with` before every character and at the end.
fn go_replace_all(s: &str, find: &str, with: &str) -> String {
    if !find.is_empty() {
        return s.replace(find, with);
    }
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        out.push_str(with);
        out.push(c);
    }
    out.push_str(with);
    out
}

/// `n` characters from `[0-9A-Za-z]`, uniformly (go-secure-stdlib's `base62.Random`).
fn random_base62(n: usize) -> Result<String, DbError> {
    const CHARSET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut out = String::with_capacity(n);
    let mut buf = [0u8; 64];
    while out.len() < n {
        getrandom::fill(&mut buf).map_err(|_| DbError::Randomness)?;
        // 248 = 4 × 62: larger bytes are dropped so that every character is equally likely.
        for &b in buf.iter().filter(|&&b| b < 248).take(n - out.len()) {
            out.push(char::from(CHARSET[usize::from(b) % CHARSET.len()]));
        }
    }
    Ok(out)
}

/// Go's `fmt.Sprintf` for the verbs username templates use.
fn printf(format: &str, args: &[Value]) -> Result<String, DbError> {
    let mut out = String::new();
    let mut args = args.iter();
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        if chars.peek() == Some(&'%') {
            chars.next();
            out.push('%');
            continue;
        }
        let mut precision = None;
        if chars.peek() == Some(&'.') {
            chars.next();
            let mut digits = String::new();
            while let Some(d) = chars.peek().copied().filter(char::is_ascii_digit) {
                digits.push(d);
                chars.next();
            }
            precision = Some(digits.parse::<usize>().unwrap_or(0));
        }
        let verb = chars.next().ok_or_else(|| apply_error("printf: format ends with '%'"))?;
        let arg = args.next().ok_or_else(|| apply_error(format!("printf: missing argument for %{verb}")))?;
        let text = match (verb, arg) {
            ('s' | 'v', Value::Str(s)) => s.clone(),
            ('d' | 'v', Value::Int(i)) => i.to_string(),
            ('q', Value::Str(s)) => format!("{s:?}"),
            (v, a) => {
                return Err(apply_error(format!(
                    "printf: %{v} is not supported for a {} in username templates",
                    a.type_name()
                )));
            }
        };
        match precision {
            Some(p) if verb == 's' => out.push_str(&text[..floor_char_boundary(&text, p)]),
            Some(_) => return Err(apply_error(format!("printf: a precision is only supported with %s, not %{verb}"))),
            None => out.push_str(&text),
        }
        if out.len() > MAX_VALUE {
            return Err(apply_error(format!("printf produced more than {MAX_VALUE} bytes")));
        }
    }
    if args.next().is_some() {
        return Err(apply_error("printf: more arguments than verbs"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(t: &str) -> String {
        expand(t, "token", "readonly").unwrap_or_else(|e| panic!("{t}: {e}"))
    }

    fn err(t: &str) -> String {
        match expand(t, "token", "readonly") {
            Ok(v) => panic!("{t} should fail, gave {v}"),
            Err(e) => e.to_string(),
        }
    }

    fn is_base62(s: &str) -> bool {
        s.bytes().all(|b| b.is_ascii_alphanumeric())
    }

    #[test]
    fn fields_literals_pipes_and_functions() {
        assert_eq!(ok("{{.DisplayName}}_{{.RoleName}}"), "token_readonly");
        assert_eq!(ok("x-{{ .RoleName | truncate 4 }}-y"), "x-read-y");
        assert_eq!(ok("{{truncate 3 .RoleName}}"), "rea");
        assert_eq!(ok("{{ .RoleName | uppercase }}"), "READONLY");
        assert_eq!(ok(r#"{{ "MiXed" | lowercase }}"#), "mixed");
        assert_eq!(ok(r#"{{ .RoleName | replace "o" "0" }}"#), "read0nly");
        assert_eq!(ok(r#"{{ replace "read" "write" .RoleName }}"#), "writeonly");
        assert_eq!(ok(r#"{{ replace "" "." "ab" }}"#), ".a.b.");
        assert_eq!(ok(r#"{{ printf "%s-%s" .DisplayName .RoleName | truncate 7 }}"#), "token-r");
        assert_eq!(ok(r#"{{ printf "%.3s|%v|%d|%%|%q" .RoleName 7 8 "a" }}"#), r#"rea|7|8|%|"a""#);
        assert_eq!(ok(r#"{{ .RoleName | sha256 }}"#), sha256_hex("readonly"));
        assert_eq!(ok(r#"{{ .RoleName | base64 }}"#), "cmVhZG9ubHk=");
        assert_eq!(ok(r#"{{ "cmVhZG9ubHk=" | decode_base64 }}"#), "readonly");
        assert_eq!(ok(r#"{{ .RoleName | hex | decode_hex }}"#), "readonly");
        assert_eq!(ok("{{ `raw \"q\"` }}"), "raw \"q\"");
        assert_eq!(ok(r#"{{ "a\tb\\" }}"#), "a\tb\\");
        assert_eq!(ok("{{ 42 }}"), "42");
        assert_eq!(ok("{{ random 12 }}").len(), 12);
        assert!(is_base62(&ok("{{ random 200 }}")));
        assert_eq!(ok("{{ uuid }}").len(), 36);
        assert!(ok("{{ unix_time_millis }}").len() >= 13);
        assert_eq!(
            ok(r#"{{ "abcdefghijklmnop" | truncate_sha256 12 }}"#),
            format!("abcd{}", &sha256_hex("efghijklmnop")[..8])
        );
        assert_eq!(ok(r#"{{ "short" | truncate_sha256 12 }}"#), "short");
        assert_eq!(ok(r#"{{ "ab}}cd" }}"#), "ab}}cd");
    }

    #[test]
    fn trim_markers_and_comments() {
        assert_eq!(ok("a  {{- .RoleName -}}  b"), "areadonlyb");
        assert_eq!(ok("a {{/* nothing */}}b"), "a b");
        assert_eq!(ok("{{- /* c */ -}} x"), "x");
        assert_eq!(ok("{{-3}}"), "-3");
    }

    #[test]
    fn unsupported_or_wrong_templates_are_clear_errors() {
        let cases = [
            ("{{ .Foo }}", "can't evaluate field Foo"),
            ("{{ nope 1 }}", r#"function "nope" not defined"#),
            ("{{ timestamp \"2006\" }}", "not supported"),
            ("{{ if .RoleName }}x{{ end }}", "not supported"),
            ("{{ $x := 1 }}", "variables"),
            ("{{ . }}", "whole data"),
            ("{{ .RoleName", "unclosed action"),
            ("{{ (random 3 }}", "unclosed left paren"),
            ("{{ random 3) }}", "unexpected"),
            ("{{ truncate 0 .RoleName }}", "max length must be > 0 but was 0"),
            ("{{ truncate \"8\" .RoleName }}", "expected int; got string"),
            ("{{ truncate 8 }}", "wrong number of args for truncate: want 2 got 1"),
            ("{{ random }}", "wrong number of args for random"),
            ("{{ random -1 }}", "length must be between"),
            ("{{ random 99999999 }}", "length must be between"),
            ("{{ .RoleName 3 }}", "non-function"),
            ("{{ .RoleName | .DisplayName }}", "non-function"),
            ("{{ printf \"%s %s\" .RoleName }}", "missing argument"),
            ("{{ printf \"%x\" .RoleName }}", "not supported"),
            ("{{ printf \"%s\" .RoleName 3 }}", "more arguments"),
            ("{{ 99999999999999999999 }}", "bad number"),
            ("{{ \"unterminated }}", "unclosed action"),
            ("{{ \"bad\\q\" }}", "escape"),
            ("{{ }}", "missing value"),
            ("{{ | }}", "missing value"),
            ("{{/* open }}", "unclosed comment"),
            ("{{ truncate_sha256 8 .RoleName }}", "max length must be > 8"),
            ("{{ \"!!\" | decode_base64 }}", "decode_base64"),
            ("{{ \"zz\" | decode_hex }}", "decode_hex"),
            ("{{ @ }}", "unexpected"),
        ];
        for (t, want) in cases {
            let e = err(t);
            assert!(e.contains(want), "{t}: {e}");
        }
    }

    #[test]
    fn hostile_templates_fail_without_blowing_up() {
        let deep = format!("{{{{ {}random 1{} }}}}", "(".repeat(100), ")".repeat(100));
        assert!(err(&deep).contains("nested too deeply"));
        let mut bomb = r#""aaaaaaaa""#.to_string();
        for _ in 0..20 {
            bomb = format!(r#"(replace "a" "aaaaaaaa" {bomb})"#);
        }
        assert!(err(&format!("{{{{ {bomb} }}}}")).contains("more than"));
        assert!(err(&"x".repeat(MAX_TEMPLATE + 1)).contains("longer than"));
        assert!(err(&"{{ random 4000 }}".repeat(3)).contains("too long"));
        // Arbitrary bytes never panic.
        for t in
            ["{{", "}}", "{{-", "{{- ", "-}}", "{{ - }}", "{{ \u{1F600} }}", "{{ .é }}", "{{ ( }}", "{{ ) }}", "{{ +}}"]
        {
            let _ = expand(t, "d", "r");
        }
    }
}
