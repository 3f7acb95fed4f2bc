//! Jobs: one item per job with its attempts inside, so that every change of a job
//! is one conditional PutItem on its version; the reads go through the sparse
//! indexes (active jobs, jobs on a worker, jobs by state).

use super::items::{
    active_partition, decode, job_item, job_key, n, order_bound, s, state_partition, Item,
    ACTIVE_INDEX, ACTIVE_PK, SHARDS, STATE_INDEX, STATE_PK, STATE_SK, WORKER_INDEX, WORKER_PK,
};
use super::paging::{backend, concurrently, corrupt, IN_FLIGHT};
use super::writes::{Write, Written};
use super::DynamoStore;
use crate::store::{JobFilter, StoreError, StoreResult};
use aws_sdk_dynamodb::types::{Delete, Put, ReturnValuesOnConditionCheckFailure};
use futures::{stream, StreamExt};
use reconcilers::model::{Job, JobId, JobState, Timestamp, WorkerId};
use std::collections::{HashMap, VecDeque};

/// Largest page a merge cursor of `list_jobs` asks for (without a page size).
const MERGE_PAGE_MAX: i32 = 1000;

impl DynamoStore {
    fn decode_job(&self, item: &Item, doing: &str) -> StoreResult<Job> {
        decode(item).map_err(|e| corrupt(format!("{doing} in table {}", self.tables.jobs), e))
    }

    /// Never fenced: submissions come from the API, and the condition refuses
    /// a taken id.
    pub(super) async fn put_new_job(&self, job: &Job) -> StoreResult<()> {
        let context = format!("creating job {} in table {}", job.id, self.tables.jobs);
        let item = job_item(job).map_err(|e| corrupt(&context, e))?;
        let put = Put::builder()
            .table_name(&self.tables.jobs)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(id)")
            .build()
            .map_err(|e| corrupt(&context, e))?;
        match self.send_plain(Write::Put(put), &context).await? {
            Written::Yes => Ok(()),
            Written::ConditionFailed(_) => Err(StoreError::AlreadyExists(job.id.clone())),
        }
    }

    pub(super) async fn read_job(&self, id: &JobId) -> StoreResult<Option<Job>> {
        let context = format!("reading job {id} in table {}", self.tables.jobs);
        self.get_decoded(&self.tables.jobs, job_key(id), &context)
            .await
    }

    /// The write of `job`'s next version, if its stored version is still
    /// `job.version`. A refused write returns the stored item (ALL_OLD), which
    /// tells a job that changed (`Conflict`) from one that does not exist
    /// (`NotFound`) without a second read.
    fn job_write(&self, job: &Job) -> StoreResult<(Write, u64)> {
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
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(|e| corrupt(&context, e))?;
        Ok((Write::Put(put), next))
    }

    pub(super) async fn write_job(&self, job: &Job) -> StoreResult<u64> {
        let (write, next) = self.job_write(job)?;
        let context = format!("updating job {} in table {}", job.id, self.tables.jobs);
        job_written(job, next, self.send(write, &context).await)
    }

    /// Plain: each write is its own conditional PutItem, 16 in flight (DynamoDB
    /// has no transaction that lets some of its writes fail). Fenced: the writes
    /// go in transactions of several jobs each, one at a time (`writes.rs`).
    /// Either way each result is reported in the order of `jobs` (a write that
    /// failed for another reason is a `Backend` entry; the writes around it stand).
    pub(super) async fn write_jobs(&self, jobs: &[Job]) -> StoreResult<Vec<StoreResult<u64>>> {
        let Some(fence) = &self.fence else {
            let writes: Vec<_> = (jobs.iter().enumerate())
                .map(|(i, job)| async move { (i, self.write_job(job).await) })
                .collect();
            let mut results: Vec<(usize, StoreResult<u64>)> = stream::iter(writes)
                .buffer_unordered(IN_FLIGHT)
                .collect()
                .await;
            results.sort_by_key(|(i, _)| *i);
            return Ok(results.into_iter().map(|(_, r)| r).collect());
        };
        let mut writes = Vec::with_capacity(jobs.len());
        let mut versions = Vec::with_capacity(jobs.len());
        for job in jobs {
            let (write, next) = self.job_write(job)?;
            writes.push(write);
            versions.push(next);
        }
        let context = format!("updating {} jobs in table {}", jobs.len(), self.tables.jobs);
        // A leader fenced off is refused as a whole, as SQLite refuses the batch.
        let outcomes = self.send_all(fence, writes, &context).await?;
        Ok((jobs.iter().zip(versions).zip(outcomes))
            .map(|((job, next), outcome)| job_written(job, next, outcome))
            .collect())
    }

    /// Every shard of the active index, queried concurrently, each page by page.
    /// The index is eventually consistent: a job written a moment ago may show its
    /// previous version, and the write decided on it is then refused (`Conflict`)
    /// and decided again on the next tick.
    pub(super) async fn read_active_jobs(&self) -> StoreResult<Vec<Job>> {
        let context = format!("reading active jobs in table {}", self.tables.jobs);
        let queries: Vec<_> = (0..SHARDS)
            .map(|shard| {
                let query = self
                    .client
                    .query()
                    .table_name(&self.tables.jobs)
                    .index_name(ACTIVE_INDEX)
                    .key_condition_expression("#pk = :pk")
                    .expression_attribute_names("#pk", ACTIVE_PK)
                    .expression_attribute_values(":pk", s(active_partition(shard)));
                let context = &context;
                async move { self.query_all(query, None, context).await }
            })
            .collect();
        let shards: Vec<Vec<Item>> = concurrently(queries).await?;
        let mut jobs = shards
            .iter()
            .flatten()
            .map(|item| self.decode_job(item, "reading active jobs"))
            .collect::<StoreResult<Vec<Job>>>()?;
        jobs.sort_by(|a, b| (a.queued_at, &a.id).cmp(&(b.queued_at, &b.id)));
        Ok(jobs)
    }

    pub(super) async fn read_jobs_on_worker(&self, worker: &WorkerId) -> StoreResult<Vec<Job>> {
        let context = format!(
            "reading jobs on worker {worker} in table {}",
            self.tables.jobs
        );
        let query = self
            .client
            .query()
            .table_name(&self.tables.jobs)
            .index_name(WORKER_INDEX)
            .key_condition_expression("#pk = :pk")
            .expression_attribute_names("#pk", WORKER_PK)
            .expression_attribute_values(":pk", s(worker.as_str()));
        let items = self.query_all(query, None, &context).await?;
        let mut jobs = items
            .iter()
            .map(|item| self.decode_job(item, &format!("reading jobs on worker {worker}")))
            .collect::<StoreResult<Vec<Job>>>()?;
        // The index copy may lag: keep only what the job itself says is on `worker`.
        jobs.retain(|j| j.worker() == Some(worker));
        jobs.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(jobs)
    }

    /// Newest first, from the by-state index: one partition per (state, shard).
    /// With a limit, the partitions are merged page by page (each is already in
    /// order), so a listing of 1,000 jobs reads about 1,000 items, not 1,000 from
    /// every partition.
    pub(super) async fn read_list_jobs(&self, filter: &JobFilter) -> StoreResult<Vec<Job>> {
        let context = format!("listing jobs in table {}", self.tables.jobs);
        if filter.limit == Some(0) {
            return Ok(Vec::new());
        }
        let mut states: Vec<JobState> = if filter.states.is_empty() {
            JobState::ALL.to_vec()
        } else {
            filter.states.clone()
        };
        states.sort_by_key(|st| st.as_str());
        states.dedup();
        let partitions: Vec<String> = states
            .iter()
            .flat_map(|st| (0..SHARDS).map(move |shard| state_partition(*st, shard)))
            .collect();
        let items = match filter.limit {
            Some(limit) => self.merge_newest(&partitions, limit, &context).await?,
            None => {
                let queries: Vec<_> = (partitions.iter())
                    .map(|p| self.query_all(self.newest_first(p), None, &context))
                    .collect();
                let all: Vec<Vec<Item>> = concurrently(queries).await?;
                let mut newest: HashMap<String, Item> = HashMap::new();
                for item in all.into_iter().flatten() {
                    let id = attr_text(&item, "id");
                    match newest.get(&id) {
                        Some(kept) if version_of(kept) >= version_of(&item) => {}
                        _ => drop(newest.insert(id, item)),
                    }
                }
                newest.into_values().collect()
            }
        };
        let mut jobs = items
            .iter()
            .map(|item| self.decode_job(item, "listing jobs"))
            .collect::<StoreResult<Vec<Job>>>()?;
        jobs.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
        if let Some(limit) = filter.limit {
            jobs.truncate(limit);
        }
        Ok(jobs)
    }

    fn newest_first(
        &self,
        partition: &str,
    ) -> aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder {
        self.client
            .query()
            .table_name(&self.tables.jobs)
            .index_name(STATE_INDEX)
            .key_condition_expression("#pk = :pk")
            .expression_attribute_names("#pk", STATE_PK)
            .expression_attribute_values(":pk", s(partition))
            .scan_index_forward(false)
    }

    /// The `limit` newest items over `partitions`: a k-way merge of their sort keys
    /// (`<created_at>#<id>`), refilling a partition's buffer only when it runs dry,
    /// with pages that start small and double.
    async fn merge_newest(
        &self,
        partitions: &[String],
        limit: usize,
        context: &str,
    ) -> StoreResult<Vec<Item>> {
        struct Cursor {
            buffered: VecDeque<Item>,
            start: Option<Item>,
            done: bool,
            page: i32,
        }
        let cap = self.page_size.unwrap_or(MERGE_PAGE_MAX);
        let first = i32::try_from(limit.div_ceil(partitions.len().max(1)))
            .unwrap_or(cap)
            .clamp(1, cap);
        let mut cursors: Vec<Cursor> = partitions
            .iter()
            .map(|_| Cursor {
                buffered: VecDeque::new(),
                start: None,
                done: false,
                page: first,
            })
            .collect();
        let sort_key = |item: &Item| attr_text(item, STATE_SK);
        let mut out: Vec<Item> = Vec::new();
        let mut seen: HashMap<String, usize> = HashMap::new();
        while out.len() < limit {
            let dry: Vec<(usize, Option<Item>, i32)> = cursors
                .iter()
                .enumerate()
                .filter(|(_, c)| c.buffered.is_empty() && !c.done)
                .map(|(i, c)| (i, c.start.clone(), c.page))
                .collect();
            let fetches: Vec<_> = (dry.into_iter())
                .map(|(i, start, page)| {
                    let query = self
                        .newest_first(&partitions[i])
                        .set_exclusive_start_key(start)
                        .limit(page);
                    async move {
                        let answer = query.send().await.map_err(|e| backend(context, e))?;
                        let next = answer.last_evaluated_key.filter(|k| !k.is_empty());
                        Ok::<_, StoreError>((i, answer.items.unwrap_or_default(), next))
                    }
                })
                .collect();
            let pages: Vec<(usize, Vec<Item>, Option<Item>)> = concurrently(fetches).await?;
            for (i, items, next) in pages {
                let c = &mut cursors[i];
                c.buffered.extend(items);
                c.done = next.is_none();
                c.start = next;
                c.page = c.page.saturating_mul(2).min(cap);
            }
            // Every cursor now has a head or is finished: the largest head is next.
            let best = cursors
                .iter_mut()
                .filter_map(|c| Some((sort_key(c.buffered.front()?), c)))
                .max_by(|a, b| a.0.cmp(&b.0));
            let Some(item) = best.and_then(|(_, cursor)| cursor.buffered.pop_front()) else {
                break;
            };
            // While the index moves a job from one state's partition to another,
            // a read may see it in both: the newer version stands, counted once.
            let id = attr_text(&item, "id");
            match seen.get(&id) {
                Some(&at) if version_of(&item) > version_of(&out[at]) => out[at] = item,
                Some(_) => {}
                None => {
                    seen.insert(id, out.len());
                    out.push(item);
                }
            }
        }
        Ok(out)
    }

    /// Jobs still `Created` (their submit never finished) created before `before`,
    /// found in the by-state index and deleted one by one, each only if it is still
    /// `Created` then (the index may lag behind a job that was just queued).
    pub(super) async fn remove_abandoned_jobs(&self, before: Timestamp) -> StoreResult<Vec<JobId>> {
        let context = format!(
            "deleting jobs abandoned before {} in table {}",
            before.0, self.tables.jobs
        );
        let queries: Vec<_> = (0..SHARDS)
            .map(|shard| {
                let query = self
                    .client
                    .query()
                    .table_name(&self.tables.jobs)
                    .index_name(STATE_INDEX)
                    .key_condition_expression("#pk = :pk AND #sk < :before")
                    .expression_attribute_names("#pk", STATE_PK)
                    .expression_attribute_names("#sk", STATE_SK)
                    .expression_attribute_values(
                        ":pk",
                        s(state_partition(JobState::Created, shard)),
                    )
                    .expression_attribute_values(":before", s(order_bound(before.0)));
                let context = &context;
                async move { self.query_all(query, None, context).await }
            })
            .collect();
        let found: Vec<Vec<Item>> = concurrently(queries).await?;
        let ids: Vec<JobId> = found
            .iter()
            .flatten()
            .filter_map(|item| item.get("id")?.as_s().ok().map(JobId::new))
            .collect();
        let deletes: Vec<_> = (ids.into_iter())
            .map(|id| async move { self.delete_if_abandoned(id, before).await })
            .collect();
        let deleted: Vec<Option<JobId>> = concurrently(deletes).await?;
        let mut deleted: Vec<JobId> = deleted.into_iter().flatten().collect();
        deleted.sort();
        Ok(deleted)
    }

    async fn delete_if_abandoned(
        &self,
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
        match self.send(Write::Delete(delete), &context).await? {
            Written::Yes => Ok(Some(id)),
            // No longer abandoned (or gone): not deleted, not an error.
            Written::ConditionFailed(_) => Ok(None),
        }
    }
}

/// The version written, or why not: the stored item returned by a refused write
/// tells a job that changed from one that does not exist.
fn job_written(job: &Job, next: u64, outcome: StoreResult<Written>) -> StoreResult<u64> {
    let (id, expected) = (job.id.clone(), job.version);
    match outcome? {
        Written::Yes => Ok(next),
        Written::ConditionFailed(Some(_)) => Err(StoreError::Conflict { job: id, expected }),
        Written::ConditionFailed(None) => Err(StoreError::NotFound(id)),
    }
}

fn attr_text(item: &Item, name: &str) -> String {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .cloned()
        .unwrap_or_default()
}

fn version_of(item: &Item) -> u64 {
    item.get("version")
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}
