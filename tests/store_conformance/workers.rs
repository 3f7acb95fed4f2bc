//! The behaviours of workers and heartbeats, instances and fleet settings.

use super::*;

pub async fn workers_are_put_replaced_listed_and_deleted(f: Fixture) {
    let mut w = worker("w-2", 5);
    f.store.put_worker(&worker("w-1", 5)).await.unwrap();
    f.store.put_worker(&w).await.unwrap();
    w.slots = 8;
    w.idle_since = None;
    f.store.put_worker(&w).await.unwrap();
    assert_eq!(
        f.store.list_workers().await.unwrap(),
        vec![worker("w-1", 5), w.clone()]
    );
    assert_eq!(get_worker(f.store.as_ref(), "w-2").await, Some(w.clone()));
    assert_eq!(get_worker(f.store.as_ref(), "w-none").await, None);

    f.store
        .set_worker_state(&w.id, WorkerState::Lost)
        .await
        .unwrap();
    let lost = get_worker(f.store.as_ref(), "w-2").await.unwrap();
    assert_eq!(lost.state, WorkerState::Lost);
    assert_eq!(
        Worker {
            state: WorkerState::Active,
            ..lost
        },
        w
    );

    f.store
        .record_heartbeats(&[beat("w-1", 50, None)])
        .await
        .unwrap();
    f.store.delete_worker(&WorkerId::new("w-1")).await.unwrap();
    f.store.delete_worker(&WorkerId::new("w-1")).await.unwrap();
    // Marking a deleted worker does not bring it back.
    f.store
        .set_worker_state(&WorkerId::new("w-1"), WorkerState::Lost)
        .await
        .unwrap();
    assert_eq!(get_worker(f.store.as_ref(), "w-1").await, None);
    let listed = f.store.list_workers().await.unwrap();
    assert_eq!(ids_of_workers(&listed), ["w-2"]);
    // Registered again, it starts from its new record, not its old beats.
    f.store.put_worker(&worker("w-1", 20)).await.unwrap();
    assert_eq!(
        get_worker(f.store.as_ref(), "w-1").await,
        Some(worker("w-1", 20))
    );
    if let Some(items) = f.item_count("workers").await {
        assert_eq!(items, 2, "the deleted worker's beat went with it");
    }
}

fn ids_of_workers(workers: &[Worker]) -> Vec<&str> {
    workers.iter().map(|w| w.id.as_str()).collect()
}

pub async fn heartbeats_are_monotonic_and_never_revive_a_lost_worker(f: Fixture) {
    f.store.put_worker(&worker("w-1", 100)).await.unwrap();
    f.store.put_worker(&worker("w-lost", 100)).await.unwrap();
    f.store
        .set_worker_state(&WorkerId::new("w-lost"), WorkerState::Lost)
        .await
        .unwrap();
    f.store
        .record_heartbeats(&[
            beat("w-1", 300, None),
            beat("w-1", 200, Some(150)), // delivered late: changes nothing
            beat("w-lost", 400, Some(400)),
            beat("w-unknown", 500, None),
        ])
        .await
        .unwrap();
    let w1 = get_worker(f.store.as_ref(), "w-1").await.unwrap();
    assert_eq!((w1.last_ping, w1.idle_since), (Timestamp(300), None));
    let lost = get_worker(f.store.as_ref(), "w-lost").await.unwrap();
    assert_eq!(
        (lost.state, lost.last_ping),
        (WorkerState::Lost, Timestamp(400))
    );
    assert_eq!(get_worker(f.store.as_ref(), "w-unknown").await, None);

    // Later, in another call: an older beat still changes nothing, one of the
    // same time updates idle_since, and the listing agrees with the reads.
    f.store
        .record_heartbeats(&[beat("w-1", 250, Some(250))])
        .await
        .unwrap();
    assert_eq!(get_worker(f.store.as_ref(), "w-1").await, Some(w1.clone()));
    f.store
        .record_heartbeats(&[beat("w-1", 300, Some(300))])
        .await
        .unwrap();
    let w1 = get_worker(f.store.as_ref(), "w-1").await.unwrap();
    assert_eq!(
        (w1.last_ping, w1.idle_since),
        (Timestamp(300), Some(Timestamp(300)))
    );
    let listed = f.store.list_workers().await.unwrap();
    assert_eq!(ids_of_workers(&listed), ["w-1", "w-lost"]);
    assert_eq!(listed[0], w1);
    assert_eq!(listed[1].state, WorkerState::Lost);
}

pub async fn a_late_heartbeat_through_another_controller_does_not_move_last_ping_back(f: Fixture) {
    f.store.put_worker(&worker("w-1", 100)).await.unwrap();
    f.store
        .record_heartbeats(&[beat("w-1", 300, None)])
        .await
        .unwrap();
    let other = f.another_controller();
    other
        .record_heartbeats(&[beat("w-1", 200, Some(200))])
        .await
        .unwrap();
    let w1 = get_worker(f.store.as_ref(), "w-1").await.unwrap();
    assert_eq!((w1.last_ping, w1.idle_since), (Timestamp(300), None));
    assert_eq!(other.list_workers().await.unwrap(), vec![w1.clone()]);
    // The newer controller's beats win from then on, whichever wrote them.
    other
        .record_heartbeats(&[beat("w-1", 400, Some(350))])
        .await
        .unwrap();
    f.store
        .record_heartbeats(&[beat("w-1", 500, None)])
        .await
        .unwrap();
    let w1 = get_worker(f.store.as_ref(), "w-1").await.unwrap();
    assert_eq!((w1.last_ping, w1.idle_since), (Timestamp(500), None));
    assert_eq!(f.store.list_workers().await.unwrap(), vec![w1]);
    if let Some(items) = f.item_count("workers").await {
        // The listing deleted the beats that newer ones superseded.
        assert_eq!(items, 2, "one registration and one beat");
    }
}

pub async fn sixty_heartbeats_in_one_call_all_land(f: Fixture) {
    let names: Vec<String> = (0..60).map(|i| format!("w-{i:02}")).collect();
    for name in &names {
        f.store.put_worker(&worker(name, 1)).await.unwrap();
    }
    for round in [1_000u64, 2_000] {
        let beats: Vec<Heartbeat> = (names.iter().enumerate())
            .map(|(i, name)| beat(name, round + i as u64, (i % 2 == 0).then_some(round)))
            .collect();
        f.store.record_heartbeats(&beats).await.unwrap();
        let listed = f.store.list_workers().await.unwrap();
        assert_eq!(listed.len(), 60);
        for (i, w) in listed.iter().enumerate() {
            assert_eq!(w.id.as_str(), names[i]);
            assert_eq!(w.last_ping, Timestamp(round + i as u64));
            assert_eq!(w.idle_since, (i % 2 == 0).then_some(Timestamp(round)));
        }
    }
    if let Some(items) = f.item_count("workers").await {
        assert_eq!(items, 120, "60 registrations and each worker's newest beat");
    }
}

pub async fn instances_and_fleet_settings_round_trip(f: Fixture) {
    let instances: Vec<Instance> = [
        InstanceState::Launching,
        InstanceState::Running,
        InstanceState::Terminating,
    ]
    .into_iter()
    .enumerate()
    .map(|(i, state)| Instance {
        id: InstanceId::new(format!("i-{i}")),
        launch_key: LaunchKey::new(format!("k-{i}")),
        state,
        launched_at: Timestamp(i as u64),
        provider_ref: (i > 0).then(|| format!("pid {i}")),
    })
    .collect();
    for i in instances.iter().rev() {
        f.store.put_instance(i).await.unwrap();
    }
    assert_eq!(f.store.list_instances().await.unwrap(), instances);
    let mut replaced = instances[1].clone();
    replaced.state = InstanceState::Terminating;
    f.store.put_instance(&replaced).await.unwrap();
    f.store.delete_instance(&instances[0].id).await.unwrap();
    f.store.delete_instance(&instances[0].id).await.unwrap();
    assert_eq!(
        f.store.list_instances().await.unwrap(),
        [replaced, instances[2].clone()]
    );

    assert_eq!(f.store.fleet_settings().await.unwrap(), None);
    let mut settings = FleetSettings::default();
    f.store.put_fleet_settings(&settings).await.unwrap();
    settings.max_workers = 40;
    settings.idle_timeout_ms = i64::MAX as u64;
    f.store.put_fleet_settings(&settings).await.unwrap();
    assert_eq!(f.store.fleet_settings().await.unwrap(), Some(settings));
}
