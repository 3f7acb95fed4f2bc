//! Declarative job records in DynamoDB: one item per name in `PREFIX-records`
//! (partition key `name`), its fields written through serde as a job's are. Each
//! write is one conditional request: `attribute_not_exists(name)` to create,
//! `version = :expected` to replace or delete; a failed condition is `Refused`.

use super::items::{encode, n, s, Item};
use super::paging::{backend, corrupt};
use super::DynamoStore;
use crate::store::{JobRecords, RecordWrite, StoreResult};
use async_trait::async_trait;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::{delete_item::DeleteItemError, put_item::PutItemError};
use reconcilers::records::{JobRecord, RecordName};
use std::collections::HashMap;

/// The records table's partition key (the record's own `name` field).
pub const RECORD_KEY: &str = "name";

fn record_key(name: &RecordName) -> Item {
    HashMap::from([(RECORD_KEY.to_string(), s(name.as_str()))])
}

/// A failed condition is an answer; anything else is the backend's failure.
fn refused_or<E, R>(
    answer: Result<R, SdkError<E, aws_sdk_dynamodb::config::http::HttpResponse>>,
    written: u64,
    is_condition: impl Fn(&E) -> bool,
    context: &str,
) -> StoreResult<RecordWrite>
where
    E: std::error::Error + 'static,
{
    match answer {
        Ok(_) => Ok(RecordWrite::Written(written)),
        Err(e) if e.as_service_error().is_some_and(&is_condition) => Ok(RecordWrite::Refused),
        Err(e) => Err(backend(context, e)),
    }
}

impl DynamoStore {
    async fn put_record(
        &self,
        record: &JobRecord,
        condition: &str,
        expected: Option<u64>,
        context: &str,
    ) -> StoreResult<RecordWrite> {
        let item = encode(record).map_err(|e| corrupt(context, e))?;
        let mut put = self
            .client
            .put_item()
            .table_name(&self.tables.records)
            .set_item(Some(item))
            .condition_expression(condition)
            .expression_attribute_names("#key", RECORD_KEY);
        if let Some(v) = expected {
            put = put
                .expression_attribute_names("#version", "version")
                .expression_attribute_values(":expected", n(v));
        }
        let is_condition = |e: &PutItemError| e.is_conditional_check_failed_exception();
        refused_or(put.send().await, record.version, is_condition, context)
    }
}

#[async_trait]
impl JobRecords for DynamoStore {
    async fn create_record(&self, record: &JobRecord) -> StoreResult<RecordWrite> {
        let context = format!(
            "creating job record {} in table {}",
            record.name, self.tables.records
        );
        self.put_record(record, "attribute_not_exists(#key)", None, &context)
            .await
    }

    async fn get_record(&self, name: &RecordName) -> StoreResult<Option<JobRecord>> {
        let context = format!("reading job record {name} in table {}", self.tables.records);
        self.get_decoded(&self.tables.records, record_key(name), &context)
            .await
    }

    async fn list_records(&self) -> StoreResult<Vec<JobRecord>> {
        let context = format!("listing job records in table {}", self.tables.records);
        let by_name = |r: &JobRecord| r.name.clone();
        (self.scan_decoded(&self.tables.records, &context, by_name)).await
    }

    async fn update_record(&self, record: &JobRecord) -> StoreResult<RecordWrite> {
        let context = format!(
            "updating job record {} in table {}",
            record.name, self.tables.records
        );
        let next = record
            .version
            .checked_add(1)
            .ok_or_else(|| corrupt(&context, format!("version {} is the last", record.version)))?;
        let stored = JobRecord {
            version: next,
            ..record.clone()
        };
        let condition = "attribute_exists(#key) AND #version = :expected";
        self.put_record(&stored, condition, Some(record.version), &context)
            .await
    }

    async fn delete_record(&self, name: &RecordName, version: u64) -> StoreResult<RecordWrite> {
        let context = format!(
            "deleting job record {name} in table {}",
            self.tables.records
        );
        let answer = self
            .client
            .delete_item()
            .table_name(&self.tables.records)
            .set_key(Some(record_key(name)))
            .condition_expression("#version = :expected")
            .expression_attribute_names("#version", "version")
            .expression_attribute_values(":expected", n(version))
            .send()
            .await;
        let is_condition = |e: &DeleteItemError| e.is_conditional_check_failed_exception();
        refused_or(answer, version, is_condition, &context)
    }
}
