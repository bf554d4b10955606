//! Finding the server programs: `initdb` and `postgres` from one directory (so their
//! versions match), on PATH or where packages keep them off PATH, newest version first; and
//! `redis-server`.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// `initdb` and `postgres` taken from one directory, so that their versions match.
pub(super) struct PostgresBinaries {
    pub(super) initdb: PathBuf,
    pub(super) postgres: PathBuf,
}

impl PostgresBinaries {
    /// Looks on PATH first, then where packages keep the server programs off PATH: Debian
    /// under /usr/lib/postgresql/<version>/bin, Homebrew's versioned formulae under opt/.
    /// The newest version wins.
    pub(super) fn find() -> Option<Self> {
        let mut dirs = path_dirs();
        dirs.extend(newest_first(Path::new("/usr/lib/postgresql"), ""));
        dirs.extend(newest_first(Path::new("/opt/homebrew/opt"), "postgresql"));
        dirs.extend(newest_first(Path::new("/usr/local/opt"), "postgresql"));
        dirs.into_iter().find_map(|dir| {
            let initdb = dir.join("initdb");
            let postgres = dir.join("postgres");
            (is_executable(&initdb) && is_executable(&postgres))
                .then_some(Self { initdb, postgres })
        })
    }
}

pub(super) fn find_redis_server() -> Option<PathBuf> {
    path_dirs()
        .into_iter()
        .chain(
            [
                "/usr/bin",
                "/usr/sbin",
                "/usr/local/bin",
                "/opt/homebrew/bin",
            ]
            .map(PathBuf::from),
        )
        .map(|dir| dir.join("redis-server"))
        .find(|candidate| is_executable(candidate))
}

pub(super) fn path_dirs() -> Vec<PathBuf> {
    std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect())
        .unwrap_or_default()
}

/// The `bin` directories of `parent`'s entries whose names start with `prefix`, the
/// highest version number first (`16` before `15`, `postgresql@17` before `postgresql@14`).
pub(super) fn newest_first(parent: &Path, prefix: &str) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(parent) else {
        return Vec::new();
    };
    let mut found: Vec<(Vec<u32>, PathBuf)> = entries
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            name.starts_with(prefix)
                .then(|| (version_numbers(&name), entry.path().join("bin")))
        })
        .collect();
    found.sort();
    found.into_iter().rev().map(|(_, dir)| dir).collect()
}

pub(super) fn version_numbers(name: &str) -> Vec<u32> {
    name.split(|c: char| !c.is_ascii_digit())
        .filter_map(|digits| digits.parse().ok())
        .collect()
}

pub(super) fn is_executable(path: &Path) -> bool {
    fs::metadata(path)
        .is_ok_and(|metadata| metadata.is_file() && (metadata.permissions().mode() & 0o111) != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newer_postgres_versions_sort_first() {
        assert_eq!(version_numbers("15"), [15_u32]);
        assert_eq!(version_numbers("postgresql@17"), [17_u32]);
        assert!(version_numbers("postgresql@17") > version_numbers("postgresql@14"));
        assert!(version_numbers("postgresql@14") > version_numbers("postgresql"));
    }
}
