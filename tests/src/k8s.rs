//! A fake Kubernetes API server for the `kubernetes` auth method: HTTPS on a loopback port
//! under a CA of its own, issuing service-account tokens and answering TokenReviews the
//! way the real API server does.
//!
//! A TokenReview must come with a bearer token of a service account allowed to review
//! (the reviewer's, or one given [`FakeKubernetes::grant_review`]): an unknown bearer gets
//! 401, a known one without the grant 403, both as `Status` objects. The reviewed token is
//! authenticated when this server issued it, its account was not deleted since, it has
//! not expired, and it holds one of the audiences asked (the API server's own,
//! [`FakeKubernetes::ISSUER`], when none are asked; legacy tokens have only that one).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use serde_json::{Value, json};

use crate::fake_http::{self, Handler, Reply, Request, Server};
use crate::jwt::TestKey;

/// A token this server issued.
struct Issued {
    namespace: String,
    name: String,
    uid: String,
    audiences: Vec<String>,
    /// Unix seconds; `None` for legacy tokens, which do not expire.
    exp: Option<u64>,
}

#[derive(Default)]
struct Cluster {
    /// (namespace, name) → uid of the live service accounts.
    accounts: HashMap<(String, String), String>,
    tokens: HashMap<String, Issued>,
    reviewers: HashSet<(String, String)>,
    reviews: usize,
}

fn lock(m: &Mutex<Cluster>) -> MutexGuard<'_, Cluster> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Cluster {
    /// The uid of a live account, created on first use.
    fn uid(&mut self, namespace: &str, name: &str) -> String {
        self.accounts
            .entry((namespace.to_owned(), name.to_owned()))
            .or_insert_with(|| uuid::Uuid::new_v4().to_string())
            .clone()
    }

    /// The token's record when it would authenticate now.
    fn valid(&self, token: &str) -> Option<&Issued> {
        let issued = self.tokens.get(token)?;
        let live = self.accounts.get(&(issued.namespace.clone(), issued.name.clone())) == Some(&issued.uid);
        let fresh = issued.exp.is_none_or(|exp| now() < exp);
        (live && fresh).then_some(issued)
    }

    fn review(&mut self, request: &Request) -> Reply {
        if request.method != "POST" || request.path != "/apis/authentication.k8s.io/v1/tokenreviews" {
            return status(404, "NotFound", "the server could not find the requested resource");
        }
        self.reviews += 1;
        let Some(caller) = request.bearer.as_deref().and_then(|b| self.valid(b)) else {
            return status(401, "Unauthorized", "Unauthorized");
        };
        if !self.reviewers.contains(&(caller.namespace.clone(), caller.name.clone())) {
            let message = format!(
                "tokenreviews.authentication.k8s.io is forbidden: User \"system:serviceaccount:{}:{}\" cannot create resource \"tokenreviews\" in API group \"authentication.k8s.io\" at the cluster scope",
                caller.namespace, caller.name
            );
            return status(403, "Forbidden", &message);
        }
        let Ok(body) = serde_json::from_slice::<Value>(&request.body) else {
            return status(400, "BadRequest", "the request body is not JSON");
        };
        let token = body["spec"]["token"].as_str().unwrap_or_default();
        let asked: Vec<String> = match body["spec"]["audiences"].as_array() {
            Some(list) if !list.is_empty() => list.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
            _ => vec![FakeKubernetes::ISSUER.to_owned()],
        };
        let answer = |status: Value| {
            Reply::json(
                201,
                json!({"kind": "TokenReview", "apiVersion": "authentication.k8s.io/v1", "metadata": {"creationTimestamp": null}, "spec": {"audiences": body["spec"]["audiences"]}, "status": status}),
            )
        };
        let Some(issued) = self.valid(token) else {
            return answer(json!({"user": {}, "error": "[invalid bearer token, token lookup failed]"}));
        };
        let granted: Vec<&String> = asked.iter().filter(|a| issued.audiences.contains(a)).collect();
        if granted.is_empty() {
            return answer(
                json!({"user": {}, "error": "[invalid bearer token, token audiences are invalid for the target audiences]"}),
            );
        }
        answer(json!({
            "authenticated": true,
            "user": {
                "username": format!("system:serviceaccount:{}:{}", issued.namespace, issued.name),
                "uid": issued.uid,
                "groups": ["system:serviceaccounts", format!("system:serviceaccounts:{}", issued.namespace), "system:authenticated"],
            },
            "audiences": granted,
        }))
    }
}

/// A `Status` failure, as the API server answers errors.
fn status(code: u16, reason: &str, message: &str) -> Reply {
    Reply::json(
        code,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message, "reason": reason, "code": code}),
    )
}

/// The fake API server. Dropping it stops it.
pub struct FakeKubernetes {
    /// `https://127.0.0.1:<port>`: the `kubernetes_host`.
    pub url: String,
    /// The CA that signed the server's certificate: the `kubernetes_ca_cert`.
    pub ca_pem: String,
    key: TestKey,
    cluster: Arc<Mutex<Cluster>>,
    _server: Server,
}

impl FakeKubernetes {
    /// The issuer of projected tokens, and the API server's own audience.
    pub const ISSUER: &'static str = "https://kubernetes.default.svc.cluster.local";
    /// The service account of [`FakeKubernetes::reviewer_token`].
    pub const REVIEWER: (&'static str, &'static str) = ("kube-system", "token-reviewer");

    /// Starts the server with a new CA, serving certificate and token-signing key (RS256).
    pub fn start() -> Result<FakeKubernetes> {
        let ca_key = KeyPair::generate().context("generate the CA key")?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        ca_params.distinguished_name.push(DnType::CommonName, "cairn test kubernetes CA");
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let ca = Issuer::new(ca_params, ca_key);
        let server_key = KeyPair::generate().context("generate the server key")?;
        let mut server_params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?;
        server_params.distinguished_name.push(DnType::CommonName, "kube-apiserver");
        let server_cert = server_params.signed_by(&server_key, &ca)?;
        let tls = fake_http::tls_config(server_cert.der().clone(), server_key.serialize_der())?;

        let cluster = Arc::new(Mutex::new(Cluster::default()));
        lock(&cluster).reviewers.insert((Self::REVIEWER.0.to_owned(), Self::REVIEWER.1.to_owned()));
        let state = cluster.clone();
        let handler: Handler = Arc::new(move |request: Request| lock(&state).review(&request));
        let server = Server::start(Some(tls), handler)?;
        Ok(FakeKubernetes {
            url: format!("https://127.0.0.1:{}", server.port),
            ca_pem: ca_cert.pem(),
            key: TestKey::rsa("sa-key-1")?,
            cluster,
            _server: server,
        })
    }

    /// The public key the service-account tokens are signed with (for `pem_keys`).
    pub fn public_key_pem(&self) -> String {
        self.key.public_key_pem().to_owned()
    }

    /// The uid of the service account `namespace/name` (created on first use).
    pub fn uid(&self, namespace: &str, name: &str) -> String {
        lock(&self.cluster).uid(namespace, name)
    }

    /// A projected token for `namespace/name`, for the API server's audience, valid for an hour.
    pub fn issue_token(&self, namespace: &str, name: &str) -> Result<String> {
        self.issue_token_for(namespace, name, &[Self::ISSUER])
    }

    /// A projected token for `namespace/name` with these audiences, valid for an hour.
    pub fn issue_token_for(&self, namespace: &str, name: &str, audiences: &[&str]) -> Result<String> {
        let mut cluster = lock(&self.cluster);
        let uid = cluster.uid(namespace, name);
        let now = now();
        let exp = now + 3600;
        let token = self.key.sign(&json!({
            "aud": audiences,
            "exp": exp,
            "iat": now,
            "nbf": now,
            "iss": Self::ISSUER,
            "kubernetes.io": {"namespace": namespace, "serviceaccount": {"name": name, "uid": uid}},
            "sub": format!("system:serviceaccount:{namespace}:{name}"),
        }))?;
        let audiences = audiences.iter().map(|a| (*a).to_owned()).collect();
        let issued = Issued { namespace: namespace.to_owned(), name: name.to_owned(), uid, audiences, exp: Some(exp) };
        cluster.tokens.insert(token.clone(), issued);
        Ok(token)
    }

    /// A legacy (secret-based) token for `namespace/name`: no audience, no expiry, the
    /// `kubernetes.io/serviceaccount/...` claims.
    pub fn issue_legacy_token(&self, namespace: &str, name: &str) -> Result<String> {
        let mut cluster = lock(&self.cluster);
        let uid = cluster.uid(namespace, name);
        let token = self.key.sign(&json!({
            "iss": "kubernetes/serviceaccount",
            "kubernetes.io/serviceaccount/namespace": namespace,
            "kubernetes.io/serviceaccount/secret.name": format!("{name}-token-x7k2p"),
            "kubernetes.io/serviceaccount/service-account.name": name,
            "kubernetes.io/serviceaccount/service-account.uid": uid,
            "sub": format!("system:serviceaccount:{namespace}:{name}"),
        }))?;
        let issued = Issued {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            uid,
            audiences: vec![Self::ISSUER.to_owned()],
            exp: None,
        };
        cluster.tokens.insert(token.clone(), issued);
        Ok(token)
    }

    /// A token of the reviewer account, which may create TokenReviews (the
    /// `token_reviewer_jwt`).
    pub fn reviewer_token(&self) -> Result<String> {
        self.issue_token(Self::REVIEWER.0, Self::REVIEWER.1)
    }

    /// Lets `namespace/name` create TokenReviews (what `system:auth-delegator` grants), so
    /// its own tokens can review themselves when no reviewer JWT is configured.
    pub fn grant_review(&self, namespace: &str, name: &str) {
        lock(&self.cluster).reviewers.insert((namespace.to_owned(), name.to_owned()));
    }

    /// Deletes the service account: its tokens stop authenticating, and one created again
    /// under the same name gets a new uid.
    pub fn delete_service_account(&self, namespace: &str, name: &str) {
        lock(&self.cluster).accounts.remove(&(namespace.to_owned(), name.to_owned()));
    }

    /// How many TokenReview requests arrived.
    pub fn reviews(&self) -> usize {
        lock(&self.cluster).reviews
    }
}
