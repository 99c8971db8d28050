//! Quoting for every text format the keeper writes, in one tested place.
//!
//! The keeper writes values it does not control (role names, passwords, addresses, the operator's
//! `pgParameters`) into postgresql.conf, libpq connection strings, pg_hba.conf, a pgpass file and
//! SQL. Each format has its own escaping rules; getting one wrong is a configuration-injection bug,
//! so every writer goes through these helpers and nothing quotes by hand.

/// A value in postgresql.conf: always single-quoted (any setting accepts a quoted value), with
/// `'` doubled and `\` doubled (the conf scanner processes backslash escapes inside quotes).
pub fn conf_value(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
}

/// A value in a libpq connection string: single-quoted, `\` and `'` escaped with a backslash.
pub fn conninfo_value(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// A libpq connection string from key/value pairs, every value quoted.
pub fn conninfo(pairs: &[(&str, &str)]) -> String {
    pairs.iter().map(|(k, v)| format!("{k}={}", conninfo_value(v))).collect::<Vec<_>>().join(" ")
}

/// A user name in pg_hba.conf: always double-quoted, so keywords (`all`, `replication`) and a
/// leading `+` lose their special meaning. pg_hba.conf cannot express a `"` inside a name; such
/// names are refused at start-up (`valid_name`), so none reaches here.
pub fn hba_user(name: &str) -> String {
    format!("\"{name}\"")
}

/// A field of a pgpass line (`host:port:db:user:password`): `\` and `:` escaped with `\`.
pub fn pgpass_field(value: &str) -> String {
    value.replace('\\', "\\\\").replace(':', "\\:")
}

/// An SQL identifier: double-quoted, `"` doubled.
pub fn sql_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// An SQL string literal for standard_conforming_strings = on (the default since 9.1): `'`
/// doubled; backslashes are literal.
pub fn sql_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// A role name the keeper can write safely everywhere: non-empty, at most 63 bytes (NAMEDATALEN),
/// no `"`, no control characters.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 63 && !name.chars().any(|c| c == '"' || c.is_control())
}

/// A password the keeper can write to a pgpass file and hash: no line break or NUL.
pub fn valid_password(password: &str) -> bool {
    !password.contains(['\n', '\r', '\0'])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conf_values() {
        assert_eq!(conf_value("on"), "'on'");
        assert_eq!(conf_value(""), "''");
        assert_eq!(conf_value("it's"), "'it''s'");
        assert_eq!(conf_value(r"C:\x"), r"'C:\\x'");
        assert_eq!(conf_value("host='a' port=1"), "'host=''a'' port=1'");
    }

    #[test]
    fn conninfo_values() {
        assert_eq!(conninfo_value("a b"), "'a b'");
        assert_eq!(conninfo_value("o'k"), r"'o\'k'");
        assert_eq!(conninfo_value(r"a\b"), r"'a\\b'");
        assert_eq!(conninfo(&[("host", "h"), ("port", "5432")]), "host='h' port='5432'");
    }

    #[test]
    fn conninfo_inside_conf_survives_both_layers() {
        // A conninfo value containing a quote, then the conninfo inside postgresql.conf.
        let ci = conninfo(&[("application_name", "o'k")]);
        assert_eq!(ci, r"application_name='o\'k'");
        assert_eq!(conf_value(&ci), r"'application_name=''o\\''k'''");
    }

    #[test]
    fn hba_and_pgpass() {
        assert_eq!(hba_user("all"), "\"all\"");
        assert_eq!(pgpass_field(r"p:w\d"), r"p\:w\\d");
    }

    #[test]
    fn sql_quoting() {
        assert_eq!(sql_ident("repl"), "\"repl\"");
        assert_eq!(sql_ident("we\"ird"), "\"we\"\"ird\"");
        assert_eq!(sql_literal("it's"), "'it''s'");
    }

    #[test]
    fn name_and_password_checks() {
        assert!(valid_name("repl_user"));
        assert!(valid_name("Some User"));
        assert!(!valid_name(""));
        assert!(!valid_name("a\"b"));
        assert!(!valid_name("a\nb"));
        assert!(!valid_name(&"x".repeat(64)));
        assert!(valid_password("p:a\\ss word"));
        assert!(!valid_password("line\nbreak"));
    }
}
