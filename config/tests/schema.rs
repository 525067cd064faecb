//! The schema file against a live MariaDB/MySQL: `deploy/schema/matomo.sql` is applied twice to a
//! fresh `mt_test_<random>` database (it must be idempotent), then information_schema (columns
//! with type, nullability, default, charset, extra; indexes; table options) is compared with
//! (a) what the DDL text itself declares and (b) when the shared golden dump of Matomo 5.1.2's
//! installer is available, a second database built from that dump. Every difference is listed.
//!
//! Needs the database of the local stack (`deploy/local/test` starts it). Connection settings come
//! from the tier's own loader, so `MATOMO_TIER__DATABASE__*` variables apply. Fails, never skips,
//! when the database cannot be reached.

mod common;

use std::collections::BTreeMap;

use mysql_async::prelude::*;
use mysql_async::{Conn, Row};
use tier_config::schema::{matomo_schema_sql, split_statements, MATOMO_TABLES};

const PREFIX: &str = "matomo_";

/// A schema described as comparable lines, per table.
type Description = BTreeMap<String, Vec<String>>;

async fn connect() -> Conn {
    common::server().await.1
}

fn random_db_name(tag: &str) -> String {
    format!("mt_test_{tag}_{:016x}", rand::random::<u64>())
}

async fn apply(conn: &mut Conn, db: &str, sql: &str) {
    conn.query_drop(format!("USE `{db}`")).await.unwrap();
    for statement in split_statements(sql) {
        conn.query_drop(&statement)
            .await
            .unwrap_or_else(|e| panic!("statement failed: {e}\n{statement}"));
    }
}

async fn describe(conn: &mut Conn, db: &str) -> Description {
    let mut out = Description::new();
    let tables: Vec<Row> = conn
        .exec(
            "SELECT TABLE_NAME, ENGINE, TABLE_COLLATION, ROW_FORMAT FROM information_schema.TABLES \
             WHERE TABLE_SCHEMA = ? ORDER BY TABLE_NAME",
            (db,),
        )
        .await
        .unwrap();
    for row in tables {
        let v = strings(&row);
        out.entry(v[0].clone().unwrap()).or_default().push(format!(
            "table {} {} {}",
            opt(&v[1]),
            opt(&v[2]),
            opt(&v[3]).to_ascii_lowercase()
        ));
    }
    let columns: Vec<Row> = conn
        .exec(
            "SELECT TABLE_NAME, CAST(ORDINAL_POSITION AS CHAR), COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE, \
             COLUMN_DEFAULT, CHARACTER_SET_NAME, COLLATION_NAME, EXTRA FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA = ? ORDER BY TABLE_NAME, ORDINAL_POSITION",
            (db,),
        )
        .await
        .unwrap();
    for row in columns {
        let v = strings(&row);
        out.entry(v[0].clone().unwrap())
            .or_default()
            .push(column_line(
                v[1].as_deref().unwrap().parse().unwrap(),
                v[2].as_deref().unwrap(),
                v[3].as_deref().unwrap(),
                v[4].as_deref() == Some("YES"),
                v[5].as_deref(),
                v[6].as_deref(),
                v[7].as_deref(),
                v[8].as_deref().unwrap_or(""),
            ));
    }
    let stats: Vec<Row> = conn
        .exec(
            "SELECT TABLE_NAME, INDEX_NAME, CAST(NON_UNIQUE AS CHAR), COLUMN_NAME, CAST(SUB_PART AS CHAR), \
             COLLATION FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = ? \
             ORDER BY TABLE_NAME, INDEX_NAME, SEQ_IN_INDEX",
            (db,),
        )
        .await
        .unwrap();
    let mut indexes: BTreeMap<(String, String), (bool, Vec<String>)> = BTreeMap::new();
    for row in stats {
        let v = strings(&row);
        let entry = indexes
            .entry((v[0].clone().unwrap(), v[1].clone().unwrap()))
            .or_insert((v[2].as_deref() == Some("0"), Vec::new()));
        entry.1.push(index_part(
            v[3].as_deref().unwrap(),
            v[4].as_deref(),
            v[5].as_deref() == Some("D"),
        ));
    }
    for ((table, name), (unique, parts)) in indexes {
        out.entry(table)
            .or_default()
            .push(index_line(&name, unique, &parts));
    }
    out
}

fn strings(row: &Row) -> Vec<Option<String>> {
    (0..row.len())
        .map(|i| row.get::<Option<String>, usize>(i).flatten())
        .collect()
}

fn opt(v: &Option<String>) -> String {
    v.clone().unwrap_or_else(|| "-".into())
}

#[allow(clippy::too_many_arguments)]
fn column_line(
    position: u32,
    name: &str,
    column_type: &str,
    nullable: bool,
    default: Option<&str>,
    charset: Option<&str>,
    collation: Option<&str>,
    extra: &str,
) -> String {
    format!(
        "column {position:02} {name} {column_type} {} default={} charset={} collation={} extra={}",
        if nullable { "NULL" } else { "NOT NULL" },
        default.unwrap_or("(none)"),
        charset.unwrap_or("-"),
        collation.unwrap_or("-"),
        extra.to_ascii_lowercase()
    )
}

fn index_part(column: &str, sub_part: Option<&str>, desc: bool) -> String {
    let mut part = column.to_string();
    if let Some(sub) = sub_part {
        part.push_str(&format!("({sub})"));
    }
    if desc {
        part.push_str(" DESC");
    }
    part
}

fn index_line(name: &str, unique: bool, parts: &[String]) -> String {
    format!(
        "index {name} {} ({})",
        if unique { "unique" } else { "non-unique" },
        parts.join(", ")
    )
}

/// What the DDL text declares, in the same line format as [`describe`].
fn describe_ddl(sql: &str) -> Description {
    let mut out = Description::new();
    for statement in split_statements(sql) {
        let head = statement.lines().next().unwrap();
        let table = head
            .split('`')
            .nth(1)
            .unwrap_or_else(|| panic!("no table name in {head}"))
            .to_string();
        let options = statement.lines().last().unwrap();
        let option = |key: &str| {
            options
                .split_whitespace()
                .find_map(|w| w.strip_prefix(key))
                .unwrap_or_else(|| panic!("{table}: no {key} in {options}"))
                .to_string()
        };
        let (engine, collation) = (option("ENGINE="), option("COLLATE="));
        let (table_charset, row_format) = (
            option("CHARSET="),
            option("ROW_FORMAT=").to_ascii_lowercase(),
        );
        let mut lines = vec![format!("table {engine} {collation} {row_format}")];
        let mut position = 0;
        for line in statement.lines().skip(1) {
            let line = line.trim().trim_end_matches(',');
            if let Some(rest) = line.strip_prefix('`') {
                position += 1;
                let (name, def) = rest.split_once('`').unwrap();
                lines.push(ddl_column(
                    position,
                    name,
                    def.trim(),
                    &table_charset,
                    &collation,
                ));
            } else if let Some(cols) = line.strip_prefix("PRIMARY KEY ") {
                lines.push(index_line("PRIMARY", true, &ddl_index_parts(cols)));
            } else if let Some(rest) = line
                .strip_prefix("UNIQUE KEY ")
                .or_else(|| line.strip_prefix("INDEX "))
            {
                let (name, cols) = rest.trim_start_matches('`').split_once('`').unwrap();
                lines.push(index_line(
                    name,
                    line.starts_with("UNIQUE"),
                    &ddl_index_parts(cols.trim()),
                ));
            } else if !line.starts_with(')') {
                panic!("{table}: unexpected DDL line: {line}");
            }
        }
        out.insert(table, lines);
    }
    out
}

fn ddl_column(
    position: u32,
    name: &str,
    def: &str,
    table_charset: &str,
    table_collation: &str,
) -> String {
    let upper = def.to_ascii_uppercase();
    let end_of_type = [
        " NOT NULL",
        " NULL",
        " DEFAULT",
        " AUTO_INCREMENT",
        " CHARACTER SET",
    ]
    .iter()
    .filter_map(|k| upper.find(k))
    .min()
    .unwrap_or(def.len());
    let column_type = def[..end_of_type].to_ascii_lowercase();
    let nullable = !upper.contains("NOT NULL");
    let default = upper.find("DEFAULT ").map(|at| {
        let token = def[at + 8..].split_whitespace().next().unwrap();
        match token.to_ascii_uppercase().as_str() {
            "CURRENT_TIMESTAMP" => "current_timestamp()".to_string(),
            "NULL" => "NULL".to_string(),
            _ => token.to_string(),
        }
    });
    let is_text = ["char", "varchar", "text", "mediumtext", "longtext"]
        .iter()
        .any(|t| column_type == *t || column_type.starts_with(&format!("{t}(")));
    let (charset, collation) = match upper.find("CHARACTER SET ") {
        Some(at) => {
            let mut words = def[at + 14..].split_whitespace();
            let charset = words.next().unwrap().to_string();
            let collation = words.nth(1).unwrap().to_string();
            (Some(charset), Some(collation))
        }
        None if is_text => (
            Some(table_charset.to_string()),
            Some(table_collation.to_string()),
        ),
        None => (None, None),
    };
    let extra = if upper.contains("AUTO_INCREMENT") {
        "auto_increment"
    } else {
        ""
    };
    column_line(
        position,
        name,
        &column_type,
        nullable,
        default.as_deref(),
        charset.as_deref(),
        collation.as_deref(),
        extra,
    )
}

fn ddl_index_parts(cols: &str) -> Vec<String> {
    let inner = cols
        .trim()
        .strip_prefix('(')
        .and_then(|c| c.strip_suffix(')'))
        .unwrap();
    let mut parts = Vec::new();
    let mut depth = 0;
    let mut current = String::new();
    for c in inner.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    parts.push(current);
    parts
        .iter()
        .map(|p| {
            let p = p.trim();
            let desc = p.ends_with(" DESC");
            let p = p.trim_end_matches(" DESC").trim_end_matches(" ASC");
            let (name, rest) = p.trim_start_matches('`').split_once('`').unwrap();
            let sub = rest
                .trim()
                .strip_prefix('(')
                .and_then(|s| s.strip_suffix(')'));
            index_part(name, sub, desc)
        })
        .collect()
}

/// Every line in one description and not the other, per table.
fn differences(expected: &Description, actual: &Description) -> Vec<String> {
    let mut out = Vec::new();
    let tables: std::collections::BTreeSet<&String> =
        expected.keys().chain(actual.keys()).collect();
    for table in tables {
        match (expected.get(table), actual.get(table)) {
            (Some(_), None) => out.push(format!("{table}: table missing")),
            (None, Some(_)) => out.push(format!("{table}: unexpected table")),
            (Some(e), Some(a)) => {
                out.extend(
                    e.iter()
                        .filter(|l| !a.contains(l))
                        .map(|l| format!("{table}: expected   {l}")),
                );
                out.extend(
                    a.iter()
                        .filter(|l| !e.contains(l))
                        .map(|l| format!("{table}: but found  {l}")),
                );
            }
            (None, None) => unreachable!(),
        }
    }
    out
}

/// Runs `body` against fresh databases and drops them afterwards, whatever happened.
async fn with_databases<F, Fut>(conn: &mut Conn, names: &[String], body: F)
where
    F: FnOnce(Conn) -> Fut,
    Fut: std::future::Future<Output = Conn> + Send + 'static,
{
    for name in names {
        conn.query_drop(format!(
            "CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci"
        ))
        .await
        .unwrap_or_else(|e| panic!("cannot create test database {name}: {e}"));
    }
    let work = connect().await;
    let outcome = tokio::spawn(body(work)).await;
    for name in names {
        conn.query_drop(format!("DROP DATABASE IF EXISTS `{name}`"))
            .await
            .unwrap();
    }
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

#[tokio::test]
async fn schema_file_is_idempotent_and_matches_its_own_ddl_and_matomo() {
    let mut admin = connect().await;
    let ours = random_db_name("schema");
    let golden = format!("{ours}_golden");
    let golden_sql = tier_config::shared_dir()
        .map(|d| d.join("golden-php/matomo-state/schema.sql"))
        .filter(|p| p.is_file())
        .map(|p| std::fs::read_to_string(p).unwrap());
    let names = vec![ours.clone(), golden.clone()];
    with_databases(&mut admin, &names, |mut conn| async move {
        let sql = matomo_schema_sql(PREFIX);
        apply(&mut conn, &ours, &sql).await;
        let first = describe(&mut conn, &ours).await;
        apply(&mut conn, &ours, &sql).await;
        let second = describe(&mut conn, &ours).await;
        assert_eq!(first, second, "applying the schema twice changed it");
        assert_eq!(first.len(), MATOMO_TABLES.len());
        for table in MATOMO_TABLES {
            assert!(first.contains_key(&format!("{PREFIX}{table}")), "{table} not created");
        }

        let diff = differences(&describe_ddl(&sql), &first);
        assert!(diff.is_empty(), "live schema differs from the DDL text:\n{}", diff.join("\n"));

        match golden_sql {
            Some(golden_sql) => {
                apply(&mut conn, &golden, &golden_sql).await;
                let diff = differences(&describe(&mut conn, &golden).await, &first);
                assert!(
                    diff.is_empty(),
                    "deploy/schema/matomo.sql differs from Matomo 5.1.2's installer (expected = Matomo):\n{}",
                    diff.join("\n")
                );
                println!("schema: {} tables identical to Matomo 5.1.2's installer", first.len());
            }
            None => println!(
                "schema: golden-php/matomo-state/schema.sql not found (set MATOMO_SHARED_DIR); \
                 compared with the DDL text only"
            ),
        }
        conn
    })
    .await;
}

#[test]
fn ddl_description_catches_a_changed_column() {
    let sql = matomo_schema_sql(PREFIX);
    let original = describe_ddl(&sql);
    let changed =
        describe_ddl(&sql.replace("`referer_url` VARCHAR(1500)", "`referer_url` VARCHAR(1000)"));
    let diff = differences(&original, &changed);
    assert_eq!(diff.len(), 2, "{diff:?}");
    assert!(
        diff[0].contains("referer_url varchar(1500)")
            && diff[1].contains("referer_url varchar(1000)")
    );
}
