//! SQL values and literal rendering for the tracker's multi-row statements.
//!
//! The tracker writes whole batches as multi-row INSERTs and one multi-statement round trip of
//! UPDATEs, so values are rendered as literals here instead of bound one by one. Strings are
//! sent as `_utf8mb4 X'…'` hex literals and binaries as `X'…'`: no escaping rules, no
//! dependence on `NO_BACKSLASH_ESCAPES`, and every byte arrives unchanged. Datetimes are unix
//! seconds rendered as UTC `'YYYY-MM-DD HH:MM:SS'` (Matomo stores UTC). This module never does I/O.

use std::fmt::Write;

use chrono::{DateTime, Utc};

/// One cell of a Matomo log row.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    /// SQL NULL.
    Null,
    /// An integer column.
    Int(i64),
    /// A FLOAT/DOUBLE/DECIMAL column (rendered with Rust's shortest round-trip form).
    Float(f64),
    /// A text column.
    Str(String),
    /// A BINARY/VARBINARY column.
    Bin(Vec<u8>),
    /// A DATETIME column, as unix seconds (UTC).
    Time(i64),
    /// A TIME column (`HH:MM:SS`).
    TimeOfDay(String),
}

impl Val {
    /// An optional string as a value (None → NULL).
    pub fn opt_str(v: Option<&str>) -> Val {
        v.map_or(Val::Null, |s| Val::Str(s.to_owned()))
    }

    /// The integer inside, if any (floats truncated, numeric strings parsed).
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Val::Int(i) | Val::Time(i) => Some(*i),
            Val::Float(f) => Some(*f as i64),
            Val::Str(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    /// The text inside, if any.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Val::Str(s) | Val::TimeOfDay(s) => Some(s),
            _ => None,
        }
    }

    /// PHP's `empty()` applied to the value as PHP would hold it.
    pub fn is_empty_php(&self) -> bool {
        match self {
            Val::Null => true,
            Val::Int(i) | Val::Time(i) => *i == 0,
            Val::Float(f) => *f == 0.0,
            Val::Str(s) | Val::TimeOfDay(s) => s.is_empty() || s == "0",
            Val::Bin(b) => b.is_empty(),
        }
    }

    /// Appends the SQL literal of this value to `out`.
    pub fn render(&self, out: &mut String) {
        match self {
            Val::Null => out.push_str("NULL"),
            Val::Int(i) => {
                let _ = write!(out, "{i}");
            }
            Val::Float(f) => {
                if f.is_finite() {
                    let _ = write!(out, "{f:?}");
                } else {
                    out.push_str("NULL");
                }
            }
            Val::Str(s) => {
                if s.is_empty() {
                    out.push_str("''");
                } else {
                    out.push_str("_utf8mb4 X'");
                    push_hex(out, s.as_bytes());
                    out.push('\'');
                }
            }
            Val::Bin(b) => {
                out.push_str("X'");
                push_hex(out, b);
                out.push('\'');
            }
            Val::Time(t) => {
                out.push('\'');
                out.push_str(&datetime(*t));
                out.push('\'');
            }
            Val::TimeOfDay(s) => {
                out.push('\'');
                // Only digits and colons reach here (built by the tracker), but never trust it.
                out.extend(s.chars().filter(|c| c.is_ascii_digit() || *c == ':'));
                out.push('\'');
            }
        }
    }
}

fn push_hex(out: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.reserve(bytes.len() * 2);
    for b in bytes {
        out.push(HEX[(b >> 4) as usize] as char);
        out.push(HEX[(b & 15) as usize] as char);
    }
}

/// Unix seconds as Matomo's UTC datetime string `YYYY-MM-DD HH:MM:SS`.
pub fn datetime(ts: i64) -> String {
    DateTime::<Utc>::from_timestamp(ts, 0)
        .unwrap_or_default()
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// A multi-row `INSERT [IGNORE] INTO table (cols) VALUES (…),(…)` statement.
pub fn multi_insert(table: &str, ignore: bool, cols: &[&str], rows: &[Vec<Val>]) -> String {
    let mut sql = String::with_capacity(64 + rows.len() * cols.len() * 8);
    sql.push_str(if ignore {
        "INSERT IGNORE INTO `"
    } else {
        "INSERT INTO `"
    });
    sql.push_str(table);
    sql.push_str("` (");
    for (i, c) in cols.iter().enumerate() {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push('`');
        sql.push_str(c);
        sql.push('`');
    }
    sql.push_str(") VALUES ");
    for (r, row) in rows.iter().enumerate() {
        if r > 0 {
            sql.push(',');
        }
        sql.push('(');
        for (i, v) in row.iter().enumerate() {
            if i > 0 {
                sql.push(',');
            }
            v.render(&mut sql);
        }
        sql.push(')');
    }
    sql
}

/// A multi-row upsert that updates existing rows: `INSERT INTO table (cols) VALUES (…),(…)
/// ON DUPLICATE KEY UPDATE c = VALUES(c), …` for the columns in `update`. One statement for many
/// rows costs the server far less than one `UPDATE` per row; callers make sure every row exists
/// (and is locked), so nothing is ever inserted by it.
pub fn multi_update_existing(
    table: &str,
    cols: &[&str],
    rows: &[Vec<Val>],
    update: &[&str],
) -> String {
    let mut sql = multi_insert(table, false, cols, rows);
    sql.push_str(" ON DUPLICATE KEY UPDATE ");
    for (i, c) in update.iter().enumerate() {
        if i > 0 {
            sql.push_str(", ");
        }
        let _ = write!(sql, "`{c}` = VALUES(`{c}`)");
    }
    sql
}

/// `UPDATE table SET a = …, b = … WHERE key = id`.
pub fn update_one(table: &str, key: &str, id: i64, sets: &[(&str, Val)]) -> String {
    let mut sql = format!("UPDATE `{table}` SET ");
    for (i, (c, v)) in sets.iter().enumerate() {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push('`');
        sql.push_str(c);
        sql.push_str("` = ");
        v.render(&mut sql);
    }
    let _ = write!(sql, " WHERE `{key}` = {id}");
    sql
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_literals_without_escaping_problems() {
        let mut s = String::new();
        Val::Str("a'b\\c".into()).render(&mut s);
        assert_eq!(s, "_utf8mb4 X'6127625C63'");
        s.clear();
        Val::Bin(vec![0, 255]).render(&mut s);
        assert_eq!(s, "X'00FF'");
        s.clear();
        Val::Time(0).render(&mut s);
        assert_eq!(s, "'1970-01-01 00:00:00'");
        s.clear();
        Val::Float(f64::NAN).render(&mut s);
        assert_eq!(s, "NULL");
    }

    #[test]
    fn builds_multi_update_of_existing_rows() {
        let sql = multi_update_existing(
            "t",
            &["a", "b", "id"],
            &[vec![Val::Int(1), Val::Null, Val::Int(7)]],
            &["b"],
        );
        assert_eq!(
            sql,
            "INSERT INTO `t` (`a`, `b`, `id`) VALUES (1,NULL,7) ON DUPLICATE KEY UPDATE `b` = VALUES(`b`)"
        );
    }

    #[test]
    fn builds_multi_insert() {
        let sql = multi_insert("t", true, &["a", "b"], &[vec![Val::Int(1), Val::Null]]);
        assert_eq!(sql, "INSERT IGNORE INTO `t` (`a`, `b`) VALUES (1,NULL)");
    }
}
