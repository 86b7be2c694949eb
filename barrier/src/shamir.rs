//! Shamir secret sharing of the unseal key (vsss-rs, GF(256)).
//!
//! A share is 33 bytes: the x coordinate, then 32 bytes of y (vsss-rs's layout; clients
//! treat shares as opaque hex or base64, FORMAT of the layout is ours to choose). Combining
//! refuses an x of 0 (a forged share at x = 0 *is* the secret), duplicate x values and
//! mixed lengths; a combination that is merely wrong is caught by the caller, whose
//! authenticated decryption of the root key fails.

use getrandom::SysRng;
use getrandom::rand_core::UnwrapErr;
use vsss_rs::Gf256;
use zeroize::Zeroizing;

/// Bytes in one share of a 32-byte key.
pub const SHARE_LEN: usize = 33;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShamirError {
    #[error("invalid seal configuration: shares must be at least one")]
    NoShares,
    #[error("invalid seal configuration: threshold cannot be larger than shares")]
    ThresholdTooLarge,
    #[error("invalid seal configuration: threshold must be at least one")]
    NoThreshold,
    #[error("invalid seal configuration: shares must be at most 255")]
    TooManyShares,
    #[error("invalid key: shares do not combine")]
    Combine,
    #[error("{given} key shares given, {needed} needed")]
    TooFewShares { given: usize, needed: usize },
}

/// Checks a seal configuration (1..=255 shares, 1..=shares threshold).
pub fn check_config(shares: usize, threshold: usize) -> Result<(), ShamirError> {
    if shares == 0 {
        return Err(ShamirError::NoShares);
    }
    if threshold == 0 {
        return Err(ShamirError::NoThreshold);
    }
    if shares > 255 {
        return Err(ShamirError::TooManyShares);
    }
    if threshold > shares {
        return Err(ShamirError::ThresholdTooLarge);
    }
    Ok(())
}

/// Splits `secret` into `shares` shares, any `threshold` of which rebuild it.
pub fn split(secret: &[u8; 32], shares: usize, threshold: usize) -> Result<Vec<Zeroizing<Vec<u8>>>, ShamirError> {
    check_config(shares, threshold)?;
    if threshold == 1 {
        // One-of-n sharing: every share is the key itself at its own x (vsss-rs needs a
        // threshold of at least 2).
        return Ok((1..=shares)
            .map(|x| {
                let mut s = Zeroizing::new(Vec::with_capacity(SHARE_LEN));
                s.push(u8::try_from(x).unwrap_or(u8::MAX));
                s.extend_from_slice(secret);
                s
            })
            .collect());
    }
    let parts = Gf256::split_bytes(threshold, shares, secret, UnwrapErr(SysRng)).map_err(|_| ShamirError::Combine)?;
    Ok(parts.into_iter().map(Zeroizing::new).collect())
}

/// Rebuilds the secret from `threshold` shares.
pub fn combine(shares: &[Zeroizing<Vec<u8>>], threshold: usize) -> Result<Zeroizing<[u8; 32]>, ShamirError> {
    if shares.iter().any(|s| s.len() != SHARE_LEN || s[0] == 0) {
        return Err(ShamirError::Combine);
    }
    let mut xs: Vec<u8> = shares.iter().map(|s| s[0]).collect();
    xs.sort_unstable();
    xs.dedup();
    if xs.len() != shares.len() {
        return Err(ShamirError::Combine);
    }
    if shares.len() < threshold {
        return Err(ShamirError::TooFewShares { given: shares.len(), needed: threshold });
    }
    let secret: Zeroizing<Vec<u8>> = if threshold == 1 {
        Zeroizing::new(shares[0][1..].to_vec())
    } else {
        let raw: Vec<Vec<u8>> = shares.iter().map(|s| s.to_vec()).collect();
        let combined = Gf256::combine_bytes(&raw).map_err(|_| ShamirError::Combine);
        for mut r in raw {
            zeroize::Zeroize::zeroize(&mut r);
        }
        Zeroizing::new(combined?)
    };
    let mut out = Zeroizing::new([0u8; 32]);
    if secret.len() != 32 {
        return Err(ShamirError::Combine);
    }
    out.copy_from_slice(&secret);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_threshold_subset_rebuilds_the_key() {
        let secret = [42u8; 32];
        let shares = split(&secret, 5, 3).expect("split");
        assert_eq!(shares.len(), 5);
        assert!(shares.iter().all(|s| s.len() == SHARE_LEN));
        for pick in [[0, 1, 2], [0, 2, 4], [4, 3, 1]] {
            let subset: Vec<_> = pick.iter().map(|&i| shares[i].clone()).collect();
            assert_eq!(*combine(&subset, 3).expect("combine"), secret);
        }
        // Two shares are not enough; a tampered share gives another (wrong) secret.
        assert_eq!(combine(&shares[..2], 3), Err(ShamirError::TooFewShares { given: 2, needed: 3 }));
        let mut bad: Vec<_> = shares[..3].to_vec();
        bad[0][5] ^= 1;
        assert_ne!(combine(&bad, 3).map(|k| *k).ok(), Some(secret));
    }

    /// Shares a server gave out stay valid across upgrades: these five (3 of 5, made by
    /// this `split` of the key 00 01 … 1f) must always combine back to it.
    #[test]
    fn shares_given_out_earlier_still_combine() {
        let printed = [
            "01ce059c4458c76ffc4d81e72d5c912d663d5b84e31003c1e6f67f44e1bff6d774",
            "023556e8b984481e3a4f961b6886cace95fa48b4d7043fab942d85c05fd28d0ad3",
            "03fb5276fed88a77c10a1ef64ed656edfcd702222700297c65c3e39ea57166c3b8",
            "0494c8d4bcfffa33109f4a4571ab25bb1b29ba377c545957f997613609e14974f4",
            "055acc4afba3385aebdac2a857fbb9987204f0a18c504f8008790768f342a2bd9f",
        ];
        let shares: Vec<_> = printed.iter().map(|h| Zeroizing::new(hex::decode(h).expect("hex"))).collect();
        let key: [u8; 32] = core::array::from_fn(|i| u8::try_from(i).unwrap_or(0));
        for pick in [[0, 1, 2], [1, 3, 4], [4, 0, 2]] {
            let subset: Vec<_> = pick.iter().map(|&i| shares[i].clone()).collect();
            assert_eq!(*combine(&subset, 3).expect("combine"), key);
        }
    }

    #[test]
    fn forged_and_duplicate_shares_are_refused() {
        let shares = split(&[1u8; 32], 3, 2).expect("split");
        let mut forged = shares[0].clone();
        forged[0] = 0;
        assert_eq!(combine(&[forged, shares[1].clone()], 2), Err(ShamirError::Combine));
        assert_eq!(combine(&[shares[0].clone(), shares[0].clone()], 2), Err(ShamirError::Combine));
        let mut short = shares[1].clone();
        short.truncate(20);
        assert_eq!(combine(&[shares[0].clone(), short], 2), Err(ShamirError::Combine));
    }

    #[test]
    fn configuration_errors_use_vaults_words() {
        assert_eq!(split(&[0; 32], 0, 0).map(|_| ()), Err(ShamirError::NoShares));
        assert_eq!(
            split(&[0; 32], 2, 3).map(|_| ()).map_err(|e| e.to_string()),
            Err("invalid seal configuration: threshold cannot be larger than shares".into())
        );
        assert_eq!(split(&[0; 32], 256, 3).map(|_| ()), Err(ShamirError::TooManyShares));
        let one = split(&[9; 32], 1, 1).expect("split");
        assert_eq!(*combine(&one, 1).expect("combine"), [9; 32]);
    }
}
