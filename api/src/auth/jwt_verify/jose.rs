//! The JOSE pieces both login methods share: compact JWS parsing that refuses (never
//! panics on) hostile input, public keys from PEM and JWK, signature checks through
//! jsonwebtoken on aws-lc-rs, the registered claims with the time rules of hashicorp/cap
//! (the library Vault and OpenBao validate with), claim look-up by name or JSON pointer,
//! and Vault's `*` globs.
//!
//! No error here quotes the token: parse errors name the part and the reason only.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, SubjectPublicKeyInfoDer};
use serde_json::{Map, Value};

/// The longest token accepted. Real ones are a few KiB; an OIDC token with many groups
/// may reach tens of KiB.
pub(crate) const MAX_TOKEN_BYTES: usize = 256 * 1024;
/// The longest encoded JOSE header accepted.
const MAX_HEADER_BYTES: usize = 8 * 1024;

/// Why a compact JWS could not be read. The first message is go-jose's, as OpenBao shows it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ParseError {
    #[error("go-jose/go-jose: compact JWS format must have three parts")]
    Parts,
    #[error("token is larger than {MAX_TOKEN_BYTES} bytes")]
    TooLarge,
    #[error("JOSE header is larger than {MAX_HEADER_BYTES} bytes")]
    HeaderTooLarge,
    #[error("illegal base64 data in the {0}")]
    Base64(&'static str),
    #[error("invalid JOSE header: {0}")]
    Header(String),
    #[error("the JOSE header has no algorithm")]
    NoAlgorithm,
    #[error("unsupported crit header")]
    Crit,
    #[error("invalid claims: {0}")]
    Claims(String),
}

/// A compact JWS, split and decoded but not verified.
#[derive(Debug)]
pub(crate) struct Jws<'a> {
    /// `<header>.<payload>`, the bytes the signature covers.
    pub signing_input: &'a str,
    /// The signature, base64url as in the token.
    pub signature_b64: &'a str,
    /// The decoded signature is empty (`alg: none` tokens).
    pub unsigned: bool,
    pub alg: String,
    pub kid: Option<String>,
    /// The payload: always a JSON object.
    pub claims: Value,
}

/// Splits and decodes `token` without trusting anything in it.
pub(crate) fn parse(token: &str) -> Result<Jws<'_>, ParseError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(ParseError::TooLarge);
    }
    let mut parts = token.split('.');
    let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ParseError::Parts);
    };
    if header_b64.len() > MAX_HEADER_BYTES {
        return Err(ParseError::HeaderTooLarge);
    }
    let header = URL_SAFE_NO_PAD.decode(header_b64).map_err(|_| ParseError::Base64("header"))?;
    let payload = URL_SAFE_NO_PAD.decode(payload_b64).map_err(|_| ParseError::Base64("payload"))?;
    let signature = URL_SAFE_NO_PAD.decode(signature_b64).map_err(|_| ParseError::Base64("signature"))?;

    let header: Map<String, Value> = serde_json::from_slice(&header).map_err(|e| ParseError::Header(e.to_string()))?;
    let alg = match header.get("alg") {
        Some(Value::String(alg)) => alg.clone(),
        _ => return Err(ParseError::NoAlgorithm),
    };
    // No critical extension is understood here, so any is refused (RFC 7515 §4.1.11).
    if header.contains_key("crit") {
        return Err(ParseError::Crit);
    }
    let kid = match header.get("kid") {
        Some(Value::String(kid)) => Some(kid.clone()),
        _ => None,
    };
    let claims: Value = serde_json::from_slice(&payload).map_err(|e| ParseError::Claims(e.to_string()))?;
    if !claims.is_object() {
        return Err(ParseError::Claims("the payload is not a JSON object".to_owned()));
    }
    // `header.payload` is a prefix of the token: its length is the two parts and a dot.
    let signing_input = token.get(..header_b64.len() + 1 + payload_b64.len()).ok_or(ParseError::Parts)?;
    Ok(Jws { signing_input, signature_b64, unsigned: signature.is_empty(), alg, kid, claims })
}

/// The asymmetric algorithms a public key here can verify. HMAC and `none` are never
/// among them; ES512 (P-521) is not supported by jsonwebtoken.
pub(crate) fn asymmetric_algorithm(alg: &str) -> Option<Algorithm> {
    Some(match alg {
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        "EdDSA" => Algorithm::EdDSA,
        _ => return None,
    })
}

/// What a public key is, which decides the algorithms it may verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyKind {
    Rsa,
    P256,
    P384,
    Ed25519,
}

impl KeyKind {
    fn verifies(self, alg: Algorithm) -> bool {
        match self {
            KeyKind::Rsa => matches!(
                alg,
                Algorithm::RS256
                    | Algorithm::RS384
                    | Algorithm::RS512
                    | Algorithm::PS256
                    | Algorithm::PS384
                    | Algorithm::PS512
            ),
            KeyKind::P256 => alg == Algorithm::ES256,
            KeyKind::P384 => alg == Algorithm::ES384,
            KeyKind::Ed25519 => alg == Algorithm::EdDSA,
        }
    }
}

/// A public key that can verify signatures.
#[derive(Clone)]
pub(crate) struct PublicKey {
    pub kind: KeyKind,
    /// The JWK's `kid`, if it came from a JWKS.
    pub kid: Option<String>,
    /// The JWK's `alg`, if it named one: then only that algorithm is accepted.
    pub alg: Option<String>,
    key: DecodingKey,
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublicKey").field("kind", &self.kind).field("kid", &self.kid).field("alg", &self.alg).finish()
    }
}

impl PublicKey {
    /// Whether this key verifies `jws` under the header's algorithm.
    pub fn verifies(&self, jws: &Jws<'_>) -> bool {
        let Some(alg) = asymmetric_algorithm(&jws.alg) else { return false };
        if !self.kind.verifies(alg) || self.alg.as_deref().is_some_and(|a| a != jws.alg) || jws.unsigned {
            return false;
        }
        matches!(
            jsonwebtoken::crypto::verify(jws.signature_b64, jws.signing_input.as_bytes(), &self.key, alg),
            Ok(true)
        )
    }
}

/// Whether any of `keys` verifies `jws`.
pub(crate) fn any_verifies(keys: &[PublicKey], jws: &Jws<'_>) -> bool {
    keys.iter().any(|k| k.verifies(jws))
}

// DER object identifiers (contents octets).
const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const OID_EC: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const OID_P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
const OID_ED25519: &[u8] = &[0x2b, 0x65, 0x70];

const TAG_SEQUENCE: u8 = 0x30;
const TAG_OID: u8 = 0x06;
const TAG_BIT_STRING: u8 = 0x03;
const TAG_VERSION: u8 = 0xa0;

/// One DER element: its tag, its contents and what follows it. `None` when malformed.
fn der_next(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let (len_bytes, rest) = rest.split_at(n);
        (len_bytes.iter().fold(0usize, |acc, &b| (acc << 8) | usize::from(b)), rest)
    };
    if rest.len() < len {
        return None;
    }
    let (contents, rest) = rest.split_at(len);
    Some((tag, contents, rest))
}

fn der_expect(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    match der_next(input)? {
        (t, contents, rest) if t == tag => Some((contents, rest)),
        _ => None,
    }
}

/// A key from the contents of a SubjectPublicKeyInfo.
fn key_from_spki_contents(spki: &[u8]) -> Result<PublicKey, String> {
    let malformed = || "malformed SubjectPublicKeyInfo".to_owned();
    let (algorithm, rest) = der_expect(spki, TAG_SEQUENCE).ok_or_else(malformed)?;
    let (bits, _) = der_expect(rest, TAG_BIT_STRING).ok_or_else(malformed)?;
    let key = match bits.split_first() {
        Some((0, key)) => key,
        _ => return Err(malformed()),
    };
    let (oid, params) = der_expect(algorithm, TAG_OID).ok_or_else(malformed)?;
    let (kind, key) = if oid == OID_RSA {
        (KeyKind::Rsa, DecodingKey::from_rsa_der(key))
    } else if oid == OID_ED25519 {
        (KeyKind::Ed25519, DecodingKey::from_ed_der(key))
    } else if oid == OID_EC {
        let (curve, _) = der_expect(params, TAG_OID).ok_or_else(malformed)?;
        let kind = match curve {
            c if c == OID_P256 => KeyKind::P256,
            c if c == OID_P384 => KeyKind::P384,
            _ => return Err("unsupported elliptic curve (P-256 and P-384 are supported)".to_owned()),
        };
        (kind, DecodingKey::from_ec_der(key))
    } else {
        return Err("unsupported public key type (RSA, EC and Ed25519 are supported)".to_owned());
    };
    Ok(PublicKey { kind, kid: None, alg: None, key })
}

/// The SubjectPublicKeyInfo contents of an X.509 certificate.
fn spki_of_certificate(cert: &[u8]) -> Option<&[u8]> {
    let (certificate, _) = der_expect(cert, TAG_SEQUENCE)?;
    let (tbs, _) = der_expect(certificate, TAG_SEQUENCE)?;
    let mut rest = match der_next(tbs)? {
        (TAG_VERSION, _, rest) => rest,
        _ => tbs,
    };
    // serialNumber, signature, issuer, validity, subject.
    for _ in 0..5 {
        rest = der_next(rest)?.2;
    }
    der_expect(rest, TAG_SEQUENCE).map(|(spki, _)| spki)
}

/// A public key from PEM: a `PUBLIC KEY` (SubjectPublicKeyInfo) or a `CERTIFICATE`, as
/// Vault's `certutil.ParsePublicKeyPEM` takes them. RSA, EC P-256/P-384 and Ed25519.
pub(crate) fn public_key_from_pem(pem: &str) -> Result<PublicKey, String> {
    if let Ok(spki) = SubjectPublicKeyInfoDer::from_pem_slice(pem.as_bytes()) {
        let (contents, _) = der_expect(spki.as_ref(), TAG_SEQUENCE).ok_or("malformed SubjectPublicKeyInfo")?;
        return key_from_spki_contents(contents);
    }
    if let Ok(cert) = CertificateDer::from_pem_slice(pem.as_bytes()) {
        let spki = spki_of_certificate(cert.as_ref()).ok_or("malformed certificate")?;
        return key_from_spki_contents(spki);
    }
    Err("data does not contain any valid public keys".to_owned())
}

/// A public key from one JWK of a JWKS. `None` for keys that cannot verify here
/// (`oct`, `use: enc`, unsupported curves, malformed members): they are skipped.
pub(crate) fn public_key_from_jwk(jwk: &Value) -> Option<PublicKey> {
    let member = |name: &str| jwk.get(name).and_then(Value::as_str);
    if member("use").is_some_and(|u| u != "sig") {
        return None;
    }
    let (kind, key) = match (member("kty")?, member("crv")) {
        ("RSA", _) => (KeyKind::Rsa, DecodingKey::from_rsa_components(member("n")?, member("e")?).ok()?),
        ("EC", Some("P-256")) => (KeyKind::P256, DecodingKey::from_ec_components(member("x")?, member("y")?).ok()?),
        ("EC", Some("P-384")) => (KeyKind::P384, DecodingKey::from_ec_components(member("x")?, member("y")?).ok()?),
        ("OKP", Some("Ed25519")) => (KeyKind::Ed25519, DecodingKey::from_ed_components(member("x")?).ok()?),
        _ => return None,
    };
    Some(PublicKey { kind, kid: member("kid").map(str::to_owned), alg: member("alg").map(str::to_owned), key })
}

/// The registered claims cap reads (go-jose's `jwt.Claims`). Times are whole seconds;
/// a missing time is 0, as go-jose's zero `NumericDate`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Registered {
    pub iss: String,
    pub sub: String,
    pub aud: Vec<String>,
    pub exp: i64,
    pub nbf: i64,
    pub iat: i64,
}

impl Registered {
    /// Reads the registered claims from a claims object; a claim of the wrong type is an
    /// error, as when go-jose unmarshals it.
    pub fn from_claims(claims: &Value) -> Result<Registered, String> {
        let string = |name: &str| match claims.get(name) {
            None | Some(Value::Null) => Ok(String::new()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(_) => Err(format!("the {name} claim is not a string")),
        };
        let time = |name: &str| match claims.get(name) {
            None | Some(Value::Null) => Ok(0),
            Some(Value::Number(n)) => Ok(numeric_date(n)),
            Some(_) => Err(format!("the {name} claim is not a number")),
        };
        let aud = match claims.get("aud") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| v.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or("expected string or array value to unmarshal to Audience")?,
            Some(_) => return Err("expected string or array value to unmarshal to Audience".to_owned()),
        };
        Ok(Registered {
            iss: string("iss")?,
            sub: string("sub")?,
            aud,
            exp: time("exp")?,
            nbf: time("nbf")?,
            iat: time("iat")?,
        })
    }
}

/// A JSON number as whole seconds (fractions dropped, out-of-range values saturated).
fn numeric_date(n: &serde_json::Number) -> i64 {
    if let Some(i) = n.as_i64() {
        i
    } else if n.as_u64().is_some() {
        i64::MAX
    } else {
        // `as` saturates and maps NaN to 0; JSON has no NaN.
        n.as_f64().map_or(0, |f| f as i64)
    }
}

/// The leeways of a validation, in seconds, as a role stores them: 0 means the default
/// (60 s of clock skew, 150 s for a missing `exp` or `nbf`), negative means none.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Leeways {
    pub clock_skew: i64,
    pub expiration: i64,
    pub not_before: i64,
}

/// cap's `DefaultLeewaySeconds`, for a missing `exp` or `nbf`.
const DEFAULT_LEEWAY: i64 = 150;
/// go-jose's `DefaultLeeway`, the clock skew.
const DEFAULT_CLOCK_SKEW: i64 = 60;

fn leeway(configured: i64, default: i64) -> i64 {
    match configured {
        0 => default,
        n if n < 0 => 0,
        n => n,
    }
}

/// Why a token's times refuse it (cap's messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    #[error("no issued at (iat), not before (nbf), or expiration time (exp) claims in token")]
    Missing,
    #[error("invalid not before (nbf) claim: token not yet valid")]
    NotYetValid,
    #[error("invalid expiration time (exp) claim: token is expired")]
    Expired,
    #[error("invalid issued at (iat) claim: token issued in the future")]
    IssuedInFuture,
}

/// cap's time rules. At least one of `iat`, `nbf`, `exp` must be present unless
/// `allow_missing` (then a token with none of them passes). A missing `exp` is the later
/// of `iat` and `nbf` plus the expiration leeway; a missing `nbf` is `iat`, or else `exp`
/// minus the not-before leeway. Then, with the clock skew: `now + skew >= nbf`,
/// `now - skew <= exp` and `now + skew >= iat`.
pub(crate) fn check_times(r: &Registered, leeways: Leeways, now: i64, allow_missing: bool) -> Result<(), TimeError> {
    if r.iat == 0 && r.exp == 0 && r.nbf == 0 {
        return if allow_missing { Ok(()) } else { Err(TimeError::Missing) };
    }
    let exp =
        if r.exp == 0 { r.iat.max(r.nbf).saturating_add(leeway(leeways.expiration, DEFAULT_LEEWAY)) } else { r.exp };
    let nbf = match (r.nbf, r.iat) {
        (0, 0) => exp.saturating_sub(leeway(leeways.not_before, DEFAULT_LEEWAY)),
        (0, iat) => iat,
        (nbf, _) => nbf,
    };
    let skew = leeway(leeways.clock_skew, DEFAULT_CLOCK_SKEW);
    if now.saturating_add(skew) < nbf {
        return Err(TimeError::NotYetValid);
    }
    if now.saturating_sub(skew) > exp {
        return Err(TimeError::Expired);
    }
    if now.saturating_add(skew) < r.iat {
        return Err(TimeError::IssuedInFuture);
    }
    Ok(())
}

/// A claim by name, or by JSON pointer when the name starts with `/` (Vault's `getClaim`).
/// JSON `null` counts as missing, as Go's `nil`.
pub(crate) fn claim<'a>(claims: &'a Value, name: &str) -> Option<&'a Value> {
    let value = if name.starts_with('/') { claims.pointer(name) } else { claims.get(name) };
    value.filter(|v| !v.is_null())
}

/// A JSON number as Vault compares claims: integers in decimal, other numbers in the
/// shortest decimal form without an exponent.
pub(crate) fn render_number(n: &serde_json::Number) -> String {
    if n.is_i64() || n.is_u64() {
        return n.to_string();
    }
    match n.as_f64() {
        Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => format!("{}", f as i64),
        Some(f) => format!("{f}"),
        None => n.to_string(),
    }
}

/// Vault's glob, shared with the offline tools.
pub(crate) use projections::auth::glob_match;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_as_vaults() {
        assert!(glob_match("*", ""));
        assert!(glob_match("", ""));
        assert!(!glob_match("", "a"));
        assert!(glob_match("app-*", "app-web"));
        assert!(glob_match("app-*", "app-"));
        assert!(!glob_match("app-*", "xapp-web"));
        assert!(glob_match("*-prod", "web-prod"));
        assert!(!glob_match("*-prod", "web-prod2"));
        assert!(glob_match("a*b*c", "aXbYc"));
        assert!(glob_match("a*b*c", "abc"));
        assert!(!glob_match("a*a", "a"));
        assert!(glob_match("a*a", "aa"));
        assert!(glob_match("*b*", "abc"));
        assert!(!glob_match("*b*", "ac"));
        assert!(glob_match("exact", "exact"));
        assert!(!glob_match("exact", "exactly"));
    }

    #[test]
    fn der_reader_refuses_truncated_and_huge_lengths() {
        assert_eq!(der_next(&[]), None);
        assert_eq!(der_next(&[0x30]), None);
        assert_eq!(der_next(&[0x30, 0x05, 0x00]), None);
        assert_eq!(der_next(&[0x30, 0x80]), None);
        assert_eq!(der_next(&[0x30, 0x85, 1, 1, 1, 1, 1]), None);
        assert_eq!(der_next(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
        assert_eq!(der_next(&[0x30, 0x81, 0x01, 0x07, 0x09]), Some((0x30, &[0x07][..], &[0x09][..])));
        assert!(public_key_from_pem("-----BEGIN PUBLIC KEY-----\nMAA=\n-----END PUBLIC KEY-----\n").is_err());
        assert!(public_key_from_pem("-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n").is_err());
        assert!(public_key_from_pem("not a pem").is_err());
    }

    #[test]
    fn parse_refuses_malformed_tokens() {
        assert_eq!(parse("").err(), Some(ParseError::Parts));
        assert_eq!(parse("a.b").err(), Some(ParseError::Parts));
        assert_eq!(parse("a.b.c.d").err(), Some(ParseError::Parts));
        assert_eq!(parse("!!.e30.").err(), Some(ParseError::Base64("header")));
        // {"alg":"RS256"} . [] . (empty)
        assert!(matches!(parse("eyJhbGciOiJSUzI1NiJ9.W10."), Err(ParseError::Claims(_))));
        // {} . {} . (empty)
        assert_eq!(parse("e30.e30.").err(), Some(ParseError::NoAlgorithm));
        let huge = "a".repeat(MAX_TOKEN_BYTES + 1);
        assert_eq!(parse(&huge).err(), Some(ParseError::TooLarge));
        let big_header = format!("{}.e30.", "a".repeat(MAX_HEADER_BYTES + 1));
        assert_eq!(parse(&big_header).err(), Some(ParseError::HeaderTooLarge));
        // {"alg":"RS256","crit":["exp"]} . {} . (empty)
        assert_eq!(parse("eyJhbGciOiJSUzI1NiIsImNyaXQiOlsiZXhwIl19.e30.").err(), Some(ParseError::Crit));
        let ok = parse("eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIn0.e30.").ok();
        assert_eq!(
            ok.as_ref().map(|j| (j.alg.as_str(), j.kid.as_deref(), j.unsigned)),
            Some(("RS256", Some("k1"), true))
        );
    }

    #[test]
    fn time_rules_follow_cap() {
        let lw = Leeways::default();
        let r = |exp, nbf, iat| Registered { exp, nbf, iat, ..Registered::default() };
        assert_eq!(check_times(&r(0, 0, 0), lw, 1000, false), Err(TimeError::Missing));
        assert_eq!(check_times(&r(0, 0, 0), lw, 1000, true), Ok(()));
        // exp with the 60 s default skew.
        assert_eq!(check_times(&r(1000, 0, 0), lw, 1060, false), Ok(()));
        assert_eq!(check_times(&r(1000, 0, 0), lw, 1061, false), Err(TimeError::Expired));
        // Negative skew: none.
        let strict = Leeways { clock_skew: -1, ..lw };
        assert_eq!(check_times(&r(1000, 0, 0), strict, 1001, false), Err(TimeError::Expired));
        // nbf.
        assert_eq!(check_times(&r(0, 2000, 0), lw, 1940, false), Ok(()));
        assert_eq!(check_times(&r(0, 2000, 0), lw, 1939, false), Err(TimeError::NotYetValid));
        // iat only: exp is iat + 150, and then the skew.
        assert_eq!(check_times(&r(0, 0, 1000), lw, 1210, false), Ok(()));
        assert_eq!(check_times(&r(0, 0, 1000), lw, 1211, false), Err(TimeError::Expired));
        assert_eq!(check_times(&r(0, 0, 1000), Leeways { expiration: 10, ..lw }, 1071, false), Err(TimeError::Expired));
        assert_eq!(check_times(&r(0, 0, 1000), lw, 939, false), Err(TimeError::NotYetValid));
        // exp only: nbf is exp - 150 (not_before_leeway).
        assert_eq!(check_times(&r(1000, 0, 0), lw, 789, false), Err(TimeError::NotYetValid));
        assert_eq!(
            check_times(&r(1000, 0, 0), Leeways { not_before: -1, ..lw }, 939, false),
            Err(TimeError::NotYetValid)
        );
        // iat in the future beyond the skew, with nbf in the past.
        assert_eq!(check_times(&r(5000, 10, 2000), lw, 1000, false), Err(TimeError::IssuedInFuture));
        // Extreme values do not overflow.
        assert_eq!(check_times(&r(i64::MAX, i64::MIN, 0), lw, i64::MAX, false), Ok(()));
        assert_eq!(check_times(&r(i64::MIN, 0, 0), lw, 0, false), Err(TimeError::Expired));
    }

    #[test]
    fn registered_claims_accept_string_or_list_audiences() {
        let r = Registered::from_claims(&serde_json::json!({"aud": "a", "exp": 1.9, "iss": "i"}));
        assert_eq!(r, Ok(Registered { iss: "i".into(), aud: vec!["a".into()], exp: 1, ..Registered::default() }));
        assert!(Registered::from_claims(&serde_json::json!({"aud": [1]})).is_err());
        assert!(Registered::from_claims(&serde_json::json!({"exp": "soon"})).is_err());
        assert!(Registered::from_claims(&serde_json::json!({"sub": 5})).is_err());
        let big = Registered::from_claims(&serde_json::json!({"exp": u64::MAX, "nbf": -1e300}));
        assert_eq!(big.map(|r| (r.exp, r.nbf)), Ok((i64::MAX, i64::MIN)));
    }

    #[test]
    fn claims_by_name_or_pointer() {
        let c = serde_json::json!({"a": {"b": "x", "n": null}, "/odd": 1, "l": [1, 2]});
        assert_eq!(claim(&c, "/a/b"), Some(&Value::String("x".into())));
        assert_eq!(claim(&c, "/a/n"), None);
        assert_eq!(claim(&c, "/l/1"), Some(&serde_json::json!(2)));
        assert_eq!(claim(&c, "/missing"), None);
        assert_eq!(claim(&c, "a").map(Value::is_object), Some(true));
    }

    #[test]
    fn numbers_render_as_vault_compares_them() {
        let n = |v: Value| match v {
            Value::Number(n) => render_number(&n),
            _ => String::new(),
        };
        assert_eq!(n(serde_json::json!(42)), "42");
        assert_eq!(n(serde_json::json!(-7)), "-7");
        assert_eq!(n(serde_json::json!(42.0)), "42");
        assert_eq!(n(serde_json::json!(1.5)), "1.5");
        assert_eq!(n(serde_json::json!(u64::MAX)), "18446744073709551615");
    }
}
