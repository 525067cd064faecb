//! `log_action` resolution for a whole batch — Matomo's `TableLogAction::loadIdsAction` and
//! `Model::createNewIdAction`, batched: one SELECT for every name not in the shared cache, one
//! multi-row INSERT for the missing ones, one re-SELECT, and a DELETE of any row of ours that lost
//! to a lower idaction written concurrently (Matomo's "insert, re-select lowest id, delete the
//! loser"). The table has no unique key, so this is how concurrent writers stay consistent.
//!
//! Only ids that were already committed when the batch started (found by the first SELECT)
//! enter the shared cache; ids inserted by this batch are cached by the next batch's SELECT
//! once committed, so a rolled-back batch never leaves a dangling id in the cache.

use std::collections::HashMap;

use mysql_async::prelude::Queryable;
use mysql_async::Transaction;

use super::sql::{multi_insert, Val};

/// Key of one action: (type, name).
pub type ActionKey = (u8, String);

/// Shared cache of committed action ids.
pub type ActionCache = moka::sync::Cache<ActionKey, u64>;

fn crc32(name: &str) -> u32 {
    crc32fast::hash(name.as_bytes())
}

fn where_clause(keys: &[&ActionKey]) -> String {
    let mut sql = String::new();
    for (i, (t, name)) in keys.iter().enumerate() {
        if i > 0 {
            sql.push_str(" OR ");
        }
        sql.push_str("(hash = ");
        sql.push_str(&crc32(name).to_string());
        sql.push_str(" AND name = ");
        Val::Str(name.clone()).render(&mut sql);
        sql.push_str(" AND type = ");
        sql.push_str(&t.to_string());
        sql.push(')');
    }
    sql
}

async fn select_lowest(
    tx: &mut Transaction<'static>,
    table: &str,
    keys: &[&ActionKey],
) -> Result<HashMap<ActionKey, Vec<u64>>, mysql_async::Error> {
    let mut found: HashMap<ActionKey, Vec<u64>> = HashMap::new();
    for chunk in keys.chunks(500) {
        let sql = format!(
            "SELECT idaction, type, name FROM `{table}` WHERE {}",
            where_clause(chunk)
        );
        let rows: Vec<(u64, u8, Vec<u8>)> = tx.query(sql).await?;
        for (id, t, name) in rows {
            let name = String::from_utf8_lossy(&name).into_owned();
            // The collation is case-insensitive; Matomo then compares in PHP (`==`).
            found.entry((t, name)).or_default().push(id);
        }
    }
    for ids in found.values_mut() {
        ids.sort_unstable();
    }
    Ok(found)
}

/// Resolves every (type, name, url_prefix) to an idaction, inserting the missing ones.
/// Empty names are not looked up (callers store 0, as Matomo stores `false`).
pub async fn resolve(
    tx: &mut Transaction<'static>,
    table: &str,
    cache: &ActionCache,
    wanted: &[(ActionKey, Option<i64>)],
) -> Result<HashMap<ActionKey, u64>, mysql_async::Error> {
    let mut out: HashMap<ActionKey, u64> = HashMap::new();
    let mut prefix_of: HashMap<&ActionKey, Option<i64>> = HashMap::new();
    let mut missing: Vec<&ActionKey> = Vec::new();
    for (key, prefix) in wanted {
        if key.1.is_empty() || key.1 == "0" || out.contains_key(key) || prefix_of.contains_key(key)
        {
            continue;
        }
        if let Some(id) = cache.get(key) {
            out.insert(key.clone(), id);
        } else {
            prefix_of.insert(key, *prefix);
            missing.push(key);
        }
    }
    if missing.is_empty() {
        return Ok(out);
    }
    let found = select_lowest(tx, table, &missing).await?;
    let mut to_insert: Vec<&ActionKey> = Vec::new();
    for key in missing {
        match found.get(key).and_then(|ids| ids.first()) {
            Some(id) => {
                cache.insert(key.clone(), *id);
                out.insert(key.clone(), *id);
            }
            None => to_insert.push(key),
        }
    }
    if to_insert.is_empty() {
        return Ok(out);
    }
    let mut inserted: HashMap<ActionKey, u64> = HashMap::new();
    for chunk in to_insert.chunks(500) {
        let rows: Vec<Vec<Val>> = chunk
            .iter()
            .map(|k| {
                vec![
                    Val::Str(k.1.clone()),
                    Val::Int(i64::from(crc32(&k.1))),
                    Val::Int(i64::from(k.0)),
                    prefix_of
                        .get(k)
                        .copied()
                        .flatten()
                        .map_or(Val::Null, Val::Int),
                ]
            })
            .collect();
        let sql = multi_insert(table, false, &["name", "hash", "type", "url_prefix"], &rows);
        tx.query_drop(sql).await?;
        // A multi-row INSERT gets consecutive ids (innodb_autoinc_lock_mode 0 or 1, checked at start).
        let first = tx.last_insert_id().unwrap_or(0);
        for (i, k) in chunk.iter().enumerate() {
            inserted.insert((*k).clone(), first + i as u64);
        }
    }
    let again = select_lowest(tx, table, &to_insert).await?;
    let mut losers: Vec<u64> = Vec::new();
    for key in to_insert {
        let mine = inserted.get(key).copied().unwrap_or(0);
        let lowest = again
            .get(key)
            .and_then(|ids| ids.first().copied())
            .unwrap_or(mine);
        if lowest != mine && mine != 0 {
            losers.push(mine);
        }
        out.insert(key.clone(), lowest);
    }
    if !losers.is_empty() {
        let list: Vec<String> = losers.iter().map(u64::to_string).collect();
        tx.query_drop(format!(
            "DELETE FROM `{table}` WHERE idaction IN ({})",
            list.join(",")
        ))
        .await?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_matches_mysql() {
        // SELECT CRC32('example.com/') = 2405424658
        assert_eq!(crc32("MySQL"), 3259397556);
    }

    #[test]
    fn where_clause_uses_hash_name_type() {
        let k = (1u8, "a".to_string());
        let w = where_clause(&[&k]);
        assert!(w.starts_with("(hash = 3904355907 AND name = _utf8mb4 X'61' AND type = 1)"));
    }
}
