//! QueuedTracking's settings as the tier's (`redis.*`, `queue.*`), from a `[QueuedTracking]`
//! section of config.ini.php or from the plugin's settings stored in Matomo's database, which
//! have the same names (`stored`).
//!
//! QueuedTracking lists several Sentinel or Cluster nodes as two parallel comma-separated
//! lists, `redisHost = "s1,s2"` and `redisPort = "26379,26380"`. The tier keeps one port and
//! lets each host carry its own (`s1:26379,s2:26380`), so the two lists are zipped here. (Its
//! default port for Sentinel, 26379, is applied after all the layers are merged, in `load`.)

use crate::error::{ConfigError, Origin};
use crate::matomo_ini::{IniSection, IniValue, MatomoSetting};
use crate::redis_servers::{join_host_port, list_items as items};

/// `[QueuedTracking]` keys → our settings (`useWhatRedisBackendType` or, before QueuedTracking
/// 5.1, `useSentinelBackend`, and `redisHost` and `redisPort` are mapped separately, the last
/// two by [`redis_servers`]).
const QUEUED_TRACKING: &[(&str, &str)] = &[
    ("redisDatabase", "redis.database"),
    ("redisPassword", "redis.password"),
    ("sentinelMasterName", "redis.sentinel_master"),
    ("numQueueWorkers", "queue.num_queue_workers"),
    ("numRequestsToProcess", "queue.num_requests_to_process"),
];

/// Our settings from a `[QueuedTracking]` section, wherever it comes from (config.ini.php, or
/// the plugin's settings stored in Matomo's database); `origin` names where a key came from.
pub fn settings(
    section: &IniSection,
    origin: &dyn Fn(&str) -> Origin,
) -> Result<Vec<MatomoSetting>, ConfigError> {
    let mut out = Vec::new();
    if let Some(IniValue::Scalar(backend)) = section.get("backend") {
        if !backend.is_empty() && backend != "redis" {
            return Err(ConfigError::Invalid {
                key: "[QueuedTracking] backend".into(),
                value: format!("\"{backend}\""),
                problem: "only the redis backend is supported by this tier".into(),
                origin: Box::new(origin("backend")),
            });
        }
    }
    for (ini_key, our_key) in QUEUED_TRACKING {
        match section.get(ini_key) {
            // An empty redisPassword means "no password", which is our default.
            Some(IniValue::Scalar(v)) if v.is_empty() && *ini_key == "redisPassword" => {}
            Some(value) => out.push(MatomoSetting {
                key: our_key,
                value: value.clone(),
                origin: origin(ini_key),
            }),
            None => {}
        }
    }
    let servers = redis_servers(section, origin)?;
    for (key, value, ini_key) in servers {
        out.push(MatomoSetting {
            key,
            value,
            origin: origin(ini_key),
        });
    }
    if let Some(IniValue::Scalar(kind)) = section.get("useWhatRedisBackendType") {
        let backend = match kind.trim() {
            "1" | "" => "standalone",
            "2" => "sentinel",
            "3" => "cluster",
            other => {
                return Err(ConfigError::Invalid {
                    key: "[QueuedTracking] useWhatRedisBackendType".into(),
                    value: other.to_string(),
                    problem: "must be 1 (standalone), 2 (sentinel) or 3 (cluster)".into(),
                    origin: Box::new(origin("useWhatRedisBackendType")),
                })
            }
        };
        out.push(MatomoSetting {
            key: "redis.backend",
            value: IniValue::Scalar(backend.into()),
            origin: origin("useWhatRedisBackendType"),
        });
    } else if let Some(IniValue::Scalar(on)) = section.get("useSentinelBackend") {
        // QueuedTracking before 5.1: a flag, which its 5.1 update turns into type 2 or 1.
        let backend = if on.trim() == "1" {
            "sentinel"
        } else {
            "standalone"
        };
        out.push(MatomoSetting {
            key: "redis.backend",
            value: IniValue::Scalar(backend.into()),
            origin: origin("useSentinelBackend"),
        });
    }
    Ok(out)
}

/// `redis.host` and `redis.port` for the section, when it sets either, as (key, value, the
/// QueuedTracking key it came from).
pub fn redis_servers(
    section: &IniSection,
    origin: &dyn Fn(&str) -> Origin,
) -> Result<Vec<(&'static str, IniValue, &'static str)>, ConfigError> {
    let scalar = |key: &str| match section.get(key) {
        Some(IniValue::Scalar(v)) => Some(v.trim().to_owned()),
        _ => None,
    };
    let (host, port) = (scalar("redisHost"), scalar("redisPort"));
    let mut out = Vec::new();
    let Some(ports) = port.as_deref().filter(|p| p.contains(',')) else {
        if let Some(value) = section.get("redisHost") {
            out.push(("redis.host", value.clone(), "redisHost"));
        }
        if let Some(value) = section.get("redisPort") {
            out.push(("redis.port", value.clone(), "redisPort"));
        }
        return Ok(out);
    };
    let ports: Vec<&str> = items(ports).collect();
    let host = host.unwrap_or_else(|| "127.0.0.1".into());
    let hosts: Vec<&str> = items(&host).collect();
    if hosts.len() != ports.len() {
        return Err(ConfigError::Invalid {
            key: "[QueuedTracking] redisPort".into(),
            value: format!("\"{}\"", port.as_deref().unwrap_or_default()),
            problem: format!(
                "lists {} ports for the {} hosts of redisHost; QueuedTracking needs one port per host",
                ports.len(),
                hosts.len()
            ),
            origin: Box::new(origin("redisPort")),
        });
    }
    if let Some(bad) = ports.iter().find(|p| p.parse::<u16>().is_err()) {
        return Err(ConfigError::Invalid {
            key: "[QueuedTracking] redisPort".into(),
            value: format!("\"{bad}\""),
            problem: "must be a TCP port from 0 to 65535".into(),
            origin: Box::new(origin("redisPort")),
        });
    }
    let joined: Vec<String> = hosts
        .iter()
        .zip(&ports)
        .map(|(host, port)| join_host_port(host, port))
        .collect();
    out.push((
        "redis.host",
        IniValue::Scalar(joined.join(",")),
        "redisHost",
    ));
    out.push(("redis.port", IniValue::Scalar(ports[0].into()), "redisPort"));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matomo_ini::IniFile;
    use std::path::PathBuf;

    fn servers(text: &str) -> Result<Vec<(String, String)>, String> {
        let file = IniFile::parse(&format!("[QueuedTracking]\n{text}")).unwrap();
        let section = file.section("QueuedTracking").unwrap();
        let origin = |key: &str| Origin::MatomoIni {
            path: PathBuf::from("config.ini.php"),
            section: "QueuedTracking".into(),
            key: key.into(),
        };
        redis_servers(section, &origin)
            .map(|found| {
                found
                    .into_iter()
                    .map(|(key, value, _)| match value {
                        IniValue::Scalar(v) => (key.to_owned(), v),
                        IniValue::List(l) => (key.to_owned(), l.join("|")),
                    })
                    .collect()
            })
            .map_err(|e| e.to_string())
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn parallel_host_and_port_lists_are_zipped() {
        assert_eq!(
            servers("redisHost = \"s1, s2,::1\"\nredisPort = \"26379,26380, 26381\""),
            Ok(pairs(&[
                ("redis.host", "s1:26379,s2:26380,[::1]:26381"),
                ("redis.port", "26379"),
            ]))
        );
    }

    #[test]
    fn single_values_pass_through() {
        assert_eq!(
            servers("redisHost = \"r1\"\nredisPort = 6380"),
            Ok(pairs(&[("redis.host", "r1"), ("redis.port", "6380")]))
        );
        assert_eq!(
            servers("redisHost = \"s1,s2\""),
            Ok(pairs(&[("redis.host", "s1,s2")]))
        );
        assert_eq!(servers("numQueueWorkers = 4"), Ok(vec![]));
    }

    #[test]
    fn mismatched_or_bad_port_lists_are_refused() {
        let error = servers("redisHost = \"s1,s2,s3\"\nredisPort = \"1,2\"").unwrap_err();
        assert!(
            error.contains("lists 2 ports for the 3 hosts of redisHost"),
            "{error}"
        );
        let error = servers("redisHost = \"s1,s2\"\nredisPort = \"1,x\"").unwrap_err();
        assert!(
            error.contains("\"x\": must be a TCP port from 0 to 65535"),
            "{error}"
        );
    }
}
