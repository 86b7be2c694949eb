//! The request path, decided once (DESIGN.md, "Saying no"). [`url_path`] reads the URL
//! as Vault does: a path with `//`, `.` or `..` segments is redirected (307) to its clean
//! form, percent-escapes are decoded, and a decoded path with a dot segment or a character
//! that does not print is refused. [`CanonicalPath::new`] then puts it in the canonical
//! form its route declares (`crate::routes`). The ACL checks that form, the access event
//! records it and the handler acts on it: a handler only ever receives a
//! [`CanonicalPath`], which nothing but `new` makes and nothing rewrites.

use axum::http::Uri;
use projections::State;
use unicode_properties::{GeneralCategoryGroup, UnicodeGeneralCategory};

use super::reply::Reply;
use crate::routes::{self, Matched};

/// The path after `/v1/`, decoded, or the early answer to a URL Vault would not serve as
/// it is: 404 outside `/v1/`, a redirect to the clean form, 400 for what cannot be read.
pub fn url_path(uri: &Uri) -> Result<String, Reply> {
    let raw = uri.path();
    if needs_cleaning(raw) {
        // Go's ServeMux answers a path with empty or dot segments with a redirect to its
        // clean form (openbao-api.md §1.1), keeping the query.
        let mut location = clean(raw);
        if let Some(q) = uri.query() {
            location.push('?');
            location.push_str(q);
        }
        return Err(Reply::Redirect(location));
    }
    let Some(escaped) = raw.strip_prefix("/v1/") else {
        return Err(Reply::not_found());
    };
    let path = if escaped.contains('%') {
        let bytes = percent_decode(escaped)?;
        String::from_utf8(bytes).map_err(|_| Reply::error(400, "the request path is not valid UTF-8"))?
    } else {
        escaped.to_string()
    };
    if let Some(c) = path.chars().find(|c| !prints(*c)) {
        return Err(Reply::error(
            400,
            format!("the request path holds a character that does not print (U+{:04X})", c as u32),
        ));
    }
    // A dot segment that only decoding revealed (`%2e%2e`) is refused, as OpenBao does.
    if path.split('/').any(|s| s == "." || s == "..") {
        return Err(Reply::error(400, "relative paths not supported"));
    }
    Ok(path)
}

/// Vault's answer to a write whose path ends in `/` (OpenBao's `handleCancelableRequest`,
/// before the token is even looked at): a key named `x/` and the folder `x/` would be one.
pub fn refuse_write_to_folder(path: &str, method: &str) -> Result<(), Reply> {
    if path.ends_with('/') && matches!(method, "POST" | "PUT" | "PATCH") {
        return Err(Reply::error(400, "cannot write to a path ending in '/'"));
    }
    Ok(())
}

/// A request path in its canonical form, and how it met the path tables.
#[derive(Debug, Clone)]
pub struct CanonicalPath {
    path: String,
    matched: Matched,
}

impl CanonicalPath {
    /// The canonical form of a decoded path (from [`url_path`]). A LIST is on the folder, so
    /// its path ends with `/` (Vault checks the `list` capability on that form).
    pub fn new(mut path: String, list: bool, state: &State) -> CanonicalPath {
        if list && !path.ends_with('/') {
            path.push('/');
        }
        let (rewritten, matched) = routes::canonical(&path, state);
        CanonicalPath { path: rewritten.unwrap_or(path), matched }
    }

    pub fn as_str(&self) -> &str {
        &self.path
    }

    pub fn matched(&self) -> Matched {
        self.matched
    }

    /// The pattern of the route the path matched, if any.
    pub fn pattern(&self) -> Option<&'static str> {
        match self.matched {
            Matched::Route(_, r) => Some(r.pattern),
            _ => None,
        }
    }
}

impl std::fmt::Display for CanonicalPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.path)
    }
}

/// Whether Go's ServeMux would redirect: an empty segment (`//`) or a `.`/`..` segment,
/// in the path as sent (escaped dots are not dot segments here).
fn needs_cleaning(raw: &str) -> bool {
    let inner = raw.strip_prefix('/').unwrap_or(raw);
    let inner = inner.strip_suffix('/').unwrap_or(inner);
    inner.split('/').any(|s| s.is_empty() || s == "." || s == "..") && raw != "/"
}

/// The clean form of a raw path (Go's `path.Clean`, keeping a trailing slash, and adding
/// one after a final `..`, as OpenBao's redirects do).
fn clean(raw: &str) -> String {
    let mut stack: Vec<&str> = Vec::new();
    for seg in raw.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                stack.pop();
            }
            s => stack.push(s),
        }
    }
    let mut out = format!("/{}", stack.join("/"));
    if out != "/" && (raw.ends_with('/') || raw.ends_with("/..")) {
        out.push('/');
    }
    out
}

/// Decodes `%XX` escapes (a `+` stays a `+` in a path); a malformed escape is refused as
/// Go's URL parser refuses it.
fn percent_decode(s: &str) -> Result<Vec<u8>, Reply> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'%' {
            out.push(b[i]);
            i += 1;
            continue;
        }
        let hex = b.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
            Some(byte) => out.push(byte),
            None => {
                let shown = String::from_utf8_lossy(b.get(i..(i + 3).min(b.len())).unwrap_or_default()).into_owned();
                return Err(Reply::error(400, format!("invalid URL escape \"{shown}\"")));
            }
        }
        i += 3;
    }
    Ok(out)
}

/// Go's `unicode.IsPrint`: letters, marks, numbers, punctuation, symbols and the ASCII
/// space. OpenBao refuses a path holding anything else (controls, format characters such
/// as U+200B, other spaces, private use); so does cairn.
fn prints(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_graphic() || c == ' ';
    }
    matches!(
        c.general_category_group(),
        GeneralCategoryGroup::Letter
            | GeneralCategoryGroup::Mark
            | GeneralCategoryGroup::Number
            | GeneralCategoryGroup::Punctuation
            | GeneralCategoryGroup::Symbol
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Result<String, Reply> {
        url_path(&s.parse::<Uri>().expect("uri"))
    }

    fn redirect(s: &str) -> String {
        match url(s) {
            Err(Reply::Redirect(l)) => l,
            other => panic!("{s}: {other:?}"),
        }
    }

    #[test]
    fn dot_and_empty_segments_redirect_to_the_clean_path_as_openbao_does() {
        assert_eq!(redirect("/v1/secret//data/x?list=true"), "/v1/secret/data/x?list=true");
        assert_eq!(redirect("/v1/./sys/health"), "/v1/sys/health");
        assert_eq!(redirect("/v1/../v1/sys/health"), "/v1/sys/health");
        assert_eq!(redirect("/v1/sys/health/."), "/v1/sys/health");
        assert_eq!(redirect("/v1/sys/health/.."), "/v1/sys/");
        assert_eq!(redirect("/v1/kv1/locked/./"), "/v1/kv1/locked/");
        assert_eq!(redirect("/v1//sys/health"), "/v1/sys/health");
        assert_eq!(redirect("/v1/kv1//"), "/v1/kv1/");
    }

    #[test]
    fn escapes_are_decoded_before_anything_looks_at_the_path() {
        assert_eq!(url("/v1/sys/healt%68").expect("ok"), "sys/health");
        assert_eq!(url("/v1/kv1/a%2Fb").expect("ok"), "kv1/a/b");
        assert_eq!(url("/v1/kv1/a%252Fb").expect("ok"), "kv1/a%2Fb");
        assert_eq!(url("/v1/kv1/a+b").expect("ok"), "kv1/a+b");
        assert_eq!(url("/v1/kv1/caf%C3%A9").expect("ok"), "kv1/caf\u{e9}");
        assert_eq!(url("/v1/kv1/.hidden").expect("ok"), "kv1/.hidden");
        assert_eq!(url("/v1/kv1/a..b").expect("ok"), "kv1/a..b");
        assert_eq!(url("/v1/kv1/a%2F%2Fb").expect("ok"), "kv1/a//b");
        assert_eq!(url("/v1/kv1/").expect("ok"), "kv1/");
    }

    #[test]
    fn what_cannot_be_read_is_refused() {
        for bad in [
            "/v1/kv1/x/%2e%2e/locked",
            "/v1/kv1/%2e/locked",
            "/v1/kv1/locked%2F.",
            "/v1/sys/health%00",
            "/v1/sys/health%0a",
            "/v1/sys/health%7f",
            "/v1/kv1/locked%C2%A0",
            "/v1/kv1/%E2%80%8Block",
            "/v1/kv1/%EF%BB%BF",
            "/v1/kv1/%EE%80%80",
            "/v1/sys/health%c0%af",
            "/v1/sys/health%ff",
            "/v1/sys/health%zz",
            "/v1/sys/health%",
            "/v1/sys/health%4",
        ] {
            assert!(matches!(url(bad), Err(Reply::Error(400, _))), "{bad}: {:?}", url(bad));
        }
        assert!(matches!(url("/v2/sys/health"), Err(Reply::Error(404, _))));
        assert!(matches!(url("/v1"), Err(Reply::Error(404, _))));
    }

    #[test]
    fn writes_to_a_folder_are_refused() {
        assert!(refuse_write_to_folder("kv1/x/", "POST").is_err());
        assert!(refuse_write_to_folder("kv1/x/", "PATCH").is_err());
        assert!(refuse_write_to_folder("kv1/x/", "DELETE").is_ok());
        assert!(refuse_write_to_folder("kv1/x", "PUT").is_ok());
    }
}
