//! The leader lease and the list of controllers, as items of the settings table
//! (`name = "leader"`, `name = "controller#<holder>"`), and the fenced writes.
//!
//! Taking the lease is a read, the decision (`Lease::next`), then one PutItem
//! conditional on the item being exactly as read: of two controllers racing for
//! it, one write lands and the other is refused and reads the winner.
//!
//! A fenced write is a TransactWriteItems of two items: a ConditionCheck that the
//! lease's token is still the leader's, and the write itself. DynamoDB charges a
//! transaction twice the capacity of plain writes, for both items: a fenced write
//! costs about 4 WCU where the plain one cost 1 (docs/aws-dynamodb.md).

use super::items::{n, s, Item, SETTINGS_KEY};
use super::paging::{backend, corrupt};
use super::DynamoStore;
use crate::store::{Fence, Lease, StoreError, StoreResult};
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{ConditionCheck, TransactWriteItem};
use reconcilers::model::Timestamp;
use std::collections::HashMap;

const LEADER: &str = "leader";
const CONTROLLER_PREFIX: &str = "controller#";
/// Not `expires_at`: that name is a TTL attribute elsewhere, in seconds.
const UNTIL: &str = "until_ms";

/// How a fenced transaction failed.
pub(super) enum Refusal {
    /// The lease moved on.
    Fenced,
    /// The write's own condition failed (the lease was still ours).
    Condition,
}

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
    let mut item = key(LEADER);
    item.insert("holder".into(), s(&lease.holder));
    item.insert("address".into(), s(&lease.address));
    item.insert("token".into(), n(lease.token));
    item.insert(UNTIL.into(), n(lease.expires_at.0));
    item
}

impl DynamoStore {
    async fn read_lease(&self, context: &str) -> StoreResult<Option<Lease>> {
        let answer = self
            .client
            .get_item()
            .table_name(&self.tables.settings)
            .set_key(Some(key(LEADER)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| backend(context, e))?;
        answer
            .item
            .map(|item| lease_from_item(&item).map_err(|e| corrupt(context, e)))
            .transpose()
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
        let put = self
            .client
            .put_item()
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
        match put.send().await {
            Ok(_) => Ok(next),
            Err(e)
                if matches!(
                    e.as_service_error(),
                    Some(PutItemError::ConditionalCheckFailedException(_))
                ) =>
            {
                // Another controller wrote it first: its lease stands.
                self.read_lease(&context)
                    .await?
                    .ok_or_else(|| corrupt(&context, "the lease vanished"))
            }
            Err(e) => Err(backend(&context, e)),
        }
    }

    pub(super) async fn give_up_lease(&self, fence: &Fence) -> StoreResult<()> {
        let context = format!(
            "releasing the leader lease (token {}) in table {}",
            fence.token, self.tables.settings
        );
        let answer = self
            .client
            .update_item()
            .table_name(&self.tables.settings)
            .set_key(Some(key(LEADER)))
            .update_expression("SET #until = :zero")
            .condition_expression("#token = :token AND #holder = :holder")
            .expression_attribute_names("#until", UNTIL)
            .expression_attribute_names("#token", "token")
            .expression_attribute_names("#holder", "holder")
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":token", n(fence.token))
            .expression_attribute_values(":holder", s(&fence.holder))
            .send()
            .await;
        match answer {
            Ok(_) => Ok(()),
            // Not ours any more: nothing to give up.
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(backend(&context, e)),
        }
    }

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
            .map_err(|e| backend(&context, e))?;
        // The settings table holds a handful of items: a Scan is one page.
        let scan = self
            .client
            .scan()
            .table_name(table)
            .consistent_read(true)
            .filter_expression("begins_with(#k, :prefix) AND #until > :now")
            .expression_attribute_names("#k", SETTINGS_KEY)
            .expression_attribute_names("#until", UNTIL)
            .expression_attribute_values(":prefix", s(CONTROLLER_PREFIX))
            .expression_attribute_values(":now", n(now.0));
        let items = self.scan_all(scan, &context).await?;
        let mut live: Vec<String> = items
            .iter()
            .map(|item| text(item, "address").map_err(|e| corrupt(&context, e)))
            .collect::<StoreResult<_>>()?;
        live.sort();
        Ok(live)
    }

    /// Sends `write` alone, or, in a fenced store, in one transaction with the
    /// check that the lease is still the leader's.
    pub(super) async fn transact(
        &self,
        fence: &Fence,
        write: TransactWriteItem,
        context: &str,
    ) -> Result<(), Result<Refusal, StoreError>> {
        let check = ConditionCheck::builder()
            .table_name(&self.tables.settings)
            .set_key(Some(key(LEADER)))
            .condition_expression("#token = :token")
            .expression_attribute_names("#token", "token")
            .expression_attribute_values(":token", n(fence.token))
            .build()
            .map_err(|e| Err(corrupt(context, e)))?;
        let answer = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().condition_check(check).build())
            .transact_items(write)
            .send()
            .await;
        match answer {
            Ok(_) => Ok(()),
            Err(e) => match e.as_service_error() {
                Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) => {
                    let failed = |i: usize| {
                        cancelled
                            .cancellation_reasons()
                            .get(i)
                            .and_then(|r| r.code())
                            .is_some_and(|c| c == "ConditionalCheckFailed")
                    };
                    if failed(0) {
                        Err(Ok(Refusal::Fenced))
                    } else if failed(1) {
                        Err(Ok(Refusal::Condition))
                    } else {
                        Err(Err(backend(context, e)))
                    }
                }
                _ => Err(Err(backend(context, e))),
            },
        }
    }
}

/// The error of a fenced write that was refused or failed, where the write's own
/// condition failing means `on_condition`.
pub(super) fn refused(
    fence: &Fence,
    outcome: Result<Refusal, StoreError>,
    on_condition: impl FnOnce() -> StoreResult<()>,
) -> StoreResult<()> {
    match outcome {
        Ok(Refusal::Fenced) => Err(StoreError::Fenced { token: fence.token }),
        Ok(Refusal::Condition) => on_condition(),
        Err(e) => Err(e),
    }
}
