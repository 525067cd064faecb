//! `test`: checks the set-up the way QueuedTracking's `queuedtracking:test` does — settings,
//! Redis version and memory, the eviction policy, Lua support, the lock primitives (SET NX EX,
//! compare-and-expire, compare-and-delete) and list operations on temporary keys — plus MySQL
//! connectivity. Returns whether every check passed.

use std::io::Write;

use fred::prelude::*;
use mysql_async::prelude::Queryable as _;

use super::{info_value, redis_info, CommandError};
use crate::engine::redis::Scripts;

/// Runs the checks; writes one line per check. `Ok(false)` when a check failed.
pub async fn run_checks(
    redis: &Pool,
    mysql: Option<&mysql_async::Pool>,
    config: &tier_config::Config,
    skip_memory_config: bool,
    out: &mut dyn Write,
) -> Result<bool, CommandError> {
    let mut ok = true;
    let mut check =
        |out: &mut dyn Write, passed: bool, good: &str, bad: String| -> std::io::Result<()> {
            if passed {
                writeln!(out, "ok    {good}")
            } else {
                ok = false;
                writeln!(out, "FAIL  {bad}")
            }
        };
    writeln!(out, "Settings that will be used:")?;
    writeln!(out, "  Backend: {:?}", config.redis.backend)?;
    writeln!(out, "  NumQueueWorkers: {}", config.queue.num_queue_workers)?;
    writeln!(
        out,
        "  NumRequestsToProcess: {}",
        config.queue.num_requests_to_process
    )?;
    writeln!(out, "  Redis: {}", config.redis_url_redacted())?;
    writeln!(out, "  Key prefix: {:?}", config.queue.key_prefix)?;
    writeln!(out, "  MySQL: {}", config.mysql_url_redacted())?;
    writeln!(out)?;

    let server = redis_info(redis, "server").await?;
    writeln!(
        out,
        "Redis version: {}",
        info_value(&server, "redis_version").unwrap_or("unknown")
    )?;
    let memory = redis_info(redis, "memory").await?;
    writeln!(
        out,
        "Memory: {} used, {} peak",
        info_value(&memory, "used_memory_human").unwrap_or("unknown"),
        info_value(&memory, "used_memory_peak_human").unwrap_or("unknown")
    )?;
    if !skip_memory_config {
        match config_get(redis, "maxmemory-policy").await {
            Ok(policy) => {
                writeln!(out, "MaxMemory eviction policy: {policy}")?;
                match eviction_risk(&policy) {
                    None => check(
                        out,
                        true,
                        "eviction policy noeviction never drops queued hits",
                        String::new(),
                    )?,
                    // QueuedTracking itself advises allkeys-lru: a warning, not a failure.
                    Some(risk) if policy == "allkeys-lru" => writeln!(out, "WARN  {risk}")?,
                    Some(risk) => check(out, false, "", risk)?,
                }
            }
            Err(e) => writeln!(
                out,
                "WARN  cannot read maxmemory-policy (CONFIG disabled?): {e}"
            )?,
        }
        if let Ok(max) = config_get(redis, "maxmemory").await {
            writeln!(out, "MaxMemory: {max}")?;
        }
    }
    writeln!(out)?;

    let echo: String = redis
        .next()
        .custom(fred::cmd!("ECHO"), vec!["TEST"])
        .await?;
    check(
        out,
        echo == "TEST",
        "connection works",
        format!("ECHO returned {echo:?}"),
    )?;

    let scripts = Scripts::default();
    match scripts.load_all(redis).await {
        Ok(()) => check(
            out,
            true,
            "Lua scripts load (SCRIPT LOAD, EVALSHA)",
            String::new(),
        )?,
        Err(e) => check(out, false, "", format!("Lua scripts cannot be loaded: {e}"))?,
    }

    let key = format!(
        "{}matomoWorkerTest:{:016x}",
        config.queue.key_prefix,
        rand::random::<u64>()
    );
    let set: Option<String> = redis
        .set(
            &key,
            "bar",
            Some(Expiration::EX(5)),
            Some(SetOptions::NX),
            false,
        )
        .await?;
    check(
        out,
        set.is_some(),
        "SET NX EX acquires a free key",
        "SET NX EX did not set a free key".into(),
    )?;
    let again: Option<String> = redis
        .set(
            &key,
            "baz",
            Some(Expiration::EX(5)),
            Some(SetOptions::NX),
            false,
        )
        .await?;
    check(
        out,
        again.is_none(),
        "SET NX refuses a taken key",
        "SET NX overwrote a taken key".into(),
    )?;
    let ttl: i64 = redis.pttl(&key).await?;
    check(
        out,
        (3000..=5000).contains(&ttl),
        "initial expire is set",
        format!("initial expire is {ttl} ms"),
    )?;
    let extended: i64 = scripts
        .extend
        .run(
            redis,
            vec![key.clone()],
            vec![Value::from("bar"), Value::from(10)],
        )
        .await?;
    let ttl: i64 = redis.pttl(&key).await?;
    check(
        out,
        extended == 1 && (8000..=10000).contains(&ttl),
        "compare-and-expire extends",
        format!("compare-and-expire gave {extended}, ttl {ttl} ms"),
    )?;
    let wrong: i64 = scripts
        .extend
        .run(
            redis,
            vec![key.clone()],
            vec![Value::from("nope"), Value::from(30)],
        )
        .await?;
    check(
        out,
        wrong == 0,
        "compare-and-expire ignores another value",
        "compare-and-expire extended a lock it does not hold".into(),
    )?;
    let deleted: i64 = scripts
        .release
        .run(redis, vec![key.clone()], vec![Value::from("bar")])
        .await?;
    check(
        out,
        deleted == 1,
        "compare-and-delete releases",
        format!("compare-and-delete gave {deleted}"),
    )?;

    let list = format!("{key}:list");
    let _: i64 = redis
        .rpush(&list, vec!["value1", "value2", "value3"])
        .await?;
    let first: Vec<String> = redis.lrange(&list, 0, 1).await?;
    let _: () = redis.ltrim(&list, 2, -1).await?;
    let rest: Vec<String> = redis.lrange(&list, 0, 1).await?;
    let _: i64 = redis.del(vec![key.clone(), list.clone()]).await?;
    check(
        out,
        first == ["value1", "value2"] && rest == ["value3"],
        "list operations (RPUSH, LRANGE, LTRIM)",
        format!("lists misbehave: {first:?} then {rest:?}"),
    )?;

    if let Some(mysql) = mysql {
        match mysql_version(mysql).await {
            Ok(version) => check(
                out,
                true,
                &format!("MySQL connection works (server {version})"),
                String::new(),
            )?,
            Err(e) => check(out, false, "", format!("MySQL: {e}"))?,
        }
    }
    writeln!(out)?;
    writeln!(
        out,
        "{}",
        if ok {
            "Done: every check passed."
        } else {
            "Done: some checks FAILED."
        }
    )?;
    Ok(ok)
}

/// What the eviction policy `policy` risks, `None` for `noeviction` (the only policy that never
/// drops a queued hit, a lock or the engine's trim records).
pub fn eviction_risk(policy: &str) -> Option<String> {
    match policy {
        "noeviction" => None,
        "allkeys-lru" => Some(
            "allkeys-lru (QueuedTracking's advice) can evict queued hits when Redis is full; noeviction is safer"
                .into(),
        ),
        other => Some(format!(
            "eviction policy {other} can evict queue lists or locks when memory is low; use noeviction"
        )),
    }
}

/// Reads Redis's `maxmemory-policy` and tells what it risks (see [`eviction_risk`]).
pub async fn eviction_warning(redis: &Pool) -> Result<Option<String>, fred::error::Error> {
    Ok(eviction_risk(&config_get(redis, "maxmemory-policy").await?))
}

async fn config_get(redis: &Pool, name: &str) -> Result<String, fred::error::Error> {
    let pair: Vec<String> = redis
        .next()
        .custom(
            fred::cmd!("CONFIG"),
            vec!["GET".to_owned(), name.to_owned()],
        )
        .await?;
    Ok(pair
        .get(1)
        .map(|v| v.to_ascii_lowercase())
        .unwrap_or_default())
}

async fn mysql_version(mysql: &mysql_async::Pool) -> Result<String, mysql_async::Error> {
    let mut conn = mysql.get_conn().await?;
    let v: Option<String> = conn.query_first("SELECT VERSION()").await?;
    Ok(v.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::eviction_risk;

    #[test]
    fn only_noeviction_is_without_risk() {
        assert_eq!(eviction_risk("noeviction"), None);
        assert!(eviction_risk("allkeys-lru").is_some_and(|w| w.contains("noeviction is safer")));
        assert!(eviction_risk("volatile-lru").is_some_and(|w| w.contains("volatile-lru")));
    }
}
