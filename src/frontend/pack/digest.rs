//! The manifest hash of a checked job (`drover apply` records it): SHA-256 over
//! the canonical JDL and the contents of everything shipped, so that the same
//! manifest gives the same hash on any machine and at any time, and a changed
//! input file changes it. The input archive itself cannot serve: it carries
//! modification times, which change when nothing that matters did.
//!
//! Every field is written with its length first, so that no two different
//! manifests can write the same stream of bytes.

use super::{
    inputs::{ItemKind, NodeKind},
    PackPlan,
};
use reconcilers::records::ManifestHash;
use sha2::{Digest, Sha256};
use std::{fs::File, io::Read, path::Path};

/// Bumped if what is hashed ever changes, so old and new hashes never match by accident.
const DOMAIN: &[u8] = b"drover manifest v1";

struct Hasher(Sha256);

impl Hasher {
    fn field(&mut self, bytes: &[u8]) {
        self.0.update((bytes.len() as u64).to_le_bytes());
        self.0.update(bytes);
    }

    /// A file's contents, checked against the size it had when the job was
    /// checked (as the archive writer does).
    fn file(&mut self, path: &Path, bytes: u64) -> std::io::Result<()> {
        self.0.update(bytes.to_le_bytes());
        let mut file = File::open(path)?;
        let mut buf = vec![0u8; 64 * 1024];
        let mut read = 0u64;
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            read += n as u64;
            self.0.update(&buf[..n]);
        }
        if read != bytes {
            return Err(std::io::Error::other(format!(
                "{} changed while it was read ({bytes} bytes, then {read})",
                path.display()
            )));
        }
        Ok(())
    }

    fn finish(self) -> ManifestHash {
        let hex: String = self
            .0
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        ManifestHash(format!("sha256:{hex}"))
    }
}

impl PackPlan {
    /// The hash of the canonical JDL and of every shipped file's name and
    /// contents (a folder: each entry's name, kind and contents; a link: its target).
    /// It reads every shipped file with blocking I/O: from async code, call it
    /// inside `tokio::task::spawn_blocking` (as `drover apply` does).
    pub fn manifest_hash(&self) -> std::io::Result<ManifestHash> {
        let mut h = Hasher(Sha256::new());
        h.field(DOMAIN);
        h.field(self.job.jdl.as_bytes());
        for item in &self.items {
            h.field(item.name.as_bytes());
            match &item.kind {
                ItemKind::File => {
                    h.field(b"file");
                    h.file(&item.source, item.bytes)?;
                }
                ItemKind::Tree(nodes) => {
                    h.field(b"tree");
                    h.0.update((nodes.len() as u64).to_le_bytes());
                    for node in nodes {
                        h.field(node.name.as_bytes());
                        match &node.kind {
                            NodeKind::Dir => h.field(b"dir"),
                            NodeKind::File { bytes } => {
                                h.field(b"file");
                                h.file(&node.path, *bytes)?;
                            }
                            NodeKind::Link { target } => {
                                h.field(b"link");
                                h.field(target.as_os_str().as_encoded_bytes());
                            }
                        }
                    }
                }
            }
        }
        Ok(h.finish())
    }
}
