//! Garbage collection: instances the provider shows for this cluster that the store
//! does not know. As Karpenter's garbage collector does, the provider is listed
//! before the store is read, and an instance gets a grace period from its launch
//! time, because its record may be in flight.

use crate::fleet::FleetAction;
use crate::model::{InstanceId, ObservedInstance, TerminateReason, Timestamp};
use std::collections::HashSet;

pub fn leaked_instances(
    observed: &[ObservedInstance],
    known: &HashSet<&InstanceId>,
    now: Timestamp,
    grace_ms: u64,
) -> Vec<FleetAction> {
    observed
        .iter()
        .filter(|o| !known.contains(&o.id) && now.since(o.launched_at) >= grace_ms)
        .map(|o| FleetAction::Terminate {
            instance: o.id.clone(),
            reason: TerminateReason::Leaked,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(id: &str, at: u64) -> ObservedInstance {
        ObservedInstance {
            id: InstanceId::new(id),
            launch_key: None,
            launched_at: Timestamp(at),
        }
    }

    #[test]
    fn unknown_instances_are_terminated_only_after_the_grace_period() {
        let observed = vec![
            seen("i-old", 0),
            seen("i-young", 25_000),
            seen("i-known", 0),
        ];
        let known_id = InstanceId::new("i-known");
        let known: HashSet<&InstanceId> = [&known_id].into_iter().collect();
        let actions = leaked_instances(&observed, &known, Timestamp(30_000), 30_000);
        assert_eq!(
            actions,
            vec![FleetAction::Terminate {
                instance: InstanceId::new("i-old"),
                reason: TerminateReason::Leaked
            }]
        );
    }
}
