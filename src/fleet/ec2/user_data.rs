//! The user-data of a worker instance: a `#!/bin/sh` script that installs nothing
//! and starts the drover binary already on the image as the instance's worker.
//!
//! The same text is read back by the tests' fleet simulator (`parse_user_data`),
//! so the script is the one contract between the fleet and whatever boots it.

use reconcilers::model::InstanceId;
use std::time::Duration;

/// The environment variable the worker finds its token in (set by the script,
/// so it never shows on the worker's command line).
pub const TOKEN_ENV: &str = crate::auth::WORKER_TOKEN_ENV;

/// Where the worker's output goes on the instance.
pub const LOG_FILE: &str = "/var/log/drover-worker.log";

/// What a worker instance is started with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerLaunch {
    pub controller: String,
    pub instance_id: InstanceId,
    pub slots: u32,
    pub ping_interval: Duration,
    pub token: String,
}

/// The script (not yet base64-encoded). Every value is shell-quoted, so a
/// controller URL with `&` or a space cannot break out of its argument.
pub fn render_user_data(drover_path: &str, launch: &WorkerLaunch) -> String {
    let q = |s: &str| shell_words::quote(s).into_owned();
    format!(
        "#!/bin/sh\n\
         # A drover worker, started by its controller. Installs nothing: the drover\n\
         # binary is part of the image. The worker is this script's process (exec).\n\
         exec >>{log} 2>&1\n\
         {env}={token}\n\
         export {env}\n\
         exec {exe} worker --imds --controller {controller} --instance-id {id} --slots {slots} --ping-interval {ping}\n",
        log = LOG_FILE,
        env = TOKEN_ENV,
        token = q(&launch.token),
        exe = q(drover_path),
        controller = q(&launch.controller),
        id = q(launch.instance_id.as_str()),
        slots = launch.slots,
        ping = q(&humantime::format_duration(launch.ping_interval).to_string()),
    )
}

/// Reads back what `render_user_data` wrote; `None` if the script does not
/// start a drover worker.
pub fn parse_user_data(script: &str) -> Option<WorkerLaunch> {
    let mut token = None;
    let mut worker: Option<Vec<String>> = None;
    for line in script.lines().map(str::trim) {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let Ok(words) = shell_words::split(line) else {
            continue;
        };
        let words: Vec<&str> = words.iter().map(String::as_str).collect();
        let assignment = match words.as_slice() {
            [one] | ["export", one] => one
                .strip_prefix(TOKEN_ENV)
                .and_then(|r| r.strip_prefix('=')),
            _ => None,
        };
        if let Some(value) = assignment {
            token = Some(value.to_string());
        } else if let ["exec", _exe, "worker", ..] = words.as_slice() {
            worker = Some(words[3..].iter().map(|w| w.to_string()).collect());
        }
    }
    let args = worker?;
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .map(String::as_str)
    };
    Some(WorkerLaunch {
        controller: flag("--controller")?.to_string(),
        instance_id: InstanceId::new(flag("--instance-id")?),
        slots: flag("--slots").map_or(Some(1), |s| s.parse().ok())?,
        ping_interval: match flag("--ping-interval") {
            Some(d) => humantime::parse_duration(d).ok()?,
            None => Duration::from_secs(5),
        },
        token: token?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn launch() -> WorkerLaunch {
        WorkerLaunch {
            controller: "http://10.0.0.5:7700/x?a=1&b=2".to_string(),
            instance_id: InstanceId::new("w0mwy1234abcde"),
            slots: 8,
            ping_interval: Duration::from_millis(2500),
            token: "ab".repeat(32),
        }
    }

    #[test]
    fn the_script_reads_back_as_what_it_starts() {
        let script = render_user_data("/opt/drover bin/drover", &launch());
        assert!(script.starts_with("#!/bin/sh\n"), "{script}");
        assert_eq!(parse_user_data(&script), Some(launch()));
    }

    #[test]
    fn a_script_without_a_worker_or_a_token_is_not_a_launch() {
        assert_eq!(parse_user_data("#!/bin/sh\necho hello\n"), None);
        let script = render_user_data("/usr/local/bin/drover", &launch());
        let no_token: String = script
            .lines()
            .filter(|l| !l.starts_with(TOKEN_ENV))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(parse_user_data(&no_token), None);
    }
}
