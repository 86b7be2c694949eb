//! The cluster listener's mutual TLS: who may speak Raft to a node, and join it.
//!
//! Every node derives the same **cluster CA** from a 32-byte secret that only unsealed nodes
//! hold (the server derives it from the root key): an Ed25519 key whose seed is the secret,
//! and a certificate for it that every node builds alike. At unseal a node makes a fresh
//! **leaf** key, certified by that CA for the name [`PEER_NAME`], and uses it both ways:
//! as the listener's certificate and as its client certificate. A connection is accepted
//! only from a peer whose certificate chains to the CA, and a node talks only to such
//! peers. TLS 1.3 only.
//!
//! So nothing is stored: a sealed node has no credentials, refuses every cluster
//! connection and cannot reach its peers; the CA's key is dropped once the leaf is made.

use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ED25519,
};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use zeroize::Zeroizing;

use crate::ClusterError;

/// The name in every node's certificate, checked instead of the address dialed (nodes are
/// reached by IP address or by any name the operator chose for `cluster_addr`).
pub const PEER_NAME: &str = "cairn-cluster";

/// The CA's subject: every node builds the same, so a leaf made by one chains to the CA
/// certificate built by another.
const CA_NAME: &str = "cairn cluster CA";

/// PKCS#8 v1 wrapping of an Ed25519 seed (RFC 8410): this prefix, then the 32 bytes.
const ED25519_PKCS8_PREFIX: [u8; 16] =
    [0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];

/// What an unsealed node speaks the cluster protocol with.
pub struct Credentials {
    pub(crate) server: Arc<ServerConfig>,
    /// HTTPS client with this node's certificate; its connection pool dies with it.
    pub(crate) client: reqwest::Client,
    /// Which secret these come from (its BLAKE3 hash), to keep them when it is given again.
    pub(crate) secret_id: [u8; 32],
}

fn tls_err(what: &str, e: impl std::fmt::Display) -> ClusterError {
    ClusterError::Config(format!("cluster TLS, {what}: {e}"))
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The CA key and its certificate, from the secret.
fn cluster_ca(secret: &[u8; 32]) -> Result<(CertificateParams, KeyPair, CertificateDer<'static>), ClusterError> {
    let mut pkcs8 = Zeroizing::new(Vec::with_capacity(48));
    pkcs8.extend_from_slice(&ED25519_PKCS8_PREFIX);
    pkcs8.extend_from_slice(secret);
    let key = KeyPair::from_pkcs8_der_and_sign_algo(&PrivatePkcs8KeyDer::from(pkcs8.as_slice()), &PKCS_ED25519)
        .map_err(|e| tls_err("CA key", e))?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_NAME);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
    let cert = params.self_signed(&key).map_err(|e| tls_err("CA certificate", e))?;
    Ok((params, key, cert.der().clone()))
}

/// A fresh leaf key, certified by the CA for [`PEER_NAME`] (the node id as its common name).
fn leaf(
    node_id: &str,
    ca_params: CertificateParams,
    ca_key: KeyPair,
) -> Result<(CertificateDer<'static>, PrivateKeyDer<'static>), ClusterError> {
    let key = KeyPair::generate_for(&PKCS_ED25519).map_err(|e| tls_err("leaf key", e))?;
    let mut params = CertificateParams::new(vec![PEER_NAME.to_string()]).map_err(|e| tls_err("leaf name", e))?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, node_id);
    params.distinguished_name = dn;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    let issuer = Issuer::new(ca_params, ca_key);
    let cert = params.signed_by(&key, &issuer).map_err(|e| tls_err("leaf certificate", e))?;
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    Ok((cert.der().clone(), der))
}

impl Credentials {
    /// This node's credentials: the CA from `secret`, a new leaf for `node_id`.
    pub fn derive(secret: &[u8; 32], node_id: &str) -> Result<Credentials, ClusterError> {
        let (ca_params, ca_key, ca_cert) = cluster_ca(secret)?;
        let (cert, key) = leaf(node_id, ca_params, ca_key)?;
        let mut roots = RootCertStore::empty();
        roots.add(ca_cert).map_err(|e| tls_err("CA as a root", e))?;
        let roots = Arc::new(roots);
        let provider = provider();

        let clients = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .map_err(|e| tls_err("client verifier", e))?;
        let server = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| tls_err("server", e))?
            .with_client_cert_verifier(clients)
            .with_single_cert(vec![cert.clone()], key.clone_key())
            .map_err(|e| tls_err("server certificate", e))?;

        let servers = rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
            .build()
            .map_err(|e| tls_err("server verifier", e))?;
        let peer_name = ServerName::try_from(PEER_NAME).map_err(|e| tls_err("peer name", e))?;
        let client = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| tls_err("client", e))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PeerVerifier { inner: servers, name: peer_name }))
            .with_client_auth_cert(vec![cert], key)
            .map_err(|e| tls_err("client certificate", e))?;
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(client)
            .connect_timeout(Duration::from_millis(500))
            .pool_idle_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| tls_err("HTTPS client", e))?;
        Ok(Credentials { server: Arc::new(server), client, secret_id: Credentials::secret_id(secret) })
    }

    /// What identifies `secret` without revealing it.
    pub(crate) fn secret_id(secret: &[u8; 32]) -> [u8; 32] {
        *blake3::keyed_hash(b"cairn cluster credentials id v1.", secret).as_bytes()
    }

    /// An HTTPS client that presents this node's certificate and trusts only the cluster's.
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }
}

/// rustls' WebPKI check of a peer's certificate, for [`PEER_NAME`] whatever address was
/// dialed. Nothing else differs from the standard verifier.
#[derive(Debug)]
struct PeerVerifier {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    name: ServerName<'static>,
}

impl ServerCertVerifier for PeerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _dialed: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner.verify_server_cert(end_entity, intermediates, &self.name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A leaf made by one node chains to the CA another builds from the same secret, and
    /// not to one built from another secret.
    #[test]
    fn leaves_chain_to_the_ca_of_the_same_secret_only() {
        let (params, key, _) = cluster_ca(&[7; 32]).expect("test");
        let (leaf_cert, _) = leaf("node1", params, key).expect("test");
        let now = UnixTime::now();
        let verifier_for = |secret: &[u8; 32]| {
            let (_, _, ca) = cluster_ca(secret).expect("test");
            let mut roots = RootCertStore::empty();
            roots.add(ca).expect("test");
            let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .expect("test");
            PeerVerifier { inner, name: ServerName::try_from(PEER_NAME).expect("test") }
        };
        let dialed = ServerName::try_from("127.0.0.1").expect("test");
        assert!(verifier_for(&[7; 32]).verify_server_cert(&leaf_cert, &[], &dialed, &[], now).is_ok());
        assert!(verifier_for(&[8; 32]).verify_server_cert(&leaf_cert, &[], &dialed, &[], now).is_err());
    }
}
