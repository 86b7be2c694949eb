//! Tests of Kubernetes logins against the fake API server of the e2e crate (HTTPS under its
//! own CA, real TokenReview semantics): projected and legacy tokens, bindings, audiences,
//! forged tokens, reviewer rules and TLS trust.

use e2e::jwt::TestKey;
use e2e::k8s::FakeKubernetes;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use super::*;

fn role() -> KubernetesRole {
    KubernetesRole {
        name: "app".into(),
        bound_service_account_names: vec!["app-sa".into()],
        bound_service_account_namespaces: vec!["prod".into()],
        ..KubernetesRole::default()
    }
}

fn config(fake: &FakeKubernetes) -> KubernetesConfig {
    KubernetesConfig {
        kubernetes_host: fake.url.clone(),
        kubernetes_ca_cert: fake.ca_pem.clone(),
        pem_keys: vec![fake.public_key_pem()],
        disable_local_ca_jwt: true,
        ..KubernetesConfig::default()
    }
}

fn start() -> FakeKubernetes {
    FakeKubernetes::start().expect("fake kubernetes")
}

/// `review`, checking that no error shows the login or reviewer JWT.
async fn login(
    config: &KubernetesConfig,
    reviewer: Option<&str>,
    jwt: &str,
    role: &KubernetesRole,
) -> Result<ServiceAccount, K8sError> {
    let result = review(config, reviewer, jwt, role).await;
    if let Err(e) = &result {
        let shown = format!("{e} {e:?}");
        for secret in [Some(jwt), reviewer].into_iter().flatten().filter(|s| s.len() > 8) {
            assert!(!shown.contains(secret), "an error shows a JWT: {shown}");
        }
    }
    result
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// A projected-token shape signed by a key the API server does not know.
fn forged(key: &TestKey, changes: Value) -> String {
    let mut claims = json!({
        "aud": [FakeKubernetes::ISSUER],
        "exp": now() + 600,
        "iat": now(),
        "iss": FakeKubernetes::ISSUER,
        "kubernetes.io": {"namespace": "prod", "serviceaccount": {"name": "app-sa", "uid": "0000"}},
        "sub": "system:serviceaccount:prod:app-sa",
    });
    if let (Some(c), Value::Object(changes)) = (claims.as_object_mut(), changes) {
        c.extend(changes);
    }
    key.sign(&claims).expect("sign")
}

#[tokio::test]
async fn a_projected_token_logs_in() {
    let fake = start();
    let reviewer = fake.reviewer_token().expect("reviewer");
    let jwt = fake.issue_token("prod", "app-sa").expect("token");
    let account = login(&config(&fake), Some(&reviewer), &jwt, &role()).await.expect("login");
    let uid = fake.uid("prod", "app-sa");
    assert_eq!(
        account,
        ServiceAccount {
            name: "app-sa".into(),
            namespace: "prod".into(),
            uid: uid.clone(),
            secret_name: String::new(),
            alias_name: uid,
        }
    );
    assert_eq!(fake.reviews(), 1);
}

#[tokio::test]
async fn a_legacy_token_logs_in() {
    let fake = start();
    let reviewer = fake.reviewer_token().expect("reviewer");
    let jwt = fake.issue_legacy_token("prod", "app-sa").expect("token");
    let by_name = KubernetesRole { alias_name_source: "serviceaccount_name".into(), ..role() };
    let account = login(&config(&fake), Some(&reviewer), &jwt, &by_name).await.expect("login");
    assert_eq!((account.alias_name.as_str(), account.secret_name.as_str()), ("prod/app-sa", "app-sa-token-x7k2p"));
    assert_eq!(account.uid, fake.uid("prod", "app-sa"));
}

#[tokio::test]
async fn without_a_reviewer_the_login_jwt_reviews_itself() {
    let fake = start();
    let jwt = fake.issue_token("prod", "app-sa").expect("token");
    let err = login(&config(&fake), None, &jwt, &role()).await.err();
    assert!(matches!(&err, Some(K8sError::PermissionDenied { .. })), "{err:?}");
    assert_eq!(err.map(|e| (e.status(), e.to_string())), Some((403, "permission denied".to_owned())));
    fake.grant_review("prod", "app-sa");
    assert!(login(&config(&fake), None, &jwt, &role()).await.is_ok());
    assert!(login(&config(&fake), Some(""), &jwt, &role()).await.is_ok(), "an empty reviewer JWT is none");
}

#[tokio::test]
async fn names_and_namespaces_are_bound_before_any_review() {
    let fake = start();
    let reviewer = fake.reviewer_token().expect("reviewer");
    let config = config(&fake);
    let other_ns = fake.issue_token("dev", "app-sa").expect("token");
    let err = login(&config, Some(&reviewer), &other_ns, &role()).await.err();
    assert_eq!(err.map(|e| (e.status(), e.to_string())), Some((403, "namespace not authorized".to_owned())));
    let other_name = fake.issue_token("prod", "web").expect("token");
    let err = login(&config, Some(&reviewer), &other_name, &role()).await.err();
    assert_eq!(err.map(|e| (e.status(), e.to_string())), Some((403, "service account name not authorized".to_owned())));
    assert_eq!(fake.reviews(), 0);

    let globbed = KubernetesRole {
        bound_service_account_names: vec!["web".into(), "app-*".into()],
        bound_service_account_namespaces: vec!["pr*".into()],
        ..role()
    };
    assert!(login(&config, Some(&reviewer), &fake.issue_token("prod", "app-sa").expect("t"), &globbed).await.is_ok());
    assert!(login(&config, Some(&reviewer), &other_name, &globbed).await.is_ok());
    let any = KubernetesRole {
        bound_service_account_names: vec!["*".into()],
        bound_service_account_namespaces: vec!["*".into()],
        ..role()
    };
    assert!(login(&config, Some(&reviewer), &other_ns, &any).await.is_ok());
    let none = KubernetesRole { bound_service_account_names: vec![], ..role() };
    assert_eq!(login(&config, Some(&reviewer), &other_ns, &none).await.err(), Some(K8sError::NameNotAuthorized));
}

#[tokio::test]
async fn the_role_audience_must_be_in_the_token_and_the_review() {
    let fake = start();
    let reviewer = fake.reviewer_token().expect("reviewer");
    let config = config(&fake);
    let bao = KubernetesRole { audience: "bao".into(), ..role() };
    let for_bao = fake.issue_token_for("prod", "app-sa", &["bao", "other"]).expect("token");
    assert!(login(&config, Some(&reviewer), &for_bao, &bao).await.is_ok());
    let for_api = fake.issue_token("prod", "app-sa").expect("token");
    let err = login(&config, Some(&reviewer), &for_api, &bao).await.err();
    assert_eq!(
        err.map(|e| (e.status(), e.to_string())),
        Some((403, "invalid audience (aud) claim: audience claim does not match any expected audience".to_owned()))
    );
    // Without a role audience, the review asks for the token's own audiences.
    assert!(login(&config, Some(&reviewer), &for_bao, &role()).await.is_ok());
}

#[tokio::test]
async fn a_string_audience_is_a_decoding_error_as_in_openbao() {
    let fake = start();
    let key = TestKey::rsa("k").expect("key");
    let unsigned_config = KubernetesConfig { pem_keys: vec![], ..config(&fake) };
    let jwt = forged(&key, json!({"aud": "bao"}));
    let err = login(&unsigned_config, None, &jwt, &KubernetesRole { audience: "bao".into(), ..role() }).await.err();
    assert_eq!(err.as_ref().map(K8sError::status), Some(500));
    assert_eq!(
        err.map(|e| e.to_string()),
        Some(
            "decoding failed due to the following error(s):\n\n'aud' source data must be an array or slice, got string"
                .to_owned()
        )
    );
    let jwt = forged(&key, json!({"kubernetes.io": {"namespace": 5}}));
    let err = login(&unsigned_config, None, &jwt, &role()).await.err();
    assert!(matches!(&err, Some(K8sError::Decode(m)) if m.contains("kubernetes.io.namespace")), "{err:?}");
    assert_eq!(fake.reviews(), 0);
}

#[tokio::test]
async fn forged_tokens_are_refused() {
    let fake = start();
    let reviewer = fake.reviewer_token().expect("reviewer");
    let key = TestKey::rsa("k").expect("key");
    let jwt = forged(
        &key,
        json!({"kubernetes.io": {"namespace": "prod", "serviceaccount": {"name": "app-sa", "uid": fake.uid("prod", "app-sa")}}}),
    );
    // With pem_keys: refused by the signature, before any review.
    let err = login(&config(&fake), Some(&reviewer), &jwt, &role()).await.err();
    assert!(matches!(&err, Some(K8sError::PermissionDenied { reason }) if reason.contains("no known key")), "{err:?}");
    assert_eq!(fake.reviews(), 0);
    // Without: the API server does not know it.
    let unsigned_config = KubernetesConfig { pem_keys: vec![], ..config(&fake) };
    let err = login(&unsigned_config, Some(&reviewer), &jwt, &role()).await.err();
    assert!(
        matches!(&err, Some(K8sError::PermissionDenied { reason }) if reason.starts_with("lookup failed")),
        "{err:?}"
    );
    assert_eq!(fake.reviews(), 1);

    // alg none and HMAC.
    let claims = json!({"kubernetes.io": {"namespace": "prod", "serviceaccount": {"name": "app-sa", "uid": "u"}}});
    let b64 = |v: &Value| base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, v.to_string());
    let none = format!("{}.{}.", b64(&json!({"alg": "none"})), b64(&claims));
    let err = login(&unsigned_config, None, &none, &role()).await.err();
    assert_eq!(
        err.map(|e| e.to_string()),
        Some("invalid algorithm (alg) header parameter: token must be signed".to_owned())
    );
    let hs =
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(b"s")).expect("hs");
    let err = login(&unsigned_config, None, &hs, &role()).await.err();
    assert_eq!(
        err.map(|e| e.to_string()),
        Some("invalid algorithm (alg) header parameter: token signed with unexpected algorithm".to_owned())
    );
    let err = login(&config(&fake), None, &hs, &role()).await.err();
    assert!(matches!(err, Some(K8sError::PermissionDenied { .. })));
    // EdDSA is not among the service-account algorithms.
    let ed = TestKey::ed25519("e").expect("ed");
    let err = login(&unsigned_config, None, &forged(&ed, json!({})), &role()).await.err();
    assert_eq!(err, Some(K8sError::Algorithm("token signed with unexpected algorithm")));

    // Garbage.
    for jwt in ["", "x", "a.b.c", "....", "e30.e30.e30"] {
        let err = login(&config(&fake), Some(&reviewer), jwt, &role()).await.err();
        assert!(matches!(err, Some(K8sError::PermissionDenied { .. })), "{jwt:?}: {err:?}");
    }
}

#[tokio::test]
async fn times_and_issuer_are_checked() {
    let fake = start();
    let key = TestKey::rsa("k").expect("key");
    let unsigned_config = KubernetesConfig { pem_keys: vec![], ..config(&fake) };
    let expired = forged(&key, json!({"exp": now() - 120}));
    let err = login(&unsigned_config, None, &expired, &role()).await.err();
    assert_eq!(
        err.map(|e| (e.status(), e.to_string())),
        Some((403, "invalid expiration time (exp) claim: token is expired".to_owned()))
    );
    let early = forged(&key, json!({"nbf": now() + 600}));
    assert_eq!(
        login(&unsigned_config, None, &early, &role()).await.err(),
        Some(K8sError::Time(TimeError::NotYetValid))
    );

    let reviewer = fake.reviewer_token().expect("reviewer");
    let jwt = fake.issue_token("prod", "app-sa").expect("token");
    let issuer = KubernetesConfig { issuer: "https://elsewhere".into(), ..config(&fake) };
    assert_eq!(login(&issuer, Some(&reviewer), &jwt, &role()).await.err(), Some(K8sError::Issuer));
    let unchecked = KubernetesConfig { disable_iss_validation: true, ..issuer };
    assert!(login(&unchecked, Some(&reviewer), &jwt, &role()).await.is_ok());
    let right = KubernetesConfig { issuer: FakeKubernetes::ISSUER.into(), ..config(&fake) };
    assert!(login(&right, Some(&reviewer), &jwt, &role()).await.is_ok());
}

#[tokio::test]
async fn a_deleted_account_is_refused() {
    let fake = start();
    let reviewer = fake.reviewer_token().expect("reviewer");
    let jwt = fake.issue_token("prod", "app-sa").expect("token");
    fake.delete_service_account("prod", "app-sa");
    let err = login(&config(&fake), Some(&reviewer), &jwt, &role()).await.err();
    assert!(matches!(err, Some(K8sError::PermissionDenied { .. })), "{err:?}");
    // A deleted reviewer: the API server answers 401.
    let jwt = fake.issue_token("prod", "app-sa").expect("token");
    fake.delete_service_account(FakeKubernetes::REVIEWER.0, FakeKubernetes::REVIEWER.1);
    let err = login(&config(&fake), Some(&reviewer), &jwt, &role()).await.err();
    assert!(
        matches!(&err, Some(K8sError::PermissionDenied { reason }) if reason.contains("service account unauthorized")),
        "{err:?}"
    );
}

#[tokio::test]
async fn only_the_configured_ca_is_trusted() {
    let (fake, other) = (start(), start());
    let reviewer = fake.reviewer_token().expect("reviewer");
    let jwt = fake.issue_token("prod", "app-sa").expect("token");
    for ca in [other.ca_pem.clone(), String::new()] {
        let config = KubernetesConfig { kubernetes_ca_cert: ca, ..config(&fake) };
        let err = login(&config, Some(&reviewer), &jwt, &role()).await.err();
        assert!(matches!(err, Some(K8sError::PermissionDenied { .. })), "{err:?}");
    }
    let unreachable = KubernetesConfig { kubernetes_host: "https://127.0.0.1:1".into(), ..config(&fake) };
    assert!(matches!(
        login(&unreachable, Some(&reviewer), &jwt, &role()).await,
        Err(K8sError::PermissionDenied { .. })
    ));
    assert_eq!(fake.reviews(), 0);
    // A trailing slash on the host is fine.
    let slashed = KubernetesConfig { kubernetes_host: format!("{}/", fake.url), ..config(&fake) };
    assert!(login(&slashed, Some(&reviewer), &jwt, &role()).await.is_ok());
}

#[tokio::test]
async fn alias_names_follow_the_role() {
    let fake = start();
    let reviewer = fake.reviewer_token().expect("reviewer");
    let jwt = fake.issue_token("prod", "app-sa").expect("token");
    let by_name = KubernetesRole { alias_name_source: "serviceaccount_name".into(), ..role() };
    let account = login(&config(&fake), Some(&reviewer), &jwt, &by_name).await.expect("login");
    assert_eq!(account.alias_name, "prod/app-sa");
    let unknown = KubernetesRole { alias_name_source: "pod".into(), ..role() };
    let err = login(&config(&fake), Some(&reviewer), &jwt, &unknown).await.err();
    assert_eq!(err.map(|e| (e.status(), e.to_string())), Some((500, "unknown alias_name_source \"pod\"".to_owned())));
    // A token without a uid, by uid.
    let key = TestKey::rsa("k").expect("key");
    let unsigned_config = KubernetesConfig { pem_keys: vec![], ..config(&fake) };
    let no_uid = forged(&key, json!({"kubernetes.io": {"namespace": "prod", "serviceaccount": {"name": "app-sa"}}}));
    let err = login(&unsigned_config, None, &no_uid, &role()).await.err();
    assert_eq!(err.map(|e| (e.status(), e.to_string())), Some((500, "could not parse UID from claims".to_owned())));
}

#[test]
fn secrets_are_scrubbed_from_server_text() {
    assert_eq!(scrub("bad token abc.def.ghi here", &["abc.def.ghi", ""]), "bad token [redacted] here");
}
