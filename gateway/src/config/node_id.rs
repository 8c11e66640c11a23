//! A node's stable id: kept in its state directory (file [`NODE_ID_FILE`]), so a restarted
//! node reports as the same row of `gateway_nodes` instead of a new one beside a dead one.

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
    fn application_name_fits_postgres() {
        let name = application_name(Uuid::new_v4());
        assert!(name.len() <= 63 && name.starts_with("tollgate-gateway "), "{name}");
    }
}
