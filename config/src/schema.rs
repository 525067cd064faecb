//! The Matomo schema shipped in `deploy/schema/matomo.sql`, for local set-up and tests.
//!
//! The file writes table names as `{{prefix}}name`; [`matomo_schema_sql`] substitutes the
//! prefix and [`split_statements`] cuts it into statements a MySQL client can run one by one.
//! Production never runs this: the worker writes into a database Matomo's installer created.

/// The schema file as written, with `{{prefix}}` placeholders.
pub const MATOMO_SCHEMA_TEMPLATE: &str = include_str!("../../deploy/schema/matomo.sql");

/// The 32 tables Matomo 5.1.2 creates, without prefix.
pub const MATOMO_TABLES: [&str; 32] = [
    "access",
    "archive_invalidations",
    "brute_force_log",
    "changes",
    "custom_dimensions",
    "goal",
    "locks",
    "log_action",
    "log_conversion",
    "log_conversion_item",
    "log_link_visit_action",
    "log_profiling",
    "log_visit",
    "logger_message",
    "option",
    "plugin_setting",
    "privacy_logdata_anonymizations",
    "queuedtracking_queue",
    "report",
    "report_subscriptions",
    "segment",
    "sequence",
    "session",
    "site",
    "site_setting",
    "site_url",
    "tracking_failure",
    "twofactor_recovery_code",
    "user",
    "user_dashboard",
    "user_language",
    "user_token_auth",
];

/// The schema with `{{prefix}}` replaced by `prefix` (e.g. `matomo_`).
pub fn matomo_schema_sql(prefix: &str) -> String {
    MATOMO_SCHEMA_TEMPLATE.replace("{{prefix}}", prefix)
}

/// Splits SQL text into statements at `;` outside quotes, backticks and comments. `--` and `#`
/// line comments and `/* */` block comments are dropped; empty statements are skipped.
pub fn split_statements(sql: &str) -> Vec<String> {
    let mut statements = Vec::new();
    let mut current = String::new();
    let mut chars = sql.chars().peekable();
    let mut quote: Option<char> = None;
    while let Some(c) = chars.next() {
        if let Some(q) = quote {
            current.push(c);
            if c == '\\' && q != '`' {
                if let Some(next) = chars.next() {
                    current.push(next);
                }
            } else if c == q {
                quote = None;
            }
            continue;
        }
        match c {
            '\'' | '"' | '`' => {
                quote = Some(c);
                current.push(c);
            }
            '-' if chars.peek() == Some(&'-') => skip_line(&mut chars),
            '#' => skip_line(&mut chars),
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut prev = '\0';
                for c in chars.by_ref() {
                    if prev == '*' && c == '/' {
                        break;
                    }
                    prev = c;
                }
            }
            ';' => push_statement(&mut statements, &mut current),
            _ => current.push(c),
        }
    }
    push_statement(&mut statements, &mut current);
    statements
}

fn skip_line(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    for c in chars.by_ref() {
        if c == '\n' {
            break;
        }
    }
}

fn push_statement(statements: &mut Vec<String>, current: &mut String) {
    let statement = current.trim();
    if !statement.is_empty() {
        statements.push(statement.to_string());
    }
    current.clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_has_every_table_once_with_the_prefix() {
        let statements = split_statements(&matomo_schema_sql("pfx_"));
        assert_eq!(statements.len(), MATOMO_TABLES.len());
        for table in MATOMO_TABLES {
            let head = format!("CREATE TABLE IF NOT EXISTS `pfx_{table}` (");
            assert_eq!(
                statements.iter().filter(|s| s.starts_with(&head)).count(),
                1,
                "{table}"
            );
        }
        assert!(!statements.iter().any(|s| s.contains("{{prefix}}")));
    }

    #[test]
    fn splitting_respects_quotes_and_comments() {
        let sql = "-- a; comment\nINSERT INTO t VALUES ('a;b', \"c\\\";d\");\n/* x; y */ SELECT `we;ird` FROM t # tail;\n;";
        assert_eq!(
            split_statements(sql),
            vec![
                "INSERT INTO t VALUES ('a;b', \"c\\\";d\")".to_string(),
                "SELECT `we;ird` FROM t".to_string()
            ]
        );
    }
}
