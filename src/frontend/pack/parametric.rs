//! Plans a JDL file that may be parametric: one plan per job it makes.

use super::{plan_description, read_jdl, PackError, PackLimits, PackPlan};
use reconcilers::jdl::{expand_parametric, parameter_values, parse_job, JobType};
use std::path::Path;

/// Reads and checks the JDL at `path`: `None` if it is not parametric (plan it
/// with `plan_jdl_file`), else a plan per parameter value (with `_PARAM_`
/// replaced), in order. Every job is checked, and everything it ships, before
/// anything is returned; the JDL's own warnings are on the first plan.
pub fn plan_parametric_file(
    path: &Path,
    limits: &PackLimits,
) -> Result<Option<Vec<PackPlan>>, PackError> {
    let file = path.display().to_string();
    let text = read_jdl(path, &file)?;
    let (job, diagnostics) = parse_job(&text).map_err(|diagnostics| PackError::Jdl {
        file: file.clone(),
        diagnostics,
    })?;
    if job.job_type != JobType::Parametric {
        return Ok(None);
    }
    let expanding = |source| PackError::Parametric {
        file: file.clone(),
        source,
    };
    let values = parameter_values(&job).map_err(expanding)?;
    let jobs = expand_parametric(&job).map_err(expanding)?;
    let folder = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let base_dir = std::path::absolute(folder).map_err(|source| PackError::ReadJdl {
        file: file.clone(),
        source,
    })?;
    let mut plans = Vec::with_capacity(jobs.len());
    for (desc, value) in jobs.into_iter().zip(&values) {
        // Errors name the job's value: `sweep.jdl (_PARAM_ = 7): ...`.
        let name = format!("{file} (_PARAM_ = {value})");
        plans.push(plan_description(desc, &base_dir, &name, limits)?);
    }
    if let Some(first) = plans.first_mut() {
        let jdl_warnings = diagnostics
            .iter()
            .filter(|d| !d.is_error())
            .map(|d| format!("{file}:{d}"));
        first.job.warnings.splice(0..0, jdl_warnings);
    }
    Ok(Some(plans))
}
