//! The tables and their indexes, and `create_tables`: creates what is missing,
//! accepts what exists (after checking it has the keys and indexes drover needs),
//! and waits until everything is ACTIVE. Safe to run any number of times.

use super::items::{
    ACTIVE_INDEX, ACTIVE_PK, ACTIVE_SK, EXPIRES_AT, SETTINGS_KEY, STATE_INDEX, STATE_PK, STATE_SK,
    WORKER_INDEX, WORKER_PK, WORKER_SK,
};
use super::paging::backend;
use super::records::RECORD_KEY;
use super::DynamoStore;
use crate::store::{StoreError, StoreResult};
use aws_sdk_dynamodb::operation::create_table::CreateTableError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, IndexStatus, KeySchemaElement, KeyType,
    Projection, ProjectionType, ScalarAttributeType, TableStatus, TimeToLiveSpecification,
    TimeToLiveStatus,
};
use std::time::{Duration, Instant};

/// How long `create_tables` waits for tables and indexes to become ACTIVE (a new
/// table on AWS takes seconds; this only bounds a stuck one).
const ACTIVE_WITHIN: Duration = Duration::from_secs(600);

/// A key: a partition key and, for some, a sort key; all drover keys are strings.
struct Key {
    partition: &'static str,
    sort: Option<&'static str>,
}

struct Index {
    name: &'static str,
    key: Key,
}

struct TableSpec<'a> {
    name: &'a str,
    key: Key,
    indexes: Vec<Index>,
}

impl DynamoStore {
    fn table_specs(&self) -> Vec<TableSpec<'_>> {
        let t = &self.tables;
        let plain = |partition| Key {
            partition,
            sort: None,
        };
        vec![
            TableSpec {
                name: &t.jobs,
                key: plain("id"),
                indexes: vec![
                    Index {
                        name: ACTIVE_INDEX,
                        key: Key {
                            partition: ACTIVE_PK,
                            sort: Some(ACTIVE_SK),
                        },
                    },
                    Index {
                        name: WORKER_INDEX,
                        key: plain(WORKER_PK),
                    },
                    Index {
                        name: STATE_INDEX,
                        key: Key {
                            partition: STATE_PK,
                            sort: Some(STATE_SK),
                        },
                    },
                ],
            },
            TableSpec {
                name: &t.workers,
                key: Key {
                    partition: "id",
                    sort: Some(WORKER_SK),
                },
                indexes: vec![],
            },
            TableSpec {
                name: &t.instances,
                key: plain("id"),
                indexes: vec![],
            },
            TableSpec {
                name: &t.settings,
                key: plain(SETTINGS_KEY),
                indexes: vec![],
            },
            TableSpec {
                name: &t.records,
                key: plain(RECORD_KEY),
                indexes: vec![],
            },
        ]
    }

    /// Creates the tables (on-demand billing, so there is no capacity to plan) and
    /// the heartbeat TTL; tables that exist are kept. Returns once all are ACTIVE.
    pub async fn create_tables(&self) -> StoreResult<()> {
        let specs = self.table_specs();
        futures::future::try_join_all(specs.iter().map(|spec| self.create_table(spec))).await?;
        self.enable_beat_ttl().await
    }

    async fn create_table(&self, spec: &TableSpec<'_>) -> StoreResult<()> {
        let context = format!("creating table {}", spec.name);
        let mut attributes = Vec::new();
        let mut define = |name: &str| -> StoreResult<()> {
            if !attributes
                .iter()
                .any(|a: &AttributeDefinition| a.attribute_name() == name)
            {
                let def = AttributeDefinition::builder()
                    .attribute_name(name)
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .map_err(|e| backend(&context, e))?;
                attributes.push(def);
            }
            Ok(())
        };
        let keys = std::iter::once(&spec.key).chain(spec.indexes.iter().map(|i| &i.key));
        for key in keys {
            define(key.partition)?;
            if let Some(sort) = key.sort {
                define(sort)?;
            }
        }
        let mut request = self
            .client
            .create_table()
            .table_name(spec.name)
            .billing_mode(BillingMode::PayPerRequest)
            .set_attribute_definitions(Some(attributes))
            .set_key_schema(Some(key_schema(&spec.key, &context)?));
        for index in &spec.indexes {
            let gsi = GlobalSecondaryIndex::builder()
                .index_name(index.name)
                .set_key_schema(Some(key_schema(&index.key, &context)?))
                // Every reader of an index wants whole jobs: projecting all
                // attributes saves a second read per job at the cost of storage.
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::All)
                        .build(),
                )
                .build()
                .map_err(|e| backend(&context, e))?;
            request = request.global_secondary_indexes(gsi);
        }
        match request.send().await {
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.as_service_error(),
                    Some(CreateTableError::ResourceInUseException(_))
                ) =>
            {
                tracing::debug!(table = spec.name, "table exists; kept");
            }
            Err(e) => return Err(backend(&context, e)),
        }
        self.wait_active(spec).await
    }

    /// Waits until the table and its indexes are ACTIVE, and checks that a table
    /// found in place has the keys and indexes this drover reads.
    async fn wait_active(&self, spec: &TableSpec<'_>) -> StoreResult<()> {
        let context = format!("waiting for table {} to become active", spec.name);
        let started = Instant::now();
        let mut delay = Duration::from_millis(100);
        loop {
            let answer = self
                .client
                .describe_table()
                .table_name(spec.name)
                .send()
                .await
                .map_err(|e| backend(&context, e))?;
            let table = answer.table.ok_or_else(|| {
                StoreError::Backend(format!("{context}: DescribeTable said nothing"))
            })?;
            let names = |schema: &[KeySchemaElement]| {
                let of = |kind: KeyType| {
                    schema
                        .iter()
                        .find(|k| *k.key_type() == kind)
                        .map(|k| k.attribute_name().to_string())
                };
                (of(KeyType::Hash), of(KeyType::Range))
            };
            let wanted = |key: &Key| {
                (
                    Some(key.partition.to_string()),
                    key.sort.map(str::to_string),
                )
            };
            if names(table.key_schema()) != wanted(&spec.key) {
                return Err(StoreError::Backend(format!(
                    "table {} exists with another key than drover's ({:?}); was it made by something else? use another table prefix",
                    spec.name,
                    names(table.key_schema())
                )));
            }
            let mut ready = table.table_status() == Some(&TableStatus::Active);
            for index in &spec.indexes {
                let found = table
                    .global_secondary_indexes()
                    .iter()
                    .find(|g| g.index_name() == Some(index.name));
                let Some(found) = found else {
                    return Err(StoreError::Backend(format!(
                        "table {} exists without index {} (made by an older drover or something else?); delete the table or use another table prefix",
                        spec.name, index.name
                    )));
                };
                if names(found.key_schema()) != wanted(&index.key) {
                    return Err(StoreError::Backend(format!(
                        "table {}: index {} has another key than drover's; delete the table or use another table prefix",
                        spec.name, index.name
                    )));
                }
                ready &= found.index_status() == Some(&IndexStatus::Active);
            }
            if ready {
                return Ok(());
            }
            if started.elapsed() > ACTIVE_WITHIN {
                return Err(StoreError::Backend(format!(
                    "{context}: still not active after {ACTIVE_WITHIN:?} (status {:?})",
                    table.table_status()
                )));
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    }

    /// Heartbeat items carry `expires_at`, so that one left behind goes away by
    /// itself. Enabling TTL twice is an error on AWS, so it is read first.
    async fn enable_beat_ttl(&self) -> StoreResult<()> {
        let table = &self.tables.workers;
        let context = format!("enabling expiry of old heartbeats in table {table}");
        let current = self
            .client
            .describe_time_to_live()
            .table_name(table)
            .send()
            .await
            .map_err(|e| backend(&context, e))?;
        let status = current
            .time_to_live_description
            .and_then(|d| d.time_to_live_status);
        if matches!(
            status,
            Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling)
        ) {
            return Ok(());
        }
        let spec = TimeToLiveSpecification::builder()
            .enabled(true)
            .attribute_name(EXPIRES_AT)
            .build()
            .map_err(|e| backend(&context, e))?;
        self.client
            .update_time_to_live()
            .table_name(table)
            .time_to_live_specification(spec)
            .send()
            .await
            .map_err(|e| backend(&context, e))?;
        Ok(())
    }
}

fn key_schema(key: &Key, context: &str) -> StoreResult<Vec<KeySchemaElement>> {
    let element = |name: &str, kind| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build()
            .map_err(|e| backend(context, e))
    };
    let mut schema = vec![element(key.partition, KeyType::Hash)?];
    if let Some(sort) = key.sort {
        schema.push(element(sort, KeyType::Range)?);
    }
    Ok(schema)
}
