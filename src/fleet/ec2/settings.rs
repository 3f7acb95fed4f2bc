//! `[fleet.ec2]` in drover.toml: what an EC2 worker instance is made of.

use serde::{Deserialize, Deserializer};
use std::{collections::BTreeMap, time::Duration};

/// Where the `drover` binary is on the image, unless the settings say otherwise.
pub const DEFAULT_DROVER_PATH: &str = "/usr/local/bin/drover";

/// EC2 allows 50 tags per resource; drover sets four of its own.
const MAX_USER_TAGS: usize = 46;

/// `[fleet.ec2]`. Every key is optional in the file; `problems` says what a
/// launch would miss.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Ec2Settings {
    /// The AMI to start; it must carry the drover binary at `drover_path`.
    /// Exactly one of `image_id` and `launch_template`.
    pub image_id: Option<String>,
    pub launch_template: Option<LaunchTemplate>,
    /// Required with `image_id` (EC2 would otherwise pick m1.small); optional
    /// with a launch template, where it overrides the template's.
    pub instance_type: Option<String>,
    pub subnet_id: Option<String>,
    pub security_group_ids: Vec<String>,
    /// An instance profile's name, or its ARN (`arn:aws:iam::...:instance-profile/...`).
    pub instance_profile: Option<String>,
    pub key_name: Option<String>,
    /// Extra tags on every instance and volume (`drover:*` and `aws:*` are reserved).
    pub tags: BTreeMap<String, String>,
    /// The drover binary on the image: user-data installs nothing.
    pub drover_path: String,
    /// Jobs one worker runs at once (default: the controller's slots_per_worker,
    /// filled in by whoever builds the fleet; 1 if nobody does).
    pub slots: Option<u32>,
    /// How often workers ping (default: the controller's ping_interval; 5s if unset).
    #[serde(deserialize_with = "duration_option")]
    pub ping_interval: Option<Duration>,
}

impl Default for Ec2Settings {
    fn default() -> Self {
        Ec2Settings {
            image_id: None,
            launch_template: None,
            instance_type: None,
            subnet_id: None,
            security_group_ids: Vec::new(),
            instance_profile: None,
            key_name: None,
            tags: BTreeMap::new(),
            drover_path: DEFAULT_DROVER_PATH.to_string(),
            slots: None,
            ping_interval: None,
        }
    }
}

/// `launch_template = { name = "drover-worker", version = "3" }` (or `id = "lt-..."`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LaunchTemplate {
    pub id: Option<String>,
    pub name: Option<String>,
    /// A version number, `$Latest` or `$Default` (EC2's default: `$Default`).
    pub version: Option<String>,
}

fn duration_option<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let s: Option<String> = Option::deserialize(d)?;
    s.map(|s| crate::config::parse_duration(&s).map_err(serde::de::Error::custom))
        .transpose()
}

impl Ec2Settings {
    /// Everything that would make a launch fail or surprise, for `drover config check`.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        let blank = |o: &Option<String>| o.as_deref().is_some_and(|s| s.trim().is_empty());
        match (&self.image_id, &self.launch_template) {
            (None, None) => p.push("fleet.ec2 needs image_id or launch_template".to_string()),
            (Some(_), Some(_)) => {
                p.push("fleet.ec2 has both image_id and launch_template: keep one".to_string())
            }
            (Some(image), None) => {
                if !image.starts_with("ami-") {
                    p.push(format!(
                        "fleet.ec2.image_id `{image}` is not an AMI id (ami-...)"
                    ));
                }
                if self.instance_type.is_none() {
                    p.push("fleet.ec2.instance_type is required with image_id".to_string());
                }
            }
            (None, Some(t)) => match (&t.id, &t.name) {
                (None, None) => p.push("fleet.ec2.launch_template needs id or name".to_string()),
                (Some(_), Some(_)) => {
                    p.push("fleet.ec2.launch_template has both id and name: keep one".to_string())
                }
                (Some(id), None) if !id.starts_with("lt-") => p.push(format!(
                    "fleet.ec2.launch_template.id `{id}` is not a launch template id (lt-...)"
                )),
                _ => {}
            },
        }
        for (name, value) in [
            ("instance_type", &self.instance_type),
            ("subnet_id", &self.subnet_id),
            ("instance_profile", &self.instance_profile),
            ("key_name", &self.key_name),
        ] {
            if blank(value) {
                p.push(format!("fleet.ec2.{name} is empty"));
            }
        }
        if let Some(subnet) = &self.subnet_id {
            if !subnet.starts_with("subnet-") {
                p.push(format!(
                    "fleet.ec2.subnet_id `{subnet}` is not a subnet id (subnet-...)"
                ));
            }
        }
        for sg in &self.security_group_ids {
            if !sg.starts_with("sg-") {
                p.push(format!(
                    "fleet.ec2.security_group_ids: `{sg}` is not a security group id (sg-...)"
                ));
            }
        }
        if self.tags.len() > MAX_USER_TAGS {
            p.push(format!(
                "fleet.ec2.tags has {} tags; EC2 allows {MAX_USER_TAGS} besides drover's own",
                self.tags.len()
            ));
        }
        for (k, v) in &self.tags {
            let lower = k.to_ascii_lowercase();
            if lower.starts_with("drover:") || lower.starts_with("aws:") || lower == "name" {
                p.push(format!(
                    "fleet.ec2.tags: `{k}` is set by drover or AWS; choose another key"
                ));
            }
            if k.is_empty() || k.chars().count() > 128 || v.chars().count() > 256 {
                p.push(format!(
                    "fleet.ec2.tags: `{k}` needs a key of 1-128 and a value of at most 256 characters"
                ));
            }
        }
        if !self.drover_path.starts_with('/') {
            p.push(format!(
                "fleet.ec2.drover_path `{}` must be an absolute path on the image",
                self.drover_path
            ));
        }
        if self.slots == Some(0) {
            p.push("fleet.ec2.slots must be at least 1".to_string());
        }
        if self.ping_interval.is_some_and(|d| d.is_zero()) {
            p.push("fleet.ec2.ping_interval must be longer than 0s".to_string());
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_reads_into_settings_with_defaults() {
        let s: Ec2Settings = toml::from_str(
            "image_id = \"ami-1\"\ninstance_type = \"c7g.large\"\nping_interval = \"2s\"\n[tags]\nteam = \"physics\"\n",
        )
        .expect("valid settings");
        assert_eq!(s.drover_path, DEFAULT_DROVER_PATH);
        assert_eq!(s.ping_interval, Some(Duration::from_secs(2)));
        assert_eq!(s.tags.get("team").map(String::as_str), Some("physics"));
        assert!(s.problems().is_empty(), "{:?}", s.problems());
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let s: Ec2Settings = toml::from_str(
            "image_id = \"ubuntu\"\nlaunch_template = { name = \"t\" }\nsecurity_group_ids = [\"default\"]\ndrover_path = \"drover\"\nslots = 0\n[tags]\n\"drover:cluster\" = \"x\"\n",
        )
        .expect("parses");
        let all = s.problems().join("\n");
        for needle in [
            "both image_id and launch_template",
            "not a security group id",
            "absolute path",
            "slots must be at least 1",
            "`drover:cluster` is set by drover",
        ] {
            assert!(all.contains(needle), "missing {needle:?} in:\n{all}");
        }
        assert!(Ec2Settings::default().problems()[0].contains("needs image_id or launch_template"));
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = toml::from_str::<Ec2Settings>("image = \"ami-1\"\n").expect_err("unknown key");
        assert!(err.to_string().contains("image"), "{err}");
    }
}
