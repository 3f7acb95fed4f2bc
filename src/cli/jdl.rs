//! `drover jdl check` and `drover jdl fmt`.

use std::path::{Path, PathBuf};

/// Prints every diagnostic as `FILE:LINE:COL: error|warning: MESSAGE`; returns 1 if
/// any file has an error (or cannot be read), else 0.
pub fn check(files: &[PathBuf]) -> u8 {
    let mut failed = false;
    for file in files {
        let name = file.display();
        match crate::jdl_file::read(file) {
            Ok(bytes) => {
                for d in reconcilers::jdl::check_bytes(&bytes) {
                    failed |= d.is_error();
                    println!("{name}:{d}");
                }
            }
            Err(e) => {
                failed = true;
                println!("{name}: error: cannot read the file: {e}");
            }
        }
    }
    u8::from(failed)
}

/// Prints the canonical form; on errors prints them and fails.
pub fn fmt(file: &Path) -> anyhow::Result<u8> {
    let bytes = crate::jdl_file::read(file)
        .map_err(|e| anyhow::anyhow!("{}: cannot read the file: {e}", file.display()))?;
    let diags = reconcilers::jdl::check_bytes(&bytes);
    if diags.iter().any(|d| d.is_error()) {
        for d in diags.iter().filter(|d| d.is_error()) {
            eprintln!("{}:{d}", file.display());
        }
        return Ok(1);
    }
    let text = String::from_utf8_lossy(&bytes);
    match reconcilers::jdl::format(&text) {
        Ok(canonical) => {
            print!("{canonical}");
            Ok(0)
        }
        Err(diags) => {
            for d in diags {
                eprintln!("{}:{d}", file.display());
            }
            Ok(1)
        }
    }
}
