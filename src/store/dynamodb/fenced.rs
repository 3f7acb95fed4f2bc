//! The leader's writes: each one a transaction with the check that the lease's
//! token is still the leader's (see `lease.rs`). The same items and conditions
//! as the plain writes of `jobs.rs`, `workers.rs` and `fleet.rs`.

use super::items::{encode, job_item, job_key, n, s, worker_key, Item, REGISTRATION};
use super::items::{FLEET_SETTINGS, SETTINGS_KEY};
use super::lease::refused;
use super::paging::corrupt;
use super::DynamoStore;
use crate::store::{Fence, StoreError, StoreResult};
use aws_sdk_dynamodb::types::{Delete, Put, TransactWriteItem, Update};
use reconcilers::model::{FleetSettings, Instance, InstanceId, Job, JobId, JobState, Timestamp};
use reconcilers::model::{WorkerId, WorkerState};
use std::collections::HashMap;

impl DynamoStore {
    async fn put_fenced(&self, fence: &Fence, put: Put, context: &str) -> StoreResult<()> {
        let write = TransactWriteItem::builder().put(put).build();
        match self.transact(fence, write, context).await {
            Ok(()) => Ok(()),
            Err(outcome) => refused(fence, outcome, || Ok(())),
        }
    }

    fn put(&self, table: &str, item: Item, context: &str) -> StoreResult<Put> {
        Put::builder()
            .table_name(table)
            .set_item(Some(item))
            .build()
            .map_err(|e| corrupt(context, e))
    }

    pub(super) async fn fenced_write_job(&self, fence: &Fence, job: &Job) -> StoreResult<u64> {
        let context = format!("updating job {} in table {}", job.id, self.tables.jobs);
        let next = job
            .version
            .checked_add(1)
            .ok_or_else(|| corrupt(&context, format!("version {} is the last", job.version)))?;
        let mut stored = job.clone();
        stored.version = next;
        let item = job_item(&stored).map_err(|e| corrupt(&context, e))?;
        let put = Put::builder()
            .table_name(&self.tables.jobs)
            .set_item(Some(item))
            .condition_expression("#version = :expected")
            .expression_attribute_names("#version", "version")
            .expression_attribute_values(":expected", n(job.version))
            .build()
            .map_err(|e| corrupt(&context, e))?;
        let write = TransactWriteItem::builder().put(put).build();
        let Err(outcome) = self.transact(fence, write, &context).await else {
            return Ok(next);
        };
        // The version check failed: a job that changed, or none at all.
        let exists = matches!(outcome, Ok(super::lease::Refusal::Condition))
            && self.read_job(&job.id).await?.is_some();
        refused(fence, outcome, || {
            let (id, expected) = (job.id.clone(), job.version);
            Err(if exists {
                StoreError::Conflict { job: id, expected }
            } else {
                StoreError::NotFound(id)
            })
        })
        .map(|()| next)
    }

    pub(super) async fn fenced_delete_if_abandoned(
        &self,
        fence: &Fence,
        id: JobId,
        before: Timestamp,
    ) -> StoreResult<Option<JobId>> {
        let context = format!("deleting abandoned job {id} in table {}", self.tables.jobs);
        let delete = Delete::builder()
            .table_name(&self.tables.jobs)
            .set_key(Some(job_key(&id)))
            .condition_expression("#state = :created AND created_at < :before")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":created", s(JobState::Created.as_str()))
            .expression_attribute_values(":before", n(before.0))
            .build()
            .map_err(|e| corrupt(&context, e))?;
        let write = TransactWriteItem::builder().delete(delete).build();
        match self.transact(fence, write, &context).await {
            Ok(()) => Ok(Some(id)),
            // No longer abandoned (or gone): not deleted, not an error.
            Err(outcome) => refused(fence, outcome, || Ok(())).map(|()| None),
        }
    }

    pub(super) async fn fenced_worker_state(
        &self,
        fence: &Fence,
        id: &WorkerId,
        state: WorkerState,
    ) -> StoreResult<()> {
        let context = format!(
            "marking worker {id} {} in table {}",
            state.as_str(),
            self.tables.workers
        );
        let update = Update::builder()
            .table_name(&self.tables.workers)
            .set_key(Some(worker_key(id, REGISTRATION)))
            .update_expression("SET #state = :state")
            .condition_expression("attribute_exists(id)")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":state", s(state.as_str()))
            .build()
            .map_err(|e| corrupt(&context, e))?;
        let write = TransactWriteItem::builder().update(update).build();
        match self.transact(fence, write, &context).await {
            Ok(()) => Ok(()),
            // A worker already deleted stays deleted.
            Err(outcome) => refused(fence, outcome, || Ok(())),
        }
    }

    /// The registration goes in the fenced transaction; its beats, which no
    /// reader counts without a registration, are deleted after it.
    pub(super) async fn fenced_remove_worker(
        &self,
        fence: &Fence,
        id: &WorkerId,
    ) -> StoreResult<()> {
        let context = format!("deleting worker {id} in table {}", self.tables.workers);
        let delete = Delete::builder()
            .table_name(&self.tables.workers)
            .set_key(Some(worker_key(id, REGISTRATION)))
            .build()
            .map_err(|e| corrupt(&context, e))?;
        let write = TransactWriteItem::builder().delete(delete).build();
        match self.transact(fence, write, &context).await {
            Ok(()) => Ok(()),
            Err(outcome) => refused(fence, outcome, || Ok(())),
        }
    }

    pub(super) async fn fenced_put_instance(
        &self,
        fence: &Fence,
        instance: &Instance,
    ) -> StoreResult<()> {
        let table = &self.tables.instances;
        let context = format!("recording instance {} in table {table}", instance.id);
        let item = encode(instance).map_err(|e| corrupt(&context, e))?;
        let put = self.put(table, item, &context)?;
        self.put_fenced(fence, put, &context).await
    }

    pub(super) async fn fenced_remove_instance(
        &self,
        fence: &Fence,
        id: &InstanceId,
    ) -> StoreResult<()> {
        let table = &self.tables.instances;
        let context = format!("deleting instance {id} in table {table}");
        let delete = Delete::builder()
            .table_name(table)
            .key("id", s(id.as_str()))
            .build()
            .map_err(|e| corrupt(&context, e))?;
        let write = TransactWriteItem::builder().delete(delete).build();
        match self.transact(fence, write, &context).await {
            Ok(()) => Ok(()),
            Err(outcome) => refused(fence, outcome, || Ok(())),
        }
    }

    pub(super) async fn fenced_put_fleet_settings(
        &self,
        fence: &Fence,
        settings: &FleetSettings,
    ) -> StoreResult<()> {
        let table = &self.tables.settings;
        let context = format!("writing fleet settings in table {table}");
        let mut item = encode(settings).map_err(|e| corrupt(&context, e))?;
        item.extend(HashMap::from([(
            SETTINGS_KEY.to_string(),
            s(FLEET_SETTINGS),
        )]));
        let put = self.put(table, item, &context)?;
        self.put_fenced(fence, put, &context).await
    }
}
