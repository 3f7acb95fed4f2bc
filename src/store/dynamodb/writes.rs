//! One conditional write, built once and sent one of two ways: alone (PutItem,
//! UpdateItem, DeleteItem), or, in the leader's fenced view, in a
//! TransactWriteItems after a ConditionCheck that the lease's token is still the
//! leader's. The item and its condition are the same both ways, so the plain and
//! the fenced write cannot drift apart.
//!
//! The lease item is in every fenced transaction, and DynamoDB cancels
//! transactions that meet on an item: this process sends its fenced
//! transactions one at a time (`tx_lock`), several job writes per transaction
//! (`send_all`), and sends a write that met a transaction again after a short
//! jittered wait (`conflicts.rs`).

use super::conflicts::{conflict_backoff, is_transient_reason, retry_conflicts, Try};
use super::items::{n, s, Item, SETTINGS_KEY};
use super::paging::{backend, corrupt};
use super::DynamoStore;
use crate::store::{Fence, StoreError, StoreResult};
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::delete_item::DeleteItemError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    CancellationReason, ConditionCheck, Delete, Put, TransactWriteItem, Update,
};
use std::collections::HashMap;

/// The name of the lease item in the settings table (`lease.rs`).
pub(super) const LEADER: &str = "leader";

/// At most this many writes go in one fenced transaction, beside the lease
/// check (DynamoDB takes 100 items per transaction): a transaction cancelled by
/// one write's failed condition is sent again without it, so a smaller one
/// wastes less.
const WRITES_PER_TRANSACTION: usize = 49;
/// And about this many bytes of items (DynamoDB takes 4 MB per transaction).
const BYTES_PER_TRANSACTION: usize = 2 << 20;

/// A write as DynamoDB's transaction types describe it.
#[derive(Clone, Debug)]
pub(super) enum Write {
    Put(Put),
    Update(Update),
    Delete(Delete),
}

/// What became of a write that did not fail.
#[derive(Debug)]
pub(super) enum Written {
    Yes,
    /// Its own condition failed: nothing written. The item as stored when the
    /// write asked for it (`ReturnValuesOnConditionCheckFailure::AllOld`) and
    /// there was one.
    ConditionFailed(Option<Item>),
}

/// The lease item's key.
pub(super) fn leader_key() -> Item {
    HashMap::from([(SETTINGS_KEY.to_string(), s(LEADER))])
}

impl Write {
    fn into_transact_item(self) -> TransactWriteItem {
        let item = TransactWriteItem::builder();
        match self {
            Write::Put(p) => item.put(p),
            Write::Update(u) => item.update(u),
            Write::Delete(d) => item.delete(d),
        }
        .build()
    }

    /// The write's item or key, for the size of a transaction.
    fn bytes(&self) -> usize {
        let attributes = match self {
            Write::Put(p) => &p.item,
            Write::Update(u) => &u.key,
            Write::Delete(d) => &d.key,
        };
        attributes
            .iter()
            .map(|(k, v)| k.len() + value_bytes(v))
            .sum()
    }
}

/// About the size DynamoDB counts for a value (names and values in bytes, a few
/// bytes of overhead per nested element): enough to keep a transaction well
/// under its 4 MB.
fn value_bytes(v: &aws_sdk_dynamodb::types::AttributeValue) -> usize {
    use aws_sdk_dynamodb::types::AttributeValue as A;
    3 + match v {
        A::S(s) | A::N(s) => s.len(),
        A::B(b) => b.as_ref().len(),
        A::L(l) => l.iter().map(value_bytes).sum(),
        A::M(m) => m.iter().map(|(k, v)| k.len() + value_bytes(v)).sum(),
        A::Ss(l) | A::Ns(l) => l.iter().map(String::len).sum(),
        A::Bs(l) => l.iter().map(|b| b.as_ref().len()).sum(),
        _ => 1,
    }
}

/// The item returned by a refused conditional write (plain requests).
fn old_item(item: Option<&Item>) -> Option<Item> {
    item.filter(|i| !i.is_empty()).cloned()
}

/// One try of a plain request: its failed condition, its conflict with a
/// transaction, or any other failure.
fn plain_try<E, R>(
    answer: Result<R, SdkError<E, aws_sdk_dynamodb::config::http::HttpResponse>>,
    context: &str,
    condition_failed: impl Fn(&E) -> Option<Option<Item>>,
    is_conflict: impl Fn(&E) -> bool,
) -> Try<Written>
where
    E: std::error::Error + 'static,
{
    match answer {
        Ok(_) => Try::Done(Ok(Written::Yes)),
        Err(e) => match e.as_service_error() {
            Some(se) if is_conflict(se) => Try::Conflict(backend(context, e)),
            Some(se) => match condition_failed(se) {
                Some(old) => Try::Done(Ok(Written::ConditionFailed(old))),
                None => Try::Done(Err(backend(context, e))),
            },
            None => Try::Done(Err(backend(context, e))),
        },
    }
}

impl DynamoStore {
    /// Sends `write`: alone, or in a fenced store in a transaction with the lease
    /// check (refused with `StoreError::Fenced` once the lease moved on).
    pub(super) async fn send(&self, write: Write, context: &str) -> StoreResult<Written> {
        match &self.fence {
            Some(fence) => {
                let mut outcome = self.send_all(fence, vec![write], context).await?;
                outcome.pop().expect("one outcome per write")
            }
            None => self.send_plain(write, context).await,
        }
    }

    pub(super) async fn send_plain(&self, write: Write, context: &str) -> StoreResult<Written> {
        let client = &self.client;
        retry_conflicts(conflict_backoff(), || {
            let write = write.clone();
            async move {
                match write {
                    Write::Put(p) => plain_try(
                        (client.put_item())
                            .table_name(p.table_name)
                            .set_item(Some(p.item))
                            .set_condition_expression(p.condition_expression)
                            .set_expression_attribute_names(p.expression_attribute_names)
                            .set_expression_attribute_values(p.expression_attribute_values)
                            .set_return_values_on_condition_check_failure(
                                p.return_values_on_condition_check_failure,
                            )
                            .send()
                            .await,
                        context,
                        |e| match e {
                            PutItemError::ConditionalCheckFailedException(c) => {
                                Some(old_item(c.item()))
                            }
                            _ => None,
                        },
                        |e| e.is_transaction_conflict_exception(),
                    ),
                    Write::Update(u) => plain_try(
                        (client.update_item())
                            .table_name(u.table_name)
                            .set_key(Some(u.key))
                            .update_expression(u.update_expression)
                            .set_condition_expression(u.condition_expression)
                            .set_expression_attribute_names(u.expression_attribute_names)
                            .set_expression_attribute_values(u.expression_attribute_values)
                            .set_return_values_on_condition_check_failure(
                                u.return_values_on_condition_check_failure,
                            )
                            .send()
                            .await,
                        context,
                        |e| match e {
                            UpdateItemError::ConditionalCheckFailedException(c) => {
                                Some(old_item(c.item()))
                            }
                            _ => None,
                        },
                        |e| e.is_transaction_conflict_exception(),
                    ),
                    Write::Delete(d) => plain_try(
                        (client.delete_item())
                            .table_name(d.table_name)
                            .set_key(Some(d.key))
                            .set_condition_expression(d.condition_expression)
                            .set_expression_attribute_names(d.expression_attribute_names)
                            .set_expression_attribute_values(d.expression_attribute_values)
                            .set_return_values_on_condition_check_failure(
                                d.return_values_on_condition_check_failure,
                            )
                            .send()
                            .await,
                        context,
                        |e| match e {
                            DeleteItemError::ConditionalCheckFailedException(c) => {
                                Some(old_item(c.item()))
                            }
                            _ => None,
                        },
                        |e| e.is_transaction_conflict_exception(),
                    ),
                }
            }
        })
        .await
    }

    /// Sends `writes` in fenced transactions of up to `WRITES_PER_TRANSACTION`,
    /// one outcome per write, in order. A transaction cancelled because some
    /// writes' conditions failed wrote nothing: it is sent again without them.
    /// The lease moved on: `StoreError::Fenced` for the whole call, as nothing
    /// may land after that. Another failure fails the writes of its transaction
    /// (a `Backend` entry each); the others stand.
    pub(super) async fn send_all(
        &self,
        fence: &Fence,
        writes: Vec<Write>,
        context: &str,
    ) -> StoreResult<Vec<StoreResult<Written>>> {
        let mut outcomes: Vec<Option<StoreResult<Written>>> = writes.iter().map(|_| None).collect();
        for mut pending in chunks(&writes) {
            while !pending.is_empty() {
                let batch: Vec<Write> = pending.iter().map(|&i| writes[i].clone()).collect();
                match self.transact(fence, batch, context).await {
                    Ok(None) => {
                        for &i in &pending {
                            outcomes[i] = Some(Ok(Written::Yes));
                        }
                        pending.clear();
                    }
                    // Some conditions failed: those are answered, the rest go again.
                    Ok(Some(refused)) => {
                        let mut rest = Vec::new();
                        for (&i, refused) in pending.iter().zip(refused) {
                            match refused {
                                Some(old) => outcomes[i] = Some(Ok(Written::ConditionFailed(old))),
                                None => rest.push(i),
                            }
                        }
                        pending = rest;
                    }
                    Err(e @ StoreError::Fenced { .. }) => return Err(e),
                    Err(e) => {
                        let message = e.to_string();
                        for &i in &pending {
                            outcomes[i] = Some(Err(StoreError::Backend(message.clone())));
                        }
                        pending.clear();
                    }
                }
            }
        }
        Ok(outcomes
            .into_iter()
            .map(|o| o.expect("every write is answered"))
            .collect())
    }

    /// One fenced transaction: the lease check, then `writes`. `Ok(None)`: all
    /// written. `Ok(Some(refused))`: cancelled because the conditions of some
    /// writes failed (`Some(old item)` for those, `None` for the others, which
    /// were not written either). Conflicts are sent again; this process sends
    /// one fenced transaction at a time, as its own would meet on the lease item.
    async fn transact(
        &self,
        fence: &Fence,
        writes: Vec<Write>,
        context: &str,
    ) -> StoreResult<Option<Vec<Option<Option<Item>>>>> {
        let check = ConditionCheck::builder()
            .table_name(&self.tables.settings)
            .set_key(Some(leader_key()))
            .condition_expression("#token = :token")
            .expression_attribute_names("#token", "token")
            .expression_attribute_values(":token", n(fence.token))
            .build()
            .map_err(|e| corrupt(context, e))?;
        let count = writes.len();
        let items: Vec<TransactWriteItem> =
            std::iter::once(TransactWriteItem::builder().condition_check(check).build())
                .chain(writes.into_iter().map(Write::into_transact_item))
                .collect();
        retry_conflicts(conflict_backoff(), || {
            let items = items.clone();
            async move {
                let answer = {
                    let _one_at_a_time = self.tx_lock.lock().await;
                    (self.client.transact_write_items())
                        .set_transact_items(Some(items))
                        .send()
                        .await
                };
                let Err(e) = answer else {
                    return Try::Done(Ok(None));
                };
                let Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) =
                    e.as_service_error()
                else {
                    return Try::Done(Err(backend(context, e)));
                };
                match why_cancelled(cancelled.cancellation_reasons(), count) {
                    Cancelled::Fenced => Try::Done(Err(StoreError::Fenced { token: fence.token })),
                    Cancelled::Refused(refused) => Try::Done(Ok(Some(refused))),
                    Cancelled::Transient => Try::Conflict(backend(context, e)),
                    Cancelled::Other => Try::Done(Err(backend(context, e))),
                }
            }
        })
        .await
    }
}

/// Why a fenced transaction of `writes` writes (after the lease check) was
/// cancelled, from its cancellation reasons.
enum Cancelled {
    /// The lease check failed: the lease moved on.
    Fenced,
    /// The conditions of some writes failed: `Some(old item)` for those, `None`
    /// for the others (not written either).
    Refused(Vec<Option<Option<Item>>>),
    /// It met another transaction, or was throttled: send it again.
    Transient,
    Other,
}

fn why_cancelled(reasons: &[CancellationReason], writes: usize) -> Cancelled {
    let code = |i: usize| reasons.get(i).and_then(|r| r.code()).unwrap_or("None");
    if code(0) == "ConditionalCheckFailed" {
        return Cancelled::Fenced;
    }
    let refused: Vec<Option<Option<Item>>> = (1..=writes)
        .map(|i| {
            (code(i) == "ConditionalCheckFailed")
                .then(|| old_item(reasons.get(i).and_then(|r| r.item())))
        })
        .collect();
    if refused.iter().any(Option::is_some) {
        Cancelled::Refused(refused)
    } else if (0..=writes).any(|i| is_transient_reason(code(i))) {
        Cancelled::Transient
    } else {
        Cancelled::Other
    }
}

/// The writes' indexes cut into transactions: at most `WRITES_PER_TRANSACTION`
/// and about `BYTES_PER_TRANSACTION` each, and never two writes of one item in
/// one transaction (DynamoDB refuses that); in order otherwise.
fn chunks(writes: &[Write]) -> Vec<Vec<usize>> {
    let key = |w: &Write| -> String {
        let (table, attributes) = match w {
            Write::Put(p) => (&p.table_name, &p.item),
            Write::Update(u) => (&u.table_name, &u.key),
            Write::Delete(d) => (&d.table_name, &d.key),
        };
        // The key attributes every table here uses; a Put's item has the rest too.
        let id = ["id", SETTINGS_KEY, "sk"]
            .iter()
            .filter_map(|k| Some(format!("{k}={:?}", attributes.get(*k)?)))
            .collect::<Vec<_>>()
            .join(",");
        format!("{table}/{id}")
    };
    let mut out: Vec<Vec<usize>> = Vec::new();
    let (mut members, mut size, mut keys) = (Vec::new(), 0, std::collections::HashSet::new());
    for (i, w) in writes.iter().enumerate() {
        let (k, bytes) = (key(w), w.bytes());
        let full = members.len() == WRITES_PER_TRANSACTION
            || (!members.is_empty() && size + bytes > BYTES_PER_TRANSACTION)
            || keys.contains(&k);
        if full {
            out.push(std::mem::take(&mut members));
            (size, keys) = (0, Default::default());
        }
        members.push(i);
        size += bytes;
        keys.insert(k);
    }
    if !members.is_empty() {
        out.push(members);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(code: &str, item: Option<Item>) -> CancellationReason {
        CancellationReason::builder()
            .code(code)
            .set_item(item)
            .build()
    }

    fn job_put(id: &str, bytes: usize) -> Write {
        let item = HashMap::from([
            ("id".to_string(), s(id)),
            ("spec".to_string(), s("x".repeat(bytes))),
        ]);
        Write::Put(
            Put::builder()
                .table_name("t-jobs")
                .set_item(Some(item))
                .build()
                .unwrap(),
        )
    }

    #[test]
    fn a_failed_lease_check_is_fenced_whatever_the_writes_say() {
        let reasons = [
            reason("ConditionalCheckFailed", None),
            reason("ConditionalCheckFailed", None),
        ];
        assert!(matches!(why_cancelled(&reasons, 1), Cancelled::Fenced));
    }

    #[test]
    fn the_writes_whose_condition_failed_are_told_from_those_sent_again() {
        let old = HashMap::from([("id".to_string(), s("j-2"))]);
        let reasons = [
            reason("None", None),
            reason("None", None),
            reason("ConditionalCheckFailed", Some(old.clone())),
            reason("ConditionalCheckFailed", None),
        ];
        let Cancelled::Refused(refused) = why_cancelled(&reasons, 3) else {
            panic!("refused writes")
        };
        assert_eq!(refused, vec![None, Some(Some(old)), Some(None)]);
    }

    #[test]
    fn a_conflict_or_throttling_is_sent_again_anything_else_fails() {
        let conflict = [reason("None", None), reason("TransactionConflict", None)];
        assert!(matches!(why_cancelled(&conflict, 1), Cancelled::Transient));
        let on_lease = [reason("TransactionConflict", None), reason("None", None)];
        assert!(matches!(why_cancelled(&on_lease, 1), Cancelled::Transient));
        let throttled = [reason("ThrottlingError", None), reason("None", None)];
        assert!(matches!(why_cancelled(&throttled, 1), Cancelled::Transient));
        let invalid = [reason("None", None), reason("ValidationError", None)];
        assert!(matches!(why_cancelled(&invalid, 1), Cancelled::Other));
    }

    #[test]
    fn transactions_are_cut_by_count_size_and_repeated_items_in_order() {
        let many: Vec<Write> = (0..120).map(|i| job_put(&format!("j-{i}"), 10)).collect();
        let cut = chunks(&many);
        let sizes: Vec<usize> = cut.iter().map(Vec::len).collect();
        assert_eq!(sizes, [49, 49, 22]);
        assert_eq!(cut.concat(), (0..120).collect::<Vec<_>>(), "in order");
        // Three items of 900 KB: two fit in about 2 MB, the third goes next.
        let big: Vec<Write> = (0..3)
            .map(|i| job_put(&format!("j-{i}"), 900 << 10))
            .collect();
        assert_eq!(chunks(&big), [vec![0, 1], vec![2]]);
        // The same item twice: never in one transaction, and the first goes first.
        let twice = [job_put("j-1", 10), job_put("j-2", 10), job_put("j-1", 10)];
        assert_eq!(chunks(&twice), [vec![0, 1], vec![2]]);
    }
}
