//! Key files: the cluster key as 64 hex digits on one line, readable by its
//! owner only. A key is read from the file the configuration names
//! (`key_file`), never from the command line, where other users' `ps` would
//! show it.

use super::auth::{KEY_LEN, Key};
use std::fmt;
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Why a key file was refused.
#[derive(Debug)]
pub enum KeyFileError {
    /// The configuration names no `key_file`.
    NotConfigured,
    Read {
        path: PathBuf,
        error: io::Error,
    },
    /// Group or others may read or write it.
    Exposed {
        path: PathBuf,
        mode: u32,
    },
    /// Not 64 hex digits.
    Malformed {
        path: PathBuf,
        reason: String,
    },
    Write {
        path: PathBuf,
        error: io::Error,
    },
    Random(String),
}

impl fmt::Display for KeyFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyFileError::NotConfigured => write!(
                f,
                "the configuration names no key_file: every datagram is authenticated with the cluster key (`vr keygen PATH` writes one; add key_file = \"PATH\")"
            ),
            KeyFileError::Read { path, error } => write!(
                f,
                "cannot read key file {}: {error} (`vr keygen {}` writes a new key)",
                path.display(),
                path.display()
            ),
            KeyFileError::Exposed { path, mode } => write!(
                f,
                "key file {} has mode {mode:04o}: group and others must have no access (chmod 600 {})",
                path.display(),
                path.display()
            ),
            KeyFileError::Malformed { path, reason } => write!(
                f,
                "key file {}: {reason}; a key is {KEY_LEN} bytes written as {} hex digits (`vr keygen` writes one)",
                path.display(),
                2 * KEY_LEN
            ),
            KeyFileError::Write { path, error } => {
                write!(f, "cannot write key file {}: {error}", path.display())
            }
            KeyFileError::Random(e) => write!(f, "no randomness for a key: {e}"),
        }
    }
}

impl std::error::Error for KeyFileError {}

/// Reads the key of the file `cluster` names.
pub fn for_cluster(cluster: &super::ClusterConfig) -> Result<Key, KeyFileError> {
    read(
        cluster
            .key_file
            .as_deref()
            .ok_or(KeyFileError::NotConfigured)?,
    )
}

/// Reads the key in `path`, refusing a file that group or others may access,
/// or that does not hold exactly one key.
pub fn read(path: &Path) -> Result<Key, KeyFileError> {
    let read_error = |error| KeyFileError::Read {
        path: path.to_path_buf(),
        error,
    };
    let mode = std::fs::metadata(path)
        .map_err(read_error)?
        .permissions()
        .mode()
        & 0o7777;
    if mode & 0o077 != 0 {
        return Err(KeyFileError::Exposed {
            path: path.to_path_buf(),
            mode,
        });
    }
    let text = std::fs::read_to_string(path).map_err(read_error)?;
    parse(text.trim()).map_err(|reason| KeyFileError::Malformed {
        path: path.to_path_buf(),
        reason,
    })
}

fn parse(hex: &str) -> Result<Key, String> {
    if hex.len() != 2 * KEY_LEN {
        return Err(format!("{} characters", hex.len()));
    }
    let mut bytes = [0u8; KEY_LEN];
    for (i, byte) in bytes.iter_mut().enumerate() {
        *byte = hex
            .get(2 * i..2 * i + 2)
            .and_then(|pair| u8::from_str_radix(pair, 16).ok())
            .ok_or_else(|| "not hex digits".to_string())?;
    }
    Ok(Key::from_bytes(bytes))
}

/// Writes a new random key to `path` with mode 0600 and returns it. Refuses
/// to replace an existing file unless `replace`: a replaced key locks the
/// replicas and clients that use the old one out.
pub fn generate(path: &Path, replace: bool) -> Result<Key, KeyFileError> {
    let key = Key::generate().map_err(|e| KeyFileError::Random(e.to_string()))?;
    let write_error = |error| KeyFileError::Write {
        path: path.to_path_buf(),
        error,
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(write_error)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).mode(0o600);
    if replace {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    let mut file = options.open(path).map_err(write_error)?;
    // `mode` applies only to a file this call created.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(write_error)?;
    writeln!(file, "{}", key.to_hex()).map_err(write_error)?;
    file.sync_all().map_err(write_error)?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("vr-keyfile-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn a_generated_key_file_is_owner_only_and_reads_back() {
        let dir = dir("generate");
        let path = dir.join("cluster.key");
        let key = generate(&path, false).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(read(&path).unwrap(), key);
        assert!(
            matches!(generate(&path, false), Err(KeyFileError::Write { .. })),
            "an existing key is not replaced"
        );
        assert_ne!(generate(&path, true).unwrap(), key);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn missing_short_and_exposed_key_files_are_refused_saying_why() {
        let dir = dir("refused");
        std::fs::create_dir_all(&dir).unwrap();
        let missing = read(&dir.join("none.key")).unwrap_err().to_string();
        assert!(missing.contains("cannot read key file"), "{missing}");

        let short = dir.join("short.key");
        std::fs::write(&short, "abcd\n").unwrap();
        std::fs::set_permissions(&short, std::fs::Permissions::from_mode(0o600)).unwrap();
        let error = read(&short).unwrap_err().to_string();
        assert!(error.contains("4 characters"), "{error}");

        let not_hex = dir.join("not-hex.key");
        std::fs::write(&not_hex, "zz".repeat(KEY_LEN)).unwrap();
        std::fs::set_permissions(&not_hex, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(read(&not_hex).unwrap_err().to_string().contains("not hex"));

        let exposed = dir.join("exposed.key");
        generate(&exposed, false).unwrap();
        std::fs::set_permissions(&exposed, std::fs::Permissions::from_mode(0o644)).unwrap();
        let error = read(&exposed).unwrap_err().to_string();
        assert!(error.contains("mode 0644"), "{error}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
