//! Usernames of dynamic users: Vault's default `username_template` of each plugin, and custom
//! templates run by [`super::gotemplate`].

use super::gotemplate::{expand, floor_char_boundary};
use super::{DbError, PluginKind};

/// Vault's `postgresql-database-plugin` default.
pub const POSTGRES_DEFAULT: &str = r#"{{ printf "v-%s-%s-%s-%s" (.DisplayName | truncate 8) (.RoleName | truncate 8) (random 20) (unix_time) | truncate 63 }}"#;
/// Vault's `mysql-database-plugin` default.
pub const MYSQL_DEFAULT: &str = r#"{{ printf "v-%s-%s-%s-%s" (.DisplayName | truncate 10) (.RoleName | truncate 10) (random 20) (unix_time) | truncate 32 }}"#;
/// Vault's default for `mysql-legacy-database-plugin`, `mysql-rds-…` and `mysql-aurora-…`.
pub const MYSQL_LEGACY_DEFAULT: &str = r#"{{ printf "v-%s-%s" (.RoleName | truncate 4) (random 20) | truncate 16 }}"#;

/// A username for a new dynamic user.
///
/// With no template (or an empty one) this is Vault's default for the plugin:
/// `v-<display name>-<role>-<20 random [A-Za-z0-9]>-<unix seconds>`, each part cut as Vault
/// cuts it, the whole cut to 63 characters (PostgreSQL) or 32 (MySQL), and
/// `v-<role, 4>-<20 random>` cut to 16 for the legacy MySQL plugins. Nothing is lowercased.
///
/// A custom template's output is used as it is, as in Vault, except that for PostgreSQL it is
/// cut to 63 bytes: the server would cut the role name there anyway (NAMEDATALEN), and the
/// name handed back must be the one that exists.
pub fn generate_username(
    kind: PluginKind,
    template: Option<&str>,
    display_name: &str,
    role: &str,
) -> Result<String, DbError> {
    let text = match template {
        Some(t) if !t.is_empty() => t,
        _ => kind.default_username_template(),
    };
    let mut out = expand(text, display_name, role)?;
    if kind == PluginKind::Postgres {
        out.truncate(floor_char_boundary(&out, kind.max_username_len()));
    }
    if out.is_empty() {
        return Err(DbError::Template("unable to apply template: the template produced an empty username".into()));
    }
    Ok(out)
}

/// Checks a `username_template` as Vault does when a connection is configured: it must parse,
/// and run with an empty display name and role (an empty result is fine there).
pub fn validate_username_template(template: &str) -> Result<(), DbError> {
    expand(template, "", "").map(drop).map_err(|e| DbError::Template(format!("invalid username template: {e}")))
}

#[cfg(test)]
mod tests {
    use std::time::{SystemTime, UNIX_EPOCH};

    use super::*;

    fn make(kind: PluginKind, t: &str, display: &str, role: &str) -> Result<String, String> {
        generate_username(kind, Some(t), display, role).map_err(|e| e.to_string())
    }

    fn is_base62(s: &str) -> bool {
        s.bytes().all(|b| b.is_ascii_alphanumeric())
    }

    #[test]
    fn postgres_default_matches_vaults_shape() {
        let name = generate_username(PluginKind::Postgres, None, "token", "ro").expect("name");
        let parts: Vec<&str> = name.split('-').collect();
        assert_eq!(parts.len(), 5, "{name}");
        assert_eq!(&parts[..3], &["v", "token", "ro"]);
        assert_eq!(parts[3].len(), 20);
        assert!(is_base62(parts[3]));
        let ts: u64 = parts[4].parse().expect("unix time");
        let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_secs();
        assert!(ts.abs_diff(now) < 5);
        // An empty template is the default too.
        let empty = generate_username(PluginKind::Postgres, Some(""), "token", "ro").expect("name");
        assert_eq!(empty.len(), name.len());
    }

    #[test]
    fn defaults_truncate_parts_and_whole_like_vault() {
        let long = "abcdefghijklmnopqrstuvwxyz";
        let pg = generate_username(PluginKind::Postgres, None, long, long).expect("name");
        assert!(pg.starts_with("v-abcdefgh-abcdefgh-"), "{pg}");
        assert_eq!(pg.len(), 2 + 9 + 9 + 21 + 10);
        let my = generate_username(PluginKind::Mysql, None, long, long).expect("name");
        assert_eq!(my.len(), 32);
        assert!(my.starts_with("v-abcdefghij-abcdefghij-"), "{my}");
        assert!(is_base62(&my[24..]));
        let legacy = generate_username(PluginKind::MysqlLegacy, None, long, long).expect("name");
        assert_eq!(legacy.len(), 16);
        assert!(legacy.starts_with("v-abcd-"), "{legacy}");
        // Nothing is lowercased.
        let upper = generate_username(PluginKind::Postgres, None, "Token", "RO").expect("name");
        assert!(upper.starts_with("v-Token-RO-"), "{upper}");
    }

    #[test]
    fn custom_templates_are_cut_at_63_bytes_for_postgres_only() {
        let t = r#"{{ printf "%s%s" (random 60) (random 20) }}"#;
        assert_eq!(make(PluginKind::Postgres, t, "", "").expect("pg").len(), 63);
        assert_eq!(make(PluginKind::Mysql, t, "", "").expect("mysql").len(), 80);
        // Never in the middle of a character.
        let t = r#"{{ printf "%s%s" (random 62) "é" }}"#;
        assert_eq!(make(PluginKind::Postgres, t, "", "").expect("pg").len(), 62);
        let e = make(PluginKind::Mysql, "{{ .DisplayName }}", "", "r").expect_err("empty");
        assert_eq!(e, "unable to apply template: the template produced an empty username");
    }

    #[test]
    fn validation_runs_with_empty_metadata_like_vault() {
        assert!(validate_username_template("{{ .DisplayName }}").is_ok());
        assert!(validate_username_template(POSTGRES_DEFAULT).is_ok());
        let e = validate_username_template("{{ nope }}").expect_err("refused").to_string();
        assert!(e.starts_with("invalid username template: "), "{e}");
        let e = validate_username_template("{{ .RoleName | truncate 0 }}").expect_err("refused").to_string();
        assert!(e.contains("max length must be > 0"), "{e}");
    }
}
