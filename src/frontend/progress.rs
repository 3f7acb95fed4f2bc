//! Progress bars (indicatif) for uploads, downloads and waits on many jobs.
//! They draw on stderr only when it is a terminal, so scripts and pipes see
//! nothing of them, and stdout keeps only the command's answer.

use futures::{Stream, StreamExt};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::time::Duration;

fn bar(len: u64, template: &str) -> ProgressBar {
    let style = ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    let pb =
        ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr()).with_style(style);
    pb.enable_steady_tick(Duration::from_millis(200));
    pb
}

/// A bar over `total` bytes, `what` in front (`uploading input of j0...`).
pub fn bytes(total: u64, what: String) -> ProgressBar {
    let pb = bar(
        total,
        "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
    );
    pb.set_message(what);
    pb
}

/// A bar over `total` jobs finishing, with a tally in its message.
pub fn jobs(total: u64) -> ProgressBar {
    bar(
        total,
        "waiting [{bar:30}] {pos}/{len} jobs finished {msg} ({elapsed})",
    )
}

/// Counts the bytes of a stream of chunks on `pb` as they pass.
pub fn counted<S, B, E>(stream: S, pb: ProgressBar) -> impl Stream<Item = Result<B, E>>
where
    S: Stream<Item = Result<B, E>>,
    B: AsRef<[u8]>,
{
    stream.map(move |chunk| {
        if let Ok(bytes) = &chunk {
            pb.inc(bytes.as_ref().len() as u64);
        }
        chunk
    })
}
