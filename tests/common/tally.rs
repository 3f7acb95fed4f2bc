//! Counting results over jobs as the API shows them (`drover jobs --json`): the
//! fault, restart and leader tests' "nothing lost, nothing run twice".

use serde_json::Value;

/// How many attempts of `job` succeeded: exactly one for a job that ran once.
pub fn succeeded_attempts(job: &Value) -> usize {
    job["attempts"]
        .as_array()
        .map(|a| a.iter().filter(|x| x["outcome"] == "succeeded").count())
        .unwrap_or(0)
}

/// Jobs that did not succeed, and jobs with more than one succeeded attempt.
pub fn lost_and_duplicated(jobs: &[Value]) -> (usize, usize) {
    let lost = jobs.iter().filter(|j| j["state"] != "succeeded").count();
    let duplicated = jobs.iter().filter(|j| succeeded_attempts(j) > 1).count();
    (lost, duplicated)
}
