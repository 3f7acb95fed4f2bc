//! The behaviours of declarative job records (`drover apply`): conditional
//! create, update and delete on the record's version, on both stores.

use super::*;
use drover::store::RecordWrite;
use reconcilers::records::{JobRecord, ManifestHash, RecordName};

fn record(name: &str, generation: u64, job: &str) -> JobRecord {
    JobRecord {
        name: RecordName::parse(name).unwrap(),
        generation,
        hash: ManifestHash(format!("sha256:{generation:064x}")),
        job: JobId::new(job),
        version: 0,
        created_at: Timestamp(100),
        updated_at: Timestamp(100 + generation),
    }
}

pub async fn a_record_is_created_once_read_back_and_listed_by_name(f: Fixture) {
    let r = record("render", 1, "j-1");
    assert_eq!(
        f.store.create_record(&r).await.unwrap(),
        RecordWrite::Written(0)
    );
    let again = record("render", 1, "j-other");
    assert_eq!(
        f.store.create_record(&again).await.unwrap(),
        RecordWrite::Refused,
        "a name is created once"
    );
    assert_eq!(f.store.get_record(&r.name).await.unwrap(), Some(r.clone()));
    let unknown = RecordName::parse("nothing").unwrap();
    assert_eq!(f.store.get_record(&unknown).await.unwrap(), None);

    f.store
        .create_record(&record("alpha", 1, "j-2"))
        .await
        .unwrap();
    f.store
        .create_record(&record("zeta", 1, "j-3"))
        .await
        .unwrap();
    let names: Vec<String> = (f.store.list_records().await.unwrap())
        .iter()
        .map(|r| r.name.to_string())
        .collect();
    assert_eq!(names, ["alpha", "render", "zeta"]);
}

pub async fn a_record_update_is_conditional_on_the_version_read(f: Fixture) {
    let r = record("render", 1, "j-1");
    f.store.create_record(&r).await.unwrap();
    let next = JobRecord {
        generation: 2,
        job: JobId::new("j-2"),
        ..r.clone()
    };
    assert_eq!(
        f.store.update_record(&next).await.unwrap(),
        RecordWrite::Written(1)
    );
    let stored = f.store.get_record(&r.name).await.unwrap().unwrap();
    assert_eq!(
        stored,
        JobRecord {
            version: 1,
            ..next.clone()
        }
    );

    // Another apply that read version 0 loses, and changes nothing.
    let stale = JobRecord {
        generation: 2,
        job: JobId::new("j-stale"),
        ..r.clone()
    };
    assert_eq!(
        f.store.update_record(&stale).await.unwrap(),
        RecordWrite::Refused
    );
    assert_eq!(f.store.get_record(&r.name).await.unwrap(), Some(stored));

    let missing = record("missing", 2, "j-9");
    assert_eq!(
        f.store.update_record(&missing).await.unwrap(),
        RecordWrite::Refused
    );
    assert_eq!(
        f.store.get_record(&missing.name).await.unwrap(),
        None,
        "an update creates nothing"
    );
}

pub async fn of_applies_racing_from_the_same_version_exactly_one_wins(f: Fixture) {
    let r = record("render", 1, "j-1");
    f.store.create_record(&r).await.unwrap();
    let other = f.another_controller();
    let writes: Vec<_> = (0..8)
        .map(|i| {
            let store = if i % 2 == 0 {
                f.store.clone()
            } else {
                other.clone()
            };
            let next = JobRecord {
                generation: 2,
                job: JobId::new(format!("j-{i}")),
                ..r.clone()
            };
            async move { store.update_record(&next).await.unwrap() }
        })
        .collect();
    let results = futures::future::join_all(writes).await;
    let won = results
        .iter()
        .filter(|w| **w == RecordWrite::Written(1))
        .count();
    assert_eq!(won, 1, "{results:?}");
}

pub async fn a_record_delete_is_conditional_on_the_version_read(f: Fixture) {
    let r = record("render", 1, "j-1");
    f.store.create_record(&r).await.unwrap();
    f.store
        .update_record(&JobRecord {
            generation: 2,
            ..r.clone()
        })
        .await
        .unwrap();
    assert_eq!(
        f.store.delete_record(&r.name, 0).await.unwrap(),
        RecordWrite::Refused,
        "a delete decided on version 0 is stale"
    );
    assert!(f.store.get_record(&r.name).await.unwrap().is_some());
    assert_eq!(
        f.store.delete_record(&r.name, 1).await.unwrap(),
        RecordWrite::Written(1)
    );
    assert_eq!(f.store.get_record(&r.name).await.unwrap(), None);
    assert_eq!(
        f.store.delete_record(&r.name, 1).await.unwrap(),
        RecordWrite::Refused,
        "nothing left to delete"
    );
    // The name is free again.
    assert_eq!(
        f.store.create_record(&r).await.unwrap(),
        RecordWrite::Written(0)
    );
}
