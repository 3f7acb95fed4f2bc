//! A real AWS API emulator for the tests: moto server (from PyPI) on a free
//! loopback port, one per test, stopped when the guard drops.
//!
//! `moto_server` is taken from `DROVER_MOTO_SERVER`, else from `PATH`, else it is
//! installed once into a virtualenv under the target folder (`pip install
//! 'moto[server]'`), so `cargo test` needs nothing installed beforehand.

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::OnceLock,
    time::{Duration, Instant},
};

pub const REGION: &str = "us-east-1";

pub struct Moto {
    pub url: String,
    child: Child,
    log: PathBuf,
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| Path::new(dir).join(name))
        .find(|p| p.is_file())
}

/// Installs moto into a virtualenv under the target folder, once per machine:
/// a file lock keeps parallel test binaries from installing it twice.
fn install_into_venv() -> PathBuf {
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("moto-venv");
    let bin = venv.join("bin").join("moto_server");
    let lock_path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("moto-venv.lock");
    let lock_file = std::fs::File::create(&lock_path).expect("create the moto install lock");
    let _lock = nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .expect("lock the moto install");
    if bin.is_file() {
        return bin;
    }
    let ok = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .is_ok_and(|s| s.success())
        && Command::new(venv.join("bin").join("pip"))
            .args(["install", "--quiet", "moto[server]"])
            .status()
            .is_ok_and(|s| s.success());
    assert!(
        ok && bin.is_file(),
        "installing moto[server] into {} failed",
        venv.display()
    );
    bin
}

pub fn moto_server_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("DROVER_MOTO_SERVER") {
            return PathBuf::from(p);
        }
        on_path("moto_server").unwrap_or_else(install_into_venv)
    })
    .clone()
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local addr").port()
}

impl Moto {
    pub fn start() -> Moto {
        let bin = moto_server_bin();
        // A port freed just now may be taken by someone else: try a few.
        for _ in 0..5 {
            let port = free_port();
            let log = std::env::temp_dir().join(format!("drover-moto-{port}.log"));
            let out = std::fs::File::create(&log).expect("moto log");
            let err = out.try_clone().expect("moto log");
            let child = Command::new(&bin)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                .spawn()
                .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
            let mut moto = Moto {
                url: format!("http://127.0.0.1:{port}"),
                child,
                log,
            };
            if moto.wait_ready(Duration::from_secs(60)) {
                return moto;
            }
        }
        panic!("moto server did not start");
    }

    fn wait_ready(&mut self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        let addr = self.url.trim_start_matches("http://").to_string();
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false; // exited: the port was taken
            }
            if let Ok(mut s) = std::net::TcpStream::connect(&addr) {
                use std::io::{Read, Write};
                let _ = s.write_all(b"GET /moto-api/ HTTP/1.0\r\nHost: localhost\r\n\r\n");
                let mut head = [0u8; 12];
                if s.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.") {
                    return true;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }

    /// The environment a drover process needs to talk to this moto.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.url.clone()),
            ("AWS_REGION", REGION.to_string()),
            ("AWS_ACCESS_KEY_ID", "testing".to_string()),
            ("AWS_SECRET_ACCESS_KEY", "testing".to_string()),
            // Never reach the real metadata service from a test.
            ("AWS_EC2_METADATA_DISABLED", "true".to_string()),
        ]
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// An SDK configuration for in-process tests, pointed at this moto.
    pub fn sdk_config(&self) -> aws_config::SdkConfig {
        let creds =
            aws_sdk_dynamodb::config::Credentials::new("testing", "testing", None, None, "moto");
        aws_config::SdkConfig::builder()
            .region(aws_config::Region::new(REGION))
            .endpoint_url(&self.url)
            .credentials_provider(aws_sdk_dynamodb::config::SharedCredentialsProvider::new(
                creds,
            ))
            .behavior_version(aws_config::BehaviorVersion::latest())
            .build()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}
