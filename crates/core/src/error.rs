//! Errors at landwatch's boundaries, each carrying the file (and field) it is about, and the
//! exit code the binary maps it to.
//!
//! Exit codes, shared by every subcommand:
//! * `0` everything went well;
//! * `1` the run finished but some tiles failed (see the run report);
//! * `2` bad input or configuration: the message names the file, the field and what to do;
//! * `3` the run could not be carried out (locked, disk, GDAL or network failure).

use std::path::{Path, PathBuf};

/// Result alias used across the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
/// What stopped a command, with the file (and field) it is about; see [`Error::exit_code`].
pub enum Error {
    /// An input file is missing, unreadable or unusable (exit 2).
    #[error("{}: {msg}", path.display())]
    Input {
        /// The file.
        path: PathBuf,
        /// What is wrong with it and what to do.
        msg: String,
    },

    /// A configuration or model file has a bad or missing field (exit 2).
    #[error("{}: {field}: {msg}", path.display())]
    Config {
        /// The file.
        path: PathBuf,
        /// The field (with its line in a TOML file).
        field: String,
        /// What is wrong with it and what to do.
        msg: String,
    },

    /// A command-line argument is invalid (exit 2).
    #[error("{0}")]
    Usage(String),

    /// Another process holds the lock on the output (exit 3).
    #[error("{}: {msg}", path.display())]
    Locked {
        /// The lock file.
        path: PathBuf,
        /// Who holds it and what to do.
        msg: String,
    },

    /// GDAL failed on a file for a reason that is not the input's fault (exit 3). `context`
    /// ends with what failed in words (see `gdal_messages::gdal_reason`).
    #[error("{}: {context}", path.display())]
    Gdal {
        /// The file GDAL failed on.
        path: PathBuf,
        /// What was being done, and why it failed in words.
        context: String,
        #[source]
        /// GDAL's error.
        source: gdal::errors::GdalError,
    },

    /// The operating system refused a read or write (exit 3).
    #[error("{}: {context}: {source}", path.display())]
    Io {
        /// The file or folder the operating system refused.
        path: PathBuf,
        /// What was being done.
        context: String,
        #[source]
        /// The operating system's error.
        source: std::io::Error,
    },

    /// Anything else that stops the run (exit 3).
    #[error("{0}")]
    Other(String),
}

impl Error {
    /// The process exit code this error maps to (see the module docs).
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Input { .. } | Error::Config { .. } | Error::Usage(_) => 2,
            Error::Locked { .. } | Error::Gdal { .. } | Error::Io { .. } | Error::Other(_) => 3,
        }
    }

    /// A bad input file (exit 2): `msg` says what is wrong and what to do.
    pub fn input(path: impl AsRef<Path>, msg: impl Into<String>) -> Self {
        Error::Input {
            path: path.as_ref().to_path_buf(),
            msg: msg.into(),
        }
    }

    /// A bad field of a configuration or model file (exit 2).
    pub fn config(path: impl AsRef<Path>, field: impl Into<String>, msg: impl Into<String>) -> Self {
        Error::Config {
            path: path.as_ref().to_path_buf(),
            field: field.into(),
            msg: msg.into(),
        }
    }

    /// GDAL failed on `path` (exit 3); GDAL's reason is appended to `context`.
    pub fn gdal(path: impl AsRef<Path>, context: impl Into<String>, source: gdal::errors::GdalError) -> Self {
        Error::Gdal {
            path: path.as_ref().to_path_buf(),
            context: format!("{}: {}", context.into(), crate::gdal_messages::gdal_reason(&source)),
            source,
        }
    }

    /// The operating system refused a read or write of `path` (exit 3).
    pub fn io(path: impl AsRef<Path>, context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().to_path_buf(),
            context: context.into(),
            source,
        }
    }
}
