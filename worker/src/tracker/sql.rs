//! SQL values and literal rendering for the tracker's multi-row statements.
//!
//! The tracker writes whole batches as multi-row INSERTs and one multi-statement round trip of
//! UPDATEs, so values are rendered as literals here instead of bound one by one. Strings are
//! sent as `_utf8mb4 X'…'` hex literals and binaries as `X'…'`: no escaping rules, no
//! dependence on `NO_BACKSLASH_ESCAPES`, and every byte arrives unchanged. Datetimes are unix
//! seconds rendered as UTC `'YYYY-MM-DD HH:MM:SS'` (Matomo stores UTC). This module never does I/O.

use std::fmt::Write;

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
    /// The column's default (SQL `DEFAULT`): in a multi-row INSERT, a row that does not set a
    /// column the others set, stored as if the column were left out.
    Default,
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
            Val::Null | Val::Default => true,
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
            Val::Default => out.push_str("DEFAULT"),
            Val::Int(i) => push_int(out, *i),
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
                push_datetime(out, *t);
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

/// Appends the decimal form of `i` (what `{i}` formats, without the formatting machinery: a
/// batch renders tens of thousands of integers).
pub fn push_int(out: &mut String, i: i64) {
    out.push_str(itoa::Buffer::new().format(i));
}

/// Appends ASCII bytes built on the stack.
fn push_ascii(out: &mut String, ascii: &[u8]) {
    // Only ASCII digits, letters and punctuation reach here, which are UTF-8.
    out.push_str(std::str::from_utf8(ascii).unwrap_or_default());
}

/// Appends `bytes` in upper-case hex, 64 bytes at a time through a stack buffer.
fn push_hex(out: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.reserve(bytes.len() * 2);
    let mut buf = [0u8; 128];
    for chunk in bytes.chunks(64) {
        for (k, b) in chunk.iter().enumerate() {
            buf[2 * k] = HEX[(b >> 4) as usize];
            buf[2 * k + 1] = HEX[(b & 15) as usize];
        }
        push_ascii(out, &buf[..2 * chunk.len()]);
    }
}

/// Unix seconds as Matomo's UTC datetime string `YYYY-MM-DD HH:MM:SS`.
pub fn datetime(ts: i64) -> String {
    let mut out = String::with_capacity(19);
    push_datetime(&mut out, ts);
    out
}

/// Appends [`datetime`] of `ts` to `out`, from the civil date of the day number (chrono's
/// strftime parsed its format string on every call, several times per hit). Timestamps
/// outside years 0–9999 become 1970-01-01 00:00:00, as chrono's
/// `from_timestamp(..).unwrap_or_default()` made them.
pub fn push_datetime(out: &mut String, ts: i64) {
    // 0000-01-01T00:00:00Z ..= 9999-12-31T23:59:59Z
    const MIN: i64 = -62_167_219_200;
    const MAX: i64 = 253_402_300_799;
    let ts = if (MIN..=MAX).contains(&ts) { ts } else { 0 };
    let days = ts.div_euclid(86_400);
    let secs = ts.rem_euclid(86_400);
    let (y, m, d) = matomo_wire::civil::civil_from_days(days);
    // Written digit by digit: the year is 0–9999 here, the rest below 100.
    let y = y.clamp(0, 9999) as u32;
    let digit = |v: u32| b'0' + (v % 10) as u8;
    let two = |v: u32| [digit(v / 10), digit(v)];
    let (mo, da) = (two(m as u32), two(d as u32));
    let (h, mi, se) = (
        two((secs / 3600) as u32),
        two((secs / 60 % 60) as u32),
        two((secs % 60) as u32),
    );
    push_ascii(
        out,
        &[
            digit(y / 1000),
            digit(y / 100),
            digit(y / 10),
            digit(y),
            b'-',
            mo[0],
            mo[1],
            b'-',
            da[0],
            da[1],
            b' ',
            h[0],
            h[1],
            b':',
            mi[0],
            mi[1],
            b':',
            se[0],
            se[1],
        ],
    );
}

/// A multi-row `INSERT [IGNORE] INTO table (cols) VALUES (…),(…)` statement; each row yields
/// its values in `cols` order (borrowed, so rows need not be copied to be rendered).
pub fn multi_insert<'v, R: IntoIterator<Item = &'v Val>>(
    table: &str,
    ignore: bool,
    cols: &[&str],
    rows: impl IntoIterator<Item = R>,
) -> String {
    let rows = rows.into_iter();
    let mut sql = String::with_capacity(64 + rows.size_hint().0 * cols.len() * 8);
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
    for (r, row) in rows.enumerate() {
        if r > 0 {
            sql.push(',');
        }
        sql.push('(');
        for (i, v) in row.into_iter().enumerate() {
            if i > 0 {
                sql.push(',');
            }
            v.render(&mut sql);
        }
        sql.push(')');
    }
    sql
}

/// One statement updating many existing rows by key: `UPDATE table AS t JOIN (SELECT … AS key,
/// … AS c UNION ALL SELECT …) AS v ON t.key = v.key SET t.c = v.c, …`. `cols[0]` is the key and
/// every row starts with its value. Rows whose key no longer exists (deleted meanwhile) are not
/// matched, so nothing is ever inserted; the rows matched are locked by the statement itself.
pub fn multi_update_join(table: &str, cols: &[&str], rows: &[Vec<Val>]) -> String {
    let mut sql = String::with_capacity(96 + rows.len() * cols.len() * 12);
    let _ = write!(sql, "UPDATE `{table}` AS t JOIN (");
    for (r, row) in rows.iter().enumerate() {
        sql.push_str(if r == 0 {
            "SELECT "
        } else {
            " UNION ALL SELECT "
        });
        for (i, v) in row.iter().enumerate() {
            if i > 0 {
                sql.push(',');
            }
            v.render(&mut sql);
            if r == 0 {
                let _ = write!(sql, " AS `{}`", cols[i]);
            }
        }
    }
    let _ = write!(sql, ") AS v ON t.`{0}` = v.`{0}` SET ", cols[0]);
    for (i, c) in cols[1..].iter().enumerate() {
        if i > 0 {
            sql.push_str(", ");
        }
        let _ = write!(sql, "t.`{c}` = v.`{c}`");
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
    use chrono::{DateTime, Utc};

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
    fn builds_multi_update_join() {
        let sql = multi_update_join(
            "t",
            &["id", "a", "b"],
            &[
                vec![Val::Int(7), Val::Int(1), Val::Null],
                vec![Val::Int(9), Val::Int(2), Val::Str("x".into())],
            ],
        );
        assert_eq!(
            sql,
            "UPDATE `t` AS t JOIN (SELECT 7 AS `id`,1 AS `a`,NULL AS `b` UNION ALL SELECT 9,2,_utf8mb4 X'78') \
             AS v ON t.`id` = v.`id` SET t.`a` = v.`a`, t.`b` = v.`b`"
        );
    }

    proptest::proptest! {
        #[test]
        fn integers_render_as_formatted(i in proptest::num::i64::ANY) {
            let mut s = String::new();
            Val::Int(i).render(&mut s);
            proptest::prop_assert_eq!(s, i.to_string());
        }

        #[test]
        fn binaries_render_as_upper_hex(b in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let mut s = String::new();
            push_hex(&mut s, &b);
            proptest::prop_assert_eq!(s, hex::encode_upper(&b));
        }
    }

    #[test]
    fn integer_edges() {
        for i in [0, -1, 9, 10, i64::MAX, i64::MIN] {
            let mut s = String::new();
            push_int(&mut s, i);
            assert_eq!(s, i.to_string());
        }
    }

    #[test]
    fn datetime_edges() {
        assert_eq!(datetime(0), "1970-01-01 00:00:00");
        assert_eq!(datetime(-1), "1969-12-31 23:59:59");
        assert_eq!(datetime(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(datetime(253_402_300_799), "9999-12-31 23:59:59");
        assert_eq!(datetime(253_402_300_800), "1970-01-01 00:00:00");
        assert_eq!(datetime(i64::MIN), "1970-01-01 00:00:00");
    }

    proptest::proptest! {
        #[test]
        fn datetime_matches_chrono(ts in -62_167_219_200i64..=253_402_300_799) {
            let expected = DateTime::<Utc>::from_timestamp(ts, 0)
                .unwrap()
                .format("%Y-%m-%d %H:%M:%S")
                .to_string();
            proptest::prop_assert_eq!(datetime(ts), expected);
        }
    }

    #[test]
    fn builds_multi_insert() {
        let sql = multi_insert("t", true, &["a", "b"], &[vec![Val::Int(1), Val::Null]]);
        assert_eq!(sql, "INSERT IGNORE INTO `t` (`a`, `b`) VALUES (1,NULL)");
    }
}
