//! Verification for the login methods other than tokens: JWT/OIDC and Kubernetes.

pub mod jwt_verify;
pub mod k8s_review;
