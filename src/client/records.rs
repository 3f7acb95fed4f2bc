//! The client of the job-record endpoints (`drover apply`, `get`, `delete`).

use super::{Client, ClientError};
use crate::api::records::{ApplyAnswer, ApplyRequest, DeleteAnswer, PlanRequest, RecordView};
use reconcilers::records::{ManifestHash, RecordName};

impl Client {
    /// What applying a manifest of this hash would do; an `Api` error (409) if
    /// it would be refused.
    pub async fn plan_record(
        &self,
        name: &RecordName,
        hash: &ManifestHash,
        replace: bool,
    ) -> Result<ApplyAnswer, ClientError> {
        let body = PlanRequest {
            hash: hash.clone(),
            replace,
        };
        let req = self
            .http
            .post(self.url(&format!("/v1/records/{name}/plan")))
            .json(&body);
        self.json(req).await
    }

    /// Applies a manifest whose job is allocated and its input uploaded.
    pub async fn apply_record(
        &self,
        name: &RecordName,
        apply: &ApplyRequest,
    ) -> Result<ApplyAnswer, ClientError> {
        let req = self
            .http
            .put(self.url(&format!("/v1/records/{name}")))
            .json(apply);
        self.json(req).await
    }

    pub async fn record(&self, name: &RecordName) -> Result<RecordView, ClientError> {
        self.json(self.http.get(self.url(&format!("/v1/records/{name}"))))
            .await
    }

    pub async fn records(&self) -> Result<Vec<RecordView>, ClientError> {
        self.json(self.http.get(self.url("/v1/records"))).await
    }

    pub async fn delete_record(&self, name: &RecordName) -> Result<DeleteAnswer, ClientError> {
        self.json(self.http.delete(self.url(&format!("/v1/records/{name}"))))
            .await
    }
}
