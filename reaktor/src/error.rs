//! The reaktor's error types: a topology that cannot be used (with the file, line and column),
//! and a start that failed. Below every other module, so each step can return them.

use std::io;
use std::ops::Range;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    #[error("cannot read topology file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}:{column}: {message}")]
    Invalid {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
}

/// Makes a [`TopologyError::Invalid`] from a byte span of the topology text (none: the
/// file's start) and a message saying what is wrong and what to do.
pub type Invalid<'a> = &'a dyn Fn(Option<Range<usize>>, String) -> TopologyError;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot create stream directory {path}: {source}")]
    StreamDir { path: PathBuf, source: io::Error },
    #[error(
        "not enough space for the stream files in {dir}: {available} free, {needed} needed for \
         {files} stream files of {file_size} ([reaktor] stream_capacity = {capacity}; the \
         number of files follows from the nuklei on each [[core]] and the links between them); \
         lower stream_capacity, place fewer nuklei, or put the streams where there is room \
         (--stream-dir or [reaktor] stream_dir)"
    )]
    StreamSpace {
        dir: PathBuf,
        available: String,
        needed: String,
        files: usize,
        file_size: String,
        capacity: usize,
    },
    #[error(transparent)]
    Map(#[from] streams::MapError),
    #[error("{0}")]
    Tcp(#[from] nukleus_tcp::TcpError),
    /// A nukleus could not be built from its configuration.
    #[error("{kind}: {message}")]
    Nukleus { kind: String, message: String },
    #[error("cannot set up the poller of core {core}: {source}")]
    Poll { core: usize, source: io::Error },
    #[error("cannot register nukleus {name}: {source}")]
    Register { name: String, source: io::Error },
}
