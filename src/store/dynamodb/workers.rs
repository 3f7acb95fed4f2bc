//! Workers and their heartbeats, in one table keyed by (worker id, `sk`): the
//! registration item (`sk = "worker"`) holds the worker and its state; each
//! heartbeat is its own item (`sk = "beat#<at>"`), written with BatchWriteItem.
//!
//! Why beats are items of their own: BatchWriteItem cannot make a write
//! conditional, so a beat written into the registration could overwrite a lost
//! worker's state or a newer beat. As separate items keyed by their time, a beat
//! can never hide a newer one (readers take the newest), and never touches the
//! state (readers take it from the registration). The writer deletes the beat it
//! superseded once the newer one is stored, so a worker normally has one beat item.

use super::items::{
    beat_item, beat_sk, merge_worker, s, worker_item, worker_key, worker_part, Beat, Item,
    WorkerPart, REGISTRATION, WORKER_SK,
};
use super::paging::corrupt;
use super::writes::Write;
use super::DynamoStore;
use crate::store::{Heartbeat, StoreResult};
use aws_sdk_dynamodb::types::{Delete, Put, Update};
use reconcilers::model::{Worker, WorkerId, WorkerState};
use std::collections::{BTreeMap, HashMap};

/// A worker's items as read: its registration (if any) and its beats.
#[derive(Default)]
struct Parts {
    registration: Option<Worker>,
    beats: Vec<Beat>,
}

impl Parts {
    fn newest(&self) -> Option<&Beat> {
        self.beats.iter().max_by(|a, b| a.sk.cmp(&b.sk))
    }
}

impl DynamoStore {
    fn group(&self, items: &[Item], doing: &str) -> StoreResult<BTreeMap<WorkerId, Parts>> {
        let mut workers: BTreeMap<WorkerId, Parts> = BTreeMap::new();
        for item in items {
            let part = worker_part(item)
                .map_err(|e| corrupt(format!("{doing} in table {}", self.tables.workers), e))?;
            match part {
                WorkerPart::Registration(w) => {
                    let id = w.id.clone();
                    workers.entry(id).or_default().registration = Some(w);
                }
                WorkerPart::Beat(id, beat) => workers.entry(id).or_default().beats.push(beat),
            }
        }
        Ok(workers)
    }

    /// A registration replaces the worker's record; its beats stay, and count only
    /// if newer than the registration's `last_ping`.
    pub(super) async fn put_worker_item(&self, worker: &Worker) -> StoreResult<()> {
        let context = format!(
            "recording worker {} in table {}",
            worker.id, self.tables.workers
        );
        let item = worker_item(worker).map_err(|e| corrupt(&context, e))?;
        let put = Put::builder()
            .table_name(&self.tables.workers)
            .set_item(Some(item))
            .build()
            .map_err(|e| corrupt(&context, e))?;
        // Never fenced (registrations come from the API); sent again if it met
        // the leader's transaction on the same worker.
        self.send_plain(Write::Put(put), &context).await.map(drop)
    }

    /// All of one worker's items: one Query on its partition.
    async fn worker_items(&self, id: &WorkerId, context: &str) -> StoreResult<Vec<Item>> {
        let query = self
            .client
            .query()
            .table_name(&self.tables.workers)
            .key_condition_expression("id = :id")
            .expression_attribute_values(":id", s(id.as_str()))
            .consistent_read(true);
        self.query_all(query, None, context).await
    }

    pub(super) async fn read_worker(&self, id: &WorkerId) -> StoreResult<Option<Worker>> {
        let context = format!("reading worker {id} in table {}", self.tables.workers);
        let items = self.worker_items(id, &context).await?;
        let mut grouped = self.group(&items, &format!("reading worker {id}"))?;
        Ok(grouped
            .remove(id)
            .and_then(|parts| Some(merge_worker(parts.registration.clone()?, parts.newest()))))
    }

    /// One Scan of the table. Beats older than a worker's newest (left by a late
    /// beat, a restart or a failed delete) are deleted on the way; a failure to
    /// delete them is only logged, the listing is right regardless.
    pub(super) async fn read_workers(&self) -> StoreResult<Vec<Worker>> {
        let table = &self.tables.workers;
        let context = format!("listing workers in table {table}");
        let scan = self.client.scan().table_name(table).consistent_read(true);
        let items = self.scan_all(scan, &context).await?;
        let grouped = self.group(&items, "listing workers")?;
        let mut stale = Vec::new();
        let mut workers = Vec::new();
        for (id, parts) in &grouped {
            let Some(registration) = &parts.registration else {
                continue; // beats of a deleted or never registered worker: they expire
            };
            let newest = parts.newest();
            for beat in &parts.beats {
                if newest.is_some_and(|n| beat.sk < n.sk) {
                    stale.push(worker_key(id, &beat.sk));
                }
            }
            workers.push(merge_worker(registration.clone(), newest));
        }
        if !stale.is_empty() {
            if let Err(e) = self
                .batch_write(table, vec![], stale, "deleting superseded heartbeats")
                .await
            {
                tracing::warn!(error = %e, "superseded heartbeats left for later");
            }
        }
        Ok(workers)
    }

    /// Writes each worker's newest beat of the batch as its own item, 25 per
    /// BatchWriteItem, then deletes the beats they superseded. This process
    /// remembers the newest beat it wrote per worker: a beat older than that is
    /// dropped (it would change nothing), and flushes run one at a time.
    pub(super) async fn write_heartbeats(&self, beats: &[Heartbeat]) -> StoreResult<()> {
        if beats.is_empty() {
            return Ok(());
        }
        let table = &self.tables.workers;
        let mut written = self.beats.lock().await;
        // The newest beat per worker; of two with the same time the later wins,
        // as it would one after the other.
        let mut newest: HashMap<&WorkerId, &Heartbeat> = HashMap::new();
        for beat in beats {
            let slot = newest.entry(&beat.worker).or_insert(beat);
            if beat.at >= slot.at {
                *slot = beat;
            }
        }
        let fresh: Vec<&Heartbeat> = newest
            .into_values()
            .filter(|b| written.get(&b.worker).is_none_or(|at| b.at >= *at))
            .collect();
        let puts = fresh
            .iter()
            .map(|b| beat_item(&b.worker, b.at, b.idle_since))
            .collect();
        let context = format!("recording {} heartbeats", fresh.len());
        self.batch_write(table, puts, vec![], &context).await?;

        let mut superseded = Vec::new();
        for b in fresh {
            if let Some(previous) = written.insert(b.worker.clone(), b.at) {
                if previous < b.at {
                    superseded.push(worker_key(&b.worker, &beat_sk(previous)));
                }
            }
        }
        if !superseded.is_empty() {
            // The beats are stored: a failure here leaves old beats that readers
            // ignore and `list_workers` deletes later.
            if let Err(e) = self
                .batch_write(table, vec![], superseded, "deleting superseded heartbeats")
                .await
            {
                tracing::warn!(error = %e, "superseded heartbeats left for later");
            }
        }
        Ok(())
    }

    /// Changes only the registration's state; a worker already deleted stays
    /// deleted (the condition refuses to create a bare item, and its failure is
    /// no error).
    pub(super) async fn write_worker_state(
        &self,
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
        self.send(Write::Update(update), &context).await.map(drop)
    }

    /// Deletes the registration and every beat of the worker. In a fenced store
    /// the registration goes first, alone, in the fenced transaction; its beats,
    /// which no reader counts without a registration, are deleted after it.
    pub(super) async fn remove_worker(&self, id: &WorkerId) -> StoreResult<()> {
        let context = format!("deleting worker {id}");
        if self.fence.is_some() {
            let delete = Delete::builder()
                .table_name(&self.tables.workers)
                .set_key(Some(worker_key(id, REGISTRATION)))
                .build()
                .map_err(|e| corrupt(&context, e))?;
            self.send(Write::Delete(delete), &context).await?;
        }
        let items = self
            .worker_items(id, &format!("{context} in table {}", self.tables.workers))
            .await?;
        let keys: Vec<Item> = items
            .iter()
            .filter_map(|item| Some(worker_key(id, item.get(WORKER_SK)?.as_s().ok()?)))
            .collect();
        self.batch_write(&self.tables.workers, vec![], keys, &context)
            .await?;
        self.beats.lock().await.remove(id);
        Ok(())
    }
}
