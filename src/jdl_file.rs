//! Reading a JDL file from disk: at most one byte past the size a JDL may have,
//! so that a huge file (or `/dev/zero`) is refused by the JDL reader's size
//! check instead of filling memory first.

use std::{io::Read as _, path::Path};

/// The file's bytes, cut one byte past `reconcilers::jdl::MAX_SOURCE_BYTES`.
pub fn read(path: &Path) -> std::io::Result<Vec<u8>> {
    let cap = reconcilers::jdl::MAX_SOURCE_BYTES as u64 + 1;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(cap)
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_endless_file_is_read_only_up_to_the_limit() {
        let bytes = super::read(std::path::Path::new("/dev/zero")).expect("read");
        assert_eq!(bytes.len(), reconcilers::jdl::MAX_SOURCE_BYTES + 1);
        let diags = reconcilers::jdl::check_bytes(&bytes);
        assert!(diags
            .iter()
            .any(|d| d.is_error() && d.to_string().contains("1 MiB")));
    }
}
