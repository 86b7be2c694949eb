//! JWTs for tests: signing keys of each kind Vault's `jwt` method accepts ([`TestKey`]),
//! and an OIDC provider on a loopback port ([`TestIssuer`]) that serves its discovery
//! document and JWKS and can rotate its key.

use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::{Context, Result};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::fake_http::{Handler, Reply, Request, Server};

/// A signing key with its public halves (PEM and JWK).
pub struct TestKey {
    pair: rcgen::KeyPair,
    kid: String,
    alg: Algorithm,
    encoding: EncodingKey,
    public_pem: String,
    jwk: Value,
}

impl TestKey {
    /// An RSA 2048 key for RS256.
    pub fn rsa(kid: &str) -> Result<TestKey> {
        TestKey::generate(kid, &rcgen::PKCS_RSA_SHA256, Algorithm::RS256)
    }

    /// An EC P-256 key for ES256.
    pub fn ec_p256(kid: &str) -> Result<TestKey> {
        TestKey::generate(kid, &rcgen::PKCS_ECDSA_P256_SHA256, Algorithm::ES256)
    }

    /// An EC P-384 key for ES384.
    pub fn ec_p384(kid: &str) -> Result<TestKey> {
        TestKey::generate(kid, &rcgen::PKCS_ECDSA_P384_SHA384, Algorithm::ES384)
    }

    /// An Ed25519 key for EdDSA.
    pub fn ed25519(kid: &str) -> Result<TestKey> {
        TestKey::generate(kid, &rcgen::PKCS_ED25519, Algorithm::EdDSA)
    }

    fn generate(kid: &str, kind: &'static rcgen::SignatureAlgorithm, alg: Algorithm) -> Result<TestKey> {
        let pair = rcgen::KeyPair::generate_for(kind).context("generate a key")?;
        let private_pem = pair.serialize_pem();
        let encoding = match alg {
            Algorithm::RS256 => EncodingKey::from_rsa_pem(private_pem.as_bytes()),
            Algorithm::EdDSA => EncodingKey::from_ed_pem(private_pem.as_bytes()),
            _ => EncodingKey::from_ec_pem(private_pem.as_bytes()),
        }
        .context("load the generated key")?;
        let mut jwk = match alg {
            // jsonwebtoken derives Ed25519 JWKs from PKCS#8 v1 keys only; aws-lc-rs makes v2.
            Algorithm::EdDSA => {
                json!({"kty": "OKP", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode(pair.public_key_raw())})
            }
            _ => serde_json::to_value(Jwk::from_encoding_key(&encoding, alg)?)?,
        };
        jwk["alg"] = json!(format!("{alg:?}"));
        jwk["kid"] = json!(kid);
        jwk["use"] = json!("sig");
        let public_pem = pair.public_key_pem();
        Ok(TestKey { pair, kid: kid.to_owned(), alg, encoding, public_pem, jwk })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// The public key as a PEM `PUBLIC KEY` (for `jwt_validation_pubkeys`, `pem_keys`).
    pub fn public_key_pem(&self) -> &str {
        &self.public_pem
    }

    /// A self-signed certificate of the public key, as PEM (Vault also takes these as keys).
    pub fn certificate_pem(&self) -> Result<String> {
        let params = rcgen::CertificateParams::new(vec!["issuer.test".to_owned()])?;
        Ok(params.self_signed(&self.pair)?.pem())
    }

    /// The public key as a JWK, with `kid`, `alg` and `use`.
    pub fn jwk(&self) -> &Value {
        &self.jwk
    }

    /// A compact JWS of `claims`, with this key's algorithm and `kid` in the header.
    pub fn sign(&self, claims: &Value) -> Result<String> {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        self.sign_with_header(&header, claims)
    }

    /// A compact JWS of `claims` under `header` (whose `alg` must suit this key).
    pub fn sign_with_header(&self, header: &Header, claims: &Value) -> Result<String> {
        Ok(jsonwebtoken::encode(header, claims, &self.encoding)?)
    }
}

/// What the issuer's server serves, and what it was asked.
struct Published {
    issuer: String,
    keys: Vec<Value>,
    jwks_fetches: usize,
    discovery_fetches: usize,
}

/// An OIDC provider on `http://127.0.0.1:<port>`: `/.well-known/openid-configuration`
/// (with `issuer` its URL and `jwks_uri` its `/jwks`) and `/jwks` with its current key.
/// Dropping it stops it.
pub struct TestIssuer {
    /// The issuer URL (no trailing slash): the `oidc_discovery_url` and the `iss` to expect.
    pub url: String,
    key: TestKey,
    rotations: u32,
    published: Arc<Mutex<Published>>,
    _server: Server,
}

fn lock(m: &Mutex<Published>) -> MutexGuard<'_, Published> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl TestIssuer {
    /// Starts an issuer with an RSA key of `kid` "key-1".
    pub fn start() -> Result<TestIssuer> {
        let key = TestKey::rsa("key-1")?;
        let published = Arc::new(Mutex::new(Published {
            issuer: String::new(),
            keys: vec![key.jwk().clone()],
            jwks_fetches: 0,
            discovery_fetches: 0,
        }));
        let state = published.clone();
        let handler: Handler = Arc::new(move |request: Request| {
            let mut p = lock(&state);
            match (request.method.as_str(), request.path.as_str()) {
                ("GET", "/.well-known/openid-configuration") => {
                    p.discovery_fetches += 1;
                    Reply::json(
                        200,
                        json!({
                            "issuer": p.issuer,
                            "jwks_uri": format!("{}/jwks", p.issuer),
                            "id_token_signing_alg_values_supported": ["RS256"],
                            "response_types_supported": ["id_token"],
                            "subject_types_supported": ["public"],
                        }),
                    )
                }
                ("GET", "/jwks") => {
                    p.jwks_fetches += 1;
                    Reply::json(200, json!({ "keys": p.keys }))
                }
                _ => Reply::json(404, json!({ "error": "not found" })),
            }
        });
        let server = Server::start(None, handler)?;
        let url = format!("http://127.0.0.1:{}", server.port);
        lock(&published).issuer = url.clone();
        Ok(TestIssuer { url, key, rotations: 0, published, _server: server })
    }

    /// The JWKS URL (for `jwks_url`).
    pub fn jwks_url(&self) -> String {
        format!("{}/jwks", self.url)
    }

    /// `claims` signed with the current key (whose `kid` the header names).
    pub fn sign(&self, claims: &Value) -> Result<String> {
        self.key.sign(claims)
    }

    /// The current key.
    pub fn key(&self) -> &TestKey {
        &self.key
    }

    /// The current public key as PEM.
    pub fn public_key_pem(&self) -> String {
        self.key.public_key_pem().to_owned()
    }

    /// Replaces the key with a new one (a new `kid`): from now on the JWKS lists only it,
    /// so tokens of the old key no longer verify once a verifier fetches again.
    pub fn rotate(&mut self) -> Result<()> {
        let next = TestKey::rsa(&format!("key-{}", self.rotations + 2))?;
        self.rotate_to(next);
        Ok(())
    }

    /// Like [`TestIssuer::rotate`] with a key made beforehand, for tests that time the
    /// rotation (an RSA key takes a while to generate on a busy machine).
    pub fn rotate_to(&mut self, key: TestKey) {
        self.rotations += 1;
        self.key = key;
        lock(&self.published).keys = vec![self.key.jwk().clone()];
    }

    /// How many times the JWKS was fetched.
    pub fn jwks_fetches(&self) -> usize {
        lock(&self.published).jwks_fetches
    }

    /// How many times the discovery document was fetched.
    pub fn discovery_fetches(&self) -> usize {
        lock(&self.published).discovery_fetches
    }
}
