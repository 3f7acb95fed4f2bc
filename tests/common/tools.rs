//! The outside checkers some tests run: `promtool` (Debian's `prometheus`
//! package) and `cfn-lint` (PyPI). Each is taken from its `DROVER_*`
//! environment variable, else from `PATH`, else installed the way moto is
//! (tests/common/moto.rs): apt-get when running as root, pip into a virtualenv
//! under the target folder. When neither works the test fails saying what to
//! install, rather than passing without having checked anything.

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
};

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| Path::new(dir).join(name))
        .find(|p| p.is_file())
}

/// Parallel test binaries install one at a time.
fn install_lock(name: &str) -> nix::fcntl::Flock<std::fs::File> {
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-install.lock"));
    let file = std::fs::File::create(&path).expect("create the install lock");
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .expect("lock the install")
}

fn run_ok(cmd: &mut Command) -> bool {
    cmd.status().is_ok_and(|s| s.success())
}

/// `promtool`, from Debian's `prometheus` package.
pub fn promtool() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("DROVER_PROMTOOL") {
            return PathBuf::from(p);
        }
        if let Some(p) = on_path("promtool") {
            return p;
        }
        let _lock = install_lock("promtool");
        if let Some(p) = on_path("promtool") {
            return p;
        }
        // SAFETY: geteuid has no preconditions and cannot fail.
        let root = unsafe { libc::geteuid() } == 0;
        let apt = || {
            Command::new("apt-get")
                .args([
                    "install",
                    "-y",
                    "-qq",
                    "--no-install-recommends",
                    "prometheus",
                ])
                .env("DEBIAN_FRONTEND", "noninteractive")
                .stdout(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        if root && on_path("apt-get").is_some() {
            // The package lists may be missing or old on a fresh machine.
            if !apt() {
                run_ok(Command::new("apt-get").args(["update", "-qq"]));
                apt();
            }
        }
        on_path("promtool").unwrap_or_else(|| {
            panic!(
                "promtool is not installed and could not be installed{}: install Debian's \
                 `prometheus` package (apt-get install prometheus), or set DROVER_PROMTOOL \
                 to a promtool binary",
                if root { "" } else { " (not running as root)" }
            )
        })
    })
    .clone()
}

/// `cfn-lint`, from PyPI.
pub fn cfn_lint() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("DROVER_CFN_LINT") {
            return PathBuf::from(p);
        }
        if let Some(p) = on_path("cfn-lint") {
            return p;
        }
        let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cfn-lint-venv");
        let bin = venv.join("bin").join("cfn-lint");
        let _lock = install_lock("cfn-lint");
        if bin.is_file() {
            return bin;
        }
        let ok = run_ok(Command::new("python3").args(["-m", "venv"]).arg(&venv))
            && run_ok(
                Command::new(venv.join("bin").join("pip")).args(["install", "--quiet", "cfn-lint"]),
            );
        assert!(
            ok && bin.is_file(),
            "cfn-lint is not installed and installing it into {} failed: `pip install cfn-lint`, \
             or set DROVER_CFN_LINT to a cfn-lint binary",
            venv.display()
        );
        bin
    })
    .clone()
}
