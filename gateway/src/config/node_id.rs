//! A node's stable id: kept in its state directory (file [`NODE_ID_FILE`]), so a restarted
//! node reports as the same row of `gateway_nodes` instead of a new one beside a dead one.
//! One process per state directory ([`lock`]): two processes sharing one would be one node
//! to the control plane — one row in `/nodes`, and usage batches numbered alike, which the
//! second to write would have dropped as retries of the first's.

use std::fs::{OpenOptions, TryLockError};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use uuid::Uuid;

/// The file holding the id, next to the last-known-good configuration.
pub const NODE_ID_FILE: &str = "node-id";

/// The id kept in `dir`, created (mode 0600, written then linked into place, so a reader
/// never sees half a file and two racing first starts agree) when there is none yet.
/// Blocking: call from `spawn_blocking` or before the runtime serves.
pub fn load_or_create(dir: &Path) -> std::io::Result<Uuid> {
    let path = dir.join(NODE_ID_FILE);
    match read(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        found => return found,
    }
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!("{NODE_ID_FILE}.{}.tmp", Uuid::new_v4().simple()));
    let created = write_new(&tmp, Uuid::new_v4()).and_then(|()| std::fs::hard_link(&tmp, &path));
    let _ = std::fs::remove_file(&tmp);
    match created {
        Ok(()) => {}
        // Another process starting on the same directory won: use its id.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    read(&path)
}

fn write_new(path: &Path, id: Uuid) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    writeln!(file, "{id}")?;
    file.sync_all()
}

fn read(path: &Path) -> std::io::Result<Uuid> {
    let text = std::fs::read_to_string(path)?;
    text.trim().parse().map_err(|_| {
        let why = format!("{} does not hold a node id (a UUID); remove it to get a new one", path.display());
        std::io::Error::new(std::io::ErrorKind::InvalidData, why)
    })
}

/// The file a running gateway holds locked in its state directory (and writes its pid in).
pub const LOCK_FILE: &str = "gateway.lock";

/// A state directory claimed by this process ([`lock`]), for as long as this lives; the
/// operating system releases it when the process ends, however it ends.
#[derive(Debug)]
pub struct StateLock {
    _file: std::fs::File,
}

/// Claims `dir` (created when missing) for this process: an exclusive, non-blocking lock
/// on its [`LOCK_FILE`]. When another process holds it, the error names that process and
/// tells the operator to give each its own directory. Blocking: call from `spawn_blocking`
/// or before the runtime serves.
pub fn lock(dir: &Path) -> std::io::Result<StateLock> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(LOCK_FILE);
    let mut file = OpenOptions::new().read(true).write(true).create(true).truncate(false).mode(0o600).open(&path)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let holder = std::fs::read_to_string(&path).ok().and_then(|t| t.trim().parse::<u32>().ok());
            let who =
                holder.map_or_else(|| "another gateway process".to_owned(), |pid| format!("gateway process {pid}"));
            let why = format!(
                "{} is in use by {who}: give each gateway process its own --state-dir (it holds the node's id)",
                dir.display()
            );
            return Err(std::io::Error::new(std::io::ErrorKind::WouldBlock, why));
        }
        Err(TryLockError::Error(e)) => return Err(e),
    }
    file.set_len(0)?;
    writeln!(file, "{}", std::process::id())?;
    Ok(StateLock { _file: file })
}

/// The PostgreSQL `application_name` of a node's connections: names the node, so
/// `pg_stat_activity` tells the nodes apart (at most 63 bytes; this is 53).
pub fn application_name(id: Uuid) -> String {
    format!("tollgate-gateway {id}")
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn scratch() -> std::path::PathBuf {
        std::env::temp_dir().join(format!("tollgate-node-id-{}", Uuid::new_v4().simple()))
    }

    #[test]
    fn the_id_survives_a_restart_and_is_private() -> std::io::Result<()> {
        let dir = scratch();
        let first = load_or_create(&dir)?;
        assert_eq!(load_or_create(&dir)?, first);
        let mode = std::fs::metadata(dir.join(NODE_ID_FILE))?.permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let leftovers = std::fs::read_dir(&dir)?.count();
        assert_eq!(leftovers, 1, "only the id file is left");
        std::fs::remove_dir_all(&dir)
    }

    #[test]
    fn a_damaged_file_is_an_error_not_a_new_identity() -> std::io::Result<()> {
        let dir = scratch();
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(NODE_ID_FILE), "not a uuid")?;
        let err = load_or_create(&dir).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("does not hold a node id"), "{err}");
        assert_eq!(std::fs::read_to_string(dir.join(NODE_ID_FILE))?, "not a uuid", "left as it was");
        std::fs::remove_dir_all(&dir)
    }

    #[test]
    fn a_state_directory_serves_one_process_at_a_time() -> std::io::Result<()> {
        let dir = scratch();
        let held = lock(&dir)?;
        let mode = std::fs::metadata(dir.join(LOCK_FILE))?.permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // flock locks belong to an open file: a second open conflicts as another process would.
        let err = lock(&dir).err().map(|e| e.to_string()).unwrap_or_default();
        let pid = std::process::id();
        assert!(err.contains(&format!("in use by gateway process {pid}")) && err.contains("--state-dir"), "{err}");
        drop(held);
        let again = lock(&dir)?;
        assert_eq!(std::fs::read_to_string(dir.join(LOCK_FILE))?, format!("{pid}\n"), "the holder's pid, once");
        drop(again);
        std::fs::remove_dir_all(&dir)
    }

    #[test]
    fn application_name_fits_postgres() {
        let name = application_name(Uuid::new_v4());
        assert!(name.len() <= 63 && name.starts_with("tollgate-gateway "), "{name}");
    }
}
