//! MySQL's `connection_url`: the Go driver's DSN
//! `[user[:password]@][net[(addr)]]/dbname[?param=value&…]`, parsed the way
//! go-sql-driver/mysql's `ParseDSN` reads it, then turned into mysql_async options.
//!
//! The template is parsed before `{{username}}` and `{{password}}` are filled in, so a password
//! may hold `@`, `:`, `/` or `?` (Vault substitutes first, and such passwords break its DSN).

use std::time::Duration;

use mysql_async::{OptsBuilder, SslOpts};

use super::DbError;

/// Where the Go driver connects when the DSN names no address.
const DEFAULT_ADDR: &str = "127.0.0.1:3306";
const DEFAULT_SOCKET: &str = "/tmp/mysql.sock";
/// When the DSN sets no `timeout`.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Go driver parameters that change nothing for the statements cairn runs.
const IGNORED: &[&str] = &[
    "allowAllFiles",
    "allowNativePasswords",
    "allowOldPasswords",
    "charset",
    "checkConnLiveness",
    "clientFoundRows",
    "collation",
    "columnsWithAlias",
    "interpolateParams",
    "loc",
    "maxAllowedPacket",
    "multiStatements",
    "parseTime",
    "readTimeout",
    "rejectReadOnly",
    "timeTruncate",
    "writeTimeout",
];

#[cfg_attr(test, derive(Debug, PartialEq))]
pub(super) enum Net {
    Tcp { host: String, port: u16 },
    Unix(String),
}

/// A parsed DSN; `user` and `pass` may still hold `{{username}}` / `{{password}}`.
#[cfg_attr(test, derive(Debug, PartialEq))]
pub(super) struct Dsn {
    pub user: String,
    pub pass: Option<String>,
    pub net: Net,
    pub db: Option<String>,
    pub params: Vec<(String, String)>,
}

impl Dsn {
    /// `host:port` or the socket path, for messages.
    pub(super) fn target(&self) -> String {
        match &self.net {
            Net::Tcp { host, port } if host.contains(':') => format!("[{host}]:{port}"),
            Net::Tcp { host, port } => format!("{host}:{port}"),
            Net::Unix(path) => path.clone(),
        }
    }
}

/// Parses a Go DSN. Errors say what is wrong and never repeat the DSN (it may hold a password).
pub(super) fn parse(dsn: &str) -> Result<Dsn, DbError> {
    let bad = |why: &str| DbError::Config(format!("unable to parse connection url: {why}"));
    // The last '/' starts the database name (the password or the address may hold a '/').
    let slash = dsn.rfind('/').ok_or_else(|| bad("missing the slash before the database name"))?;
    let (left, right) = (&dsn[..slash], &dsn[slash + 1..]);
    let (user_info, net_part) = match left.rfind('@') {
        Some(at) => (Some(&left[..at]), &left[at + 1..]),
        None => (None, left),
    };
    let (user, pass) = match user_info {
        Some(info) => match info.split_once(':') {
            Some((u, p)) => (u.to_string(), Some(p.to_string())),
            None => (info.to_string(), None),
        },
        None => (String::new(), None),
    };
    let (net, addr) = match net_part.find('(') {
        Some(open) => {
            let addr = net_part[open + 1..]
                .strip_suffix(')')
                .ok_or_else(|| bad("invalid DSN: network address not terminated (missing closing brace)"))?;
            (&net_part[..open], addr)
        }
        None => (net_part, ""),
    };
    let net = match net {
        "" | "tcp" | "tcp4" | "tcp6" => tcp(if addr.is_empty() { DEFAULT_ADDR } else { addr }).map_err(|e| bad(&e))?,
        "unix" => Net::Unix(if addr.is_empty() { DEFAULT_SOCKET } else { addr }.to_string()),
        other => return Err(bad(&format!("unsupported network {other:?} (use tcp or unix)"))),
    };
    let (db, query) = match right.split_once('?') {
        Some((db, query)) => (db, Some(query)),
        None => (right, None),
    };
    let mut params = Vec::new();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').ok_or_else(|| bad("invalid DSN: parameter without '='"))?;
        params.push((key.to_string(), unescape(value).ok_or_else(|| bad("invalid escape in a parameter"))?));
    }
    Ok(Dsn { user, pass, net, db: Some(db.to_string()).filter(|d| !d.is_empty()), params })
}

fn tcp(addr: &str) -> Result<Net, String> {
    let (host, port) = match addr.strip_prefix('[') {
        Some(v6) => {
            let (host, rest) = v6.split_once(']').ok_or("invalid IPv6 address")?;
            (host, rest.strip_prefix(':'))
        }
        None => match addr.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (addr, None),
        },
    };
    let port = match port {
        Some(p) => p.parse::<u16>().map_err(|_| format!("invalid port {p:?}"))?,
        None => 3306,
    };
    Ok(Net::Tcp { host: host.to_string(), port })
}

/// Go's `url.QueryUnescape`.
fn unescape(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// mysql_async options for a parsed DSN, and the connect timeout.
///
/// `tls=true` verifies the server (web PKI roots), `tls=skip-verify` encrypts without checking;
/// other `tls` values (`preferred`, registered configurations) are refused. `timeout` is the
/// connect timeout. Parameters the Go driver does not know are session variables there, and
/// here too (`SET key=value` after connecting).
pub(super) fn options(dsn: &Dsn, user: &str, pass: Option<&str>) -> Result<(OptsBuilder, Duration), DbError> {
    let mut builder = OptsBuilder::default().user(Some(user)).pass(pass).db_name(dsn.db.clone()).prefer_socket(false);
    builder = match &dsn.net {
        Net::Tcp { host, port } => builder.ip_or_hostname(host.clone()).tcp_port(*port),
        Net::Unix(path) => builder.socket(Some(path.clone())),
    };
    let mut timeout = CONNECT_TIMEOUT;
    let mut init = Vec::new();
    for (key, value) in &dsn.params {
        match key.as_str() {
            "tls" => match value.as_str() {
                "true" => builder = builder.ssl_opts(SslOpts::default()),
                "skip-verify" => {
                    let opts = SslOpts::default()
                        .with_danger_accept_invalid_certs(true)
                        .with_danger_skip_domain_validation(true);
                    builder = builder.ssl_opts(opts);
                }
                "false" | "" => {}
                other => {
                    return Err(DbError::Config(format!(
                        "unsupported tls value {other:?} in connection_url (use true, skip-verify or false)"
                    )));
                }
            },
            "timeout" => {
                let secs = crate::duration::parse_duration(value)
                    .map_err(|e| DbError::Config(format!("invalid timeout in connection_url: {e}")))?;
                if secs > 0 {
                    timeout = Duration::from_secs(secs);
                }
            }
            "allowCleartextPasswords" => builder = builder.enable_cleartext_plugin(value == "true" || value == "1"),
            k if IGNORED.contains(&k) => {}
            k if !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') => {
                init.push(format!("SET {k}={value}"));
            }
            k => return Err(DbError::Config(format!("invalid parameter {k:?} in connection_url"))),
        }
    }
    Ok((builder.init(init), timeout))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp_dsn(user: &str, pass: Option<&str>, host: &str, port: u16, db: Option<&str>) -> Dsn {
        Dsn {
            user: user.into(),
            pass: pass.map(Into::into),
            net: Net::Tcp { host: host.into(), port },
            db: db.map(Into::into),
            params: Vec::new(),
        }
    }

    #[test]
    fn parses_vaults_forms() {
        assert_eq!(
            parse("{{username}}:{{password}}@tcp(127.0.0.1:3306)/").expect("dsn"),
            tcp_dsn("{{username}}", Some("{{password}}"), "127.0.0.1", 3306, None)
        );
        assert_eq!(parse("root@tcp(db.local)/app").expect("dsn"), tcp_dsn("root", None, "db.local", 3306, Some("app")));
        assert_eq!(parse("/").expect("dsn"), tcp_dsn("", None, "127.0.0.1", 3306, None));
        assert_eq!(parse("u:p@tcp([::1]:3307)/d").expect("dsn"), tcp_dsn("u", Some("p"), "::1", 3307, Some("d")));
        let unix = parse("u:p@unix(/run/mysqld/mysqld.sock)/d").expect("dsn");
        assert_eq!(unix.net, Net::Unix("/run/mysqld/mysqld.sock".into()));
        assert_eq!(unix.target(), "/run/mysqld/mysqld.sock");
    }

    #[test]
    fn passwords_with_separators_and_params() {
        let d = parse("u:p@ss:w/rd@tcp(h:1)/db?tls=skip-verify&timeout=5s&x=a%20b").expect("dsn");
        assert_eq!(d.user, "u");
        assert_eq!(d.pass.as_deref(), Some("p@ss:w/rd"));
        assert_eq!(d.target(), "h:1");
        assert_eq!(
            d.params,
            vec![("tls".into(), "skip-verify".into()), ("timeout".into(), "5s".into()), ("x".into(), "a b".into())]
        );
        let (_, timeout) = options(&d, "u", Some("p")).expect("options");
        assert_eq!(timeout, Duration::from_secs(5));
    }

    #[test]
    fn bad_dsns_are_errors() {
        for bad in
            ["no-slash", "u:p@tcp(h:1/db", "u@tcp(h:notaport)/d", "u@udp(h)/d", "u@tcp(h)/d?novalue", "u@/d?x=%zz"]
        {
            let e = parse(bad).map(|d| options(&d, "u", None).map(|_| ())).and_then(|r| r);
            assert!(e.is_err(), "{bad}");
        }
        let d = parse("u@tcp(h)/d?tls=preferred").expect("dsn");
        assert!(options(&d, "u", None).is_err());
        let d = parse("u@tcp(h)/d?bad-key=1").expect("dsn");
        assert!(options(&d, "u", None).is_err());
    }
}
