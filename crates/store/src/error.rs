//! The store's errors.

use std::path::PathBuf;

use crate::verify::Problem;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The data folder or its database file could not be created or opened.
    #[error("cannot open the store at {path}: {source}")]
    Open {
        /// The database file.
        path: PathBuf,
        /// What redb or the file system said.
        #[source]
        source: redb::Error,
    },
    /// Another process has the store open for writing (one writer at a time; readers may share).
    #[error("the store at {0} is open for writing by another process (one writer at a time)")]
    Busy(PathBuf),
    /// There is no store in the folder.
    #[error("no nhiwatch store at {0} (create one with `nhiwatch ingest --data DIR`)")]
    Missing(PathBuf),
    /// A write was attempted on a store opened read-only.
    #[error("the store was opened read-only")]
    ReadOnly,
    /// The store was written by a different, incompatible version of nhiwatch.
    #[error(
        "the store at {path} has format version {found}; this nhiwatch reads version {expected}"
    )]
    Format {
        /// The database file.
        path: PathBuf,
        /// The version recorded in the store.
        found: u32,
        /// The version this build reads and writes.
        expected: u32,
    },
    /// The end of the chain does not verify; nothing is appended to a chain that does not.
    #[error("refusing to append to a chain that does not verify: {0}")]
    Broken(Box<Problem>),
    /// A stored value cannot be read.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// A finding could not be serialised.
    #[error("cannot serialise a finding: {0}")]
    Serialise(#[from] serde_json::Error),
    /// redb reported an error (I/O, a corrupt page, a failed commit).
    #[error("storage error: {0}")]
    Db(#[from] redb::Error),
}

macro_rules! from_redb {
    ($($ty:ty),+) => {
        $(impl From<$ty> for StoreError {
            fn from(err: $ty) -> Self {
                StoreError::Db(redb::Error::from(err))
            }
        })+
    };
}

from_redb!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError
);

impl From<crate::codec::Corrupt> for StoreError {
    fn from(err: crate::codec::Corrupt) -> Self {
        StoreError::Corrupt(err.0.to_owned())
    }
}
