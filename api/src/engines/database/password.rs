//! Passwords for database users: Vault's default password policy.

use zeroize::Zeroizing;

use super::DbError;

/// Vault's `random.DefaultStringGenerator`: 20 characters from `[A-Za-z0-9-]`, with at least one
/// lowercase letter, one uppercase letter, one digit and one dash.
const LENGTH: usize = 20;
const CHARSET: &[u8; 63] = b"-0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
/// Bytes up to this value map evenly onto the charset (4 × 63 = 252); larger ones are dropped,
/// so every character is equally likely (no modulo bias).
const LAST_FAIR_BYTE: u8 = 251;
/// Vault retries for up to a second; a candidate misses a class about 3 times in 4 (mostly
/// the dash), so 1,000 tries fail with probability below 10^-120.
const MAX_TRIES: usize = 1_000;

/// A fresh password from the OS CSPRNG, in the shape of Vault's default policy.
pub fn generate_password() -> Result<Zeroizing<String>, DbError> {
    for _ in 0..MAX_TRIES {
        let candidate = candidate()?;
        if meets_rules(&candidate) {
            return Ok(candidate);
        }
    }
    Err(DbError::Randomness)
}

fn candidate() -> Result<Zeroizing<String>, DbError> {
    let mut out = Zeroizing::new(String::with_capacity(LENGTH));
    let mut buf = Zeroizing::new([0u8; 2 * LENGTH]);
    while out.len() < LENGTH {
        getrandom::fill(buf.as_mut()).map_err(|_| DbError::Randomness)?;
        for &b in buf.iter().filter(|&&b| b <= LAST_FAIR_BYTE) {
            if out.len() == LENGTH {
                break;
            }
            out.push(char::from(CHARSET[usize::from(b) % CHARSET.len()]));
        }
    }
    Ok(out)
}

fn meets_rules(p: &str) -> bool {
    p.bytes().any(|b| b.is_ascii_lowercase())
        && p.bytes().any(|b| b.is_ascii_uppercase())
        && p.bytes().any(|b| b.is_ascii_digit())
        && p.contains('-')
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};

    use super::*;

    #[test]
    fn shape_matches_vaults_default_policy() {
        for _ in 0..500 {
            let p = generate_password().expect("password");
            assert_eq!(p.len(), 20);
            assert!(p.bytes().all(|b| CHARSET.contains(&b)), "{}", p.as_str());
            assert!(meets_rules(&p), "{}", p.as_str());
        }
    }

    #[test]
    fn passwords_differ_and_every_character_shows_up_evenly() {
        let mut seen = HashSet::new();
        let mut counts: HashMap<u8, usize> = HashMap::new();
        let n = 2_000;
        for _ in 0..n {
            let p = generate_password().expect("password");
            for b in p.bytes() {
                *counts.entry(b).or_default() += 1;
            }
            assert!(seen.insert(p.to_string()), "repeated password");
        }
        assert_eq!(counts.len(), 63, "every character appears");
        // Letters and digits: about 40,000 / 63 ≈ 635 each before the rules; the dash is
        // favoured by the rule that needs one. A biased generator would show a skew far beyond
        // these generous bounds.
        for (b, c) in counts {
            if b != b'-' {
                assert!((400..=900).contains(&c), "{} appeared {c} times", char::from(b));
            }
        }
    }
}
