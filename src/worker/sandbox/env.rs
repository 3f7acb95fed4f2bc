//! The job's environment: the worker's own, without its credentials, plus the
//! JDL's Environment and the variables the worker sets for every job.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;

/// The environment a job starts from.
#[derive(Debug, Clone, Default)]
pub struct JobEnv {
    /// The worker's environment; its `DROVER_*` variables (the worker's
    /// credentials) never reach the job.
    pub base: Vec<(OsString, OsString)>,
    /// Set by the worker for every job (`DROVER_JOB_ID`, `DROVER_ATTEMPT`); the JDL
    /// cannot override them.
    pub extras: Vec<(String, String)>,
}

impl JobEnv {
    /// The worker's own environment plus `extras`.
    pub fn from_worker(extras: Vec<(String, String)>) -> JobEnv {
        JobEnv {
            base: std::env::vars_os().collect(),
            extras,
        }
    }

    /// The job's environment: the base without `DROVER_*`, the JDL's Environment
    /// (entries the worker reserves are dropped with a line in `notes`), the extras.
    pub fn environment(
        &self,
        jdl: &[(String, String)],
        notes: &mut Vec<String>,
    ) -> Vec<(OsString, OsString)> {
        let mut vars: BTreeMap<OsString, OsString> = self
            .base
            .iter()
            .filter(|(k, _)| !k.as_bytes().starts_with(b"DROVER_"))
            .cloned()
            .collect();
        for (key, value) in jdl {
            if key.is_empty() || key.contains(['=', '\0']) || value.contains('\0') {
                notes.push(format!(
                    "Environment: `{key}` is not a valid variable, ignored"
                ));
            } else if key.starts_with("DROVER_") || self.extras.iter().any(|(k, _)| k == key) {
                notes.push(format!(
                    "Environment: `{key}` is reserved for the worker, ignored"
                ));
            } else {
                vars.insert(key.into(), value.into());
            }
        }
        for (key, value) in &self.extras {
            vars.insert(key.into(), value.into());
        }
        vars.into_iter().collect()
    }
}
