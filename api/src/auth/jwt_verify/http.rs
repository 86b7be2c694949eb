//! Outbound HTTPS for the login methods (JWKS, OIDC discovery, Kubernetes TokenReview):
//! reqwest on rustls with aws-lc-rs, a deadline on every call, a cap on response bodies,
//! and a configured CA bundle as the only trusted roots when one is given.

use std::time::Duration;

/// The deadline of one outbound call, connection included.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(10);
/// The largest response body read (a JWKS or a TokenReview is a few KiB).
pub(crate) const MAX_BODY_BYTES: usize = 1024 * 1024;

/// A client that trusts only `ca_pem` when it is not empty, and the platform's roots
/// otherwise. `follow_redirects: false` keeps a bearer token on the configured host.
pub(crate) fn client(ca_pem: &str, follow_redirects: bool) -> Result<reqwest::Client, String> {
    let mut builder =
        reqwest::Client::builder().timeout(TIMEOUT).connect_timeout(TIMEOUT).redirect(if follow_redirects {
            reqwest::redirect::Policy::limited(10)
        } else {
            reqwest::redirect::Policy::none()
        });
    if !ca_pem.trim().is_empty() {
        let certs = reqwest::Certificate::from_pem_bundle(ca_pem.as_bytes())
            .map_err(|_| "could not parse CA PEM value successfully".to_owned())?;
        if certs.is_empty() {
            return Err("could not parse CA PEM value successfully".to_owned());
        }
        builder = builder.tls_certs_only(certs);
    }
    builder.build().map_err(|e| describe(&e))
}

/// The body of `response`, refused past [`MAX_BODY_BYTES`].
pub(crate) async fn body(mut response: reqwest::Response) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| describe(&e))? {
        if out.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(format!("response body larger than {MAX_BODY_BYTES} bytes"));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// An error with its chain of causes, `outer: inner: …`.
pub(crate) fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
