//! Stream files: creation with a versioned header, and mapping for writers/readers (read-write)
//! or spies (read-only, possibly from another process).

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use memmap2::{Mmap, MmapMut};

use crate::layout::*;

#[derive(Debug, thiserror::Error)]
pub enum MapError {
    #[error("stream buffer capacity {0} must be a power of two between {MIN_CAPACITY} and {MAX_CAPACITY} bytes")]
    BadCapacity(usize),
    #[error("cannot create stream file {path}: {source} (check that the stream directory exists and is writable)")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open stream file {path}: {source} (is the reaktor running, and is this its stream directory?)")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no space for stream file {path}: {needed} bytes could not be reserved ({source})")]
    NoSpace {
        path: PathBuf,
        needed: u64,
        source: std::io::Error,
    },
    #[error("{path} is not a reaktor stream file (bad magic or too short)")]
    NotAStreamFile { path: PathBuf },
    #[error("{path} has stream layout version {found}, this build reads version {LAYOUT_VERSION}")]
    Version { path: PathBuf, found: u32 },
}

/// A read-write mapping of one stream file, shared by its single writer and single reader.
pub struct SharedMapping {
    map: MmapMut,
    capacity: usize,
    path: PathBuf,
    label: String,
}

impl SharedMapping {
    /// Creates (or truncates) the file at `path`, sizes it and writes the header.
    pub fn create(path: &Path, capacity: usize, label: &str) -> Result<SharedMapping, MapError> {
        if !capacity.is_power_of_two() || !(MIN_CAPACITY..=MAX_CAPACITY).contains(&capacity) {
            return Err(MapError::BadCapacity(capacity));
        }
        let create_err = |source| MapError::Create {
            path: path.to_owned(),
            source,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .map_err(create_err)?;
        let length = file_length(capacity) as u64;
        file.set_len(length).map_err(create_err)?;
        // Reserve every block now: a sparse file on a full tmpfs would get its pages only when
        // a ring first writes them, and a page the filesystem cannot supply is a SIGBUS that
        // kills the whole process without a word.
        reserve(&file, length).map_err(|source| {
            if source.raw_os_error() == Some(libc::ENOSPC) {
                MapError::NoSpace {
                    path: path.to_owned(),
                    needed: length,
                    source,
                }
            } else {
                create_err(source)
            }
        })?;
        // SAFETY: the file was just created by this process and sized above; the reaktor owns
        // its stream directory, so no other process truncates it while mapped.
        let mut map = unsafe { MmapMut::map_mut(&file) }.map_err(create_err)?;
        let label_bytes = &label.as_bytes()[..label.len().min(HEADER_LABEL_MAX)];
        let header = &mut map[..HEADER_LENGTH];
        header[HEADER_MAGIC_OFFSET..][..8].copy_from_slice(&MAGIC.to_le_bytes());
        header[HEADER_VERSION_OFFSET..][..4].copy_from_slice(&LAYOUT_VERSION.to_le_bytes());
        header[HEADER_CAPACITY_OFFSET..][..4].copy_from_slice(&(capacity as u32).to_le_bytes());
        header[HEADER_WRITER_PID_OFFSET..][..4].copy_from_slice(&std::process::id().to_le_bytes());
        header[HEADER_LABEL_LENGTH_OFFSET..][..4]
            .copy_from_slice(&(label_bytes.len() as u32).to_le_bytes());
        header[HEADER_LABEL_OFFSET..][..label_bytes.len()].copy_from_slice(label_bytes);
        Ok(SharedMapping {
            map,
            capacity,
            path: path.to_owned(),
            label: String::from_utf8_lossy(label_bytes).into_owned(),
        })
    }

    /// A mapping over anonymous memory, for tests and for rings nobody needs to observe.
    pub fn anonymous(capacity: usize, label: &str) -> Result<SharedMapping, MapError> {
        if !capacity.is_power_of_two() || !(MIN_CAPACITY..=MAX_CAPACITY).contains(&capacity) {
            return Err(MapError::BadCapacity(capacity));
        }
        let map = MmapMut::map_anon(file_length(capacity)).map_err(|source| MapError::Create {
            path: PathBuf::from("<anonymous>"),
            source,
        })?;
        Ok(SharedMapping {
            map,
            capacity,
            path: PathBuf::new(),
            label: label.to_owned(),
        })
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    /// Base pointer of the whole file mapping.
    pub(crate) fn base(&self) -> *mut u8 {
        self.map.as_ptr() as *mut u8
    }
}

/// Allocates the blocks of `file` up to `length` (`posix_fallocate`: glibc falls back to
/// writing a byte per block on filesystems without `fallocate`).
fn reserve(file: &File, length: u64) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let length = libc::off_t::try_from(length)
        .map_err(|_| std::io::Error::from_raw_os_error(libc::EFBIG))?;
    // SAFETY: `file` is an open descriptor owned by the caller for the whole call;
    // posix_fallocate only allocates blocks of that file and touches no memory of ours.
    let error = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, length) };
    if error == 0 {
        Ok(())
    } else {
        Err(std::io::Error::from_raw_os_error(error))
    }
}

/// Bytes an unprivileged process may still allocate on the filesystem holding `dir`
/// (`statvfs`: available blocks times the fragment size).
pub fn available_space(dir: &Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    // SAFETY: all-zero bytes are a valid `statvfs` (a plain C struct of integers).
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is a NUL-terminated string that outlives the call, and `stat` is a
    // valid, writable `statvfs` that the call fills in.
    if unsafe { libc::statvfs(path.as_ptr(), &mut stat) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((stat.f_bavail as u64).saturating_mul(stat.f_frsize as u64))
}

/// What the versioned header of a stream file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamFileHeader {
    /// Bytes of the record area.
    pub capacity: usize,
    /// Process that created the file (its writer).
    pub writer_pid: u32,
    /// `"writer -> reader"`.
    pub label: String,
}

impl StreamFileHeader {
    /// Reads the header of the file at `path` without mapping it (plain reads): tells a stream
    /// file from anything else.
    pub fn read(path: &Path) -> Result<StreamFileHeader, MapError> {
        use std::io::Read;
        let open_err = |source| MapError::Open {
            path: path.to_owned(),
            source,
        };
        let mut bytes = Vec::with_capacity(HEADER_LENGTH);
        File::open(path)
            .map_err(open_err)?
            .take(HEADER_LENGTH as u64)
            .read_to_end(&mut bytes)
            .map_err(open_err)?;
        StreamFileHeader::parse(&bytes, path)
    }

    /// Parses the first [`HEADER_LENGTH`] bytes of a stream file (`path` names it in errors).
    fn parse(bytes: &[u8], path: &Path) -> Result<StreamFileHeader, MapError> {
        if bytes.len() < HEADER_LENGTH
            || u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) != MAGIC
        {
            return Err(MapError::NotAStreamFile {
                path: path.to_owned(),
            });
        }
        let read_u32 = |offset: usize| {
            u32::from_le_bytes(bytes[offset..offset + 4].try_into().expect("4 bytes"))
        };
        let version = read_u32(HEADER_VERSION_OFFSET);
        if version != LAYOUT_VERSION {
            return Err(MapError::Version {
                path: path.to_owned(),
                found: version,
            });
        }
        let capacity = read_u32(HEADER_CAPACITY_OFFSET) as usize;
        if !capacity.is_power_of_two() {
            return Err(MapError::NotAStreamFile {
                path: path.to_owned(),
            });
        }
        let label_len = (read_u32(HEADER_LABEL_LENGTH_OFFSET) as usize).min(HEADER_LABEL_MAX);
        Ok(StreamFileHeader {
            capacity,
            writer_pid: read_u32(HEADER_WRITER_PID_OFFSET),
            label: String::from_utf8_lossy(&bytes[HEADER_LABEL_OFFSET..][..label_len]).into_owned(),
        })
    }
}

/// A read-only mapping of a stream file written by another process (or thread).
pub struct SpyMapping {
    map: Mmap,
    capacity: usize,
    label: String,
    writer_pid: u32,
}

impl SpyMapping {
    pub fn open(path: &Path) -> Result<SpyMapping, MapError> {
        let file = File::open(path).map_err(|source| MapError::Open {
            path: path.to_owned(),
            source,
        })?;
        // SAFETY: read-only mapping; the writer never shrinks a live stream file, and every
        // read of the record area goes through volatile copies validated against the tail
        // (see `RingSpy`), so concurrent writes are detected rather than trusted.
        let map = unsafe { Mmap::map(&file) }.map_err(|source| MapError::Open {
            path: path.to_owned(),
            source,
        })?;
        let header = StreamFileHeader::parse(&map, path)?;
        if map.len() < file_length(header.capacity) {
            return Err(MapError::NotAStreamFile {
                path: path.to_owned(),
            });
        }
        let StreamFileHeader {
            capacity,
            writer_pid,
            label,
        } = header;
        Ok(SpyMapping {
            map,
            capacity,
            label,
            writer_pid,
        })
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    pub fn writer_pid(&self) -> u32 {
        self.writer_pid
    }

    pub(crate) fn base(&self) -> *const u8 {
        self.map.as_ptr()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn scratch(tag: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("streams-mapping-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_stream_file_has_its_blocks_reserved_when_created() {
        let dir = scratch("reserve");
        let path = dir.join("ring");
        let mapping = SharedMapping::create(&path, 1 << 20, "a -> b").unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.len(), file_length(1 << 20) as u64);
        assert!(
            meta.blocks() * 512 >= meta.len(),
            "{} bytes allocated of {}",
            meta.blocks() * 512,
            meta.len()
        );
        drop(mapping);
        let header = StreamFileHeader::read(&path).unwrap();
        assert_eq!(
            (header.capacity, header.writer_pid, header.label.as_str()),
            (1 << 20, std::process::id(), "a -> b")
        );
        std::fs::write(dir.join("other"), b"not a stream file").unwrap();
        assert!(matches!(
            StreamFileHeader::read(&dir.join("other")),
            Err(MapError::NotAStreamFile { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn available_space_is_what_statvfs_reports_and_a_missing_dir_is_an_error() {
        let dir = scratch("space");
        let before = available_space(&dir).unwrap();
        assert!(before > 0);
        assert!(available_space(&dir.join("missing")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
