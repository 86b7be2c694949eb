//! The error of the database layer. Its text never holds a password: every message that comes
//! from a driver or a database goes through [`redact`] before it is stored.

use thiserror::Error;

/// What replaces a secret in a message, as Vault's error sanitizer writes it.
const REDACTED: &str = "[password]";

/// A failure of the database layer. The `String` variants hold text already redacted, so
/// `Display` and `Debug` are safe to log and to return to clients (in a 400, as Vault does).
#[derive(Clone, Debug, Error)]
pub enum DbError {
    /// `plugin_name` names no plugin cairn has (Vault's plugin catalog wording).
    #[error("plugin not found in the catalog: {0}")]
    UnknownPlugin(String),
    /// The connection settings are unusable: bad `connection_url`, unsupported option, …
    #[error("{0}")]
    Config(String),
    /// No connection could be opened: the driver's or the server's own words.
    #[error("{0}")]
    Connect(String),
    /// The database refused a statement: its own words (PostgreSQL with the SQLSTATE, MySQL
    /// with the error number, as Vault's drivers print them).
    #[error("{0}")]
    Statement(String),
    /// The username template does not parse or does not run.
    #[error("{0}")]
    Template(String),
    /// `create_user` was given no creation statement (Vault's `dbutil` wording).
    #[error("empty creation statements")]
    EmptyStatements,
    /// A name or password holds a character that would break out of its quotes in a statement.
    #[error("{0}")]
    Unsafe(String),
    /// The operating system's random generator failed.
    #[error("unable to generate random characters: operating system randomness unavailable")]
    Randomness,
}

/// `message` with every non-empty secret (and its URL-encoded form) replaced by `[password]`.
///
/// Like Vault's sanitizer this is a plain substring replacement, so a one-letter password also
/// blanks that letter in ordinary words ("verif[password]ing"): leaking nothing comes first.
pub(super) fn redact(message: &str, secrets: &[&str]) -> String {
    let mut forms: Vec<String> = Vec::new();
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        forms.push((*secret).to_string());
        let encoded = percent_encode(secret);
        if encoded != *secret {
            forms.push(encoded);
        }
    }
    // Longest first, so a secret that contains another is replaced whole.
    forms.sort_by_key(|s| std::cmp::Reverse(s.len()));
    let mut out = message.to_string();
    for form in &forms {
        out = out.replace(form.as_str(), REDACTED);
    }
    out
}

/// Percent-encodes every byte outside RFC 3986's unreserved set (what a URL's user-info needs).
pub(super) fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_every_occurrence_and_the_encoded_form() {
        let msg = "failed for p@ss and p%40ss and again p@ss";
        assert_eq!(redact(msg, &["p@ss"]), "failed for [password] and [password] and again [password]");
    }

    #[test]
    fn one_letter_secret_blanks_the_letter_like_vault() {
        assert_eq!(redact("error verifying connection", &["y"]), "error verif[password]ing connection");
    }

    #[test]
    fn empty_secret_changes_nothing_and_longest_goes_first() {
        assert_eq!(redact("abc", &[""]), "abc");
        assert_eq!(redact("xx secretlong xx", &["secret", "secretlong"]), "xx [password] xx");
    }

    #[test]
    fn percent_encoding_keeps_unreserved() {
        assert_eq!(percent_encode("aZ9-._~"), "aZ9-._~");
        assert_eq!(percent_encode("a b/@:é"), "a%20b%2F%40%3A%C3%A9");
    }
}
