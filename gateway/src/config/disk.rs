//! The last-known-good configuration on local disk, so a node can start and serve while
//! PostgreSQL is unreachable. Written atomically (temporary file, fsync, rename).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::model::ConfigData;

/// Saves `data` to `path` atomically. Blocking: call from `spawn_blocking`.
pub fn save(path: &Path, data: &ConfigData) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = tmp_path(path);
    // Owner-only: the file holds API key hashes and upstream addresses.
    let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
    serde_json::to_writer(std::io::BufWriter::new(&mut file), data).map_err(std::io::Error::other)?;
    file.flush()?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Loads a configuration saved by [`save`]. Blocking.
pub fn load(path: &Path) -> std::io::Result<ConfigData> {
    let file = std::fs::File::open(path)?;
    serde_json::from_reader(std::io::BufReader::new(file)).map_err(std::io::Error::other)
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
}
