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
    /// A write found no space: the disk is full, or a quota or the process's file size limit
    /// (`RLIMIT_FSIZE`) was reached. Nothing of the batch was stored, and the store refuses
    /// further writes until it is opened again ([`StoreError::Failed`]).
    #[error("no space to write the store at {path}: {source} (the disk is full, or a quota or file size limit was reached); nothing of this batch was stored")]
    NoSpace {
        /// The database file.
        path: PathBuf,
        /// What the file system said.
        #[source]
        source: std::io::Error,
    },
    /// An earlier write failed (no space, an I/O error), and redb refuses every operation on
    /// the open database after that: the store must be opened again, which recovers its last
    /// committed state.
    #[error("the store at {0} refuses writes since an earlier write failed; open it again (restart nhiwatch) once the cause, such as a full disk, is fixed")]
    Failed(PathBuf),
}

impl StoreError {
    /// Names the file in a failed write, and says what the failure means: no space left, or a
    /// database that refuses writes after an earlier failure.
    pub(crate) fn in_storage(self, path: &std::path::Path) -> StoreError {
        use std::io::ErrorKind;
        match self {
            StoreError::Db(redb::Error::Io(source))
                if matches!(
                    source.kind(),
                    ErrorKind::StorageFull | ErrorKind::FileTooLarge | ErrorKind::QuotaExceeded
                ) =>
            {
                StoreError::NoSpace {
                    path: path.to_path_buf(),
                    source,
                }
            }
            StoreError::Db(redb::Error::PreviousIo) => StoreError::Failed(path.to_path_buf()),
            err => err,
        }
    }
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

#[cfg(test)]
mod tests {
    use std::io::{Error, ErrorKind};
    use std::path::Path;

    use super::StoreError;

    #[test]
    fn names_a_full_disk_and_a_store_that_refuses_writes() {
        let path = Path::new("/data/nhiwatch.redb");
        for kind in [
            ErrorKind::StorageFull,
            ErrorKind::FileTooLarge,
            ErrorKind::QuotaExceeded,
        ] {
            let err = StoreError::Db(redb::Error::Io(Error::from(kind))).in_storage(path);
            assert!(matches!(err, StoreError::NoSpace { .. }), "{err}");
            let text = err.to_string();
            assert!(text.contains("/data/nhiwatch.redb") && text.contains("disk is full"));
        }
        let err = StoreError::Db(redb::Error::PreviousIo).in_storage(path);
        assert!(matches!(err, StoreError::Failed(_)), "{err}");
        let other = StoreError::Db(redb::Error::Io(Error::from(ErrorKind::PermissionDenied)))
            .in_storage(path);
        assert!(matches!(other, StoreError::Db(_)), "{other}");
    }
}
