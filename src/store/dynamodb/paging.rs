//! The loops every DynamoDB read and batch write needs: Query and Scan pages
//! followed through `LastEvaluatedKey` (and items read and decoded in one call), and BatchWriteItem in batches of 25 whose
//! `UnprocessedItems` are sent again with exponential backoff and jitter.

use super::items::{decode, Item};
use super::DynamoStore;
use crate::store::{StoreError, StoreResult};
use aws_sdk_dynamodb::operation::{
    query::builders::QueryFluentBuilder, scan::builders::ScanFluentBuilder,
};
use aws_sdk_dynamodb::types::{DeleteRequest, PutRequest, WriteRequest};
use backon::{BackoffBuilder, ExponentialBuilder};
use futures::{stream, StreamExt, TryStreamExt};
use serde::de::DeserializeOwned;
use std::future::Future;
use std::time::Duration;

/// Requests in flight at once (the conditional writes of `update_jobs`, the
/// queries of the sharded reads): enough to hide round trips, few enough not to
/// make a burst that the table's partitions throttle.
pub const IN_FLIGHT: usize = 16;

/// Runs `calls`, `IN_FLIGHT` at a time; the results come in no particular order.
/// (Collected into a `Vec` first: a lazy `map` over borrowed data makes futures
/// that async-trait's `Send` check cannot prove general enough.)
pub async fn concurrently<T, F>(calls: Vec<F>) -> StoreResult<Vec<T>>
where
    F: Future<Output = StoreResult<T>>,
{
    stream::iter(calls)
        .buffer_unordered(IN_FLIGHT)
        .try_collect()
        .await
}

/// BatchWriteItem takes at most 25 requests.
pub const BATCH_LIMIT: usize = 25;

/// How often a batch's unprocessed items are sent again before the call fails.
/// Throttling of the call itself is retried by the SDK; unprocessed items are
/// DynamoDB's partial answer under load, and backing off is what it asks for.
const UNPROCESSED_TRIES: usize = 8;

/// An SDK error with what was being done, then the error's chain of causes:
/// `service error: ResourceNotFoundException: Requested resource not found`, or
/// `dispatch failure: io error: ...`. (The SDK's `DisplayErrorContext` gives the
/// same chain but appends the whole response's Debug, headers and body, which
/// buries the message in logs and API answers.)
pub fn backend(context: impl std::fmt::Display, err: impl std::error::Error) -> StoreError {
    let mut parts: Vec<String> = Vec::new();
    let mut cause: Option<&dyn std::error::Error> = Some(&err);
    while let Some(e) = cause {
        let text = e.to_string();
        // An operation error and the exception inside it say the same thing.
        if parts.last() != Some(&text) {
            parts.push(text);
        }
        cause = e.source();
    }
    StoreError::Backend(format!("{context}: {}", parts.join(": ")))
}

/// A stored item that does not decode: corrupt data, named with where it was.
pub fn corrupt(context: impl std::fmt::Display, what: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("{context}: {what}"))
}

impl DynamoStore {
    /// Every item a Query matches, page after page; `max` stops early once that
    /// many have been read (the query's own order then decides which).
    pub(super) async fn query_all(
        &self,
        query: QueryFluentBuilder,
        max: Option<usize>,
        context: &str,
    ) -> StoreResult<Vec<Item>> {
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let mut page = query.clone().set_exclusive_start_key(start);
            let want = max.map(|m| m.saturating_sub(out.len()));
            if let Some(limit) = self.page_limit(want) {
                page = page.limit(limit);
            }
            let answer = page.send().await.map_err(|e| backend(context, e))?;
            out.extend(answer.items.unwrap_or_default());
            start = answer.last_evaluated_key.filter(|k| !k.is_empty());
            if start.is_none() || max.is_some_and(|m| out.len() >= m) {
                break;
            }
        }
        if let Some(m) = max {
            out.truncate(m);
        }
        Ok(out)
    }

    /// Every item of a Scan, page after page.
    pub(super) async fn scan_all(
        &self,
        scan: ScanFluentBuilder,
        context: &str,
    ) -> StoreResult<Vec<Item>> {
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let mut page = scan.clone().set_exclusive_start_key(start);
            if let Some(limit) = self.page_limit(None) {
                page = page.limit(limit);
            }
            let answer = page.send().await.map_err(|e| backend(context, e))?;
            out.extend(answer.items.unwrap_or_default());
            start = answer.last_evaluated_key.filter(|k| !k.is_empty());
            if start.is_none() {
                return Ok(out);
            }
        }
    }

    /// One item by its key (a consistent read), decoded by `decode`; `None` if
    /// there is none.
    pub(super) async fn get_item_as<T>(
        &self,
        table: &str,
        key: Item,
        context: &str,
        decode: impl FnOnce(&Item) -> Result<T, String>,
    ) -> StoreResult<Option<T>> {
        let answer = (self.client.get_item())
            .table_name(table)
            .set_key(Some(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| backend(context, e))?;
        answer
            .item
            .map(|item| decode(&item).map_err(|e| corrupt(context, e)))
            .transpose()
    }

    /// One item by its key, its fields through serde (`items::decode`).
    pub(super) async fn get_decoded<T: DeserializeOwned>(
        &self,
        table: &str,
        key: Item,
        context: &str,
    ) -> StoreResult<Option<T>> {
        self.get_item_as(table, key, context, decode).await
    }

    /// Every item of `table` (a consistent Scan), decoded, in the order of `by`.
    pub(super) async fn scan_decoded<T: DeserializeOwned, K: Ord>(
        &self,
        table: &str,
        context: &str,
        by: impl Fn(&T) -> K,
    ) -> StoreResult<Vec<T>> {
        let scan = self.client.scan().table_name(table).consistent_read(true);
        let items = self.scan_all(scan, context).await?;
        let mut all = items
            .iter()
            .map(|item| decode(item).map_err(|e| corrupt(context, e)))
            .collect::<StoreResult<Vec<T>>>()?;
        all.sort_by_key(|t| by(t));
        Ok(all)
    }

    /// The `Limit` of one page: the configured page size (none: DynamoDB's 1 MB
    /// pages), lowered to what is still wanted.
    pub(super) fn page_limit(&self, want: Option<usize>) -> Option<i32> {
        let want = want.map(|w| i32::try_from(w.max(1)).unwrap_or(i32::MAX));
        match (self.page_size, want) {
            (Some(p), Some(w)) => Some(p.min(w)),
            (p, w) => p.or(w),
        }
    }

    /// Puts then deletes in `table`, in BatchWriteItem calls of 25 (unconditional:
    /// BatchWriteItem has no conditions, so only idempotent data goes this way).
    pub(super) async fn batch_write(
        &self,
        table: &str,
        puts: Vec<Item>,
        deletes: Vec<Item>,
        context: &str,
    ) -> StoreResult<()> {
        let requests: Vec<WriteRequest> = puts
            .into_iter()
            .map(|item| {
                PutRequest::builder()
                    .set_item(Some(item))
                    .build()
                    .map(|p| WriteRequest::builder().put_request(p).build())
            })
            .chain(deletes.into_iter().map(|key| {
                DeleteRequest::builder()
                    .set_key(Some(key))
                    .build()
                    .map(|d| WriteRequest::builder().delete_request(d).build())
            }))
            .collect::<Result<_, _>>()
            .map_err(|e| backend(context, e))?;
        let context = format!("{context} in table {table}");
        for chunk in requests.chunks(BATCH_LIMIT) {
            let (client, context) = (&self.client, &context);
            send_until_processed(chunk.to_vec(), backoff(), context, |batch| async move {
                let answer = client
                    .batch_write_item()
                    .request_items(table, batch)
                    .send()
                    .await
                    .map_err(|e| backend(context, e))?;
                let mut left = answer.unprocessed_items.unwrap_or_default();
                Ok(left.remove(table).unwrap_or_default())
            })
            .await?;
        }
        Ok(())
    }
}

/// The backoff between sends of unprocessed items: 50 ms doubling to 2 s, with
/// jitter so that controllers throttled together do not come back together.
fn backoff() -> impl Iterator<Item = Duration> {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(50))
        .with_max_delay(Duration::from_secs(2))
        .with_max_times(UNPROCESSED_TRIES)
        .with_jitter()
        .build()
}

/// Sends `batch`, then what `send` says is left unprocessed, waiting out the next
/// delay of `delays` before each resend, until nothing is left or the delays run
/// out (then the call fails, saying how many requests were never written).
pub(super) async fn send_until_processed<F, Fut>(
    mut batch: Vec<WriteRequest>,
    mut delays: impl Iterator<Item = Duration>,
    context: &str,
    mut send: F,
) -> StoreResult<()>
where
    F: FnMut(Vec<WriteRequest>) -> Fut,
    Fut: Future<Output = StoreResult<Vec<WriteRequest>>>,
{
    let mut tries = 0;
    loop {
        tries += 1;
        batch = send(batch).await?;
        if batch.is_empty() {
            return Ok(());
        }
        match delays.next() {
            Some(delay) => tokio::time::sleep(delay).await,
            None => {
                return Err(StoreError::Backend(format!(
                    "{context}: {} writes still unprocessed after {tries} tries",
                    batch.len()
                )))
            }
        }
    }
}

/// The first `n` requests of `batch` as unprocessed (for tests of the resend loop).
#[cfg(test)]
fn keep(batch: &[WriteRequest], n: usize) -> Vec<WriteRequest> {
    batch[..n.min(batch.len())].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::types::AttributeValue;
    use std::collections::HashMap;

    fn requests(n: usize) -> Vec<WriteRequest> {
        (0..n)
            .map(|i| {
                let key = HashMap::from([("id".to_string(), AttributeValue::S(format!("k{i}")))]);
                let delete = DeleteRequest::builder().set_key(Some(key)).build().unwrap();
                WriteRequest::builder().delete_request(delete).build()
            })
            .collect()
    }

    /// The same number of tries as `backoff()`, without the waiting.
    fn quick() -> impl Iterator<Item = Duration> {
        std::iter::repeat_n(Duration::from_millis(1), UNPROCESSED_TRIES)
    }

    #[tokio::test]
    async fn unprocessed_items_are_sent_again_until_none_is_left() {
        let mut sent = Vec::new();
        let left = [10, 3, 0];
        let result = send_until_processed(requests(25), quick(), "writing", |batch| {
            sent.push(batch.len());
            let n = left[sent.len() - 1];
            let rest = keep(&batch, n);
            async move { Ok(rest) }
        })
        .await;
        assert!(result.is_ok(), "{result:?}");
        assert_eq!(sent, [25, 10, 3]);
    }

    #[tokio::test]
    async fn a_batch_never_fully_processed_fails_after_the_bounded_tries() {
        let mut calls = 0;
        let result = send_until_processed(requests(5), quick(), "writing", |batch| {
            calls += 1;
            let rest = keep(&batch, 2);
            async move { Ok(rest) }
        })
        .await;
        let err = result.unwrap_err().to_string();
        assert!(
            err.contains("writing: 2 writes still unprocessed after 9 tries"),
            "{err}"
        );
        assert_eq!(calls, UNPROCESSED_TRIES + 1);
    }

    #[test]
    fn the_backoff_doubles_from_50_ms_to_2_s_with_jitter() {
        let delays: Vec<Duration> = backoff().collect();
        assert_eq!(delays.len(), UNPROCESSED_TRIES);
        for (i, delay) in delays.iter().enumerate() {
            let base = Duration::from_millis(50 << i).min(Duration::from_secs(2));
            assert!(
                *delay >= base && *delay <= base * 2,
                "{i}: {delay:?} for {base:?}"
            );
        }
    }

    #[tokio::test]
    async fn an_error_of_the_call_itself_is_returned_at_once() {
        let mut calls = 0;
        let result = send_until_processed(requests(3), backoff(), "writing", |_| {
            calls += 1;
            async { Err(StoreError::Backend("ThrottlingException".into())) }
        })
        .await;
        assert!(matches!(result, Err(StoreError::Backend(m)) if m == "ThrottlingException"));
        assert_eq!(calls, 1);
    }
}
