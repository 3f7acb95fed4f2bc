use super::*;
use std::fs::File;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

/// What `dir` holds but the pool's own trash folder.
fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|name| name != ".trash")
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn a_folder_given_back_is_emptied_and_handed_to_the_next_attempt() {
    let tmp = tempfile::tempdir().expect("tmp");
    let folders = Folders::open(tmp.path()).expect("open");
    let first = folders.take().await.expect("take");
    let root = first.root().to_path_buf();
    assert_eq!(files(&root), ["sandbox"]);
    // What an attempt leaves: its files, folders, a link, and a spilled log.
    let sandbox = root.join("sandbox");
    fs::create_dir_all(sandbox.join("a/b")).expect("dirs");
    fs::write(sandbox.join("a/b/out.txt"), b"x").expect("write");
    fs::write(sandbox.join("in.txt"), b"x").expect("write");
    std::os::unix::fs::symlink("/etc", sandbox.join("etc")).expect("link");
    fs::write(root.join("stdout"), b"x").expect("write");
    // As a process that escaped the job would, still in its folder.
    let escaped = File::open(&sandbox).expect("open the sandbox");
    folders.give_back(first).await;
    // It is in a deleted folder, not in the next job's.
    let left_in = escaped.metadata().expect("fstat");
    assert_eq!(left_in.nlink(), 0, "the old sandbox is deleted");
    assert_ne!(
        left_in.ino(),
        fs::metadata(&sandbox).expect("sandbox").ino()
    );

    let second = folders.take().await.expect("take again");
    assert_eq!(second.root(), root, "the same folder, reused");
    assert_eq!(files(&root), ["sandbox"]);
    assert!(files(&sandbox).is_empty(), "{:?}", files(&sandbox));
    assert!(
        Path::new("/etc").is_dir(),
        "the link was removed, not followed"
    );
}

#[tokio::test]
async fn a_folder_whose_sandbox_the_job_replaced_or_locked_is_deleted_not_reused() {
    let tmp = tempfile::tempdir().expect("tmp");
    let outside = tmp.path().join("outside");
    fs::create_dir_all(&outside).expect("outside");
    fs::write(outside.join("keep"), b"x").expect("write");
    let folders = Folders::open(&tmp.path().join("work")).expect("open");

    let replaced = folders.take().await.expect("take");
    let replaced_root = replaced.root().to_path_buf();
    fs::remove_dir(replaced_root.join("sandbox")).expect("rmdir");
    std::os::unix::fs::symlink(&outside, replaced_root.join("sandbox")).expect("link");
    folders.give_back(replaced).await;
    assert!(!replaced_root.exists(), "a changed folder is deleted");
    assert_eq!(files(&outside), ["keep"], "the link was not followed");

    let locked = folders.take().await.expect("take");
    let locked_root = locked.root().to_path_buf();
    assert_ne!(locked_root, replaced_root);
    fs::set_permissions(
        locked_root.join("sandbox"),
        fs::Permissions::from_mode(0o500),
    )
    .expect("chmod");
    folders.give_back(locked).await;
    assert!(
        !locked_root.exists(),
        "a folder with other rights is deleted"
    );

    let fresh = folders.take().await.expect("take");
    assert_ne!(fresh.root(), locked_root);
    assert_eq!(files(fresh.root()), ["sandbox"]);
}

#[tokio::test]
async fn a_folder_written_into_after_it_was_given_back_is_not_handed_out() {
    // As a process that escaped its job could.
    let tmp = tempfile::tempdir().expect("tmp");
    let folders = Folders::open(tmp.path()).expect("open");
    let folder = folders.take().await.expect("take");
    let root = folder.root().to_path_buf();
    folders.give_back(folder).await;
    fs::write(root.join("sandbox/late.txt"), b"late").expect("write");
    let next = folders.take().await.expect("take");
    assert_ne!(next.root(), root);
    assert!(!root.exists(), "the dirty folder is deleted");
    assert!(files(&next.root().join("sandbox")).is_empty());
}

#[tokio::test]
async fn what_an_earlier_worker_left_is_removed_when_the_folder_is_opened() {
    let tmp = tempfile::tempdir().expect("tmp");
    for left in [
        "attempt-0/sandbox",
        "attempt-7/sandbox/deep",
        ".trash/attempt-3",
    ] {
        fs::create_dir_all(tmp.path().join(left)).expect("dirs");
    }
    fs::write(tmp.path().join("attempt-0/sandbox/old.txt"), b"old").expect("write");
    fs::write(tmp.path().join("notes.txt"), b"not ours").expect("write");
    let folders = Folders::open(tmp.path()).expect("open");
    assert_eq!(
        files(tmp.path()),
        ["notes.txt"],
        "only what is not the pool's is left"
    );
    let folder = folders.take().await.expect("take");
    assert_eq!(folder.root(), tmp.path().join("attempt-0"));
    assert!(files(&folder.root().join("sandbox")).is_empty());
}

#[test]
fn a_second_worker_on_the_same_work_folder_is_refused_saying_so() {
    let tmp = tempfile::tempdir().expect("tmp");
    let first = Folders::open(tmp.path()).expect("open");
    let err = Folders::open(tmp.path())
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("is in use by another worker"), "{err}");
    drop(first);
    Folders::open(tmp.path()).expect("free again once the first is gone");
}
