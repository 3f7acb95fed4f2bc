//! Instances (one item each, keyed by instance id) and the fleet settings (one
//! item in the settings table): plain items, written whole and unconditionally,
//! as the SQLite store writes them.

use super::items::{decode, encode, s, Item, FLEET_SETTINGS, SETTINGS_KEY};
use super::paging::{backend, corrupt};
use super::DynamoStore;
use crate::store::StoreResult;
use reconcilers::model::{FleetSettings, Instance, InstanceId};
use std::collections::HashMap;

impl DynamoStore {
    pub(super) async fn put_instance_item(&self, instance: &Instance) -> StoreResult<()> {
        if let Some(fence) = &self.fence {
            return self.fenced_put_instance(fence, instance).await;
        }
        let context = format!(
            "recording instance {} in table {}",
            instance.id, self.tables.instances
        );
        let item = encode(instance).map_err(|e| corrupt(&context, e))?;
        self.client
            .put_item()
            .table_name(&self.tables.instances)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| backend(&context, e))?;
        Ok(())
    }

    pub(super) async fn read_instances(&self) -> StoreResult<Vec<Instance>> {
        let context = format!("listing instances in table {}", self.tables.instances);
        let scan = self
            .client
            .scan()
            .table_name(&self.tables.instances)
            .consistent_read(true);
        let items = self.scan_all(scan, &context).await?;
        let mut instances = items
            .iter()
            .map(|item| decode(item).map_err(|e| corrupt(&context, e)))
            .collect::<StoreResult<Vec<Instance>>>()?;
        instances.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(instances)
    }

    pub(super) async fn remove_instance(&self, id: &InstanceId) -> StoreResult<()> {
        if let Some(fence) = &self.fence {
            return self.fenced_remove_instance(fence, id).await;
        }
        let context = format!("deleting instance {id} in table {}", self.tables.instances);
        self.client
            .delete_item()
            .table_name(&self.tables.instances)
            .key("id", s(id.as_str()))
            .send()
            .await
            .map_err(|e| backend(&context, e))?;
        Ok(())
    }

    fn settings_key() -> Item {
        HashMap::from([(SETTINGS_KEY.to_string(), s(FLEET_SETTINGS))])
    }

    pub(super) async fn read_fleet_settings(&self) -> StoreResult<Option<FleetSettings>> {
        let context = format!("reading fleet settings in table {}", self.tables.settings);
        let answer = self
            .client
            .get_item()
            .table_name(&self.tables.settings)
            .set_key(Some(Self::settings_key()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| backend(&context, e))?;
        answer
            .item
            .map(|item| decode(&item).map_err(|e| corrupt(&context, e)))
            .transpose()
    }

    pub(super) async fn put_fleet_settings_item(
        &self,
        settings: &FleetSettings,
    ) -> StoreResult<()> {
        if let Some(fence) = &self.fence {
            return self.fenced_put_fleet_settings(fence, settings).await;
        }
        let context = format!("writing fleet settings in table {}", self.tables.settings);
        let mut item = encode(settings).map_err(|e| corrupt(&context, e))?;
        item.extend(Self::settings_key());
        self.client
            .put_item()
            .table_name(&self.tables.settings)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| backend(&context, e))?;
        Ok(())
    }
}
