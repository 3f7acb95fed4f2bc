//! The local blobs: small ones are rows, large ones files, under the same keys.

use super::*;

fn key(s: &str) -> BlobPath {
    BlobPath::from(s)
}

async fn read(blobs: &Blobs, k: &str) -> Option<Vec<u8>> {
    match blobs.get_stream(&key(k)).await {
        Ok(stream) => {
            let chunks: Vec<Bytes> = stream.try_collect().await.expect("bytes");
            Some(chunks.concat())
        }
        Err(BlobError::NotFound(_)) => None,
        Err(e) => panic!("{e}"),
    }
}

fn file_of(dir: &Path, k: &str) -> std::path::PathBuf {
    dir.join(k)
}

#[tokio::test]
async fn a_small_blob_is_a_row_and_a_large_one_a_file() {
    let dir = tempfile::tempdir().expect("tmp");
    let blobs = Blobs::local(dir.path()).expect("blobs");
    let small = Bytes::from_static(b"small");
    let large = Bytes::from(vec![7u8; SMALL_BLOB_BYTES + 1]);
    blobs
        .put_bytes(&key("jobs/a/job.jdl"), small.clone())
        .await
        .expect("put");
    blobs
        .put_bytes(&key("jobs/a/input.tar.gz"), large.clone())
        .await
        .expect("put");
    assert!(
        !file_of(dir.path(), "jobs/a/job.jdl").exists(),
        "a small blob made a file"
    );
    assert!(file_of(dir.path(), "jobs/a/input.tar.gz").exists());
    assert_eq!(
        read(&blobs, "jobs/a/job.jdl").await.as_deref(),
        Some(&small[..])
    );
    assert_eq!(
        read(&blobs, "jobs/a/input.tar.gz").await.as_deref(),
        Some(&large[..])
    );
    assert_eq!(
        blobs.size(&key("jobs/a/job.jdl")).await.expect("size"),
        Some(5)
    );
    assert_eq!(
        blobs
            .get_small(&key("jobs/a/input.tar.gz"))
            .await
            .expect("get"),
        None
    );
    assert_eq!(
        blobs.keys().await.expect("keys"),
        ["jobs/a/input.tar.gz", "jobs/a/job.jdl"]
    );
}

#[tokio::test]
async fn the_last_put_of_a_key_wins_whatever_its_size() {
    let dir = tempfile::tempdir().expect("tmp");
    let blobs = Blobs::local(dir.path()).expect("blobs");
    let k = "jobs/a/attempts/1/output.tar.gz";
    let large = Bytes::from(vec![1u8; SMALL_BLOB_BYTES * 2]);
    blobs
        .put_bytes(&key(k), large.clone())
        .await
        .expect("large");
    blobs
        .put_bytes(&key(k), Bytes::from_static(b"now small"))
        .await
        .expect("small");
    assert_eq!(read(&blobs, k).await.as_deref(), Some(&b"now small"[..]));
    // Streamed in, large again: the row must not shadow the file.
    let n = blobs
        .put_reader(&key(k), &large[..], u64::MAX)
        .await
        .expect("put_reader");
    assert_eq!(n, large.len() as u64);
    assert_eq!(read(&blobs, k).await.as_deref(), Some(&large[..]));
    assert_eq!(blobs.get_small(&key(k)).await.expect("get"), None);
}

#[tokio::test]
async fn a_streamed_blob_over_the_limit_is_refused_small_or_large() {
    let dir = tempfile::tempdir().expect("tmp");
    let blobs = Blobs::local(dir.path()).expect("blobs");
    for size in [100, SMALL_BLOB_BYTES * 2] {
        let data = vec![0u8; size];
        let k = format!("jobs/{size}/input.tar.gz");
        let refused = blobs.put_reader(&key(&k), &data[..], size as u64 - 1).await;
        assert!(matches!(refused, Err(BlobError::TooLarge { .. })), "{size}");
        assert_eq!(read(&blobs, &k).await, None, "{size}");
        let n = blobs
            .put_reader(&key(&k), &data[..], size as u64)
            .await
            .expect("at the limit");
        assert_eq!(n, size as u64);
    }
}

#[tokio::test]
async fn deleting_a_job_deletes_its_rows_and_files_and_no_other_jobs() {
    let dir = tempfile::tempdir().expect("tmp");
    let blobs = Blobs::local(dir.path()).expect("blobs");
    let large = Bytes::from(vec![1u8; SMALL_BLOB_BYTES + 1]);
    for job in ["a", "a0", "b"] {
        let jdl = format!("jobs/{job}/job.jdl");
        let input = format!("jobs/{job}/input.tar.gz");
        blobs
            .put_bytes(&key(&jdl), Bytes::from_static(b"x"))
            .await
            .expect("small");
        blobs
            .put_bytes(&key(&input), large.clone())
            .await
            .expect("large");
    }
    blobs.delete_job(&JobId::new("a")).await.expect("delete");
    assert_eq!(
        blobs.keys().await.expect("keys"),
        [
            "jobs/a0/input.tar.gz",
            "jobs/a0/job.jdl",
            "jobs/b/input.tar.gz",
            "jobs/b/job.jdl"
        ]
    );
}
