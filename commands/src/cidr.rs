//! CIDR blocks of Vault's bindings (`token_bound_cidrs`, `secret_id_bound_cidrs`,
//! `cidr_list`): parsed with `ipnet`, written back as Vault does (a host route is a bare
//! address).

use std::net::IpAddr;

use ipnet::IpNet;

/// Parses and normalises a list of blocks; the error names the first bad one.
pub fn normalise(list: &[String]) -> Result<Vec<String>, String> {
    list.iter()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .map(|s| {
            let net = parse(s).ok_or_else(|| format!("invalid CIDR block {s:?}"))?;
            Ok(if net.prefix_len() == net.max_prefix_len() { net.addr().to_string() } else { net.trunc().to_string() })
        })
        .collect()
}

fn parse(s: &str) -> Option<IpNet> {
    s.parse::<IpNet>().ok().or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from))
}

/// Whether `addr` lies in one of `blocks`; an empty list allows every address, and an
/// address that does not parse is in none.
pub fn allows(blocks: &[String], addr: &str) -> bool {
    if blocks.is_empty() {
        return true;
    }
    let Ok(ip) = addr.parse::<IpAddr>() else { return false };
    // An IPv4 client on a dual-stack listener shows as ::ffff:a.b.c.d.
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    };
    blocks.iter().filter_map(|b| parse(b)).any(|net| net.contains(&ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_routes_become_addresses_and_networks_are_truncated() {
        let got = normalise(&["127.0.0.1/32".into(), "10.1.2.3/8".into(), " ::1/128 ".into(), "".into()]);
        assert_eq!(got, Ok(vec!["127.0.0.1".to_string(), "10.0.0.0/8".to_string(), "::1".to_string()]));
        assert!(normalise(&["300.1.1.1/8".into()]).is_err());
        assert!(normalise(&["10.0.0.0/33".into()]).is_err());
    }

    #[test]
    fn membership() {
        let blocks = vec!["127.0.0.0/8".to_string(), "192.168.1.7".to_string()];
        assert!(allows(&blocks, "127.0.0.1"));
        assert!(allows(&blocks, "::ffff:127.0.0.1"));
        assert!(allows(&blocks, "192.168.1.7"));
        assert!(!allows(&blocks, "192.168.1.8"));
        assert!(!allows(&blocks, "not an address"));
        assert!(allows(&[], "10.0.0.1"));
    }
}
