//! The leader lease and the list of controllers, as items of the settings table
//! (`name = "leader"`, `name = "controller#<holder>"`).
//!
//! Taking the lease is a read, the decision (`Lease::next`), then one PutItem
//! conditional on the item being exactly as read: of two controllers racing for
//! it, one write lands and the other is refused and reads the winner. The
//! leader's fenced writes check this item in their transactions (`writes.rs`):
//! a renewal that meets one of them is sent again (`conflicts.rs`).

use super::items::{n, s, Item, SETTINGS_KEY};
use super::paging::corrupt;
use super::writes::{leader_key, Write, Written};
use super::DynamoStore;
use crate::store::{Fence, Lease, StoreResult};
use aws_sdk_dynamodb::types::{Delete, Put, Update};
use reconcilers::model::Timestamp;
use std::collections::HashMap;

const CONTROLLER_PREFIX: &str = "controller#";
/// Not `expires_at`: that name is a TTL attribute elsewhere, in seconds.
const UNTIL: &str = "until_ms";
/// A controller's entry expired this long ago is deleted (as SQLite does): one
/// that never comes back (a data folder that did not persist gets a new name)
/// does not stay for ever, and a day keeps the list readable by hand.
const FORGET_AFTER_MS: u64 = 24 * 3600 * 1000;

fn key(name: &str) -> Item {
    HashMap::from([(SETTINGS_KEY.to_string(), s(name))])
}

fn text(item: &Item, name: &str) -> Result<String, String> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .cloned()
        .ok_or_else(|| format!("the lease item has no text attribute {name}"))
}

fn number(item: &Item, name: &str) -> Result<u64, String> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("the lease item has no number attribute {name}"))
}

fn lease_from_item(item: &Item) -> Result<Lease, String> {
    Ok(Lease {
        holder: text(item, "holder")?,
        address: text(item, "address")?,
        token: number(item, "token")?,
        expires_at: Timestamp(number(item, UNTIL)?),
    })
}

fn lease_item(lease: &Lease) -> Item {
    let mut item = leader_key();
    item.insert("holder".into(), s(&lease.holder));
    item.insert("address".into(), s(&lease.address));
    item.insert("token".into(), n(lease.token));
    item.insert(UNTIL.into(), n(lease.expires_at.0));
    item
}

impl DynamoStore {
    async fn read_lease(&self, context: &str) -> StoreResult<Option<Lease>> {
        (self.get_item_as(
            &self.tables.settings,
            leader_key(),
            context,
            lease_from_item,
        ))
        .await
    }

    pub(super) async fn take_lease(
        &self,
        holder: &str,
        address: &str,
        now: Timestamp,
        duration_ms: u64,
    ) -> StoreResult<Lease> {
        let context = format!(
            "taking or renewing the leader lease for {holder} in table {}",
            self.tables.settings
        );
        let current = self.read_lease(&context).await?;
        let Some(next) = Lease::next(current.as_ref(), holder, address, now, duration_ms) else {
            return current.ok_or_else(|| corrupt(&context, "the lease vanished"));
        };
        let put = Put::builder()
            .table_name(&self.tables.settings)
            .set_item(Some(lease_item(&next)));
        // Only if nobody wrote it since we read it.
        let put = match &current {
            None => put
                .condition_expression("attribute_not_exists(#k)")
                .expression_attribute_names("#k", SETTINGS_KEY),
            Some(read) => put
                .condition_expression("#token = :token AND #holder = :holder AND #until = :until")
                .expression_attribute_names("#token", "token")
                .expression_attribute_names("#holder", "holder")
                .expression_attribute_names("#until", UNTIL)
                .expression_attribute_values(":token", n(read.token))
                .expression_attribute_values(":holder", s(&read.holder))
                .expression_attribute_values(":until", n(read.expires_at.0)),
        };
        let put = put.build().map_err(|e| corrupt(&context, e))?;
        // Never fenced: the lease is what fences.
        match self.send_plain(Write::Put(put), &context).await? {
            Written::Yes => Ok(next),
            // Another controller wrote it first: its lease stands.
            Written::ConditionFailed(_) => self
                .read_lease(&context)
                .await?
                .ok_or_else(|| corrupt(&context, "the lease vanished")),
        }
    }

    pub(super) async fn give_up_lease(&self, fence: &Fence) -> StoreResult<()> {
        let context = format!(
            "releasing the leader lease (token {}) in table {}",
            fence.token, self.tables.settings
        );
        let update = Update::builder()
            .table_name(&self.tables.settings)
            .set_key(Some(leader_key()))
            .update_expression("SET #until = :zero")
            .condition_expression("#token = :token AND #holder = :holder")
            .expression_attribute_names("#until", UNTIL)
            .expression_attribute_names("#token", "token")
            .expression_attribute_names("#holder", "holder")
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":token", n(fence.token))
            .expression_attribute_values(":holder", s(&fence.holder))
            .build()
            .map_err(|e| corrupt(&context, e))?;
        // A failed condition: not ours any more, nothing to give up.
        self.send_plain(Write::Update(update), &context)
            .await
            .map(drop)
    }

    /// Writes this controller's entry, lists the live ones, and deletes those
    /// expired for a day.
    pub(super) async fn announce(
        &self,
        holder: &str,
        address: &str,
        now: Timestamp,
        duration_ms: u64,
    ) -> StoreResult<Vec<String>> {
        let table = &self.tables.settings;
        let context = format!("announcing controller {holder} at {address} in table {table}");
        let mut item = key(&format!("{CONTROLLER_PREFIX}{holder}"));
        item.insert("address".into(), s(address));
        item.insert(UNTIL.into(), n(now.0.saturating_add(duration_ms)));
        self.client
            .put_item()
            .table_name(table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| super::paging::backend(&context, e))?;
        // The settings table holds a handful of items: a Scan is one page.
        let scan = self
            .client
            .scan()
            .table_name(table)
            .consistent_read(true)
            .filter_expression("begins_with(#k, :prefix)")
            .expression_attribute_names("#k", SETTINGS_KEY)
            .expression_attribute_values(":prefix", s(CONTROLLER_PREFIX));
        let items = self.scan_all(scan, &context).await?;
        let mut live = Vec::new();
        let forget = now.0.saturating_sub(FORGET_AFTER_MS);
        for item in &items {
            let until = number(item, UNTIL).map_err(|e| corrupt(&context, e))?;
            if until > now.0 {
                live.push(text(item, "address").map_err(|e| corrupt(&context, e))?);
            } else if until < forget {
                let name = text(item, SETTINGS_KEY).map_err(|e| corrupt(&context, e))?;
                self.forget_controller(&name, forget).await;
            }
        }
        live.sort();
        Ok(live)
    }

    /// Deletes a long-expired entry, unless it was renewed meanwhile. Only
    /// logged if it fails: the next announcement tries again.
    async fn forget_controller(&self, name: &str, forget: u64) {
        let table = &self.tables.settings;
        let context = format!("deleting the entry {name} expired for a day in table {table}");
        let delete = Delete::builder()
            .table_name(table)
            .set_key(Some(key(name)))
            .condition_expression("#until < :forget")
            .expression_attribute_names("#until", UNTIL)
            .expression_attribute_values(":forget", n(forget))
            .build()
            .map_err(|e| corrupt(&context, e));
        let sent = match delete {
            Ok(delete) => self.send_plain(Write::Delete(delete), &context).await,
            Err(e) => Err(e),
        };
        if let Err(e) = sent {
            tracing::warn!(error = %e, "forgetting a controller gone for a day");
        }
    }
}
