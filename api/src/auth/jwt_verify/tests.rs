//! Tests of JWT login validation: keys of each kind, every refusal with OpenBao's message,
//! hostile input, and remote keys (JWKS and OIDC discovery) with rotation, against the
//! test issuer of the e2e crate.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use e2e::jwt::{TestIssuer, TestKey};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use super::*;

const NOW: i64 = 1_800_000_000;
const ISSUER: &str = "https://issuer.example";

fn claims() -> Value {
    json!({
        "iss": ISSUER,
        "sub": "alice",
        "aud": ["bao"],
        "exp": NOW + 300,
        "iat": NOW - 10,
        "team": "payments",
        "groups": ["admins", "", "devs"],
        "nested": {"env": "prod", "ids": [7, 8]},
    })
}

fn with(mut base: Value, changes: Value) -> Value {
    if let (Some(base), Value::Object(changes)) = (base.as_object_mut(), changes) {
        for (k, v) in changes {
            if v.is_null() {
                base.remove(&k);
            } else {
                base.insert(k, v);
            }
        }
    }
    base
}

fn role() -> JwtRole {
    JwtRole {
        name: "dev".into(),
        role_type: "jwt".into(),
        bound_audiences: vec!["bao".into()],
        user_claim: "sub".into(),
        bound_claims: BTreeMap::from([("team".into(), vec!["payments".into()])]),
        bound_claims_type: "string".into(),
        claim_mappings: BTreeMap::from([("team".into(), "team".into()), ("/nested/env".into(), "env".into())]),
        groups_claim: "groups".into(),
        ..JwtRole::default()
    }
}

fn static_config(key: &TestKey) -> JwtConfig {
    JwtConfig {
        jwt_validation_pubkeys: vec![key.public_key_pem().to_owned()],
        bound_issuer: ISSUER.into(),
        ..JwtConfig::default()
    }
}

fn rsa() -> TestKey {
    TestKey::rsa("r1").expect("rsa key")
}

async fn check(key: &TestKey, role: &JwtRole, claims: &Value) -> Result<Verified, JwtError> {
    let token = key.sign(claims).expect("sign");
    check_token(&static_config(key), role, &token).await
}

async fn check_token(config: &JwtConfig, role: &JwtRole, token: &str) -> Result<Verified, JwtError> {
    let result = verify(&JwksCache::new(), config, role, token, NOW).await;
    if let Err(e) = &result {
        assert_no_secret(&e.to_string(), token);
    }
    result
}

/// No message may quote the token or any of its parts.
fn assert_no_secret(message: &str, token: &str) {
    if token.len() > 8 {
        assert!(!message.contains(token), "the message quotes the token: {message}");
    }
    for part in token.split('.').filter(|p| p.len() > 8) {
        assert!(!message.contains(part), "the message quotes part of the token: {message}");
    }
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

#[tokio::test]
async fn valid_tokens_of_every_key_kind_are_accepted() {
    let keys = [
        TestKey::rsa("r").expect("rsa"),
        TestKey::ec_p256("e").expect("p256"),
        TestKey::ec_p384("f").expect("p384"),
        TestKey::ed25519("d").expect("ed25519"),
    ];
    for key in &keys {
        let verified = check(key, &role(), &claims()).await.unwrap_or_else(|e| panic!("{:?}: {e}", key.algorithm()));
        assert_eq!(verified.alias_name, "alice");
        assert_eq!(verified.groups, vec!["admins".to_owned(), "devs".to_owned()]);
        assert_eq!(
            verified.metadata,
            BTreeMap::from([
                ("role".into(), "dev".into()),
                ("team".into(), "payments".into()),
                ("env".into(), "prod".into())
            ])
        );
        assert_eq!(verified.claims["team"], "payments");
    }
}

#[tokio::test]
async fn a_certificate_is_a_key_too() {
    let key = TestKey::ec_p256("c").expect("key");
    let config =
        JwtConfig { jwt_validation_pubkeys: vec![key.certificate_pem().expect("cert")], ..static_config(&key) };
    let token = key.sign(&claims()).expect("sign");
    assert!(check_token(&config, &role(), &token).await.is_ok());
    assert_eq!(check_public_key_pem(&key.certificate_pem().expect("cert")), Ok(()));
}

#[tokio::test]
async fn any_of_several_static_keys_verifies() {
    let (a, b) = (TestKey::ed25519("a").expect("a"), rsa());
    let config = JwtConfig {
        jwt_validation_pubkeys: vec!["garbage".into(), a.public_key_pem().into(), b.public_key_pem().into()],
        ..static_config(&a)
    };
    for key in [&a, &b] {
        let token = key.sign(&claims()).expect("sign");
        assert!(check_token(&config, &role(), &token).await.is_ok());
    }
}

#[tokio::test]
async fn times_are_checked_with_leeways() {
    let key = rsa();
    let expired = with(claims(), json!({"exp": NOW - 61}));
    let err = check(&key, &role(), &expired).await.err();
    assert_eq!(err, Some(JwtError::Time(TimeError::Expired)));
    assert_eq!(
        err.map(|e| e.to_string()).as_deref(),
        Some("error validating token: invalid expiration time (exp) claim: token is expired")
    );
    // Within the default 60 s of skew.
    assert!(check(&key, &role(), &with(claims(), json!({"exp": NOW - 60}))).await.is_ok());
    // A role without skew.
    let strict = JwtRole { clock_skew_leeway: -1, ..role() };
    assert_eq!(
        check(&key, &strict, &with(claims(), json!({"exp": NOW - 1}))).await.err(),
        Some(JwtError::Time(TimeError::Expired))
    );
    let early = with(claims(), json!({"nbf": NOW + 61}));
    assert_eq!(check(&key, &role(), &early).await.err(), Some(JwtError::Time(TimeError::NotYetValid)));
    assert!(check(&key, &role(), &with(claims(), json!({"nbf": NOW + 60}))).await.is_ok());
    // A missing nbf is iat, so a future iat is first a future nbf.
    let future = with(claims(), json!({"iat": NOW + 61}));
    assert_eq!(check(&key, &role(), &future).await.err(), Some(JwtError::Time(TimeError::NotYetValid)));
    let future = with(claims(), json!({"iat": NOW + 61, "nbf": NOW - 10}));
    assert_eq!(check(&key, &role(), &future).await.err(), Some(JwtError::Time(TimeError::IssuedInFuture)));
    let timeless = with(claims(), json!({"exp": null, "iat": null}));
    assert_eq!(check(&key, &role(), &timeless).await.err(), Some(JwtError::Time(TimeError::Missing)));
    // No exp: iat + expiration_leeway (150 s by default) + skew.
    let old = with(claims(), json!({"exp": null, "iat": NOW - 211}));
    assert_eq!(check(&key, &role(), &old).await.err(), Some(JwtError::Time(TimeError::Expired)));
    assert!(check(&key, &role(), &with(claims(), json!({"exp": null, "iat": NOW - 210}))).await.is_ok());
    let short = JwtRole { expiration_leeway: 10, ..role() };
    assert!(check(&key, &short, &with(claims(), json!({"exp": null, "iat": NOW - 71}))).await.is_err());
}

#[tokio::test]
async fn audiences_issuer_and_subject_are_bound() {
    let key = rsa();
    let err = check(&key, &role(), &with(claims(), json!({"aud": ["other"]}))).await.err();
    assert_eq!(
        err.map(|e| e.to_string()).as_deref(),
        Some(
            "error validating token: invalid audience (aud) claim: audience claim does not match any expected audience"
        )
    );
    // A string aud is one audience; any bound audience may match.
    let two = JwtRole { bound_audiences: vec!["x".into(), "bao".into()], ..role() };
    assert!(check(&key, &two, &with(claims(), json!({"aud": "bao"}))).await.is_ok());
    assert_eq!(check(&key, &role(), &with(claims(), json!({"aud": null}))).await.err(), Some(JwtError::Audience));
    // No bound audiences: a token with any aud is refused, one without is fine.
    let open = JwtRole { bound_audiences: vec![], ..role() };
    for aud in [json!(["bao"]), json!("bao")] {
        let err = check(&key, &open, &with(claims(), json!({ "aud": aud }))).await.err();
        assert_eq!(err, Some(JwtError::AudienceNotBound));
    }
    assert!(check(&key, &open, &with(claims(), json!({"aud": null}))).await.is_ok());

    let err = check(&key, &role(), &with(claims(), json!({"iss": "https://evil.example"}))).await.err();
    assert_eq!(err.map(|e| e.to_string()).as_deref(), Some("error validating token: invalid issuer (iss) claim"));
    let bound = JwtRole { bound_subject: "bob".into(), ..role() };
    let err = check(&key, &bound, &claims()).await.err();
    assert_eq!(err.map(|e| e.to_string()).as_deref(), Some("error validating token: invalid subject (sub) claim"));
    assert!(check(&key, &JwtRole { bound_subject: "alice".into(), ..role() }, &claims()).await.is_ok());
}

#[tokio::test]
async fn bound_claims_match_exactly_or_as_globs() {
    let key = rsa();
    // Without the mapping of "team", which must be a string.
    let role = || JwtRole { claim_mappings: BTreeMap::new(), ..role() };
    let err = check(&key, &role(), &with(claims(), json!({"team": "ops"}))).await.err();
    assert_eq!(
        err.map(|e| e.to_string()).as_deref(),
        Some("error validating claims: claim \"team\" does not match any associated bound claim values")
    );
    assert_eq!(
        check(&key, &role(), &with(claims(), json!({"team": null}))).await.err(),
        Some(JwtError::BoundClaims(BoundClaimError::Missing("team".into())))
    );
    // A list claim: one element matching one accepted value is enough.
    let listed = with(claims(), json!({"team": ["ops", "payments"]}));
    assert!(check(&key, &role(), &listed).await.is_ok());
    // An object is neither a value nor a list.
    let object = with(claims(), json!({"team": {"name": "payments"}}));
    assert_eq!(
        check(&key, &role(), &object).await.err(),
        Some(JwtError::BoundClaims(BoundClaimError::NotScalarOrList("team".into())))
    );
    // Globs, only with bound_claims_type "glob".
    let globbed =
        JwtRole { bound_claims: BTreeMap::from([("team".into(), vec!["ops-*".into(), "pay*".into()])]), ..role() };
    assert!(check(&key, &globbed, &with(claims(), json!({"team": "pay*"}))).await.is_ok());
    assert!(check(&key, &globbed, &claims()).await.is_err());
    let globbed = JwtRole { bound_claims_type: "glob".into(), ..globbed };
    assert!(check(&key, &globbed, &claims()).await.is_ok());
    assert!(check(&key, &globbed, &with(claims(), json!({"team": ["x", "ops-eu"]}))).await.is_ok());
    assert!(check(&key, &globbed, &with(claims(), json!({"team": "devops-eu"}))).await.is_err());
    // JSON pointers, numbers and booleans.
    let pointed = JwtRole {
        bound_claims: BTreeMap::from([
            ("/nested/env".into(), vec!["prod".into()]),
            ("/nested/ids".into(), vec!["8".into()]),
            ("admin".into(), vec!["true".into()]),
        ]),
        ..role()
    };
    assert!(check(&key, &pointed, &with(claims(), json!({"admin": true}))).await.is_ok());
    assert!(check(&key, &pointed, &with(claims(), json!({"admin": false}))).await.is_err());
    assert_eq!(
        check(&key, &pointed, &with(claims(), json!({"admin": true, "nested": {"env": "dev", "ids": [8]}})))
            .await
            .err(),
        Some(JwtError::BoundClaims(BoundClaimError::NoMatch("/nested/env".into())))
    );
}

#[tokio::test]
async fn identity_claims_must_have_the_right_types() {
    let key = rsa();
    let err = check(&key, &role(), &with(claims(), json!({"sub": null}))).await.err();
    assert_eq!(err.map(|e| e.to_string()).as_deref(), Some("claim \"sub\" not found in token"));
    let by_email = JwtRole { user_claim: "uid".into(), ..role() };
    let err = check(&key, &by_email, &with(claims(), json!({"uid": 42}))).await.err();
    assert_eq!(err.map(|e| e.to_string()).as_deref(), Some("claim \"uid\" could not be converted to string"));
    // A pointer only when the role says so.
    let pointer = JwtRole { user_claim: "/nested/env".into(), ..role() };
    assert_eq!(check(&key, &pointer, &claims()).await.err(), Some(JwtError::UserClaimMissing("/nested/env".into())));
    let pointer = JwtRole { user_claim_json_pointer: true, ..pointer };
    assert_eq!(check(&key, &pointer, &claims()).await.map(|v| v.alias_name), Ok("prod".to_owned()));

    // Mappings: missing claims are skipped, non-strings refused.
    let mapped = JwtRole { claim_mappings: BTreeMap::from([("absent".into(), "a".into())]), ..role() };
    let verified = check(&key, &mapped, &claims()).await;
    assert_eq!(verified.map(|v| v.metadata), Ok(BTreeMap::from([("role".into(), "dev".into())])));
    let mapped = JwtRole { claim_mappings: BTreeMap::from([("/nested/ids".into(), "ids".into())]), ..role() };
    let err = check(&key, &mapped, &claims()).await.err();
    assert_eq!(err.map(|e| e.to_string()).as_deref(), Some("error converting claim '/nested/ids' to string"));

    // Groups: a string is a list of one; numbers and objects are refused.
    assert_eq!(
        check(&key, &role(), &with(claims(), json!({"groups": "solo"}))).await.map(|v| v.groups),
        Ok(vec!["solo".to_owned()])
    );
    let err = check(&key, &role(), &with(claims(), json!({"groups": null}))).await.err();
    assert_eq!(
        err.map(|e| e.to_string()).as_deref(),
        Some("failed to fetch groups: \"groups\" claim not found in token")
    );
    let err = check(&key, &role(), &with(claims(), json!({"groups": ["a", 5]}))).await.err();
    assert_eq!(err.map(|e| e.to_string()).as_deref(), Some("value 5 in groups claim could not be parsed as string"));
    let err = check(&key, &role(), &with(claims(), json!({"groups": {"a": 1}}))).await.err();
    assert_eq!(err, Some(JwtError::GroupsNotList("groups".into())));
    let no_groups = JwtRole { groups_claim: String::new(), ..role() };
    assert_eq!(check(&key, &no_groups, &with(claims(), json!({"groups": null}))).await.map(|v| v.groups), Ok(vec![]));
}

#[tokio::test]
async fn forged_and_foreign_tokens_are_refused() {
    let key = rsa();
    let config = static_config(&key);
    let no_key = "error validating token: error verifying token signature: no known key successfully validated the token signature";

    // alg: none, with and without a signature part.
    let none = format!("{}.{}.", b64(&json!({"alg": "none", "typ": "JWT"})), b64(&claims()));
    let err = check_token(&config, &role(), &none).await.err();
    assert_eq!(err.map(|e| e.to_string()).as_deref(), Some(no_key));
    let none = format!("{}.{}.{}", b64(&json!({"alg": "none"})), b64(&claims()), URL_SAFE_NO_PAD.encode("sig"));
    assert!(matches!(check_token(&config, &role(), &none).await, Err(JwtError::Signature(_))));

    // HS256, with the public key's PEM as the HMAC secret (the classic confusion) or any other.
    for secret in [key.public_key_pem().as_bytes(), b"secret".as_slice()] {
        let hs = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims(), &EncodingKey::from_secret(secret))
            .expect("hs256");
        let err = check_token(&config, &role(), &hs).await.err();
        assert_eq!(err.map(|e| e.to_string()).as_deref(), Some(no_key));
    }

    // A tampered payload keeps the old signature.
    let token = key.sign(&claims()).expect("sign");
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    parts[1] = b64(&with(claims(), json!({"sub": "root"})));
    assert!(matches!(check_token(&config, &role(), &parts.join(".")).await, Err(JwtError::Signature(_))));
    // A header claiming another algorithm of the same key family.
    let token = key.sign(&claims()).expect("sign");
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    parts[0] = b64(&json!({"alg": "PS256", "kid": "r1"}));
    assert!(matches!(check_token(&config, &role(), &parts.join(".")).await, Err(JwtError::Signature(_))));

    // Another key, and a key of another kind.
    let other = TestKey::rsa("r1").expect("other");
    assert!(matches!(
        check_token(&config, &role(), &other.sign(&claims()).expect("sign")).await,
        Err(JwtError::Signature(_))
    ));
    let ec = TestKey::ec_p256("e").expect("ec");
    assert!(matches!(
        check_token(&config, &role(), &ec.sign(&claims()).expect("sign")).await,
        Err(JwtError::Signature(_))
    ));
    // A P-256 key does not verify a token whose header says ES384.
    let p256_config = static_config(&ec);
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("e".into());
    let token = ec.sign_with_header(&header, &claims()).expect("sign");
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    parts[0] = b64(&json!({"alg": "ES384", "kid": "e"}));
    assert!(matches!(check_token(&p256_config, &role(), &parts.join(".")).await, Err(JwtError::Signature(_))));
}

#[tokio::test]
async fn garbage_is_refused_without_panic() {
    let key = rsa();
    let config = static_config(&key);
    let observed = "error validating token: error verifying token signature: go-jose/go-jose: compact JWS format must have three parts";
    let err = check_token(&config, &role(), "not-a-jwt").await.err();
    assert_eq!(err.map(|e| e.to_string()).as_deref(), Some(observed));
    assert_eq!(check_token(&config, &role(), "").await.err(), Some(JwtError::MissingToken));
    let valid = key.sign(&claims()).expect("sign");
    let huge_header = format!("{}.{}.x", "e".repeat(100_000), b64(&claims()));
    let deep = format!("{}.{}.", b64(&json!({"alg": "RS256"})), URL_SAFE_NO_PAD.encode("[".repeat(10_000)));
    let hostile = [
        ".",
        "..",
        "...",
        "a.b.c",
        "e30.e30.e30",
        "!!!.###.$$$",
        "eyJhbGciOiJSUzI1NiJ9.bm90IGpzb24.c2ln",
        "eyJhbGciOjV9.e30.",
        "W10.e30.",
        "bnVsbA.bnVsbA.",
        "\u{0}\u{1}.\u{ff}.\u{2603}",
        huge_header.as_str(),
        deep.as_str(),
        &valid[..valid.len() - 3],
        &valid[3..],
    ];
    for token in hostile {
        let result = check_token(&config, &role(), token).await;
        assert!(result.is_err(), "accepted {token:?}");
    }
    let too_big = format!("{valid}{}", "A".repeat(jose::MAX_TOKEN_BYTES));
    assert!(check_token(&config, &role(), &too_big).await.is_err());
}

#[tokio::test]
async fn supported_algorithms_restrict_the_header() {
    let (rsa, ec) = (rsa(), TestKey::ec_p256("e").expect("ec"));
    let config = JwtConfig {
        jwt_validation_pubkeys: vec![rsa.public_key_pem().into(), ec.public_key_pem().into()],
        jwt_supported_algs: vec!["RS256".into()],
        ..static_config(&rsa)
    };
    assert!(check_token(&config, &role(), &rsa.sign(&claims()).expect("sign")).await.is_ok());
    let err = check_token(&config, &role(), &ec.sign(&claims()).expect("sign")).await.err();
    assert_eq!(
        err.map(|e| e.to_string()).as_deref(),
        Some(
            "error validating token: invalid algorithm (alg) header parameter: token signed with unexpected algorithm"
        )
    );
    assert_eq!(check_supported_algs(&["RS256".into(), "EdDSA".into()]), Ok(()));
    assert_eq!(check_supported_algs(&["HS256".into()]), Err("unsupported signing algorithm \"HS256\"".into()));
    assert_eq!(check_supported_algs(&["none".into()]), Err("unsupported signing algorithm \"none\"".into()));
}

#[tokio::test]
async fn oidc_roles_take_no_jwt_logins() {
    let key = rsa();
    let oidc = JwtRole { role_type: "oidc".into(), ..role() };
    let err = check(&key, &oidc, &claims()).await.err();
    assert_eq!(err.map(|e| e.to_string()).as_deref(), Some("role with oidc role_type is not allowed"));
}

#[tokio::test]
async fn a_config_without_keys_is_refused() {
    let token = rsa().sign(&claims()).expect("sign");
    let err = check_token(&JwtConfig::default(), &role(), &token).await.err();
    assert_eq!(
        err.map(|e| e.to_string()).as_deref(),
        Some("error configuring token validator: unsupported config type")
    );
}

#[tokio::test]
async fn the_cache_follows_config_changes() {
    let (a, b) = (rsa(), TestKey::ed25519("b").expect("b"));
    let cache = JwksCache::new();
    let token = b.sign(&claims()).expect("sign");
    assert!(verify(&cache, &static_config(&a), &role(), &token, NOW).await.is_err());
    assert!(verify(&cache, &static_config(&b), &role(), &token, NOW).await.is_ok());
}

fn assert_send_sync<T: Send + Sync>() {}

#[test]
fn the_cache_can_be_shared() {
    assert_send_sync::<JwksCache>();
    assert_send_sync::<Arc<KeySet>>();
}

fn remote_claims(issuer: &TestIssuer) -> Value {
    with(claims(), json!({"iss": issuer.url}))
}

#[tokio::test]
async fn jwks_keys_are_fetched_again_when_rotated() {
    let mut issuer = TestIssuer::start().expect("issuer");
    let config = JwtConfig { jwks_url: issuer.jwks_url(), bound_issuer: issuer.url.clone(), ..JwtConfig::default() };
    // The interval is long enough that the "too soon" checks hold on a busy CI machine,
    // and the keys of the rotations are made before the clock matters.
    let interval = Duration::from_secs(2);
    let cache = JwksCache::with_refetch_interval(interval);
    let (key_2, key_3) = (TestKey::rsa("key-2").expect("key 2"), TestKey::rsa("key-3").expect("key 3"));
    let first = issuer.sign(&remote_claims(&issuer)).expect("sign");
    assert!(verify(&cache, &config, &role(), &first, NOW).await.is_ok());
    assert!(verify(&cache, &config, &role(), &first, NOW).await.is_ok());
    assert_eq!(issuer.jwks_fetches(), 1, "the second login used the cached keys");
    let keys = cache.keys(&config, None).await.expect("keys");
    assert_eq!((keys.is_remote(), keys.kids()), (true, vec!["key-1"]));

    issuer.rotate_to(key_2);
    tokio::time::sleep(interval + Duration::from_millis(50)).await;
    let second = issuer.sign(&remote_claims(&issuer)).expect("sign");
    assert!(verify(&cache, &config, &role(), &second, NOW).await.is_ok(), "the new kid made the cache fetch again");
    assert_eq!(issuer.jwks_fetches(), 2);

    // The old key is gone; asking again so soon does not fetch.
    let err = verify(&cache, &config, &role(), &first, NOW).await.err();
    assert_eq!(
        err.map(|e| e.to_string()).as_deref(),
        Some("error validating token: error verifying token signature: failed to verify id token signature")
    );
    assert_eq!(issuer.jwks_fetches(), 2, "refetches are rate-limited");

    // A rotation within the interval is seen once it has passed.
    issuer.rotate_to(key_3);
    let third = issuer.sign(&remote_claims(&issuer)).expect("sign");
    assert!(verify(&cache, &config, &role(), &third, NOW).await.is_err());
    tokio::time::sleep(interval + Duration::from_millis(50)).await;
    assert!(verify(&cache, &config, &role(), &third, NOW).await.is_ok());
    assert_eq!(issuer.jwks_fetches(), 3);
}

#[tokio::test]
async fn a_token_without_kid_refetches_after_a_failure() {
    let mut issuer = TestIssuer::start().expect("issuer");
    let config = JwtConfig { jwks_url: issuer.jwks_url(), ..JwtConfig::default() };
    let cache = JwksCache::with_refetch_interval(Duration::from_millis(100));
    let no_kid = |issuer: &TestIssuer| {
        issuer.key().sign_with_header(&Header::new(Algorithm::RS256), &remote_claims(issuer)).expect("sign")
    };
    assert!(verify(&cache, &config, &role(), &no_kid(&issuer), NOW).await.is_ok());
    issuer.rotate().expect("rotate");
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(verify(&cache, &config, &role(), &no_kid(&issuer), NOW).await.is_ok());
    assert_eq!(issuer.jwks_fetches(), 2);
}

#[tokio::test]
async fn oidc_discovery_finds_the_jwks() {
    let issuer = TestIssuer::start().expect("issuer");
    let config =
        JwtConfig { oidc_discovery_url: issuer.url.clone(), bound_issuer: issuer.url.clone(), ..JwtConfig::default() };
    let cache = JwksCache::new();
    let token = issuer.sign(&remote_claims(&issuer)).expect("sign");
    assert_eq!(verify(&cache, &config, &role(), &token, NOW).await.map(|v| v.alias_name), Ok("alice".to_owned()));
    assert!(verify(&cache, &config, &role(), &token, NOW).await.is_ok());
    assert_eq!((issuer.discovery_fetches(), issuer.jwks_fetches()), (1, 1));

    // The discovery document must name the configured URL as its issuer.
    let slashed = JwtConfig { oidc_discovery_url: format!("{}/", issuer.url), ..config };
    let err = verify(&JwksCache::new(), &slashed, &role(), &token, NOW).await.err();
    let expected = format!(
        "error configuring token validator: keyset configuration error: issuer did not match the returned issuer, expected \"{}/\" got \"{}\"",
        issuer.url, issuer.url
    );
    assert_eq!(err.map(|e| e.to_string()), Some(expected));
}

#[tokio::test]
async fn unreachable_or_broken_key_sources_are_errors() {
    let token = rsa().sign(&claims()).expect("sign");
    let gone = JwtConfig { jwks_url: "http://127.0.0.1:1/jwks".into(), ..JwtConfig::default() };
    let err = check_token(&gone, &role(), &token).await.err();
    assert!(matches!(&err, Some(JwtError::Signature(m)) if m.starts_with("fetching keys ")), "{err:?}");
    let issuer = TestIssuer::start().expect("issuer");
    let not_found = JwtConfig { jwks_url: format!("{}/nothing", issuer.url), ..JwtConfig::default() };
    let err = check_token(&not_found, &role(), &token).await.err();
    assert!(matches!(&err, Some(JwtError::Signature(m)) if m.contains("404")), "{err:?}");
    let bad_ca = JwtConfig { jwks_url: issuer.jwks_url(), jwks_ca_pem: "not a pem".into(), ..JwtConfig::default() };
    let err = check_token(&bad_ca, &role(), &token).await.err();
    assert!(matches!(&err, Some(JwtError::Signature(m)) if m.contains("could not parse CA PEM")), "{err:?}");
    let discovery_gone = JwtConfig { oidc_discovery_url: "http://127.0.0.1:1".into(), ..JwtConfig::default() };
    let err = check_token(&discovery_gone, &role(), &token).await.err();
    assert!(matches!(&err, Some(JwtError::Config(m)) if m.starts_with("keyset configuration error: ")), "{err:?}");
}

#[test]
fn public_keys_are_checked_as_a_config_write_does() {
    let key = TestKey::ed25519("k").expect("key");
    assert_eq!(check_public_key_pem(key.public_key_pem()), Ok(()));
    assert!(check_public_key_pem("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n").is_err());
    assert!(check_public_key_pem("").is_err());
}
