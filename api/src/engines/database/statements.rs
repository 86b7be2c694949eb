//! Statements as Vault takes them: the `{{name}}`-style placeholders, the expiration format,
//! the list forms a statement string may hide (JSON, base64), and MySQL's statement splitting.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;

use super::DbError;

/// The values a statement may name. `{{name}}` and `{{username}}` are the same value, as in Vault.
/// A placeholder whose value is `None` (or that names nothing) is left as written.
#[derive(Clone, Copy, Default)]
pub struct Vars<'a> {
    /// `{{name}}` and `{{username}}`.
    pub name: &'a str,
    /// `{{password}}`.
    pub password: Option<&'a str>,
    /// `{{expiration}}`, already formatted (see [`format_expiration`]).
    pub expiration: Option<&'a str>,
}

/// Replaces `{{name}}`, `{{username}}`, `{{password}}` and `{{expiration}}` in one pass.
///
/// Vault writes them without spaces; `{{ name }}` is accepted too. Values are inserted as they
/// are, never re-scanned, and never escaped: the statement's author puts the quotes around them
/// (`"{{name}}"`, `'{{password}}'`), and [`check_value`] refuses values that would close them.
pub fn render(statement: &str, vars: &Vars) -> String {
    let mut out = String::with_capacity(statement.len() + 64);
    let mut rest = statement;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        let Some(close) = after.find("}}") else {
            out.push_str(&rest[open..]);
            return out;
        };
        let value = match after[..close].trim() {
            "name" | "username" => Some(vars.name),
            "password" => vars.password,
            "expiration" => vars.expiration,
            _ => None,
        };
        match value {
            Some(v) => out.push_str(v),
            None => out.push_str(&rest[open..open + 2 + close + 2]),
        }
        rest = &after[close + 2..];
    }
    out.push_str(rest);
    out
}

/// `{{expiration}}` as Vault's PostgreSQL and MySQL plugins write it: Go's layout
/// `2006-01-02 15:04:05-0700` in UTC, e.g. `2026-11-22 19:06:39+0000`.
pub fn format_expiration(at: SystemTime) -> String {
    let secs = at.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    // rfc3339 takes nanoseconds in a u64 (good until 2554).
    let text = crate::time::rfc3339(secs.saturating_mul(1_000_000_000));
    format!("{}+0000", text.replacen('T', " ", 1).trim_end_matches('Z'))
}

/// The statements one list entry stands for. Like Vault (`strutil.ParseArbitraryStringSlice`),
/// an entry may be base64 (of any of these forms) or a JSON array of strings; otherwise it is
/// kept whole (it may still hold several `;`-separated statements).
pub(super) fn expand(entry: &str) -> Vec<String> {
    let trimmed = entry.trim();
    if trimmed.is_empty() {
        return Vec::new();
    }
    let decoded =
        base64::engine::general_purpose::STANDARD.decode(trimmed).ok().and_then(|bytes| String::from_utf8(bytes).ok());
    let text = decoded.as_deref().unwrap_or(trimmed);
    if let Ok(list) = serde_json::from_str::<Vec<String>>(text) {
        return list.into_iter().filter(|s| !s.trim().is_empty()).collect();
    }
    vec![text.to_string()]
}

/// All entries of a statement list, expanded.
pub(super) fn expand_all(entries: &[String]) -> Vec<String> {
    entries.iter().flat_map(|e| expand(e)).collect()
}

/// Splits MySQL text into statements at `;`, except inside `'…'`, `"…"`, `` `…` `` (with
/// backslash escapes and doubled quotes), `-- ` and `#` line comments and `/* */` comments.
/// Empty statements are dropped. Splitting happens before rendering, so a value can never
/// add a statement. (Vault splits at every `;`; this only differs where Vault's split was
/// wrong. Bodies of stored programs that need `DELIMITER` are not supported by either.)
pub(super) fn split_mysql(text: &str) -> Vec<String> {
    #[derive(PartialEq)]
    enum State {
        Code,
        Quoted(char),
        LineComment,
        BlockComment,
    }
    let mut pieces = Vec::new();
    let mut current = String::new();
    let mut state = State::Code;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match state {
            State::Code => match c {
                ';' => {
                    pieces.push(std::mem::take(&mut current));
                    continue;
                }
                '\'' | '"' | '`' => state = State::Quoted(c),
                '#' => state = State::LineComment,
                '-' if chars.peek() == Some(&'-') => {
                    current.push(c);
                    if let Some(next) = chars.next() {
                        current.push(next);
                    }
                    if chars.peek().is_none_or(|n| n.is_whitespace()) {
                        state = State::LineComment;
                    }
                    continue;
                }
                '/' if chars.peek() == Some(&'*') => {
                    current.push(c);
                    if let Some(next) = chars.next() {
                        current.push(next);
                    }
                    state = State::BlockComment;
                    continue;
                }
                _ => {}
            },
            State::Quoted(q) => {
                if c == '\\' && q != '`' {
                    current.push(c);
                    if let Some(next) = chars.next() {
                        current.push(next);
                    }
                    continue;
                }
                if c == q {
                    state = State::Code;
                }
            }
            State::LineComment => {
                if c == '\n' {
                    state = State::Code;
                }
            }
            State::BlockComment => {
                if c == '*' && chars.peek() == Some(&'/') {
                    current.push(c);
                    if let Some(next) = chars.next() {
                        current.push(next);
                    }
                    state = State::Code;
                    continue;
                }
            }
        }
        current.push(c);
    }
    pieces.push(current);
    pieces.into_iter().map(|p| p.trim().to_string()).filter(|p| !p.is_empty()).collect()
}

/// Refuses a user name or password that could close the quotes a statement puts around it
/// (and so run SQL of its author's choosing): quotes and backslashes in names, single quotes
/// and backslashes in passwords, control characters in both. Vault has no such check; its
/// generated names and passwords never contain these characters.
pub(super) fn check_value(name: &str, password: Option<&str>) -> Result<(), DbError> {
    if name.is_empty() {
        return Err(DbError::Unsafe("missing username".into()));
    }
    if name.chars().any(|c| matches!(c, '\'' | '"' | '`' | '\\') || c.is_control()) {
        return Err(DbError::Unsafe(format!(
            "username {name:?} contains a quote, a backslash or a control character, which statements cannot hold safely"
        )));
    }
    if let Some(p) = password {
        if p.is_empty() {
            return Err(DbError::Unsafe("missing password".into()));
        }
        if p.chars().any(|c| matches!(c, '\'' | '\\') || c.is_control()) {
            return Err(DbError::Unsafe(
                "the password contains a single quote, a backslash or a control character, which statements cannot hold safely"
                    .into(),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn renders_vault_placeholders_with_and_without_spaces() {
        let exp = "2026-11-22 19:06:39+0000";
        let vars = Vars { name: "v-x", password: Some("pw"), expiration: Some(exp) };
        let s = r#"CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'; GRANT x TO "{{ username }}";"#;
        assert_eq!(
            render(s, &vars),
            r#"CREATE ROLE "v-x" WITH LOGIN PASSWORD 'pw' VALID UNTIL '2026-11-22 19:06:39+0000'; GRANT x TO "v-x";"#
        );
    }

    #[test]
    fn unknown_or_missing_placeholders_stay_and_values_are_not_rescanned() {
        let vars = Vars { name: "{{password}}", password: None, expiration: None };
        assert_eq!(
            render("{{name}} {{password}} {{other}} {{ unclosed", &vars),
            "{{password}} {{password}} {{other}} {{ unclosed"
        );
        assert_eq!(render("", &vars), "");
        assert_eq!(render("{{}}{{", &vars), "{{}}{{");
    }

    #[test]
    fn expiration_uses_gos_layout_in_utc() {
        let t = UNIX_EPOCH + Duration::from_secs(1_795_374_399);
        assert_eq!(format_expiration(t), "2026-11-22 19:06:39+0000");
        assert_eq!(format_expiration(UNIX_EPOCH - Duration::from_secs(5)), "1970-01-01 00:00:00+0000");
    }

    #[test]
    fn expands_json_and_base64_entries_like_vault() {
        assert_eq!(expand(" SELECT 1; SELECT 2 "), vec!["SELECT 1; SELECT 2"]);
        assert_eq!(expand(r#"["SELECT 1", "SELECT 2", " "]"#), vec!["SELECT 1", "SELECT 2"]);
        let b64 = base64::engine::general_purpose::STANDARD.encode(r#"["A","B"]"#);
        assert_eq!(expand(&b64), vec!["A", "B"]);
        let b64 = base64::engine::general_purpose::STANDARD.encode("DROP ROLE x;");
        assert_eq!(expand(&b64), vec!["DROP ROLE x;"]);
        assert!(expand("   ").is_empty());
        // Valid base64 that is not text is kept as written.
        assert_eq!(expand("ROLLBACK"), vec!["ROLLBACK"]);
    }

    #[test]
    fn mysql_split_respects_quotes_and_comments() {
        let s = r#"CREATE USER 'a;b'@'%' IDENTIFIED BY 'x\';y'; GRANT SELECT ON `d;b`.* TO "a;b"@'%' -- c;d
            ; /* e;f */ SELECT 'it''s;'; # g;h
            SELECT 1;;"#;
        assert_eq!(
            split_mysql(s),
            vec![
                r#"CREATE USER 'a;b'@'%' IDENTIFIED BY 'x\';y'"#,
                "GRANT SELECT ON `d;b`.* TO \"a;b\"@'%' -- c;d",
                "/* e;f */ SELECT 'it''s;'",
                "# g;h\n            SELECT 1",
            ]
        );
        assert_eq!(split_mysql("SELECT 1--2; SELECT 2"), vec!["SELECT 1--2", "SELECT 2"]);
        assert!(split_mysql(" ; ;").is_empty());
        assert_eq!(split_mysql("SELECT 'unterminated; x"), vec!["SELECT 'unterminated; x"]);
    }

    #[test]
    fn values_that_could_close_quotes_are_refused() {
        assert!(check_value("v-token-ro-abc-123", Some("aZ9-x")).is_ok());
        assert!(check_value("ok", Some("with\"double;and`tick")).is_ok());
        for bad in ["a'b", "a\"b", "a`b", "a\\b", "a\nb", ""] {
            assert!(check_value(bad, None).is_err(), "{bad:?}");
        }
        for bad in ["a'b", "a\\b", "a\0b", ""] {
            let err = check_value("ok", Some(bad)).expect_err("refused").to_string();
            assert!(bad.is_empty() || !err.contains(bad), "{err}");
        }
    }
}
