//! `log_action` resolution for a whole batch — Matomo's `TableLogAction::loadIdsAction` and
//! `Model::createNewIdAction`, batched: one SELECT for every name not in the shared cache, one
//! multi-row INSERT for the missing ones, one re-SELECT, and a DELETE of any row of ours that lost
//! to a lower idaction written concurrently (Matomo's "insert, re-select lowest id, delete the
//! loser"). The table has no unique key, so this is how concurrent writers stay consistent.
//!
//! Only ids that were already committed when the batch started (found by the first SELECT)
//! enter the shared cache; ids inserted by this batch are cached by the next batch's SELECT
//! once committed, so a rolled-back batch never leaves a dangling id in the cache.

use std::collections::{HashMap, HashSet};
use std::fmt::Write;

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

/// `(type, hash) IN ((…), …)` over the distinct pairs of `keys`, in index order. One range
/// per pair on `index_type_hash`: a quarter of the server CPU of Matomo's `(hash = … AND
/// name = … AND type = …) OR …` for 500 keys (docs/compatibility.md, "Performance shape").
/// The names are compared by the caller.
fn where_clause(keys: &[&ActionKey]) -> String {
    let mut pairs: Vec<(u8, u32)> = keys.iter().map(|(t, name)| (*t, crc32(name))).collect();
    pairs.sort_unstable();
    pairs.dedup();
    let mut sql = String::with_capacity(20 + pairs.len() * 16);
    sql.push_str("(type, hash) IN (");
    for (i, (t, hash)) in pairs.iter().enumerate() {
        if i > 0 {
            sql.push(',');
        }
        let _ = write!(sql, "({t},{hash})");
    }
    sql.push(')');
    sql
}

/// Ids of the rows named exactly as one of `keys`, lowest first. The SELECT returns every row
/// of the keys' (type, hash) pairs; only exact names are kept, which is what the name
/// condition and the comparison in PHP (`==` after the case-insensitive collation matched)
/// leave in Matomo.
async fn select_lowest(
    tx: &mut Transaction<'static>,
    table: &str,
    keys: &[&ActionKey],
) -> Result<HashMap<ActionKey, Vec<u64>>, mysql_async::Error> {
    let mut found: HashMap<ActionKey, Vec<u64>> = HashMap::new();
    for chunk in keys.chunks(500) {
        let wanted: HashSet<&ActionKey> = chunk.iter().copied().collect();
        let sql = format!(
            "SELECT idaction, type, name FROM `{table}` WHERE {}",
            where_clause(chunk)
        );
        let rows: Vec<(u64, u8, Vec<u8>)> = tx.query(sql).await?;
        for (id, t, name) in rows {
            let key = (t, String::from_utf8_lossy(&name).into_owned());
            if wanted.contains(&key) {
                found.entry(key).or_default().push(id);
            }
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
    fn where_clause_lists_distinct_type_hash_pairs_in_index_order() {
        let (a4, b1, a1) = (
            (4u8, "a".to_string()),
            (1u8, "b".to_string()),
            (1u8, "a".to_string()),
        );
        let w = where_clause(&[&a4, &b1, &a1, &a4]);
        assert_eq!(
            w,
            format!(
                "(type, hash) IN ((1,{}),(1,{}),(4,{}))",
                crc32("b").min(crc32("a")),
                crc32("b").max(crc32("a")),
                crc32("a")
            )
        );
    }
}
