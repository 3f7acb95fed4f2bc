//! Plans a JDL file that may be parametric: one plan per job it makes.

use super::{plan_description, JdlFile, PackError, PackLimits, PackPlan};
use reconcilers::jdl::{expand_parametric_with_values, JobType};
use std::path::Path;

/// Reads and checks the JDL at `path`: `None` if it is not parametric (plan it
/// with `plan_jdl_file`), else a plan per parameter value (with `_PARAM_`
/// replaced), in order. Every job is checked, and everything it ships, before
/// anything is returned; the JDL's own warnings are on the first plan.
pub fn plan_parametric_file(
    path: &Path,
    limits: &PackLimits,
) -> Result<Option<Vec<PackPlan>>, PackError> {
    let (job, read) = JdlFile::read(path)?;
    if job.job_type != JobType::Parametric {
        return Ok(None);
    }
    let jobs = expand_parametric_with_values(&job).map_err(|source| PackError::Parametric {
        file: read.file.clone(),
        source,
    })?;
    let mut plans = Vec::with_capacity(jobs.len());
    for (value, desc) in jobs {
        // Errors name the job's value: `sweep.jdl (_PARAM_ = 7): ...`.
        let name = format!("{} (_PARAM_ = {value})", read.file);
        plans.push(plan_description(desc, &read.base_dir, &name, limits)?);
    }
    if let Some(first) = plans.first_mut() {
        read.warn_first(first);
    }
    Ok(Some(plans))
}
