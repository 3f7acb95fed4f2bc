//! manifests/aws/ against the code that uses the same resources: the
//! CloudFormation template's DynamoDB tables are the ones `drover init`
//! creates (on moto), the worker user-data example is what the EC2 fleet sends,
//! and the controller configuration the template writes passes
//! `drover config check`.

#![cfg(feature = "aws")]

mod common;

use common::{
    aws::{self, Settings},
    moto::Moto,
    TestDir,
};
use drover::fleet::ec2::{render_user_data, WorkerLaunch, DEFAULT_DROVER_PATH};
use reconcilers::model::InstanceId;
use serde_json::{json, Value};
use std::{collections::BTreeMap, path::Path, time::Duration};

fn read(rel: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {rel}: {e}"))
}

fn template() -> Value {
    serde_json::from_str(&read("manifests/aws/drover.cfn.json")).expect("the template is JSON")
}

/// A key schema: (attribute, HASH or RANGE), in order.
type Keys = Vec<(String, String)>;
/// An index: its name, keys and projection type.
type IndexShape = (String, Keys, String);

/// A table as both sides can describe it: name, keys, attribute types,
/// indexes (name -> keys), billing mode and TTL attribute.
fn table_shape(
    name: &str,
    keys: Keys,
    attributes: Vec<(String, String)>,
    indexes: Vec<IndexShape>,
    billing: &str,
    ttl: Option<String>,
) -> Value {
    let attributes: BTreeMap<_, _> = attributes.into_iter().collect();
    let indexes: BTreeMap<_, _> = indexes
        .into_iter()
        .map(|(n, k, projection)| (n, json!({"keys": k, "projection": projection})))
        .collect();
    json!({
        "name": name, "keys": keys, "attributes": attributes, "indexes": indexes,
        "billing": billing, "ttl": ttl,
    })
}

fn keys_of(v: &Value) -> Keys {
    v.as_array()
        .expect("a KeySchema")
        .iter()
        .map(|k| {
            (
                k["AttributeName"].as_str().expect("name").to_string(),
                k["KeyType"].as_str().expect("type").to_string(),
            )
        })
        .collect()
}

/// The template's tables, with `prefix` for `${TablePrefix}`.
fn template_tables(prefix: &str) -> Vec<Value> {
    let t = template();
    let mut out = Vec::new();
    for (_, res) in t["Resources"].as_object().expect("resources") {
        if res["Type"] != "AWS::DynamoDB::Table" {
            continue;
        }
        let p = &res["Properties"];
        let name = p["TableName"]["Fn::Sub"]
            .as_str()
            .expect("TableName as Fn::Sub")
            .replace("${TablePrefix}", prefix);
        let attributes = p["AttributeDefinitions"]
            .as_array()
            .expect("attributes")
            .iter()
            .map(|a| {
                (
                    a["AttributeName"].as_str().expect("name").to_string(),
                    a["AttributeType"].as_str().expect("type").to_string(),
                )
            })
            .collect();
        let indexes = p["GlobalSecondaryIndexes"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|i| {
                (
                    i["IndexName"].as_str().expect("index name").to_string(),
                    keys_of(&i["KeySchema"]),
                    i["Projection"]["ProjectionType"]
                        .as_str()
                        .expect("projection")
                        .to_string(),
                )
            })
            .collect();
        let ttl = p["TimeToLiveSpecification"]["AttributeName"]
            .as_str()
            .map(str::to_string);
        out.push(table_shape(
            &name,
            keys_of(&p["KeySchema"]),
            attributes,
            indexes,
            p["BillingMode"].as_str().expect("billing mode"),
            ttl,
        ));
    }
    out.sort_by_key(|t| t["name"].as_str().unwrap_or_default().to_string());
    out
}

/// The tables named `prefix-*` as DynamoDB (moto) describes them.
async fn created_tables(moto: &Moto, prefix: &str) -> Vec<Value> {
    let client = aws_sdk_dynamodb::Client::new(&moto.sdk_config());
    let listed = client.list_tables().send().await.expect("list tables");
    let mut out = Vec::new();
    for name in listed
        .table_names()
        .iter()
        .filter(|n| n.starts_with(&format!("{prefix}-")))
    {
        let d = client
            .describe_table()
            .table_name(name)
            .send()
            .await
            .expect("describe table");
        let t = d.table().expect("a table");
        let keys = |ks: &[aws_sdk_dynamodb::types::KeySchemaElement]| {
            ks.iter()
                .map(|k| {
                    (
                        k.attribute_name().to_string(),
                        k.key_type().as_str().to_string(),
                    )
                })
                .collect::<Vec<_>>()
        };
        let ttl = client
            .describe_time_to_live()
            .table_name(name)
            .send()
            .await
            .expect("describe time to live")
            .time_to_live_description()
            .filter(|d| d.time_to_live_status().map(|s| s.as_str()) == Some("ENABLED"))
            .and_then(|d| d.attribute_name())
            .map(str::to_string);
        out.push(table_shape(
            name,
            keys(t.key_schema()),
            t.attribute_definitions()
                .iter()
                .map(|a| {
                    (
                        a.attribute_name().to_string(),
                        a.attribute_type().as_str().to_string(),
                    )
                })
                .collect(),
            t.global_secondary_indexes()
                .iter()
                .map(|i| {
                    (
                        i.index_name().unwrap_or_default().to_string(),
                        keys(i.key_schema()),
                        i.projection()
                            .and_then(|p| p.projection_type())
                            .map(|p| p.as_str().to_string())
                            .unwrap_or_default(),
                    )
                })
                .collect(),
            t.billing_mode_summary()
                .and_then(|b| b.billing_mode())
                .map(|b| b.as_str())
                .unwrap_or("PROVISIONED"),
            ttl,
        ));
    }
    out.sort_by_key(|t| t["name"].as_str().unwrap_or_default().to_string());
    out
}

#[test]
fn the_templates_tables_are_the_ones_drover_init_creates() {
    let moto = Moto::start();
    let dir = TestDir::new();
    let settings = Settings::new("cfn", &moto);
    let config = settings.write(&dir);
    aws::init(&dir, &moto, &config);
    let created = common::block_on(created_tables(&moto, &settings.cluster));
    assert!(created.len() >= 5, "drover init created {created:#?}");
    assert_eq!(
        template_tables(&settings.cluster),
        created,
        "manifests/aws/drover.cfn.json's tables (left) differ from drover init's (right)"
    );
}

#[test]
fn the_worker_user_data_example_is_what_the_fleet_sends() {
    let launch = WorkerLaunch {
        controller: "http://CONTROLLER_HOST:7700".into(),
        instance_id: InstanceId::new("w0example"),
        slots: 2,
        ping_interval: Duration::from_secs(5),
        token: "WORKER_TOKEN".into(),
    };
    let rendered = render_user_data(DEFAULT_DROVER_PATH, &launch);
    assert_eq!(
        read("manifests/aws/worker-user-data.sh"),
        rendered,
        "manifests/aws/worker-user-data.sh is not what src/fleet/ec2/user_data.rs renders; it now is:\n{rendered}"
    );
}

#[test]
fn the_controller_configuration_the_template_writes_passes_config_check() {
    let t = template();
    let script = t["Resources"]["Controller"]["Properties"]["UserData"]["Fn::Base64"]["Fn::Sub"]
        .as_str()
        .expect("the controller's user-data")
        .to_string();
    let start = "cat > /etc/drover/drover.toml <<'DROVER_TOML'\n";
    let body = &script[script.find(start).expect("the drover.toml heredoc") + start.len()..];
    let mut toml = body[..body.find("\nDROVER_TOML\n").expect("its end") + 1].to_string();
    for (var, value) in [
        ("${ClusterName}", "prod"),
        ("${TablePrefix}", "drover-prod"),
        ("${AWS::Region}", "eu-west-1"),
        ("${BlobsBucket}", "drover-prod-blobs"),
        ("${BlobsPrefix}", "jobs"),
        (
            "${HintsTopic}",
            "arn:aws:sns:eu-west-1:123456789012:drover-prod",
        ),
        ("${MinWorkers}", "0"),
        ("${MaxWorkers}", "10"),
        ("${WorkerLaunchTemplate.LatestVersionNumber}", "3"),
        ("${WorkerLaunchTemplate}", "lt-0123456789abcdef0"),
        ("${SubnetId}", "subnet-0123456789abcdef0"),
    ] {
        toml = toml.replace(var, value);
    }
    assert!(!toml.contains("${"), "a variable left in:\n{toml}");
    let dir = TestDir::new();
    let file = dir.write("drover.toml", &toml);
    let run = dir.drover([
        "config",
        "check",
        "--config",
        file.to_str().expect("utf-8 path"),
    ]);
    assert!(
        run.ok(),
        "drover config check on the template's drover.toml:\n{toml}\n{run:#?}"
    );
}
