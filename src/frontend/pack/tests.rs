//! The packing rules, one test each, on real files in temporary folders; archives
//! are read back with tar + flate2, independently of the reading side of
//! `crate::archive`.

use super::*;
use std::{io::Read, os::unix::fs::PermissionsExt};
use tempfile::TempDir;

fn folder() -> TempDir {
    tempfile::tempdir().expect("temp dir")
}

fn write(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).expect("create parent");
    }
    fs::write(&path, contents).expect("write file");
    path
}

fn write_executable(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let path = write(dir, name, contents);
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

/// Writes `jdl` as `job.jdl` in `dir` and packs it; asserts that a failure wrote
/// nothing, since the caller uploads what it got.
fn pack_in(dir: &Path, jdl: &str) -> (Result<PackedJob, PackError>, Vec<u8>) {
    pack_with(dir, jdl, &PackLimits::default())
}

fn pack_with(
    dir: &Path,
    jdl: &str,
    limits: &PackLimits,
) -> (Result<PackedJob, PackError>, Vec<u8>) {
    let path = write(dir, "job.jdl", jdl);
    let mut out = Vec::new();
    let result = pack_jdl_file(&path, limits, &mut out);
    if result.is_err() {
        assert!(out.is_empty(), "a failed pack wrote {} bytes", out.len());
    }
    (result, out)
}

fn packed(dir: &Path, jdl: &str) -> (PackedJob, Vec<u8>) {
    match pack_in(dir, jdl) {
        (Ok(job), out) => (job, out),
        (Err(e), _) => panic!("packing failed:\n{e}"),
    }
}

fn failure(dir: &Path, jdl: &str) -> PackError {
    match pack_in(dir, jdl) {
        (Err(e), _) => e,
        (Ok(job), _) => panic!("packing succeeded: {job:?}"),
    }
}

fn job_with(edit: impl FnOnce(&mut JobDescription)) -> JobDescription {
    let mut job = JobDescription {
        executable: Some("/bin/true".to_string()),
        ..JobDescription::default()
    };
    edit(&mut job);
    job
}

#[derive(Debug, PartialEq)]
struct Entry {
    path: String,
    kind: char,
    mode: u32,
    link: Option<String>,
}

fn entry(path: &str, kind: char, mode: u32) -> Entry {
    Entry {
        path: path.to_string(),
        kind,
        mode,
        link: None,
    }
}

fn listing(archive: &[u8]) -> Vec<Entry> {
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(archive));
    let mut found = Vec::new();
    for e in tar.entries().expect("entries") {
        let e = e.expect("entry");
        let kind = match e.header().entry_type() {
            tar::EntryType::Regular => 'f',
            tar::EntryType::Directory => 'd',
            tar::EntryType::Symlink => 'l',
            other => panic!("unexpected entry type {other:?}"),
        };
        found.push(Entry {
            path: e.path().expect("path").to_string_lossy().into_owned(),
            kind,
            mode: e.header().mode().expect("mode"),
            link: e
                .link_name()
                .expect("link name")
                .map(|l| l.to_string_lossy().into_owned()),
        });
    }
    found
}

fn paths(archive: &[u8]) -> Vec<String> {
    listing(archive).into_iter().map(|e| e.path).collect()
}

fn contents(archive: &[u8], name: &str) -> String {
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(archive));
    for e in tar.entries().expect("entries") {
        let mut e = e.expect("entry");
        if e.path().expect("path").to_string_lossy() == name {
            let mut text = String::new();
            e.read_to_string(&mut text).expect("read entry");
            return text;
        }
    }
    panic!("{name} is not in the archive");
}

#[test]
fn the_seeds_bare_word_layout_packs_into_the_expected_archive() {
    let dir = folder();
    write_executable(dir.path(), "setup.sh", "#!/bin/sh\npip install x\n");
    write(dir.path(), "data.csv", "a,b\n1,2\n");
    write_executable(dir.path(), "analyse.py", "#!/usr/bin/env python3\n");
    let (job, archive) = packed(
        dir.path(),
        "Prologue = {setup.sh}\n\
         InputSandbox = {data.csv, analyse.py}\n\
         OutputSandbox = {result.tar.gz}\n\
         Arguments = --rows 1000 data.csv\n\
         Executable = analyse.py\n",
    );
    assert_eq!(
        listing(&archive),
        [
            entry(".drover/job.jdl", 'f', 0o644),
            entry("data.csv", 'f', 0o644),
            entry("analyse.py", 'f', 0o755),
            entry("setup.sh", 'f', 0o755),
        ]
    );
    assert_eq!(contents(&archive, "data.csv"), "a,b\n1,2\n");
    assert_eq!(contents(&archive, JOB_JDL_PATH), job.jdl);
    assert_eq!(job.description.executable.as_deref(), Some("analyse.py"));
    assert_eq!(job.description.prologue, ["setup.sh"]);
    assert_eq!(
        job.description.input_sandbox,
        ["data.csv", "analyse.py", "setup.sh"]
    );
    assert_eq!(job.description.output_sandbox, ["result.tar.gz"]);
    assert_eq!(
        job.description.arguments.as_deref(),
        Some("--rows 1000 data.csv")
    );
    let files: Vec<_> = job
        .files
        .iter()
        .map(|f| (f.name.as_str(), f.bytes))
        .collect();
    assert_eq!(
        files,
        [("data.csv", 8), ("analyse.py", 23), ("setup.sh", 24)]
    );
    assert!(job.warnings.is_empty(), "{:?}", job.warnings);
}

#[test]
fn the_rewritten_jdl_reads_back_as_the_rewritten_description() {
    let dir = folder();
    write(dir.path(), "bin/run.sh", "#!/bin/sh\n");
    let (job, _) = packed(
        dir.path(),
        "[ Executable = \"bin/run.sh\"; Arguments = \"-v\"; ]",
    );
    let (back, _) = parse_job(&job.jdl).expect("the canonical JDL parses");
    assert_eq!(back, job.description);
}

#[test]
fn a_missing_input_file_is_an_error_naming_the_entry_and_the_path_looked_at() {
    let dir = folder();
    let err = failure(
        dir.path(),
        "Executable = /bin/true\nInputSandbox = {data.csv}\n",
    );
    let looked = dir.path().join("data.csv");
    assert!(
        matches!(&err, PackError::NotFound { entry, looked_for, .. } if entry == "data.csv" && *looked_for == looked),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains("job.jdl: InputSandbox: `data.csv` not found"),
        "{message}"
    );
    assert!(
        message.contains(&format!("(looked for {})", looked.display())),
        "{message}"
    );
}

#[test]
fn a_glob_ships_every_match_under_its_base_name_and_skips_hidden_files() {
    let dir = folder();
    write(dir.path(), "in/a.csv", "1");
    write(dir.path(), "in/b.csv", "2");
    write(dir.path(), "in/.hidden.csv", "3");
    write(dir.path(), "in/notes.txt", "4");
    let (job, archive) = packed(
        dir.path(),
        "Executable = /bin/true\nInputSandbox = {\"in/*.csv\"}\n",
    );
    assert_eq!(paths(&archive), [JOB_JDL_PATH, "a.csv", "b.csv"]);
    assert_eq!(job.description.input_sandbox, ["a.csv", "b.csv"]);
}

#[test]
fn a_question_mark_glob_matches_one_character() {
    let dir = folder();
    write(dir.path(), "part1.dat", "");
    write(dir.path(), "part22.dat", "");
    let (_, archive) = packed(
        dir.path(),
        "Executable = /bin/true\nInputSandbox = {\"part?.dat\"}\n",
    );
    assert_eq!(paths(&archive), [JOB_JDL_PATH, "part1.dat"]);
}

#[test]
fn brackets_in_an_input_name_are_literal_not_a_glob_class() {
    let dir = folder();
    write(dir.path(), "run[1]-a.csv", "x");
    write(dir.path(), "run1-a.csv", "y");
    let (_, archive) = packed(
        dir.path(),
        "Executable = /bin/true\nInputSandbox = {\"run[1]-*.csv\"}\n",
    );
    assert_eq!(paths(&archive), [JOB_JDL_PATH, "run[1]-a.csv"]);
}

#[test]
fn a_glob_that_matches_nothing_is_an_error() {
    let dir = folder();
    let err = failure(
        dir.path(),
        "Executable = /bin/true\nInputSandbox = {\"*.csv\"}\n",
    );
    assert!(
        matches!(&err, PackError::GlobNoMatch { entry, .. } if entry == "*.csv"),
        "{err:?}"
    );
    assert!(err.to_string().contains("`*.csv` matches no file"), "{err}");
}

#[test]
fn a_file_uri_ships_the_file_it_names() {
    let dir = folder();
    let elsewhere = folder();
    let data = write(elsewhere.path(), "my data.csv", "x,y\n");
    let uri = format!("file://{}", data.display()).replace(' ', "%20");
    let (job, archive) = packed(
        dir.path(),
        &format!("Executable = /bin/true\nInputSandbox = {{\"{uri}\"}}\n"),
    );
    assert_eq!(paths(&archive), [JOB_JDL_PATH, "my data.csv"]);
    assert_eq!(job.files[0].source, data);
}

#[test]
fn a_file_uri_naming_another_host_is_refused() {
    let dir = folder();
    let err = failure(
        dir.path(),
        "Executable = /bin/true\nInputSandbox = {\"file://server/data.csv\"}\n",
    );
    assert!(matches!(err, PackError::BadFileUri { .. }), "{err:?}");
    assert!(err.to_string().contains("host `server`"), "{err}");
}

#[test]
fn a_remote_uri_in_input_sandbox_is_refused_with_what_to_do() {
    let dir = folder();
    let err = failure(
        dir.path(),
        "Executable = /bin/true\nInputSandbox = {\"gsiftp://se.example.org/data.csv\"}\n",
    );
    assert!(matches!(err, PackError::RemoteUri { .. }), "{err:?}");
    assert!(
        err.to_string().contains("fetch it in the Prologue"),
        "{err}"
    );
}

#[test]
fn two_inputs_with_one_base_name_are_an_error_naming_both() {
    // The JDL module catches this in a file; a description from flags reaches here.
    let dir = folder();
    write(dir.path(), "a/data.csv", "1");
    write(dir.path(), "b/data.csv", "2");
    let job = job_with(|j| j.input_sandbox = vec!["a/data.csv".into(), "b/data.csv".into()]);
    let err =
        plan_description(job, dir.path(), "job.jdl", &PackLimits::default()).expect_err("refused");
    assert!(
        matches!(&err, PackError::Collision { name, .. } if name == "data.csv"),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains("`a/data.csv`") && message.contains("`b/data.csv`"),
        "{message}"
    );
}

#[test]
fn two_glob_matches_with_one_base_name_are_an_error_naming_both_paths() {
    let dir = folder();
    write(dir.path(), "a/data.csv", "1");
    write(dir.path(), "b/data.csv", "2");
    let err = failure(
        dir.path(),
        "Executable = /bin/true\nInputSandbox = {\"*/data.csv\"}\n",
    );
    let message = err.to_string();
    assert!(matches!(err, PackError::Collision { .. }), "{err:?}");
    for path in ["a/data.csv", "b/data.csv"] {
        assert!(
            message.contains(&dir.path().join(path).display().to_string()),
            "{message}"
        );
    }
}

#[test]
fn the_same_file_named_by_a_glob_and_by_name_ships_once() {
    let dir = folder();
    write(dir.path(), "data.csv", "1");
    let (_, archive) = packed(
        dir.path(),
        "Executable = /bin/true\nInputSandbox = {\"*.csv\", data.csv}\n",
    );
    assert_eq!(paths(&archive), [JOB_JDL_PATH, "data.csv"]);
}

#[test]
fn an_input_named_dot_drover_is_refused() {
    let dir = folder();
    write(dir.path(), ".drover/job.jdl", "[]");
    let err = failure(
        dir.path(),
        "Executable = /bin/true\nInputSandbox = {.drover}\n",
    );
    assert!(
        matches!(&err, PackError::BadName { name, .. } if name == ".drover"),
        "{err:?}"
    );
}

#[test]
fn an_input_ending_in_dot_dot_has_no_name_to_ship_under() {
    let dir = folder();
    fs::create_dir(dir.path().join("sub")).expect("mkdir");
    let job = job_with(|j| j.input_sandbox = vec!["sub/..".into()]);
    let err =
        plan_description(job, dir.path(), "job.jdl", &PackLimits::default()).expect_err("refused");
    assert!(matches!(err, PackError::NoBaseName { .. }), "{err:?}");
}

#[test]
fn an_empty_input_entry_is_refused_rather_than_shipping_the_whole_folder() {
    let dir = folder();
    let job = job_with(|j| j.input_sandbox = vec![String::new()]);
    let err = plan_description(job, dir.path(), "command line", &PackLimits::default())
        .expect_err("refused");
    assert!(matches!(err, PackError::NoBaseName { .. }), "{err:?}");
}

#[test]
fn dot_dot_in_output_sandbox_is_refused_before_anything_is_written() {
    let dir = folder();
    let job = job_with(|j| j.output_sandbox = vec!["../../etc/passwd".to_string()]);
    let mut out = Vec::new();
    let err = pack_description(job, dir.path(), "job.jdl", &PackLimits::default(), &mut out)
        .expect_err("refused");
    assert!(out.is_empty());
    assert!(
        matches!(&err, PackError::UnsafeName { attribute: "OutputSandbox", name, .. } if name == "../../etc/passwd"),
        "{err:?}"
    );
}

#[test]
fn dot_dot_in_output_sandbox_of_a_jdl_file_is_refused() {
    // The JDL module or the packer may be the one to say it; either way it is
    // refused before anything is written, naming the file.
    let dir = folder();
    let err = failure(
        dir.path(),
        "Executable = /bin/true\nOutputSandbox = {\"../out.txt\"}\n",
    );
    assert!(
        err.to_string()
            .starts_with(&format!("{}:", dir.path().join("job.jdl").display())),
        "{err}"
    );
}

#[test]
fn absolute_std_output_is_refused() {
    let dir = folder();
    let job = job_with(|j| j.std_output = Some("/tmp/out".to_string()));
    let err =
        plan_description(job, dir.path(), "job.jdl", &PackLimits::default()).expect_err("refused");
    assert!(
        matches!(
            err,
            PackError::UnsafeName {
                attribute: "StdOutput",
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn an_executable_next_to_the_jdl_is_shipped_under_its_base_name() {
    let dir = folder();
    write_executable(dir.path(), "bin/run.sh", "#!/bin/sh\n");
    let (job, archive) = packed(dir.path(), "Executable = bin/run.sh\n");
    assert_eq!(listing(&archive)[1], entry("run.sh", 'f', 0o755));
    assert_eq!(job.description.executable.as_deref(), Some("run.sh"));
    assert_eq!(job.files[0].source, dir.path().join("bin/run.sh"));
}

#[test]
fn an_executable_listed_in_input_sandbox_is_shipped_from_there() {
    let dir = folder();
    write(dir.path(), "tools/run.sh", "from input sandbox");
    write(dir.path(), "run.sh", "next to the jdl");
    let (job, archive) = packed(
        dir.path(),
        "Executable = run.sh\nInputSandbox = {tools/run.sh}\n",
    );
    assert_eq!(paths(&archive), [JOB_JDL_PATH, "run.sh"]);
    assert_eq!(contents(&archive, "run.sh"), "from input sandbox");
    assert_eq!(job.description.executable.as_deref(), Some("run.sh"));
}

#[test]
fn an_executable_inside_a_shipped_folder_keeps_its_path() {
    let dir = folder();
    write_executable(dir.path(), "app/bin/run.sh", "#!/bin/sh\n");
    let (job, archive) = packed(
        dir.path(),
        "Executable = app/bin/run.sh\nInputSandbox = {app}\n",
    );
    assert_eq!(
        paths(&archive),
        [JOB_JDL_PATH, "app", "app/bin", "app/bin/run.sh"]
    );
    assert_eq!(
        job.description.executable.as_deref(),
        Some("app/bin/run.sh")
    );
}

#[test]
fn an_absolute_executable_is_kept_and_not_shipped() {
    let dir = folder();
    let (job, archive) = packed(dir.path(), "Executable = \"/bin/hostname\"\n");
    assert_eq!(paths(&archive), [JOB_JDL_PATH]);
    assert_eq!(job.description.executable.as_deref(), Some("/bin/hostname"));
    assert!(job.files.is_empty());
}

#[test]
fn a_missing_relative_executable_is_a_warning_because_the_prologue_may_create_it() {
    let dir = folder();
    write(dir.path(), "build.sh", "#!/bin/sh\n");
    let (job, archive) = packed(dir.path(), "Executable = app\nPrologue = {build.sh}\n");
    assert_eq!(paths(&archive), [JOB_JDL_PATH, "build.sh"]);
    assert_eq!(job.description.executable.as_deref(), Some("app"));
    assert_eq!(job.warnings.len(), 1, "{:?}", job.warnings);
    assert!(
        job.warnings[0].contains("Executable `app` is not shipped")
            && job.warnings[0].contains("the Prologue must create it"),
        "{}",
        job.warnings[0]
    );
}

#[test]
fn a_missing_executable_without_a_prologue_warns_that_the_job_will_fail() {
    let dir = folder();
    let (job, _) = packed(dir.path(), "Executable = python3\n");
    assert!(
        job.warnings[0].contains("no Prologue to create it"),
        "{:?}",
        job.warnings
    );
    assert!(
        job.warnings[0].contains("/usr/bin/python3"),
        "{:?}",
        job.warnings
    );
}

#[test]
fn an_executable_that_is_a_folder_is_an_error() {
    let dir = folder();
    fs::create_dir(dir.path().join("app")).expect("mkdir");
    let err = failure(dir.path(), "Executable = app\n");
    assert!(
        matches!(
            err,
            PackError::IsFolder {
                attribute: "Executable",
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn a_job_without_an_executable_is_refused() {
    let dir = folder();
    let job = JobDescription::default();
    let err =
        plan_description(job, dir.path(), "job.jdl", &PackLimits::default()).expect_err("refused");
    assert!(matches!(err, PackError::NoExecutable { .. }), "{err:?}");
}

#[test]
fn a_missing_prologue_script_is_an_error_naming_where_it_was_looked_for() {
    let dir = folder();
    let err = failure(
        dir.path(),
        "Executable = /bin/true\nPrologue = {setup.sh}\n",
    );
    assert!(
        matches!(&err, PackError::MissingScript { attribute: "Prologue", entry, .. } if entry == "setup.sh"),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains(&dir.path().join("setup.sh").display().to_string()),
        "{message}"
    );
    assert!(message.contains("in InputSandbox"), "{message}");
}

#[test]
fn a_missing_epilogue_script_is_an_error() {
    let dir = folder();
    let job = job_with(|j| j.epilogue = Some("cleanup.sh".to_string()));
    let err =
        plan_description(job, dir.path(), "job.jdl", &PackLimits::default()).expect_err("refused");
    assert!(
        matches!(
            err,
            PackError::MissingScript {
                attribute: "Epilogue",
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn absolute_prologue_scripts_are_taken_from_the_worker() {
    let dir = folder();
    write(dir.path(), "setup.sh", "");
    let (job, archive) = packed(
        dir.path(),
        "Executable = /bin/true\nPrologue = {\"/opt/site/env.sh\", setup.sh}\n",
    );
    assert_eq!(paths(&archive), [JOB_JDL_PATH, "setup.sh"]);
    assert_eq!(job.description.prologue, ["/opt/site/env.sh", "setup.sh"]);
}

#[test]
fn a_prologue_script_listed_in_input_sandbox_ships_once() {
    let dir = folder();
    write(dir.path(), "scripts/setup.sh", "");
    let (job, archive) = packed(
        dir.path(),
        "Executable = /bin/true\nPrologue = {setup.sh}\nInputSandbox = {scripts/setup.sh}\n",
    );
    assert_eq!(paths(&archive), [JOB_JDL_PATH, "setup.sh"]);
    assert_eq!(job.description.prologue, ["setup.sh"]);
}

#[test]
fn scripts_with_one_base_name_from_two_folders_are_an_error() {
    let dir = folder();
    write(dir.path(), "a/setup.sh", "");
    write(dir.path(), "b/setup.sh", "");
    let err = failure(
        dir.path(),
        "Executable = /bin/true\nPrologue = {a/setup.sh, b/setup.sh}\n",
    );
    assert!(matches!(err, PackError::Collision { .. }), "{err:?}");
}

#[test]
fn a_folder_is_packed_recursively_under_its_base_name_with_inside_links() {
    let dir = folder();
    write(dir.path(), "lib/pkg/mod.py", "x = 1\n");
    write_executable(dir.path(), "lib/tool", "#!/bin/sh\n");
    fs::create_dir(dir.path().join("lib/empty")).expect("mkdir");
    std::os::unix::fs::symlink("pkg/mod.py", dir.path().join("lib/alias.py")).expect("symlink");
    let (job, archive) = packed(dir.path(), "Executable = /bin/true\nInputSandbox = {lib}\n");
    let link = Entry {
        link: Some("pkg/mod.py".to_string()),
        ..entry("lib/alias.py", 'l', 0o777)
    };
    assert_eq!(
        listing(&archive),
        [
            entry(JOB_JDL_PATH, 'f', 0o644),
            entry("lib", 'd', 0o755),
            link,
            entry("lib/empty", 'd', 0o755),
            entry("lib/pkg", 'd', 0o755),
            entry("lib/pkg/mod.py", 'f', 0o644),
            entry("lib/tool", 'f', 0o755),
        ]
    );
    assert_eq!(job.files[0].bytes, 6 + 10);
}

#[test]
fn a_link_that_leaves_a_shipped_folder_is_an_error() {
    let dir = folder();
    write(dir.path(), "secret.txt", "");
    fs::create_dir(dir.path().join("lib")).expect("mkdir");
    std::os::unix::fs::symlink("../secret.txt", dir.path().join("lib/s")).expect("symlink");
    let err = failure(dir.path(), "Executable = /bin/true\nInputSandbox = {lib}\n");
    assert!(matches!(err, PackError::LinkOutside { .. }), "{err:?}");
    assert!(err.to_string().contains("-> ../secret.txt"), "{err}");
}

#[test]
fn a_link_that_leaves_through_another_link_is_an_error() {
    // Textually `here/..` stays inside; through `here -> .` it is the parent.
    let dir = folder();
    fs::create_dir(dir.path().join("lib")).expect("mkdir");
    std::os::unix::fs::symlink(".", dir.path().join("lib/here")).expect("symlink");
    std::os::unix::fs::symlink("here/..", dir.path().join("lib/up")).expect("symlink");
    let err = failure(dir.path(), "Executable = /bin/true\nInputSandbox = {lib}\n");
    let problems = err.problems();
    assert_eq!(problems.len(), 1, "{err}");
    assert!(
        matches!(&problems[0], PackError::LinkOutside { link, .. } if link.ends_with("up")),
        "{err:?}"
    );
}

#[test]
fn an_absolute_link_into_a_shipped_folder_is_stored_relative() {
    let dir = folder();
    write(dir.path(), "lib/data/table.csv", "");
    fs::create_dir(dir.path().join("lib/sub")).expect("mkdir");
    let target = dir.path().join("lib/data/table.csv");
    std::os::unix::fs::symlink(&target, dir.path().join("lib/sub/t.csv")).expect("symlink");
    let (_, archive) = packed(dir.path(), "Executable = /bin/true\nInputSandbox = {lib}\n");
    let link = listing(&archive)
        .into_iter()
        .find(|e| e.path == "lib/sub/t.csv")
        .expect("link");
    assert_eq!(link.link.as_deref(), Some("../data/table.csv"));
}

#[test]
fn a_link_named_directly_in_input_sandbox_ships_what_it_points_to() {
    let dir = folder();
    let elsewhere = folder();
    let real = write(elsewhere.path(), "x123.csv", "real");
    std::os::unix::fs::symlink(&real, dir.path().join("data.csv")).expect("symlink");
    let (_, archive) = packed(
        dir.path(),
        "Executable = /bin/true\nInputSandbox = {data.csv}\n",
    );
    assert_eq!(listing(&archive)[1], entry("data.csv", 'f', 0o644));
    assert_eq!(contents(&archive, "data.csv"), "real");
}

#[test]
fn an_input_sandbox_over_the_limit_is_refused_before_anything_is_written() {
    let dir = folder();
    write(dir.path(), "big.bin", &"x".repeat(4096));
    let limits = PackLimits {
        max_input_bytes: 4096,
    };
    let (result, _) = pack_with(
        dir.path(),
        "Executable = /bin/true\nInputSandbox = {big.bin}\n",
        &limits,
    );
    let err = result.expect_err("over the limit");
    assert!(
        matches!(err, PackError::TooLarge { limit: 4096, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("over the limit of 4096"), "{err}");
}

#[test]
fn jdl_errors_are_printed_as_file_line_col() {
    let dir = folder();
    let err = failure(
        dir.path(),
        "Executable = /bin/true\nStdOutput = \"unterminated\n",
    );
    let PackError::Jdl { diagnostics, .. } = &err else {
        panic!("{err:?}");
    };
    assert!(!diagnostics.is_empty());
    let file = dir.path().join("job.jdl").display().to_string();
    for line in err.to_string().lines() {
        assert!(line.starts_with(&format!("{file}:")), "{line}");
        assert!(line.contains(": error: "), "{line}");
    }
}

#[test]
fn a_jdl_that_is_not_utf8_is_refused_with_its_place() {
    let dir = folder();
    let path = dir.path().join("job.jdl");
    fs::write(&path, b"Executable = /bin/true\nJobName = caf\xe9\n").expect("write");
    let err = pack_jdl_file(&path, &PackLimits::default(), &mut Vec::new()).expect_err("refused");
    let message = err.to_string();
    assert!(
        message.starts_with(&format!("{}:2:14: error: ", path.display())),
        "{message}"
    );
    assert!(message.contains("UTF-8"), "{message}");
}

#[test]
fn a_missing_jdl_file_is_reported_with_its_name() {
    let dir = folder();
    let path = dir.path().join("nope.jdl");
    let err = pack_jdl_file(&path, &PackLimits::default(), &mut Vec::new()).expect_err("refused");
    assert!(matches!(err, PackError::ReadJdl { .. }), "{err:?}");
    assert!(
        err.to_string().starts_with(&path.display().to_string()),
        "{err}"
    );
}

#[test]
fn dag_collection_and_parametric_jobs_are_not_run_yet() {
    let dir = folder();
    for (job_type, says) in [
        (JobType::Dag, "DAG"),
        (JobType::Collection, "collection"),
        (JobType::Parametric, "parametric"),
    ] {
        let job = job_with(|j| j.job_type = job_type);
        let err = plan_description(job, dir.path(), "job.jdl", &PackLimits::default())
            .expect_err("refused");
        let message = err.to_string();
        assert!(
            message.contains(says) && message.contains("not run by drover yet"),
            "{message}"
        );
    }
}

#[test]
fn a_parametric_jdl_file_parses_but_is_not_run_yet() {
    let dir = folder();
    let err = failure(
        dir.path(),
        "JobType = \"Parametric\";\nParameters = 10;\nExecutable = \"/bin/echo\";\n",
    );
    assert!(
        matches!(
            err,
            PackError::Unsupported {
                job_type: JobType::Parametric,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let dir = folder();
    let err = failure(
        dir.path(),
        "Executable = /bin/true\nInputSandbox = {a.csv, b.csv}\nPrologue = {setup.sh}\n",
    );
    assert_eq!(err.problems().len(), 3, "{err}");
    assert_eq!(err.to_string().lines().count(), 3, "{err}");
}

#[test]
fn warnings_are_whole_lines_naming_the_file() {
    let dir = folder();
    let (job, _) = packed(dir.path(), "Executable = app\nStdOuput = \"out.txt\"\n");
    let file = dir.path().join("job.jdl").display().to_string();
    assert!(job.warnings.len() >= 2, "{:?}", job.warnings);
    for w in &job.warnings {
        assert!(
            w.starts_with(&format!("{file}:")) && w.contains(" warning: "),
            "{w}"
        );
    }
}

#[test]
fn std_input_that_is_not_shipped_is_a_warning() {
    let dir = folder();
    let job = job_with(|j| j.std_input = Some("in.txt".to_string()));
    let plan = plan_description(job, dir.path(), "job.jdl", &PackLimits::default()).expect("packs");
    assert!(
        plan.job().warnings[0].contains("StdInput `in.txt`"),
        "{:?}",
        plan.job().warnings
    );
}

#[test]
fn a_file_that_changes_between_the_check_and_the_write_fails_the_write() {
    let dir = folder();
    write(dir.path(), "data.csv", "1,2\n");
    let path = write(
        dir.path(),
        "job.jdl",
        "Executable = /bin/true\nInputSandbox = {data.csv}\n",
    );
    let plan = plan_jdl_file(&path, &PackLimits::default()).expect("checks out");
    write(dir.path(), "data.csv", "1,2\n3,4\n");
    let err = plan.write_archive(&mut Vec::new()).expect_err("changed");
    assert!(matches!(err, PackError::Changed { .. }), "{err:?}");
    assert!(err.to_string().contains("submit again"), "{err}");
}

struct Full;

impl Write for Full {
    fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
        Err(std::io::Error::new(
            std::io::ErrorKind::StorageFull,
            "disk full",
        ))
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_failing_writer_is_reported_with_the_step() {
    let dir = folder();
    write(dir.path(), "data.csv", &"x".repeat(1 << 16));
    let path = write(
        dir.path(),
        "job.jdl",
        "Executable = /bin/true\nInputSandbox = {data.csv}\n",
    );
    let err = pack_jdl_file(&path, &PackLimits::default(), &mut Full).expect_err("disk full");
    assert!(matches!(err, PackError::Write { .. }), "{err:?}");
    assert!(
        err.to_string().contains("writing the input archive"),
        "{err}"
    );
}

#[test]
fn a_parametric_file_plans_one_job_per_value_in_order_with_the_jdl_warnings_first() {
    let dir = folder();
    write(dir.path(), "in_a.txt", "a\n");
    write(dir.path(), "in_b.txt", "b\n");
    let path = write(
        dir.path(),
        "sweep.jdl",
        "[ JobType = \"Parametric\"; Parameters = {\"a\", \"b\"}; Executable = \"/bin/cat\";\n\
         Arguments = \"in__PARAM_.txt\"; InputSandbox = {\"in__PARAM_.txt\"};\n\
         Environment = {\"A=1\", \"A=2\"}; ]\n",
    );
    let plans = plan_parametric_file(&path, &PackLimits::default())
        .expect("plans")
        .expect("a parametric file");
    let shipped: Vec<_> = plans
        .iter()
        .map(|p| p.job().files[0].name.clone())
        .collect();
    assert_eq!(shipped, ["in_a.txt", "in_b.txt"]);
    assert_eq!(
        plans[0].job().description.arguments.as_deref(),
        Some("in_a.txt")
    );
    let first = &plans[0].job().warnings;
    assert!(
        first[0].starts_with(&format!("{}:", path.display()))
            && first[0].contains("sets `A` twice"),
        "{first:?}"
    );
    assert!(
        plans[1].job().warnings.is_empty(),
        "{:?}",
        plans[1].job().warnings
    );

    // A plain file is not planned here; a value whose input is missing is named.
    let plain = write(dir.path(), "plain.jdl", "[ Executable = \"/bin/true\"; ]\n");
    assert!(plan_parametric_file(&plain, &PackLimits::default())
        .expect("read")
        .is_none());
    fs::remove_file(dir.path().join("in_b.txt")).unwrap();
    let err = plan_parametric_file(&path, &PackLimits::default())
        .expect_err("in_b.txt is missing")
        .to_string();
    assert!(err.contains("sweep.jdl (_PARAM_ = b)"), "{err}");
}
