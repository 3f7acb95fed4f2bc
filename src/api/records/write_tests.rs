//! The record write against a real (in-memory SQLite) store, wrapped so that its
//! answers go wrong the ways a remote store's do: lost after the write landed
//! (then retried, as the AWS SDK does, or given up), or never reaching it.

use super::*;
use crate::store::{sqlite::SqliteStore, StoreResult};
use async_trait::async_trait;
use reconcilers::{
    model::{JobId, Timestamp},
    records::{next_record, ManifestHash, RecordName},
};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// The write lands, its answer is lost, and the client sends it again: the
    /// store answers the retry.
    AnswerLostThenRetried,
    /// The write lands, its answer is lost, and the client gives up with an error.
    AnswerLost,
    /// The write never reaches the store.
    Unreachable,
    /// Neither the write nor the read back reaches the store.
    Down,
}

struct Faulty {
    store: SqliteStore,
    fault: Fault,
}

fn lost(what: &str) -> StoreError {
    StoreError::backend(what, "connection reset by peer")
}

impl Faulty {
    async fn send(&self, record: &JobRecord, create: bool) -> StoreResult<RecordWrite> {
        if create {
            self.store.create_record(record).await
        } else {
            self.store.update_record(record).await
        }
    }

    async fn write(&self, record: &JobRecord, create: bool) -> StoreResult<RecordWrite> {
        match self.fault {
            Fault::AnswerLostThenRetried => {
                self.send(record, create).await?;
                self.send(record, create).await
            }
            Fault::AnswerLost => {
                self.send(record, create).await?;
                Err(lost("writing the record"))
            }
            Fault::Unreachable | Fault::Down => Err(lost("writing the record")),
        }
    }

    async fn delete(&self, name: &RecordName, version: u64) -> StoreResult<RecordWrite> {
        match self.fault {
            Fault::AnswerLostThenRetried => {
                self.store.delete_record(name, version).await?;
                self.store.delete_record(name, version).await
            }
            Fault::AnswerLost => {
                self.store.delete_record(name, version).await?;
                Err(lost("deleting the record"))
            }
            Fault::Unreachable | Fault::Down => Err(lost("deleting the record")),
        }
    }
}

#[async_trait]
impl JobRecords for Faulty {
    async fn create_record(&self, record: &JobRecord) -> StoreResult<RecordWrite> {
        self.write(record, true).await
    }

    async fn get_record(&self, name: &RecordName) -> StoreResult<Option<JobRecord>> {
        if self.fault == Fault::Down {
            return Err(lost("reading the record"));
        }
        self.store.get_record(name).await
    }

    async fn list_records(&self) -> StoreResult<Vec<JobRecord>> {
        self.store.list_records().await
    }

    async fn update_record(&self, record: &JobRecord) -> StoreResult<RecordWrite> {
        self.write(record, false).await
    }

    async fn delete_record(&self, name: &RecordName, version: u64) -> StoreResult<RecordWrite> {
        self.delete(name, version).await
    }
}

fn name() -> RecordName {
    RecordName::parse("render").unwrap()
}

fn hash(c: char) -> ManifestHash {
    ManifestHash(format!("sha256:{}", c.to_string().repeat(64)))
}

/// Generation 1 of `render` (job j1), as stored; and the store behind `fault`.
async fn stored_gen1(fault: Fault) -> (Faulty, JobRecord) {
    let store = SqliteStore::open_in_memory().expect("in-memory store");
    let first = next_record(&name(), None, &hash('a'), &JobId::new("j1"), Timestamp(1));
    assert_eq!(
        store.create_record(&first).await.unwrap(),
        RecordWrite::Written(0)
    );
    let read = store.get_record(&name()).await.unwrap().unwrap();
    (Faulty { store, fault }, read)
}

fn gen2(read: &JobRecord, job: &str) -> JobRecord {
    next_record(
        &name(),
        Some(read),
        &hash('b'),
        &JobId::new(job),
        Timestamp(2),
    )
}

async fn current_job(f: &Faulty) -> Option<JobId> {
    f.store.get_record(&name()).await.unwrap().map(|r| r.job)
}

#[tokio::test]
async fn a_create_whose_answer_was_lost_and_whose_retry_was_refused_is_written() {
    let store = SqliteStore::open_in_memory().expect("in-memory store");
    let f = Faulty {
        store,
        fault: Fault::AnswerLostThenRetried,
    };
    let first = next_record(&name(), None, &hash('a'), &JobId::new("j1"), Timestamp(1));
    assert_eq!(
        f.create_record(&first).await.unwrap(),
        RecordWrite::Refused,
        "the wrapper shows what the handler used to see"
    );
    f.store.delete_record(&name(), 0).await.unwrap();
    assert!(matches!(
        write_record(&f, &first, true).await,
        Recorded::Written
    ));
    assert_eq!(current_job(&f).await, Some(JobId::new("j1")));
}

#[tokio::test]
async fn an_update_whose_answer_was_lost_is_written_whether_retried_or_not() {
    for fault in [Fault::AnswerLostThenRetried, Fault::AnswerLost] {
        let (f, read) = stored_gen1(fault).await;
        let next = gen2(&read, "j2");
        assert!(matches!(
            write_record(&f, &next, false).await,
            Recorded::Written
        ));
        assert_eq!(current_job(&f).await, Some(JobId::new("j2")));
    }
}

#[tokio::test]
async fn an_update_that_never_reached_the_store_failed_and_names_nothing() {
    let (f, read) = stored_gen1(Fault::Unreachable).await;
    match write_record(&f, &gen2(&read, "j2"), false).await {
        Recorded::Failed(StoreError::Backend(e)) => assert!(e.contains("connection reset"), "{e}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(current_job(&f).await, Some(JobId::new("j1")));
}

#[tokio::test]
async fn an_update_beaten_by_another_apply_is_refused() {
    let (f, read) = stored_gen1(Fault::AnswerLostThenRetried).await;
    // The other apply read the same generation and wrote first.
    let theirs = gen2(&read, "j-theirs");
    assert_eq!(
        f.store.update_record(&theirs).await.unwrap(),
        RecordWrite::Written(1)
    );
    assert!(matches!(
        write_record(&f, &gen2(&read, "j-mine"), false).await,
        Recorded::Refused
    ));
    assert_eq!(current_job(&f).await, Some(JobId::new("j-theirs")));
}

#[tokio::test]
async fn a_create_of_a_name_taken_meanwhile_is_refused() {
    let (f, _) = stored_gen1(Fault::AnswerLostThenRetried).await;
    let mine = next_record(
        &name(),
        None,
        &hash('b'),
        &JobId::new("j-mine"),
        Timestamp(2),
    );
    assert!(matches!(
        write_record(&f, &mine, true).await,
        Recorded::Refused
    ));
}

#[tokio::test]
async fn a_write_and_a_read_back_both_failing_is_unknown() {
    let (f, read) = stored_gen1(Fault::Down).await;
    match write_record(&f, &gen2(&read, "j2"), false).await {
        Recorded::Unknown { write, reread } => {
            assert!(write.contains("writing the record"), "{write}");
            assert!(
                reread.to_string().contains("reading the record"),
                "{reread}"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_plain_write_is_written() {
    let (f, read) = stored_gen1(Fault::AnswerLost).await;
    assert!(matches!(
        write_record(&f.store, &gen2(&read, "j2"), false).await,
        Recorded::Written
    ));
}

#[tokio::test]
async fn a_delete_whose_answer_was_lost_is_done_whether_retried_or_not() {
    for fault in [Fault::AnswerLostThenRetried, Fault::AnswerLost] {
        let (f, read) = stored_gen1(fault).await;
        assert!(matches!(
            delete_record(&f, &name(), read.version).await,
            Ok(RecordWrite::Written(_))
        ));
        assert_eq!(current_job(&f).await, None);
    }
}

#[tokio::test]
async fn a_delete_that_never_reached_the_store_or_was_beaten_says_so() {
    let (f, read) = stored_gen1(Fault::Unreachable).await;
    let failed = delete_record(&f, &name(), read.version).await;
    assert!(matches!(failed, Err(StoreError::Backend(_))), "{failed:?}");
    assert_eq!(current_job(&f).await, Some(JobId::new("j1")));

    // An apply wrote generation 2 after the delete read generation 1.
    let (f, read) = stored_gen1(Fault::AnswerLostThenRetried).await;
    f.store.update_record(&gen2(&read, "j2")).await.unwrap();
    assert!(matches!(
        delete_record(&f, &name(), read.version).await,
        Ok(RecordWrite::Refused)
    ));
    assert_eq!(current_job(&f).await, Some(JobId::new("j2")));
}
