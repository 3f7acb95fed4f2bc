//! The behaviours of the leader lease and of fenced writes: one conditional
//! write takes or renews the lease, its token grows each time it changes hands,
//! and a deposed leader's writes are refused by the store.

use super::*;
use drover::store::Fence;

const LEASE_MS: u64 = 1_000;

pub async fn a_free_lease_is_taken_renewed_and_refused_to_others_until_it_expires(f: Fixture) {
    let other = f.another_controller();
    let a = f
        .store
        .acquire_lease("a", "http://a", Timestamp(1_000), LEASE_MS)
        .await
        .unwrap();
    assert_eq!(
        (a.holder.as_str(), a.address.as_str(), a.token, a.expires_at),
        ("a", "http://a", 1, Timestamp(2_000))
    );
    // Another controller sees a's lease and gets nothing while it runs.
    let seen = other
        .acquire_lease("b", "http://b", Timestamp(1_500), LEASE_MS)
        .await
        .unwrap();
    assert_eq!(seen, a);
    // a renews: same token, later expiry.
    let renewed = f
        .store
        .acquire_lease("a", "http://a", Timestamp(1_900), LEASE_MS)
        .await
        .unwrap();
    assert_eq!((renewed.token, renewed.expires_at), (1, Timestamp(2_900)));
    assert_eq!(
        other
            .acquire_lease("b", "http://b", Timestamp(2_899), LEASE_MS)
            .await
            .unwrap()
            .holder,
        "a"
    );
    // a stops renewing: at the expiry b takes it with the next token.
    let b = other
        .acquire_lease("b", "http://b", Timestamp(2_900), LEASE_MS)
        .await
        .unwrap();
    assert_eq!((b.holder.as_str(), b.token), ("b", 2));
    let back = f
        .store
        .acquire_lease("a", "http://a", Timestamp(3_000), LEASE_MS)
        .await
        .unwrap();
    assert_eq!(back, b, "a comes back too late: b's lease stands");
}

pub async fn of_controllers_racing_for_a_free_lease_exactly_one_wins(f: Fixture) {
    let stores: Vec<Arc<dyn Store>> = (0..4).map(|_| f.another_controller()).collect();
    let races = stores.iter().enumerate().map(|(i, s)| {
        let name = format!("c{i}");
        async move {
            s.acquire_lease(&name, &format!("http://{name}"), Timestamp(10), LEASE_MS)
                .await
                .map(|l| (name, l))
        }
    });
    let results = futures::future::join_all(races).await;
    let leases: Vec<_> = results.into_iter().map(|r| r.expect("acquire")).collect();
    let winners: Vec<_> = leases
        .iter()
        .filter(|(name, l)| &l.holder == name)
        .collect();
    assert_eq!(winners.len(), 1, "{leases:?}");
    let winner = &winners[0].1;
    assert_eq!(winner.token, 1);
    assert!(leases.iter().all(|(_, l)| l == winner), "{leases:?}");
}

pub async fn a_released_lease_is_taken_at_once_and_a_stale_release_changes_nothing(f: Fixture) {
    let a = f
        .store
        .acquire_lease("a", "http://a", Timestamp(100), LEASE_MS)
        .await
        .unwrap();
    f.store.release_lease(&a.fence()).await.unwrap();
    let b = f
        .store
        .acquire_lease("b", "http://b", Timestamp(200), LEASE_MS)
        .await
        .unwrap();
    assert_eq!((b.holder.as_str(), b.token), ("b", 2));
    // a's release arrives late: b keeps the lease.
    f.store.release_lease(&a.fence()).await.unwrap();
    let still = f
        .store
        .acquire_lease("c", "http://c", Timestamp(300), LEASE_MS)
        .await
        .unwrap();
    assert_eq!(still, b);
}

pub async fn a_deposed_leaders_fenced_writes_are_refused_and_change_nothing(f: Fixture) {
    let other = f.another_controller();
    let a = f
        .store
        .acquire_lease("a", "http://a", Timestamp(100), LEASE_MS)
        .await
        .unwrap();
    let a_writes = f.store.fenced(a.fence());
    // While a leads, its fenced writes land.
    let queued = job("j-1", JobState::Queued, 1);
    f.store.create_job(&queued).await.unwrap();
    let mut assigned = on_worker("j-1", JobState::Assigned, 1, "w-1");
    assert_eq!(
        a_writes.update_jobs(&[assigned.clone()]).await.unwrap()[0]
            .as_ref()
            .ok(),
        Some(&1)
    );
    assigned.version = 1;
    f.store.put_worker(&worker("w-1", 5)).await.unwrap();
    a_writes.put_instance(&instance("i-1")).await.unwrap();
    f.store
        .create_job(&job("j-old", JobState::Created, 1))
        .await
        .unwrap();

    // a pauses past its lease; b takes over.
    let b = other
        .acquire_lease("b", "http://b", Timestamp(100 + LEASE_MS), LEASE_MS)
        .await
        .unwrap();
    assert_eq!((b.holder.as_str(), b.token), ("b", 2));

    // Everything a decides now is refused, whatever it writes.
    let fenced = |r: Result<(), StoreError>| {
        assert!(matches!(r, Err(StoreError::Fenced { token: 1 })), "{r:?}")
    };
    let mut requeued = assigned.clone();
    requeued.state = JobState::Queued;
    requeued.attempts.clear();
    fenced(a_writes.update_jobs(&[requeued.clone()]).await.map(drop));
    fenced(a_writes.update_job(&requeued).await.map(drop));
    fenced(
        a_writes
            .set_worker_state(&WorkerId::new("w-1"), WorkerState::Lost)
            .await,
    );
    fenced(a_writes.delete_worker(&WorkerId::new("w-1")).await);
    fenced(a_writes.put_instance(&instance("i-2")).await);
    fenced(a_writes.delete_instance(&InstanceId::new("i-1")).await);
    fenced(a_writes.put_fleet_settings(&FleetSettings::default()).await);
    fenced(
        a_writes
            .delete_abandoned_jobs(Timestamp(u64::MAX))
            .await
            .map(drop),
    );
    let err = a_writes
        .update_job(&requeued)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("leader lease moved on"), "{err}");

    // Nothing changed.
    let stored = f.store.get_job(&JobId::new("j-1")).await.unwrap().unwrap();
    assert_eq!((stored.state, stored.version), (JobState::Assigned, 1));
    assert_eq!(
        get_worker(f.store.as_ref(), "w-1").await.map(|w| w.state),
        Some(WorkerState::Active)
    );
    let instances = f.store.list_instances().await.unwrap();
    assert_eq!(instances, vec![instance("i-1")]);
    assert!(f
        .store
        .get_job(&JobId::new("j-old"))
        .await
        .unwrap()
        .is_some());

    // b's fenced writes land; a version conflict is still a conflict.
    let b_writes = other.fenced(b.fence());
    assert_eq!(b_writes.update_job(&requeued).await.unwrap(), 2);
    let err = b_writes.update_job(&requeued).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err:?}");
    let missing = job("j-none", JobState::Queued, 1);
    let err = b_writes.update_job(&missing).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    b_writes
        .set_worker_state(&WorkerId::new("w-1"), WorkerState::Lost)
        .await
        .unwrap();
    b_writes
        .delete_instance(&InstanceId::new("i-1"))
        .await
        .unwrap();
    assert!(f.store.list_instances().await.unwrap().is_empty());
    // A fence naming a token never held is refused too.
    let forged = f.store.fenced(Fence {
        holder: "b".into(),
        token: 99,
    });
    assert!(matches!(
        forged.put_instance(&instance("i-3")).await,
        Err(StoreError::Fenced { token: 99 })
    ));
}

pub async fn announced_controllers_are_listed_until_they_expire_and_a_restart_replaces_its_entry(
    f: Fixture,
) {
    let other = f.another_controller();
    let seen = f
        .store
        .announce_controller("a", "http://a", Timestamp(1_000), LEASE_MS)
        .await
        .unwrap();
    assert_eq!(seen, ["http://a"]);
    let seen = other
        .announce_controller("b", "http://b", Timestamp(1_500), LEASE_MS)
        .await
        .unwrap();
    assert_eq!(seen, ["http://a", "http://b"]);
    // a stops announcing itself: gone from the list once expired.
    let seen = other
        .announce_controller("b", "http://b", Timestamp(2_000), LEASE_MS)
        .await
        .unwrap();
    assert_eq!(seen, ["http://b"]);
    // b restarts on another port under the same name: one entry, the new address.
    let seen = other
        .announce_controller("b", "http://b2", Timestamp(2_100), LEASE_MS)
        .await
        .unwrap();
    assert_eq!(seen, ["http://b2"]);
}

fn instance(id: &str) -> Instance {
    Instance {
        id: InstanceId::new(id),
        launch_key: LaunchKey::new(id),
        state: InstanceState::Running,
        launched_at: Timestamp(7),
        provider_ref: None,
    }
}

/// The leader's `update_jobs` goes in transactions of several jobs (DynamoDB):
/// 130 writes cross several of them, and a write refused by its own condition
/// (a stale version, an unknown job, the same job twice) is answered on its
/// own while the others land, each result in the order asked.
pub async fn a_leaders_update_jobs_across_transactions_answers_each_write_in_order(f: Fixture) {
    let lease = f
        .store
        .acquire_lease("a", "http://a", Timestamp(100), LEASE_MS)
        .await
        .unwrap();
    let leader = f.store.fenced(lease.fence());
    let jobs: Vec<Job> = (0..120)
        .map(|i| job(&format!("j-{i:03}"), JobState::Queued, i))
        .collect();
    create_all(f.store.as_ref(), &jobs).await;
    let mut stale = jobs[7].clone();
    stale.version = 5;
    let mut writes: Vec<Job> = jobs.clone();
    writes[7] = stale;
    writes.extend((0..10).map(|i| job(&format!("j-none-{i}"), JobState::Queued, 1)));
    // Twice from the version read: the first lands, the second is stale (one
    // is in an earlier transaction, one would be in the same one).
    writes.push(jobs[3].clone());
    writes.push(jobs[100].clone());
    let results = leader.update_jobs(&writes).await.unwrap();
    assert_eq!(results.len(), 132);
    for (i, result) in results.iter().enumerate() {
        match i {
            7 | 130 | 131 => assert!(
                matches!(result, Err(StoreError::Conflict { .. })),
                "{i}: {result:?}"
            ),
            120..=129 => assert!(
                matches!(result, Err(StoreError::NotFound(_))),
                "{i}: {result:?}"
            ),
            _ => assert_eq!(result.as_ref().ok(), Some(&1), "{i}: {result:?}"),
        }
    }
    let active = f.store.active_jobs().await.unwrap();
    let written = active.iter().filter(|j| j.version == 1).count();
    assert_eq!(
        (active.len(), written),
        (120, 119),
        "all but the stale write"
    );
}

/// A controller's entry expired for a day is deleted (a controller whose data
/// folder does not persist gets a new name at each start: the list must not
/// grow for ever); one expired for less stays.
pub async fn controllers_gone_for_a_day_are_forgotten(f: Fixture) {
    const DAY: u64 = 24 * 3600 * 1000;
    let other = f.another_controller();
    f.store
        .announce_controller("gone", "http://gone", Timestamp(1_000), LEASE_MS)
        .await
        .unwrap();
    f.store
        .announce_controller("recent", "http://recent", Timestamp(2_000), LEASE_MS)
        .await
        .unwrap();
    assert_eq!(f.item_count("settings").await.unwrap_or(2), 2);
    // "gone" expired at 2,000 and "recent" at 3,000: a day after 2,500, only
    // the first has been gone for a day.
    let seen = other
        .announce_controller("b", "http://b", Timestamp(2_500 + DAY), LEASE_MS)
        .await
        .unwrap();
    assert_eq!(seen, ["http://b"]);
    assert_eq!(
        f.item_count("settings").await.unwrap_or(2),
        2,
        "b and recent"
    );
    // Forgotten, not merely hidden: a probe from before its expiry misses it.
    let seen = other
        .announce_controller("b", "http://b", Timestamp(1_500), LEASE_MS)
        .await
        .unwrap();
    assert_eq!(seen, ["http://b", "http://recent"]);
}

/// At shutdown a controller rewrites its entry to expire at its probe (half a
/// lease ahead, duration 0): it does not count itself, and another controller
/// stopping next does not count it either, so that one is the last and stops
/// the workers.
pub async fn a_controller_stopping_is_not_counted_by_the_next_one_to_stop(f: Fixture) {
    let other = f.another_controller();
    let half = LEASE_MS / 2;
    f.store
        .announce_controller("a", "http://a", Timestamp(1_000), LEASE_MS)
        .await
        .unwrap();
    other
        .announce_controller("b", "http://b", Timestamp(1_200), LEASE_MS)
        .await
        .unwrap();
    // a stops: b announced within the last half lease, so a is not the last.
    let seen = f
        .store
        .announce_controller("a", "http://a", Timestamp(1_300 + half), 0)
        .await
        .unwrap();
    assert_eq!(seen, ["http://b"]);
    // b stops a moment later: a is gone, b is the last.
    let seen = other
        .announce_controller("b", "http://b", Timestamp(1_400 + half), 0)
        .await
        .unwrap();
    assert!(seen.is_empty(), "{seen:?}");
}
