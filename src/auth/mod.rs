//! Who may call the controller's API, and how they prove it: bearer tokens.
//!
//! - The **submit token** opens the submitter API (jobs: allocate, upload,
//!   submit, status, wait, cancel, output, logs). It is a random secret kept in
//!   `<data-dir>/submit.token` (made on first start, mode 0600) unless
//!   `[auth] submit_token_file` or `DROVER_TOKEN` gives another.
//! - A **worker token** opens the worker API for one worker id only. It is
//!   `<worker-id>.<hex HMAC-SHA256(cluster secret, worker-id)>`: the controller
//!   recomputes it instead of storing it, so tokens survive restarts, need no
//!   store schema, and every controller holding the same secret (`<data-dir>/secret`
//!   or `[auth] secret_file`) accepts the same workers.
//!
//! Tokens are compared in constant time and never printed: the types holding
//! them have a `Debug` that hides them.

mod files;

use hmac::{Hmac, KeyInit, Mac};
use reconcilers::model::WorkerId;
use serde::Deserialize;
use sha2::Sha256;
use std::{
    fmt,
    path::{Path, PathBuf},
    sync::Arc,
};
use subtle::ConstantTimeEq;

pub use files::{read_token_file, TokenFileError};

/// The submit token, for the CLI and for a controller that takes it from its
/// environment rather than from a file.
pub const SUBMIT_TOKEN_ENV: &str = "DROVER_TOKEN";
/// A worker's own token, handed to it by its fleet in the environment (never
/// on the command line: `/proc/*/cmdline` is readable by every user).
pub const WORKER_TOKEN_ENV: &str = "DROVER_WORKER_TOKEN";
/// The submit token's file in the data folder.
pub const SUBMIT_TOKEN_FILE: &str = "submit.token";
/// The cluster secret's file in the data folder.
pub const SECRET_FILE: &str = "secret";

/// What separates a worker id from its signature in a worker token. Worker ids
/// are letters, digits, `-` and `_`, so it cannot occur in one.
const WORKER_TOKEN_SEPARATOR: char = '.';
/// Binds the MAC to its use, should the secret ever sign something else.
const WORKER_TOKEN_CONTEXT: &[u8] = b"drover worker token v1\0";

/// `[auth]` in drover.toml: where the controller's secrets live, when not in
/// its data folder.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    /// The submit token's file (default `<data_dir>/submit.token`, made on first
    /// start). `DROVER_TOKEN` in the controller's environment overrides it.
    pub submit_token_file: Option<PathBuf>,
    /// The cluster secret worker tokens are derived from (default
    /// `<data_dir>/secret`, made on first start). Controllers sharing a store
    /// must share it.
    pub secret_file: Option<PathBuf>,
}

/// Who a request speaks for, as its token proves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// A holder of the submit token: a person, the CLI, or a controller of the
    /// cluster sending a hint.
    Submitter,
    /// A worker, which may act only for itself and the jobs assigned to it.
    Worker(WorkerId),
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(transparent)]
    File(#[from] TokenFileError),
    #[error("{SUBMIT_TOKEN_ENV}: {0}")]
    Env(String),
}

/// The controller's credentials: the submit token and the worker-token key.
pub struct Auth {
    submit: String,
    workers: WorkerTokens,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Auth { .. }")
    }
}

impl Auth {
    /// Reads (or, in the data folder, creates) the controller's secrets;
    /// `DROVER_TOKEN` in the environment, when set, is the submit token.
    pub fn load(data_dir: &Path, settings: &AuthSettings) -> Result<Auth, AuthError> {
        let from_env = std::env::var(SUBMIT_TOKEN_ENV)
            .ok()
            .filter(|t| !t.trim().is_empty());
        Auth::load_with(data_dir, settings, from_env)
    }

    /// As `load`, with the environment's submit token given.
    pub fn load_with(
        data_dir: &Path,
        settings: &AuthSettings,
        submit_from_env: Option<String>,
    ) -> Result<Auth, AuthError> {
        let submit = match submit_from_env {
            Some(token) => {
                let token = token.trim().to_string();
                files::check_token(&token).map_err(AuthError::Env)?;
                token
            }
            None => match &settings.submit_token_file {
                Some(path) => files::read_token_file(path)?,
                None => files::read_or_create(&data_dir.join(SUBMIT_TOKEN_FILE))?,
            },
        };
        let secret = match &settings.secret_file {
            Some(path) => files::read_token_file(path)?,
            None => files::read_or_create(&data_dir.join(SECRET_FILE))?,
        };
        Ok(Auth {
            submit,
            workers: WorkerTokens::new(secret.as_bytes()),
        })
    }

    /// The submit token, for a client in the same process (`drover run`) and
    /// for the hints this controller sends to its peers.
    pub fn submit_token(&self) -> &str {
        &self.submit
    }

    /// The maker of worker tokens, for the fleets.
    pub fn workers(&self) -> &WorkerTokens {
        &self.workers
    }

    /// Who `presented` speaks for; `None` when it is no token of this cluster.
    pub fn identify(&self, presented: &str) -> Option<Caller> {
        if bool::from(presented.as_bytes().ct_eq(self.submit.as_bytes())) {
            return Some(Caller::Submitter);
        }
        self.workers.verify(presented).map(Caller::Worker)
    }
}

/// A token a client holds: its `Debug` hides it, so a struct that carries one
/// can derive `Debug` and be logged.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    pub fn new(token: impl Into<String>) -> Token {
        Token(token.into())
    }
    /// The token itself, for the `Authorization` header and nothing else.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(..)")
    }
}

/// Makes and checks worker tokens. Cheap to clone.
#[derive(Clone)]
pub struct WorkerTokens {
    key: Arc<Hmac<Sha256>>,
}

impl fmt::Debug for WorkerTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WorkerTokens { .. }")
    }
}

impl WorkerTokens {
    pub fn new(secret: &[u8]) -> WorkerTokens {
        // HMAC takes keys of any length.
        let key = Hmac::<Sha256>::new_from_slice(secret).unwrap_or_else(|_| {
            unreachable!("HMAC accepts keys of every length");
        });
        WorkerTokens { key: Arc::new(key) }
    }

    fn mac(&self, worker: &str) -> Hmac<Sha256> {
        let mut mac = (*self.key).clone();
        mac.update(WORKER_TOKEN_CONTEXT);
        mac.update(worker.as_bytes());
        mac
    }

    /// The token of the worker with this id (its instance id).
    pub fn token_for(&self, worker: &str) -> String {
        let tag = self.mac(worker).finalize().into_bytes();
        format!("{worker}{WORKER_TOKEN_SEPARATOR}{}", hex(&tag))
    }

    /// The worker `presented` is the token of, if it is a valid one.
    pub fn verify(&self, presented: &str) -> Option<WorkerId> {
        let (worker, tag) = presented.rsplit_once(WORKER_TOKEN_SEPARATOR)?;
        if !reconcilers::model::JobId::is_valid(worker) {
            return None;
        }
        let tag = unhex(tag)?;
        // `verify_slice` compares in constant time.
        self.mac(worker).verify_slice(&tag).ok()?;
        Some(WorkerId::new(worker))
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests;
