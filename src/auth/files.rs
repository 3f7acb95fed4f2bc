//! The files the controller's secrets live in: read, or made on first start
//! with a fresh random value, readable by their owner only.

use std::{
    io::Write as _,
    os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
};

/// A token shorter than this is too easy to guess.
const MIN_TOKEN_LEN: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("creating {path}: {source}")]
    Create {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {problem}")]
    Invalid { path: PathBuf, problem: String },
}

/// A token is printable ASCII without spaces (it travels in an HTTP header) and
/// long enough not to be guessed.
pub fn check_token(token: &str) -> Result<(), String> {
    if token.len() < MIN_TOKEN_LEN {
        return Err(format!(
            "a token needs at least {MIN_TOKEN_LEN} characters, this one has {}",
            token.len()
        ));
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("a token is printable ASCII without spaces".to_string());
    }
    Ok(())
}

/// Reads a token from a file a person configured; it must exist (a made-up one
/// would not match the one the others hold).
pub fn read_token_file(path: &Path) -> Result<String, TokenFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| TokenFileError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    warn_if_shared(path);
    let token = text.trim().to_string();
    check_token(&token).map_err(|problem| TokenFileError::Invalid {
        path: path.to_path_buf(),
        problem,
    })?;
    Ok(token)
}

/// Reads the token in `path`, or makes one there (mode 0600) if there is none.
pub fn read_or_create(path: &Path) -> Result<String, TokenFileError> {
    let fresh = super::hex(&rand::random::<[u8; 32]>());
    let created = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path);
    match created {
        Ok(mut file) => {
            let written = file
                .write_all(format!("{fresh}\n").as_bytes())
                .and_then(|()| file.sync_all());
            match written {
                Ok(()) => Ok(fresh),
                Err(source) => {
                    // A half-written secret would be read back as another one.
                    let _ = std::fs::remove_file(path);
                    Err(TokenFileError::Create {
                        path: path.to_path_buf(),
                        source,
                    })
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => read_token_file(path),
        Err(source) => Err(TokenFileError::Create {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// A secret others can read is not a secret: say so (not refused, the person
/// may have their reasons, such as a group of operators).
fn warn_if_shared(path: &Path) {
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!(
                path = %path.display(),
                mode = format!("{:o}", mode & 0o777),
                "this secret is readable by other users: chmod 600 it"
            );
        }
    }
}
