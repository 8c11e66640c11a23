//! The compact format of the last-known-good copy (format 4):
//!
//! ```text
//! magic "TGLKG\r\n\x1a" | version u32 | event_id i64
//! 11 tables (apis, targets, routes, plans, developers, consumers, keys, subscriptions,
//!           token_bindings, certificates, certificate_bindings), each: count u64, then per
//!           row: length u32 + the row's fields (formats 1–3, still read, lack the tables
//!           added since: certificates in 2, certificate_bindings in 4; rows of older
//!           formats end before the fields added since, see `row!`)
//! "END." | CRC-32 of every byte before it
//! ```
//!
//! Integers are little-endian; rows are encoded by [`super::field`]. Written row by row
//! from the shared configuration and read row by row straight into its maps, so neither
//! direction holds more than one row's bytes (and the map being built) at a time. The
//! checksum is verified before anything read is returned: a damaged file is refused, never
//! served in part.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};

use uuid::Uuid;

use super::field::{Dec, Row};
use crate::config::keys::{Builder, KeyIndex};
use crate::config::model::{ConfigData, KeyDef};

/// First bytes of a file in this format (a JSON copy starts with `{`). The line ending and
/// the DOS end-of-file character catch a copy mangled as text, as PNG's signature does.
pub const MAGIC: [u8; 8] = *b"TGLKG\r\n\x1a";
/// The format this build writes (and the oldest it still reads).
pub const VERSION: u32 = 4;
const OLDEST: u32 = 1;
const END: [u8; 4] = *b"END.";
/// Largest row accepted (rows are a few hundred bytes; an API's JSON settings a few KiB).
const MAX_ROW: usize = 16 << 20;
/// How many rows are read between two looks at the cancel flag.
const CANCEL_EVERY: u64 = 1 << 16;

/// A reader or writer that checksums what passes through it.
struct Crc<T> {
    inner: T,
    crc: crc32fast::Hasher,
}

impl<T> Crc<T> {
    fn new(inner: T) -> Self {
        Crc { inner, crc: crc32fast::Hasher::new() }
    }
}

impl<W: Write> Write for Crc<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.crc.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<R: Read> Read for Crc<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.crc.update(&buf[..n]);
        Ok(n)
    }
}

fn invalid(why: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.into())
}

/// Writes `data` to `out` (which should be buffered).
pub fn write(out: impl Write, data: &ConfigData) -> io::Result<()> {
    let mut w = Crc::new(out);
    w.write_all(&MAGIC)?;
    w.write_all(&VERSION.to_le_bytes())?;
    w.write_all(&data.event_id.to_le_bytes())?;
    let mut row = Vec::with_capacity(4096);
    write_table(&mut w, &mut row, &data.apis)?;
    write_table(&mut w, &mut row, &data.targets)?;
    write_table(&mut w, &mut row, &data.routes)?;
    write_table(&mut w, &mut row, &data.plans)?;
    write_table(&mut w, &mut row, &data.developers)?;
    write_table(&mut w, &mut row, &data.consumers)?;
    write_rows::<KeyDef>(&mut w, &mut row, data.keys.len(), data.keys.values())?;
    write_table(&mut w, &mut row, &data.subscriptions)?;
    write_table(&mut w, &mut row, &data.token_bindings)?;
    write_table(&mut w, &mut row, &data.certificates)?;
    write_table(&mut w, &mut row, &data.certificate_bindings)?;
    w.write_all(&END)?;
    let crc = w.crc.finalize();
    w.inner.write_all(&crc.to_le_bytes())?;
    w.inner.flush()
}

fn write_table<T: Row>(w: &mut impl Write, row: &mut Vec<u8>, rows: &BTreeMap<Uuid, T>) -> io::Result<()> {
    write_rows::<T>(w, row, rows.len(), rows.values())
}

fn write_rows<T: Row>(
    w: &mut impl Write,
    row: &mut Vec<u8>,
    len: usize,
    rows: impl Iterator<Item = impl std::borrow::Borrow<T>>,
) -> io::Result<()> {
    w.write_all(&(len as u64).to_le_bytes())?;
    let mut written = 0;
    for r in rows {
        written += 1;
        row.clear();
        r.borrow().put(row);
        if row.len() > MAX_ROW {
            return Err(invalid(format!("a row of {} bytes is over the limit of {MAX_ROW}", row.len())));
        }
        w.write_all(&(row.len() as u32).to_le_bytes())?;
        w.write_all(row)?;
    }
    if written != len {
        return Err(invalid(format!("a table of {len} rows gave {written}")));
    }
    Ok(())
}

/// Reads a copy written by [`write`]; `size` is the file's length (it bounds what a row
/// count may make the reader reserve). Gives up with `Interrupted` once `cancel` is set.
pub fn read(input: impl Read, size: u64, cancel: &AtomicBool) -> io::Result<ConfigData> {
    let mut r = Reader { input: Crc::new(input), row: Vec::with_capacity(4096), size, cancel, rows: 0 };
    if r.array::<8>()? != MAGIC {
        return Err(invalid("not a Tollgate configuration copy"));
    }
    let version = u32::from_le_bytes(r.array()?);
    if !(OLDEST..=VERSION).contains(&version) {
        return Err(invalid(format!("written in format {version}; this version reads formats {OLDEST} to {VERSION}")));
    }
    let data = ConfigData {
        event_id: i64::from_le_bytes(r.array()?),
        apis: r.table()?,
        targets: r.table()?,
        routes: r.table()?,
        plans: r.table()?,
        developers: r.table()?,
        consumers: r.table()?,
        keys: r.keys()?,
        subscriptions: r.table()?,
        token_bindings: r.table()?,
        certificates: if version >= 2 { r.table()? } else { BTreeMap::new() },
        certificate_bindings: if version >= 4 { r.table()? } else { BTreeMap::new() },
    };
    if r.array::<4>()? != END {
        return Err(invalid("the copy does not end where its tables do"));
    }
    let computed = r.input.crc.clone().finalize();
    let mut stored = [0u8; 4];
    r.input.inner.read_exact(&mut stored).map_err(truncated)?;
    if u32::from_le_bytes(stored) != computed {
        return Err(invalid("checksum mismatch: the copy is damaged"));
    }
    if r.input.inner.read(&mut [0u8; 1])? != 0 {
        return Err(invalid("bytes follow the end of the copy"));
    }
    Ok(data)
}

fn truncated(e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::UnexpectedEof { invalid("the copy is truncated") } else { e }
}

struct Reader<'a, R> {
    input: Crc<R>,
    /// One row's bytes, reused.
    row: Vec<u8>,
    size: u64,
    cancel: &'a AtomicBool,
    rows: u64,
}

impl<R: Read> Reader<'_, R> {
    fn array<const N: usize>(&mut self) -> io::Result<[u8; N]> {
        let mut out = [0u8; N];
        self.input.read_exact(&mut out).map_err(truncated)?;
        Ok(out)
    }

    /// One table, built from rows in id order (as written), which the map takes in bulk.
    fn table<T: Row>(&mut self) -> io::Result<BTreeMap<Uuid, T>> {
        let count = u64::from_le_bytes(self.array()?);
        // Each row takes at least its 4-byte length: a damaged count cannot reserve more.
        let mut rows = Vec::with_capacity(count.min(self.size / 4) as usize);
        for _ in 0..count {
            self.rows += 1;
            if self.rows.is_multiple_of(CANCEL_EVERY) && self.cancel.load(Ordering::Relaxed) {
                return Err(io::ErrorKind::Interrupted.into());
            }
            let row: T = self.row()?;
            rows.push((row.id(), row));
        }
        Ok(rows.into_iter().collect())
    }

    /// The keys table, read straight into the index (no vector of rows beside it).
    fn keys(&mut self) -> io::Result<KeyIndex> {
        let count = u64::from_le_bytes(self.array()?);
        // A key row takes well over 64 bytes: a damaged count cannot reserve more.
        let mut keys = Builder::with_capacity(usize::try_from(count.min(self.size / 64)).unwrap_or(0));
        for _ in 0..count {
            self.rows += 1;
            if self.rows.is_multiple_of(CANCEL_EVERY) && self.cancel.load(Ordering::Relaxed) {
                return Err(io::ErrorKind::Interrupted.into());
            }
            keys.push(&self.row::<KeyDef>()?);
        }
        Ok(keys.finish())
    }

    fn row<T: Row>(&mut self) -> io::Result<T> {
        let len = u32::from_le_bytes(self.array()?) as usize;
        if len > MAX_ROW {
            return Err(invalid(format!("a row of {len} bytes is over the limit of {MAX_ROW}")));
        }
        self.row.resize(len, 0);
        self.input.read_exact(&mut self.row).map_err(truncated)?;
        let mut d = Dec::new(&self.row);
        let row = T::get(&mut d).map_err(|e| invalid(e.to_string()))?;
        if !d.is_done() {
            return Err(invalid("a row is longer than its fields"));
        }
        Ok(row)
    }
}
