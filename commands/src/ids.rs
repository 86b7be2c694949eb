//! Identifiers in Vault's formats: service tokens `s.` + 24 base62 characters, accessors
//! of 24 base62 characters, UUIDs, and mount accessors `<type>_<8 hex>`.

use crate::{Env, Rejection};

const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// `n` base62 characters, uniformly drawn (rejection sampling avoids modulo bias).
fn base62(env: &dyn Env, n: usize) -> Result<String, Rejection> {
    let mut out = String::with_capacity(n);
    while out.len() < n {
        let mut buf = [0u8; 32];
        env.random(&mut buf)?;
        for b in buf {
            // 248 = 4 × 62: bytes at or above it would favour the first characters.
            if b < 248 && out.len() < n {
                out.push(char::from(BASE62[usize::from(b % 62)]));
            }
        }
    }
    Ok(out)
}

pub fn new_token_id(env: &dyn Env) -> Result<String, Rejection> {
    Ok(format!("s.{}", base62(env, 24)?))
}

pub fn new_accessor(env: &dyn Env) -> Result<String, Rejection> {
    base62(env, 24)
}

/// A random (version 4) UUID in its usual text form.
pub fn new_uuid(env: &dyn Env) -> Result<String, Rejection> {
    let mut b = [0u8; 16];
    env.random(&mut b)?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    Ok(format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..]))
}

/// A mount accessor: `kv_1a2b3c4d`, `auth_token_1a2b3c4d`.
pub fn mount_accessor(env: &dyn Env, prefix: &str) -> Result<String, Rejection> {
    let mut b = [0u8; 4];
    env.random(&mut b)?;
    Ok(format!("{prefix}_{}", hex::encode(b)))
}
