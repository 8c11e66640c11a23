//! The last-known-good configuration on local disk, so a node can start and serve while
//! PostgreSQL is unreachable. Written atomically (temporary file, fsync, rename) in the
//! compact [`binary`] format. Copies written by older versions, one JSON document, are read
//! too (told apart by their first byte): fields added since then take their defaults.

mod binary;
mod field;

use std::io::BufRead;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::{Map, Value, json};

use super::model::ConfigData;

/// Read and write buffer: large enough that a 1M-key copy moves in big system calls.
const BUFFER: usize = 1 << 20;

/// Saves `data` to `path` atomically. Blocking: call from `spawn_blocking`.
pub fn save(path: &Path, data: &ConfigData) -> std::io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    if let Some(dir) = dir {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = tmp_path(path);
    // Owner-only: the file holds API key hashes, upstream addresses, and the secrets of JWT
    // (HMAC keys) and token introspection settings.
    let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
    binary::write(std::io::BufWriter::with_capacity(BUFFER, &mut file), data)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    // The rename itself is durable once the directory is.
    std::fs::File::open(dir.unwrap_or(Path::new("."))).and_then(|d| d.sync_all())
}

/// Loads a configuration saved by [`save`] (or by an older version). Blocking.
pub fn load(path: &Path) -> std::io::Result<ConfigData> {
    load_unless(path, &AtomicBool::new(false))
}

/// [`load`], giving up (with an `Interrupted` error) once `cancel` is set. A damaged or
/// unknown file is an `InvalidData` error naming the file and what is wrong.
pub fn load_unless(path: &Path, cancel: &AtomicBool) -> std::io::Result<ConfigData> {
    if cancel.load(Ordering::Relaxed) {
        return Err(std::io::ErrorKind::Interrupted.into());
    }
    let file = std::fs::File::open(path)?;
    let size = file.metadata()?.len();
    let mut input = std::io::BufReader::with_capacity(BUFFER, file);
    let first = input.fill_buf()?.first().copied();
    let loaded = match first {
        Some(b) if b == binary::MAGIC[0] => binary::read(input, size, cancel),
        Some(b'{') => load_json(input),
        None => Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "the copy is empty")),
        Some(_) => Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "not a Tollgate configuration copy")),
    };
    loaded.map_err(|e| match e.kind() {
        std::io::ErrorKind::InvalidData => std::io::Error::new(e.kind(), format!("{}: {e}", path.display())),
        _ => e,
    })
}

/// A copy written by a version before the binary format: one JSON document.
fn load_json(input: impl std::io::Read) -> std::io::Result<ConfigData> {
    let invalid = |e: serde_json::Error| std::io::Error::new(std::io::ErrorKind::InvalidData, e);
    let mut value: Value = serde_json::from_reader(input).map_err(invalid)?;
    upgrade(&mut value);
    serde_json::from_value(value).map_err(invalid)
}

/// Fills in the fields a file from an older version lacks (those that have no `None` to
/// fall back on), with the defaults the schema gives existing rows.
fn upgrade(value: &mut Value) {
    let defaults = [
        ("apis", vec![("key_header", json!("x-api-key")), ("hide_credentials", json!(true))]),
        ("routes", vec![("cost", json!(1))]),
        ("plans", vec![("route_costs", json!({}))]),
    ];
    for (table, fields) in defaults {
        let rows = value.get_mut(table).and_then(Value::as_object_mut).into_iter().flat_map(Map::values_mut);
        for row in rows.filter_map(Value::as_object_mut) {
            for (field, default) in &fields {
                row.entry(*field).or_insert_with(|| default.clone());
            }
        }
    }
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".tmp");
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_atomically() -> std::io::Result<()> {
        let dir = std::env::temp_dir().join(format!("tg-disk-{}", uuid::Uuid::new_v4()));
        let path = dir.join("config.json");
        let data = ConfigData { event_id: 42, ..ConfigData::default() };
        save(&path, &data)?;
        assert_eq!(load(&path)?, data);
        assert!(!tmp_path(&path).exists());
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path)?.permissions().mode() & 0o777, 0o600);
        std::fs::remove_dir_all(dir)
    }

    #[test]
    fn files_of_older_versions_load_with_defaults() -> std::io::Result<()> {
        let dir = std::env::temp_dir().join(format!("tg-disk-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir)?;
        let path = dir.join("config.json");
        let (api, route, plan) = (uuid::Uuid::from_u128(1), uuid::Uuid::from_u128(2), uuid::Uuid::from_u128(3));
        let old = json!({
            "event_id": 7,
            "apis": {api.to_string(): {"id": api, "name": "a", "upstream_protocol": "http", "lb_policy": "round_robin",
                "connect_timeout_ms": 1, "read_timeout_ms": 1, "retries": 0, "auth_methods": ["key_auth"],
                "enabled": true, "total_timeout_ms": 0, "hash_on": null, "retry_on_statuses": [],
                "health_check": null, "passive_health": null, "circuit_breaker": null, "canary_weight": 0,
                "canary_header": null}},
            "targets": {},
            "routes": {route.to_string(): {"id": route, "api_id": api, "name": "r", "hosts": [], "paths": ["/"],
                "methods": [], "headers": {}, "query": {}, "strip_path": false, "rewrite_path": null, "priority": 0}},
            "plans": {plan.to_string(): {"id": plan, "api_id": api, "name": "p", "rate_limit_per_second": null,
                "rate_limit_per_minute": null, "rate_limit_per_hour": null, "burst": 0, "quota_per_day": null,
                "quota_per_month": null, "limit_mode": "local", "redis_failure_policy": "fail_open"}},
            "developers": {}, "consumers": {}, "keys": {}, "subscriptions": {}
        });
        std::fs::write(&path, old.to_string())?;
        let data = load(&path)?;
        assert_eq!(data.apis[&api].key_header, "x-api-key");
        assert!(data.apis[&api].hide_credentials && data.apis[&api].jwt.is_none());
        assert_eq!((data.routes[&route].cost, data.routes[&route].auth_methods.is_none()), (1, true));
        assert!(data.plans[&plan].route_costs.is_empty() && data.token_bindings.is_empty());
        std::fs::remove_dir_all(dir)
    }
}

#[cfg(test)]
mod format_tests;
