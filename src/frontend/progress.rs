//! Progress bars (indicatif) for uploads, downloads and waits on many jobs.
//! They draw on stderr only when it is a terminal, so scripts and pipes see
//! nothing of them, and stdout keeps only the command's answer.

use futures::{Stream, StreamExt};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::time::Duration;

fn bar(len: Option<u64>, template: &str) -> ProgressBar {
    let style = ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    let pb = ProgressBar::with_draw_target(len, ProgressDrawTarget::stderr()).with_style(style);
    pb.enable_steady_tick(Duration::from_millis(200));
    pb
}

/// A bar over `total` bytes, `what` in front (`uploading input of j0...`); a
/// spinner with the count when the total is not known (a streamed download).
pub fn bytes(total: Option<u64>, what: String) -> ProgressBar {
    let pb = match total {
        Some(n) => bar(
            Some(n),
            "{msg} [{wide_bar}] {bytes}/{total_bytes} {binary_bytes_per_sec}",
        ),
        None => bar(None, "{msg} {spinner} {bytes} {binary_bytes_per_sec}"),
    };
    pb.set_message(what);
    pb
}

/// A bar over `total` jobs finishing, with a tally in its message.
pub fn jobs(total: u64) -> ProgressBar {
    bar(
        Some(total),
        "{pos}/{len} jobs finished {msg} [{wide_bar}] {elapsed}",
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
