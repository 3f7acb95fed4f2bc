//! The fleet: where workers run. Locally an instance is a `drover worker` child
//! process; on AWS it is an EC2 instance. The controller records every launch in
//! the store before it asks the fleet, so a restarted controller knows everything
//! it may have started.

#[cfg(feature = "aws")]
pub mod ec2;
pub mod local;

use async_trait::async_trait;
use reconcilers::model::{Instance, InstanceId, ObservedInstance};

#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("launching instance {instance}: {message}")]
    Launch {
        instance: InstanceId,
        message: String,
    },
    #[error("terminating instance {instance}: {message}")]
    Terminate {
        instance: InstanceId,
        message: String,
    },
    #[error("listing instances: {0}")]
    List(String),
}

#[async_trait]
pub trait Fleet: Send + Sync + 'static {
    /// Starts the instance described by the (already stored) record. Returns the
    /// provider's handle to store with it (a process id locally). Launching the
    /// same launch key twice must not start a second instance.
    async fn launch(&self, instance: &Instance) -> Result<Option<String>, FleetError>;

    /// Stops an instance. Stopping one that is already gone is a success.
    async fn terminate(&self, instance: &Instance) -> Result<(), FleetError>;

    /// Every instance of this cluster the provider shows, known to the store or not.
    async fn list(&self) -> Result<Vec<ObservedInstance>, FleetError>;

    /// The provider's name for metrics and logs.
    fn name(&self) -> &'static str;
}
