//! The data dir holds the admin key, the embedded database, the post-call queue and the
//! knowledge index: other users of the machine must not read them. Files are created private,
//! but a dir copied, restored from a backup or made by an older version may not be, so every
//! start checks again and tightens what it finds (and says so).

use std::path::Path;

/// Entries looked at, at most: the index can hold many segment files, and a start must not
/// crawl a data dir pointed at by mistake at something huge.
const MAX_ENTRIES: usize = 100_000;

/// One entry whose permissions were tightened.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Tightened {
    pub path: String,
    pub was: u32,
    pub now: u32,
}

/// Makes `dir` and everything under it owner-only (dirs `rwx------`, files keep their owner
/// bits and lose group and other), returning what changed. Symbolic links are not followed.
#[cfg(unix)]
pub(crate) fn tighten(dir: &Path) -> std::io::Result<Vec<Tightened>> {
    use std::os::unix::fs::PermissionsExt;
    let mut changed = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    let mut seen = 0usize;
    while let Some(path) = pending.pop() {
        seen += 1;
        if seen > MAX_ENTRIES {
            break;
        }
        let meta = std::fs::symlink_metadata(&path)?;
        if meta.file_type().is_symlink() {
            continue;
        }
        let mode = meta.permissions().mode() & 0o7777;
        let wanted = if meta.is_dir() {
            (mode & 0o700) | 0o700
        } else {
            mode & 0o700
        };
        if wanted != mode {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(wanted))?;
            changed.push(Tightened {
                path: path.display().to_string(),
                was: mode,
                now: wanted,
            });
        }
        if meta.is_dir() {
            for entry in std::fs::read_dir(&path)? {
                pending.push(entry?.path());
            }
        }
    }
    Ok(changed)
}

#[cfg(not(unix))]
pub(crate) fn tighten(_dir: &Path) -> std::io::Result<Vec<Tightened>> {
    Ok(Vec::new())
}

/// [`tighten`], reporting each change and any failure as a warning: a start is not refused
/// for it, but the operator is told.
pub(crate) fn keep_private(dir: &Path) {
    match tighten(dir) {
        // One line, not one per file: the embedded index makes its files readable by others
        // (umask 022) and can hold hundreds of them.
        Ok(changed) => {
            if let Some(t) = changed.first() {
                tracing::warn!(entries = changed.len(), first = %t.path,
                    was = %format!("{:o}", t.was), now = %format!("{:o}", t.now),
                    "Data-dir entries were readable by other users; made them private.");
            }
        }
        Err(e) => tracing::warn!(dir = %dir.display(), error = %e,
            "Could not check the data dir's permissions; make sure only its owner can read it."),
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        std::fs::symlink_metadata(path)
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    }

    fn set(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn loose_entries_are_made_private_and_a_second_start_changes_nothing() {
        let root = tempfile::tempdir().unwrap();
        let data = root.path().join("data");
        std::fs::create_dir_all(data.join("queue")).unwrap();
        for (file, m) in [
            ("admin.key", 0o644),
            ("callfleet.db", 0o664),
            ("queue/000001.rec", 0o666),
            ("private", 0o600),
        ] {
            std::fs::write(data.join(file), b"x").unwrap();
            set(&data.join(file), m);
        }
        set(&data.join("queue"), 0o755);
        set(&data, 0o755);
        // A link out of the data dir is left alone, and so is what it points at.
        let outside = root.path().join("outside");
        std::fs::write(&outside, b"x").unwrap();
        set(&outside, 0o644);
        std::os::unix::fs::symlink(&outside, data.join("link")).unwrap();

        let changed = tighten(&data).unwrap();
        let mut paths: Vec<_> = changed
            .iter()
            .map(|t| {
                t.path
                    .strip_prefix(&data.display().to_string())
                    .unwrap()
                    .to_string()
            })
            .collect();
        paths.sort();
        assert_eq!(
            paths,
            [
                "",
                "/admin.key",
                "/callfleet.db",
                "/queue",
                "/queue/000001.rec"
            ]
        );
        for (path, m) in [
            ("", 0o700),
            ("admin.key", 0o600),
            ("callfleet.db", 0o600),
            ("queue", 0o700),
            ("queue/000001.rec", 0o600),
            ("private", 0o600),
        ] {
            assert_eq!(mode(&data.join(path)), m, "{path}");
        }
        assert_eq!(mode(&outside), 0o644);
        assert!(tighten(&data).unwrap().is_empty());
    }
}
