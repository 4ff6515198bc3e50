//! Files only otpd's user may read: the data directory (0700) and the SQLite database with
//! its write-ahead log and shared-memory index (0600). They hold numbers, email addresses,
//! events and key digests, so no other account on the machine may read them, whatever the
//! process's umask (security review, finding 10).

use std::io;
use std::path::Path;

/// Mode of a directory otpd creates for its data.
pub const DIR_MODE: u32 = 0o700;
/// Mode of otpd's data files.
pub const FILE_MODE: u32 = 0o600;

/// Creates `dir` and its missing parents with [`DIR_MODE`]. Directories that already exist
/// keep their mode (a shared parent such as `/var/lib` is not otpd's to change).
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(DIR_MODE);
    }
    builder.create(dir)
}

/// Makes the SQLite database `file` private before SQLite opens it: creates it empty with
/// [`FILE_MODE`] when missing (SQLite then gives its `-wal` and `-shm` files the same mode),
/// and narrows an existing one and its companions to [`FILE_MODE`].
pub fn make_database_private(file: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(FILE_MODE)
            .open(file)
        {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        let mut names = vec![file.as_os_str().to_owned()];
        for suffix in ["-wal", "-shm", "-journal"] {
            let mut name = file.as_os_str().to_owned();
            name.push(suffix);
            names.push(name);
        }
        for name in names {
            let path = Path::new(&name);
            match std::fs::metadata(path) {
                Ok(m) if m.permissions().mode() & 0o777 != FILE_MODE => {
                    std::fs::set_permissions(path, std::fs::Permissions::from_mode(FILE_MODE))?;
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    #[cfg(not(unix))]
    let _ = file;
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p)
            .expect("the file exists")
            .permissions()
            .mode()
            & 0o777
    }

    #[test]
    fn new_directories_and_databases_are_private_and_old_ones_narrowed() {
        let root = std::env::temp_dir().join(format!("otpd-private-{}", std::process::id()));
        let dir = root.join("a/b");
        create_private_dir(&dir).unwrap();
        assert_eq!(mode(&root.join("a")), DIR_MODE);
        assert_eq!(mode(&dir), DIR_MODE);
        let db = dir.join("otpd.db");
        make_database_private(&db).unwrap();
        assert_eq!(mode(&db), FILE_MODE);
        let wal = dir.join("otpd.db-wal");
        std::fs::write(&wal, b"").unwrap();
        std::fs::set_permissions(&wal, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
        make_database_private(&db).unwrap();
        assert_eq!(mode(&db), FILE_MODE);
        assert_eq!(mode(&wal), FILE_MODE);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
