//! Instances (one item each, keyed by instance id) and the fleet settings (one
//! item in the settings table): plain items, written whole and unconditionally,
//! as the SQLite store writes them (in the leader's fenced view, inside its
//! lease-checking transaction: `writes.rs`).

use super::items::{encode, s, Item, FLEET_SETTINGS, SETTINGS_KEY};
use super::paging::corrupt;
use super::writes::Write;
use super::DynamoStore;
use crate::store::StoreResult;
use aws_sdk_dynamodb::types::{Delete, Put};
use reconcilers::model::{FleetSettings, Instance, InstanceId};
use std::collections::HashMap;

impl DynamoStore {
    /// Writes `item` whole into `table`.
    async fn put_whole(&self, table: &str, item: Item, context: &str) -> StoreResult<()> {
        let put = Put::builder()
            .table_name(table)
            .set_item(Some(item))
            .build()
            .map_err(|e| corrupt(context, e))?;
        self.send(Write::Put(put), context).await.map(drop)
    }

    pub(super) async fn put_instance_item(&self, instance: &Instance) -> StoreResult<()> {
        let table = &self.tables.instances;
        let context = format!("recording instance {} in table {table}", instance.id);
        let item = encode(instance).map_err(|e| corrupt(&context, e))?;
        self.put_whole(table, item, &context).await
    }

    pub(super) async fn read_instances(&self) -> StoreResult<Vec<Instance>> {
        let table = &self.tables.instances;
        let context = format!("listing instances in table {table}");
        self.scan_decoded(table, &context, |i: &Instance| i.id.clone())
            .await
    }

    pub(super) async fn remove_instance(&self, id: &InstanceId) -> StoreResult<()> {
        let table = &self.tables.instances;
        let context = format!("deleting instance {id} in table {table}");
        let delete = Delete::builder()
            .table_name(table)
            .key("id", s(id.as_str()))
            .build()
            .map_err(|e| corrupt(&context, e))?;
        self.send(Write::Delete(delete), &context).await.map(drop)
    }

    fn settings_key() -> Item {
        HashMap::from([(SETTINGS_KEY.to_string(), s(FLEET_SETTINGS))])
    }

    pub(super) async fn read_fleet_settings(&self) -> StoreResult<Option<FleetSettings>> {
        let table = &self.tables.settings;
        let context = format!("reading fleet settings in table {table}");
        self.get_decoded(table, Self::settings_key(), &context)
            .await
    }

    pub(super) async fn put_fleet_settings_item(
        &self,
        settings: &FleetSettings,
    ) -> StoreResult<()> {
        let table = &self.tables.settings;
        let context = format!("writing fleet settings in table {table}");
        let mut item = encode(settings).map_err(|e| corrupt(&context, e))?;
        item.extend(Self::settings_key());
        self.put_whole(table, item, &context).await
    }
}
