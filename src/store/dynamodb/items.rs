//! Item shapes: how jobs, workers, heartbeats, instances and fleet settings are
//! laid out as DynamoDB items, and the index attributes that make the sparse GSIs.
//!
//! The model's own fields go through serde (the same names as its JSON), so a field
//! added to `Job` or `Worker` is stored without touching this file; the index
//! attributes are added beside them under `gsi_*` names that no model field uses.

use aws_sdk_dynamodb::types::AttributeValue;
use reconcilers::model::{Job, JobId, JobState, Timestamp, Worker, WorkerId};
use serde::{de::DeserializeOwned, Serialize};
use serde_json::{Map, Number, Value};
use std::collections::HashMap;

pub type Item = HashMap<String, AttributeValue>;

/// The active-job and by-state indexes are split into this many partitions, so
/// that no single GSI partition takes every queued job's writes (a GSI partition
/// accepts about 1,000 writes/s; 16 of them take 16,000).
pub const SHARDS: u32 = 16;

/// GSI over queued, assigned and running jobs: `gsi_active` = `active#NN` (the
/// job's shard), `gsi_active_sk` = `<queued_at>#<id>`. Absent on other jobs.
pub const ACTIVE_INDEX: &str = "active";
pub const ACTIVE_PK: &str = "gsi_active";
pub const ACTIVE_SK: &str = "gsi_active_sk";
/// GSI over jobs held by a worker (assigned or running): `gsi_worker` = worker id.
pub const WORKER_INDEX: &str = "by_worker";
pub const WORKER_PK: &str = "gsi_worker";
/// GSI over every job: `gsi_state` = `<state>#NN`, `gsi_state_sk` = `<created_at>#<id>`.
pub const STATE_INDEX: &str = "by_state";
pub const STATE_PK: &str = "gsi_state";
pub const STATE_SK: &str = "gsi_state_sk";

/// The sort key of the workers table: the registration item, and one item per
/// heartbeat (`beat#<at>`), of which normally only the newest exists.
pub const WORKER_SK: &str = "sk";
pub const REGISTRATION: &str = "worker";
const BEAT_PREFIX: &str = "beat#";
/// The TTL attribute of heartbeat items: a beat left behind (a worker deleted while
/// a beat was in flight, a beat of an unknown worker) expires on its own.
pub const EXPIRES_AT: &str = "expires_at";
const BEAT_TTL_SECS: u64 = 7 * 24 * 3600;

/// The key of the single fleet-settings item in the settings table.
pub const SETTINGS_KEY: &str = "name";
pub const FLEET_SETTINGS: &str = "fleet";

/// A stable shard for a job id (FNV-1a: the same in every process and release,
/// unlike std's hasher, because it is part of what is stored).
pub fn shard_of(id: &JobId) -> u32 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.as_str().bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (hash % u64::from(SHARDS)) as u32
}

pub fn active_partition(shard: u32) -> String {
    format!("active#{shard:02}")
}

pub fn state_partition(state: JobState, shard: u32) -> String {
    format!("{}#{shard:02}", state.as_str())
}

/// `<millis, 20 digits>#<id>`: as strings these sort exactly as (time, id) do, so
/// a GSI range over them is the same order SQLite's `ORDER BY time, id` gives.
pub fn order_key(at: u64, id: &str) -> String {
    format!("{at:020}#{id}")
}

/// The bound below which every `order_key` has a time before `at`.
pub fn order_bound(at: u64) -> String {
    format!("{at:020}")
}

pub fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

pub fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn to_attr(value: Value) -> Option<AttributeValue> {
    Some(match value {
        // Omitted: a missing `Option` field reads back as `None`.
        Value::Null => return None,
        Value::Bool(b) => AttributeValue::Bool(b),
        Value::Number(x) => AttributeValue::N(x.to_string()),
        Value::String(x) => AttributeValue::S(x),
        Value::Array(list) => AttributeValue::L(
            list.into_iter()
                .map(|v| to_attr(v).unwrap_or(AttributeValue::Null(true)))
                .collect(),
        ),
        Value::Object(map) => AttributeValue::M(
            map.into_iter()
                .filter_map(|(k, v)| Some((k, to_attr(v)?)))
                .collect(),
        ),
    })
}

fn from_attr(attr: &AttributeValue) -> Result<Value, String> {
    Ok(match attr {
        AttributeValue::S(x) => Value::String(x.clone()),
        AttributeValue::N(x) => Value::Number(parse_number(x)?),
        AttributeValue::Bool(b) => Value::Bool(*b),
        AttributeValue::Null(_) => Value::Null,
        AttributeValue::L(list) => {
            Value::Array(list.iter().map(from_attr).collect::<Result<_, _>>()?)
        }
        AttributeValue::M(map) => Value::Object(from_map(map)?),
        other => return Err(format!("unexpected attribute {other:?}")),
    })
}

fn parse_number(text: &str) -> Result<Number, String> {
    if let Ok(u) = text.parse::<u64>() {
        return Ok(Number::from(u));
    }
    if let Ok(i) = text.parse::<i64>() {
        return Ok(Number::from(i));
    }
    text.parse::<f64>()
        .ok()
        .and_then(Number::from_f64)
        .ok_or_else(|| format!("number {text:?} out of range"))
}

fn from_map(map: &Item) -> Result<Map<String, Value>, String> {
    map.iter()
        .map(|(k, v)| Ok((k.clone(), from_attr(v)?)))
        .collect()
}

/// A model value as an item (its serde fields as attributes).
pub fn encode<T: Serialize>(value: &T) -> Result<Item, String> {
    match serde_json::to_value(value).map_err(|e| e.to_string())? {
        Value::Object(map) => Ok(map
            .into_iter()
            .filter_map(|(k, v)| Some((k, to_attr(v)?)))
            .collect()),
        other => Err(format!("expected an object, got {other}")),
    }
}

/// A model value from an item; attributes the model does not know (the `gsi_*`
/// index attributes, the table's sort key) are ignored.
pub fn decode<T: DeserializeOwned>(item: &Item) -> Result<T, String> {
    serde_json::from_value(Value::Object(from_map(item)?)).map_err(|e| e.to_string())
}

/// A job as stored: its fields, plus the attributes of the indexes it belongs to.
/// A write always replaces the whole item, so an index attribute the job no longer
/// qualifies for (a finished job's `gsi_active`) disappears with that same write.
pub fn job_item(job: &Job) -> Result<Item, String> {
    let mut item = encode(job)?;
    let shard = shard_of(&job.id);
    let id = job.id.as_str();
    if matches!(
        job.state,
        JobState::Queued | JobState::Assigned | JobState::Running
    ) {
        item.insert(ACTIVE_PK.into(), s(active_partition(shard)));
        let queued = job.queued_at.map_or(0, |t| t.0);
        item.insert(ACTIVE_SK.into(), s(order_key(queued, id)));
    }
    // A key attribute may not be empty: a worker with an empty id holds nothing.
    if let Some(worker) = job.worker().filter(|w| !w.as_str().is_empty()) {
        item.insert(WORKER_PK.into(), s(worker.as_str()));
    }
    item.insert(STATE_PK.into(), s(state_partition(job.state, shard)));
    item.insert(STATE_SK.into(), s(order_key(job.created_at.0, id)));
    Ok(item)
}

pub fn job_key(id: &JobId) -> Item {
    HashMap::from([("id".to_string(), s(id.as_str()))])
}

pub fn worker_item(worker: &Worker) -> Result<Item, String> {
    let mut item = encode(worker)?;
    item.insert(WORKER_SK.into(), s(REGISTRATION));
    Ok(item)
}

pub fn worker_key(id: &WorkerId, sk: &str) -> Item {
    HashMap::from([
        ("id".to_string(), s(id.as_str())),
        (WORKER_SK.to_string(), s(sk)),
    ])
}

pub fn beat_sk(at: Timestamp) -> String {
    format!("{BEAT_PREFIX}{:020}", at.0)
}

pub fn beat_item(worker: &WorkerId, at: Timestamp, idle_since: Option<Timestamp>) -> Item {
    let mut item = worker_key(worker, &beat_sk(at));
    item.insert("at".into(), n(at.0));
    if let Some(idle) = idle_since {
        item.insert("idle_since".into(), n(idle.0));
    }
    item.insert(EXPIRES_AT.into(), n(at.0 / 1000 + BEAT_TTL_SECS));
    item
}

/// One heartbeat item as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Beat {
    pub sk: String,
    pub at: Timestamp,
    pub idle_since: Option<Timestamp>,
}

fn number_attr(item: &Item, name: &str) -> Result<Option<u64>, String> {
    match item.get(name) {
        None | Some(AttributeValue::Null(_)) => Ok(None),
        Some(AttributeValue::N(x)) => x
            .parse()
            .map(Some)
            .map_err(|_| format!("{name} {x:?} is not a time")),
        Some(other) => Err(format!("{name} is {other:?}, not a number")),
    }
}

/// What one item of the workers table is.
pub enum WorkerPart {
    Registration(Worker),
    Beat(WorkerId, Beat),
}

pub fn worker_part(item: &Item) -> Result<WorkerPart, String> {
    let text = |name: &str| match item.get(name) {
        Some(AttributeValue::S(x)) => Ok(x.clone()),
        _ => Err(format!("item without a string {name}")),
    };
    let id = WorkerId::new(text("id")?);
    let sk = text(WORKER_SK)?;
    if sk == REGISTRATION {
        return decode(item)
            .map(WorkerPart::Registration)
            .map_err(|e| format!("worker {id}: {e}"));
    }
    if !sk.starts_with(BEAT_PREFIX) {
        return Err(format!("worker {id}: unknown item {sk:?}"));
    }
    let at =
        number_attr(item, "at")?.ok_or_else(|| format!("worker {id}: beat {sk} has no time"))?;
    let beat = Beat {
        sk,
        at: Timestamp(at),
        idle_since: number_attr(item, "idle_since")?.map(Timestamp),
    };
    Ok(WorkerPart::Beat(id, beat))
}

/// The worker as the controller sees it: its state from the registration (a beat
/// never revives a lost worker), its `last_ping` and `idle_since` from the newest
/// heartbeat if that is not older than what the registration says.
pub fn merge_worker(mut worker: Worker, newest: Option<&Beat>) -> Worker {
    if let Some(beat) = newest.filter(|b| b.at >= worker.last_ping) {
        worker.last_ping = beat.at;
        worker.idle_since = beat.idle_since;
    }
    worker
}

#[cfg(test)]
mod tests {
    use super::*;
    use reconcilers::model::{Attempt, AttemptOutcome, InstanceId, WorkerState};

    #[test]
    fn a_job_with_every_field_round_trips_through_an_item() {
        let mut job = Job::new(JobId::new("j-1"), Timestamp(5));
        job.state = JobState::Running;
        job.spec.name = Some("ünïcode 'name'".into());
        job.spec.max_wall_time_secs = Some(u64::MAX);
        job.queued_at = Some(Timestamp(6));
        job.exit_code = Some(-3);
        job.reason = Some(String::new());
        job.version = u64::MAX - 1;
        job.attempts.push(Attempt {
            number: 1,
            worker: WorkerId::new("w-1"),
            assigned_at: Timestamp(7),
            started_at: Some(Timestamp(8)),
            finished_at: None,
            exit_code: Some(i32::MIN),
            outcome: Some(AttemptOutcome::FailedBeforeRun),
            reason: None,
            has_output: true,
            empty_logs: Default::default(),
        });
        let item = job_item(&job).unwrap();
        assert_eq!(item[WORKER_PK], s("w-1"));
        assert_eq!(item[ACTIVE_SK], s("00000000000000000006#j-1"));
        assert_eq!(decode::<Job>(&item).unwrap(), job);
    }

    #[test]
    fn a_finished_job_leaves_the_active_and_worker_indexes() {
        let mut job = Job::new(JobId::new("j-1"), Timestamp(5));
        job.state = JobState::Succeeded;
        let item = job_item(&job).unwrap();
        assert!(!item.contains_key(ACTIVE_PK) && !item.contains_key(WORKER_PK));
        assert_eq!(
            item[STATE_PK],
            s(state_partition(JobState::Succeeded, shard_of(&job.id)))
        );
    }

    #[test]
    fn job_ids_spread_over_every_shard() {
        let mut counts = [0u32; SHARDS as usize];
        for i in 0..16_000 {
            counts[shard_of(&JobId::new(format!("job{i}"))) as usize] += 1;
        }
        assert!(counts.iter().all(|c| (800..1200).contains(c)), "{counts:?}");
    }

    #[test]
    fn order_keys_sort_as_time_then_id() {
        let mut keys = vec![
            order_key(10, "b"),
            order_key(9, "z"),
            order_key(10, "a"),
            order_key(100, "a"),
        ];
        keys.sort();
        assert_eq!(
            keys,
            [
                order_key(9, "z"),
                order_key(10, "a"),
                order_key(10, "b"),
                order_key(100, "a")
            ]
        );
        assert!(order_key(49, "zz") < order_bound(50) && order_bound(50) < order_key(50, ""));
    }

    #[test]
    fn a_beat_newer_than_the_registration_wins_but_never_changes_the_state() {
        let worker = Worker {
            id: WorkerId::new("w"),
            instance: InstanceId::new("i"),
            slots: 1,
            state: WorkerState::Lost,
            registered_at: Timestamp(1),
            last_ping: Timestamp(10),
            idle_since: Some(Timestamp(1)),
        };
        let beat = |at| Beat {
            sk: beat_sk(Timestamp(at)),
            at: Timestamp(at),
            idle_since: None,
        };
        let merged = merge_worker(worker.clone(), Some(&beat(20)));
        assert_eq!(
            (merged.last_ping, merged.idle_since, merged.state),
            (Timestamp(20), None, WorkerState::Lost)
        );
        assert_eq!(merge_worker(worker.clone(), Some(&beat(5))), worker);
        let item = beat_item(&worker.id, Timestamp(20), Some(Timestamp(3)));
        match worker_part(&item).unwrap() {
            WorkerPart::Beat(id, b) => assert_eq!(
                (id, b.at, b.idle_since),
                (worker.id.clone(), Timestamp(20), Some(Timestamp(3)))
            ),
            WorkerPart::Registration(_) => panic!("a beat read as a registration"),
        }
        match worker_part(&worker_item(&worker).unwrap()).unwrap() {
            WorkerPart::Registration(w) => assert_eq!(w, worker),
            WorkerPart::Beat(..) => panic!("a registration read as a beat"),
        }
    }
}
