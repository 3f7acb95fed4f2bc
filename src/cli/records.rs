//! `drover apply`, `drover get` and `drover delete`: declarative job records.
//! A manifest is a JDL file; its record's name is its `JobName`, else the file's
//! stem. The controller decides what each apply does (see `api/records.rs`).

use crate::{
    api::records::{ApplyRequest, Outcome, RecordView},
    client::{Client, ClientError},
    frontend::{self, pack, table::Table},
};
use anyhow::Context as _;
use reconcilers::records::{ManifestHash, RecordName};
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

/// A manifest read and checked, not uploaded.
struct Manifest {
    path: PathBuf,
    name: RecordName,
    hash: ManifestHash,
    plan: pack::PackPlan,
}

/// The JDL files `paths` stand for: a file as it is, a folder's `*.jdl` (not
/// its subfolders), in name order.
fn manifest_files(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for path in paths {
        let meta = std::fs::metadata(path)
            .with_context(|| format!("{}: cannot read it", path.display()))?;
        if !meta.is_dir() {
            files.push(path.clone());
            continue;
        }
        let mut found: Vec<PathBuf> = std::fs::read_dir(path)
            .with_context(|| format!("{}: cannot list the folder", path.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "jdl") && p.is_file())
            .collect();
        anyhow::ensure!(
            !found.is_empty(),
            "{}: no manifests (*.jdl files) in this folder",
            path.display()
        );
        found.sort();
        files.extend(found);
    }
    Ok(files)
}

fn read_manifest(path: &Path) -> anyhow::Result<Manifest> {
    let plan = pack::plan_jdl_file(path, &pack::PackLimits::default())?;
    let raw = match &plan.job().description.job_name {
        Some(n) => n.clone(),
        None => path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
    };
    let name = RecordName::parse(&raw).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let hash = plan.manifest_hash().with_context(|| {
        format!(
            "{}: hashing the manifest and its input files",
            path.display()
        )
    })?;
    Ok(Manifest {
        path: path.to_path_buf(),
        name,
        hash,
        plan,
    })
}

/// Reads every manifest off the async runtime: checking and hashing read every
/// input file, which may be large, and blocking reads would stall the runtime.
async fn read_manifests(paths: &[PathBuf]) -> anyhow::Result<Vec<Manifest>> {
    let paths = paths.to_vec();
    tokio::task::spawn_blocking(move || read_manifests_blocking(&paths))
        .await
        .context("reading the manifests")?
}

/// Reads every manifest; two of the same name are an error (which one wins?).
fn read_manifests_blocking(paths: &[PathBuf]) -> anyhow::Result<Vec<Manifest>> {
    let mut seen: BTreeMap<RecordName, PathBuf> = BTreeMap::new();
    let mut out = Vec::new();
    for path in manifest_files(paths)? {
        let m = read_manifest(&path)?;
        if let Some(first) = seen.insert(m.name.clone(), path.clone()) {
            anyhow::bail!(
                "{} and {} both name the job record `{}`: give one of them another JobName",
                first.display(),
                path.display(),
                m.name
            );
        }
        out.push(m);
    }
    Ok(out)
}

fn job_line(v: &RecordView) -> String {
    let state = v.state.map_or("gone".to_string(), |s| s.to_string());
    format!(
        "generation {}, job {} ({state})",
        v.record.generation, v.record.job
    )
}

/// `drover apply`: prints one line per manifest; 1 if any was refused.
pub async fn apply(
    client: &Client,
    paths: &[PathBuf],
    replace: bool,
    dry_run: bool,
) -> anyhow::Result<u8> {
    let manifests = read_manifests(paths).await?;
    let mut refused = 0;
    for m in manifests {
        for w in &m.plan.job().warnings {
            eprintln!("{w}");
        }
        let planned = match client.plan_record(&m.name, &m.hash, replace).await {
            Ok(p) => p,
            Err(ClientError::Api { status, message }) if status.as_u16() == 409 => {
                eprintln!("{}: {message}", m.path.display());
                refused += 1;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        if !planned.outcome.submits() {
            let at = planned.record.as_ref().map(job_line).unwrap_or_default();
            println!("{}: unchanged, {at}", m.name);
            continue;
        }
        if dry_run {
            println!("{}: would be {} (dry run)", m.name, said(planned.outcome));
            continue;
        }
        // A manifest without JobName is named after its file: its job carries
        // that name too, so `drover jobs` shows which record it belongs to.
        let named = m.plan.job().description.job_name.is_none().then(|| {
            let mut d = m.plan.job().description.clone();
            d.job_name = Some(m.name.to_string());
            d.to_canonical()
        });
        let (job, jdl) = frontend::upload(client, m.plan).await?;
        let jdl = named.unwrap_or(jdl);
        let request = ApplyRequest {
            hash: m.hash,
            replace,
            job,
            jdl,
        };
        let answer = match client.apply_record(&m.name, &request).await {
            Ok(a) => a,
            Err(ClientError::Api { status, message }) if status.as_u16() == 409 => {
                eprintln!("{}: {message}", m.path.display());
                refused += 1;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let at = answer.record.as_ref().map(job_line).unwrap_or_default();
        match answer.cancelled {
            Some(old) => println!(
                "{}: {}, job {old} cancelled; now {at}",
                m.name,
                said(answer.outcome)
            ),
            None => println!("{}: {}, {at}", m.name, said(answer.outcome)),
        }
    }
    Ok(u8::from(refused > 0))
}

fn said(o: Outcome) -> &'static str {
    match o {
        Outcome::Unchanged => "unchanged",
        Outcome::Created => "created",
        Outcome::NewGeneration => "changed: new generation",
        Outcome::Replaced => "changed: replaced",
    }
}

/// `drover get [NAME] [-f FILE|DIR]`: the records, and with manifests, whether
/// each still matches what was applied (drift).
pub async fn get(
    client: &Client,
    name: Option<&str>,
    files: &[PathBuf],
    json: bool,
) -> anyhow::Result<u8> {
    let mut views = match name {
        Some(raw) => {
            let name = RecordName::parse(raw)?;
            vec![client.record(&name).await?]
        }
        None => client.records().await?,
    };
    views.sort_by(|a, b| a.record.name.cmp(&b.record.name));
    let local: BTreeMap<RecordName, ManifestHash> = if files.is_empty() {
        BTreeMap::new()
    } else {
        read_manifests(files)
            .await?
            .into_iter()
            .map(|m| (m.name, m.hash))
            .collect()
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&drift_json(&views, &local)?)?
        );
        return Ok(0);
    }
    if views.is_empty() && local.is_empty() {
        println!("no job records (make one with `drover apply -f FILE`)");
        return Ok(0);
    }
    let mut header = vec!["name", "gen", "job", "state", "exit", "hash", "updated"];
    if !files.is_empty() {
        header.push("manifest");
    }
    let mut t = Table::new(&header);
    for v in &views {
        let r = &v.record;
        let mut row = vec![
            r.name.to_string(),
            r.generation.to_string(),
            r.job.to_string(),
            v.state.map_or("gone".to_string(), |s| s.to_string()),
            v.exit_code.map_or("-".to_string(), |c| c.to_string()),
            r.hash.short().to_string(),
            frontend::time(Some(r.updated_at)),
        ];
        if !files.is_empty() {
            row.push(match local.get(&r.name) {
                Some(h) if *h == r.hash => "in sync".to_string(),
                Some(h) => format!("changed ({}): apply it", h.short()),
                None => "-".to_string(),
            });
        }
        t.row(row);
    }
    for (n, h) in &local {
        let listed = views.iter().any(|v| v.record.name == *n);
        if !listed && name.is_none_or(|want| want == n.as_str()) {
            let mut row = vec![n.to_string()];
            row.extend(["-", "-", "-", "-", h.short(), "-"].map(str::to_string));
            row.push("not applied".to_string());
            t.row(row);
        }
    }
    print!("{}", t.render());
    Ok(0)
}

/// The records as JSON; with manifests, each record gains `manifest`
/// (`in_sync`, `changed` or null when no manifest names it) and `manifest_hash`,
/// and each manifest without a record is listed as `{name, manifest:
/// "not_applied", manifest_hash}`.
fn drift_json(
    views: &[RecordView],
    local: &BTreeMap<RecordName, ManifestHash>,
) -> anyhow::Result<serde_json::Value> {
    let mut out = Vec::new();
    for v in views {
        let mut value = serde_json::to_value(v)?;
        if !local.is_empty() {
            let here = local.get(&v.record.name);
            value["manifest"] = match here {
                Some(h) if *h == v.record.hash => "in_sync".into(),
                Some(_) => "changed".into(),
                None => serde_json::Value::Null,
            };
            value["manifest_hash"] = here.map(|h| h.0.clone()).into();
        }
        out.push(value);
    }
    for (name, hash) in local {
        if !views.iter().any(|v| v.record.name == *name) {
            out.push(serde_json::json!({
                "name": name, "manifest": "not_applied", "manifest_hash": hash
            }));
        }
    }
    Ok(serde_json::Value::Array(out))
}

/// `drover delete NAME`: removes the record, cancelling its job if in flight.
pub async fn delete(client: &Client, name: &str) -> anyhow::Result<u8> {
    let name = RecordName::parse(name)?;
    let answer = client.delete_record(&name).await?;
    match answer.cancelled {
        Some(job) => println!("{name}: deleted; its job {job} was cancelled"),
        None => println!(
            "{name}: deleted (its last job {} stays: `drover status {}`)",
            answer.record.job, answer.record.job
        ),
    }
    Ok(0)
}
