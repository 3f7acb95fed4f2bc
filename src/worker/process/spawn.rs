//! Starts a job's program without copying the worker.
//!
//! A job's process needs two things `posix_spawn` has no attribute for:
//! PR_SET_PDEATHSIG (a job must die with its worker) and RLIMIT_FSIZE (the
//! sandbox quota). With a pre-exec hook for them std's `Command` forks, and a
//! fork copies the worker's page tables, after which every page the worker
//! writes faults a copy until the child execs: about a third of the worker's
//! CPU per no-op job (docs/performance.md). This does what glibc's posix_spawn
//! does, `clone(CLONE_VM | CLONE_VFORK)`: the child borrows the worker's memory
//! and the worker's thread sleeps until the child has exec'd or exited. The
//! child then makes the calls of both, then execs.
//!
//! The child runs on a stack of its own inside the worker's memory, so it only
//! makes system calls on data prepared before the clone: no allocation, no lock,
//! nothing that can panic. Its exit is watched through a pidfd (Linux >= 5.3);
//! on older kernels a blocking thread waits for it instead.
//!
//! The death signal follows the *thread* that cloned, not the process: spawn
//! only from a thread that lives as long as the worker (the worker's runtime
//! thread does; a blocking-pool thread, which exits when idle, would not).

use std::cell::RefCell;
use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU8, Ordering};
use tokio::io::unix::AsyncFd;
use tokio::task::JoinHandle;

/// What to start. Every stream is an open descriptor of the caller's.
pub struct Launch<'a> {
    /// A path (never searched for in PATH): absolute, or relative to `cwd`.
    pub program: &'a OsStr,
    pub args: &'a [String],
    pub cwd: &'a OsStr,
    /// The whole environment.
    pub env: &'a [(std::ffi::OsString, std::ffi::OsString)],
    pub stdin: &'a OwnedFd,
    pub stdout: &'a OwnedFd,
    pub stderr: &'a OwnedFd,
    pub max_file_bytes: Option<u64>,
}

/// Which step of starting failed: the errno alone would not tell a missing
/// program from a missing working folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Making the process (clone) or preparing its arguments.
    Create,
    /// Process group, death signal, file-size limit or streams.
    Setup,
    /// Changing to the working folder.
    Chdir,
    /// execve itself: the errno says what is wrong with the program.
    Exec,
}

#[derive(Debug)]
pub struct SpawnError {
    pub step: Step,
    pub error: io::Error,
}

impl SpawnError {
    fn new(step: Step, error: io::Error) -> SpawnError {
        SpawnError { step, error }
    }
}

/// A started program, in a process group of its own (its pid is the group's
/// id). Dropped before it is reaped, it is reaped in the background: whoever
/// drops it kills the group first.
#[derive(Debug)]
pub struct Child {
    pid: libc::pid_t,
    reaper: Reaper,
    status: Option<ExitStatus>,
}

/// What tells that the child has exited. Neither reaps it: only `wait` (or
/// the background reap after a drop) does, so that until then its pid stays
/// ours and signalling it can never hit another process.
#[derive(Debug)]
enum Reaper {
    /// Readable once the process has exited.
    Pidfd(AsyncFd<OwnedFd>),
    /// A blocking `waitid(WNOWAIT)` on the runtime's blocking pool (kernels
    /// without pidfd).
    Thread(JoinHandle<io::Result<()>>),
    /// The thread saw the exit: the zombie waits to be reaped.
    Exited,
}

/// Set once clone has refused CLONE_PIDFD: the kernel predates it.
static NO_PIDFD: AtomicBool = AtomicBool::new(false);

/// Starts `launch`. Must be called inside a tokio runtime.
pub fn spawn(launch: &Launch) -> Result<Child, SpawnError> {
    spawn_with(launch, !NO_PIDFD.load(Ordering::Relaxed))
}

fn spawn_with(launch: &Launch, with_pidfd: bool) -> Result<Child, SpawnError> {
    let create = |e| SpawnError::new(Step::Create, e);
    let plan = Plan::new(launch).map_err(create)?;
    let (pid, pidfd) = match clone_child(&plan, with_pidfd) {
        Err(e) if with_pidfd && e.raw_os_error() == Some(libc::EINVAL) => {
            NO_PIDFD.store(true, Ordering::Relaxed);
            clone_child(&plan, false)
        }
        other => other,
    }
    .map_err(create)?;
    let errno = plan.errno.load(Ordering::Acquire);
    if errno != 0 {
        // The child failed before or at exec and has exited: reap it now.
        let _ = wait_pid(pid, 0);
        return Err(SpawnError::new(
            plan.failed_step(),
            io::Error::from_raw_os_error(errno),
        ));
    }
    // SAFETY: the OwnedFd is the pidfd, moved into the AsyncFd and closed
    // only when the AsyncFd drops.
    let watched = pidfd
        .map(|fd| unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) });
    let reaper = match watched {
        Some(Ok(fd)) => Reaper::Pidfd(fd),
        _ => {
            // No pidfd (a kernel before 5.2 ignores the flag) or one epoll
            // refuses (5.2): a thread waits instead, from now on.
            if with_pidfd {
                NO_PIDFD.store(true, Ordering::Relaxed);
            }
            Reaper::Thread(tokio::task::spawn_blocking(move || until_exited(pid)))
        }
    };
    Ok(Child {
        pid,
        reaper,
        status: None,
    })
}

impl Child {
    pub fn id(&self) -> u32 {
        self.pid as u32
    }

    /// Waits until the program has exited, without reaping it: until `wait`
    /// reaps it, neither its pid nor the id of its group can name another
    /// process. Cancel-safe: a `select!` may drop this future and call it again.
    pub async fn exited(&mut self) -> io::Result<()> {
        if self.status.is_some() {
            return Ok(());
        }
        loop {
            match &mut self.reaper {
                Reaper::Pidfd(fd) => {
                    let mut ready = fd.readable().await?;
                    if peek_exit(self.pid, libc::WNOHANG)? {
                        return Ok(());
                    }
                    ready.clear_ready();
                }
                Reaper::Thread(handle) => {
                    let seen = handle.await;
                    // Never polled again, whatever it answered.
                    self.reaper = Reaper::Exited;
                    seen.map_err(io::Error::other)??;
                }
                Reaper::Exited => return Ok(()),
            }
        }
    }

    /// Waits for the program to exit and reaps it. Cancel-safe.
    pub async fn wait(&mut self) -> io::Result<ExitStatus> {
        if let Some(status) = self.status {
            return Ok(status);
        }
        self.exited().await?;
        match wait_pid(self.pid, libc::WNOHANG)? {
            Some(status) => {
                self.status = Some(status);
                Ok(status)
            }
            None => Err(io::Error::other("the process exited but is not waitable")),
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if self.status.is_some() {
            return;
        }
        // As std's kill_on_drop: the group was killed by whoever dropped this,
        // but the program may have left its group. Not reaped, the pid is still
        // ours; it is reaped in the background.
        // SAFETY: signals our own unreaped child.
        unsafe { libc::kill(self.pid, libc::SIGKILL) };
        let pid = self.pid;
        let reap = move || wait_pid(pid, 0);
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(reap)),
            Err(_) => drop(std::thread::spawn(reap)),
        }
    }
}

/// waitpid: the status once `pid` has exited, `None` while it runs (with
/// WNOHANG in `flags`).
fn wait_pid(pid: libc::pid_t, flags: libc::c_int) -> io::Result<Option<ExitStatus>> {
    let mut status = 0;
    loop {
        // SAFETY: waitpid writes only `status`.
        match unsafe { libc::waitpid(pid, &mut status, flags) } {
            0 => return Ok(None),
            -1 if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted => continue,
            -1 => return Err(io::Error::last_os_error()),
            _ => return Ok(Some(ExitStatus::from_raw(status))),
        }
    }
}

/// Blocks until `pid` has exited, leaving it to be reaped.
fn until_exited(pid: libc::pid_t) -> io::Result<()> {
    peek_exit(pid, 0).map(drop)
}

/// Whether `pid` has exited, without reaping it (WNOWAIT); with WNOHANG in
/// `flags` it answers at once, else it waits for the exit.
fn peek_exit(pid: libc::pid_t, flags: libc::c_int) -> io::Result<bool> {
    loop {
        // SAFETY: waitid writes only `info`, which is then read as the kernel
        // filled it (si_pid is 0 when nothing has exited).
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let flags = libc::WEXITED | libc::WNOWAIT | flags;
        match unsafe { libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, flags) } {
            -1 if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted => continue,
            -1 => return Err(io::Error::last_os_error()),
            _ => return Ok(unsafe { info.si_pid() } != 0),
        }
    }
}

/// Everything the child needs, made before the clone; the child writes back
/// only `errno` and `step`.
struct Plan {
    program: CString,
    cwd: CString,
    /// Keep the strings `argv`, `sh_argv` and `envp` point into.
    _strings: Vec<CString>,
    argv: Vec<*const libc::c_char>,
    /// `/bin/sh program args...`: for a script without a `#!` line, as
    /// execvp and shells run one.
    sh_argv: Vec<*const libc::c_char>,
    envp: Vec<*const libc::c_char>,
    /// stdin, stdout, stderr: descriptors above 2, so that placing one
    /// cannot overwrite another.
    fds: [RawFd; 3],
    _raised: Vec<OwnedFd>,
    max_file_bytes: Option<u64>,
    parent: libc::pid_t,
    errno: AtomicI32,
    step: AtomicU8,
}

impl Plan {
    fn new(launch: &Launch) -> io::Result<Plan> {
        let cstr = |s: &[u8]| CString::new(s).map_err(|_| nul_error());
        let program = cstr(launch.program.as_bytes())?;
        let cwd = cstr(launch.cwd.as_bytes())?;
        let mut strings = vec![cstr(b"/bin/sh")?, program.clone()];
        for arg in launch.args {
            strings.push(cstr(arg.as_bytes())?);
        }
        let args_end = strings.len();
        for (key, value) in launch.env {
            let mut pair = key.as_bytes().to_vec();
            pair.push(b'=');
            pair.extend_from_slice(value.as_bytes());
            strings.push(cstr(&pair)?);
        }
        let null_terminated = |range: std::ops::Range<usize>| {
            let mut v: Vec<_> = strings[range].iter().map(|s| s.as_ptr()).collect();
            v.push(std::ptr::null());
            v
        };
        let sh_argv = null_terminated(0..args_end);
        let argv = null_terminated(1..args_end);
        let envp = null_terminated(args_end..strings.len());
        let mut raised = Vec::new();
        let mut fds = [0; 3];
        for (slot, fd) in fds
            .iter_mut()
            .zip([launch.stdin, launch.stdout, launch.stderr])
        {
            *slot = fd.as_raw_fd();
            if *slot <= 2 {
                // SAFETY: F_DUPFD_CLOEXEC makes a new descriptor we own.
                let copy = unsafe { libc::fcntl(*slot, libc::F_DUPFD_CLOEXEC, 3) };
                if copy < 0 {
                    return Err(io::Error::last_os_error());
                }
                *slot = copy;
                raised.push(unsafe { OwnedFd::from_raw_fd(copy) });
            }
        }
        Ok(Plan {
            program,
            cwd,
            _strings: strings,
            argv,
            sh_argv,
            envp,
            fds,
            _raised: raised,
            max_file_bytes: launch.max_file_bytes,
            parent: std::process::id() as libc::pid_t,
            errno: AtomicI32::new(0),
            step: AtomicU8::new(0),
        })
    }

    fn failed_step(&self) -> Step {
        match self.step.load(Ordering::Acquire) {
            STEP_SETUP => Step::Setup,
            STEP_CHDIR => Step::Chdir,
            _ => Step::Exec,
        }
    }
}

const STEP_SETUP: u8 = 1;
const STEP_CHDIR: u8 = 2;
const STEP_EXEC: u8 = 3;

fn nul_error() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        "an argument, path or environment variable contains a NUL byte",
    )
}

/// The child's stack: 128 KiB (the child needs a few), below it a page no one
/// may touch, so an overflow faults rather than write over the worker's heap.
/// One per thread, reused: the thread sleeps while its child uses it.
struct Stack {
    base: *mut libc::c_void,
    len: usize,
}

const STACK_BYTES: usize = 128 * 1024;

impl Stack {
    fn new() -> io::Result<Stack> {
        // SAFETY: sysconf only reads.
        let page = match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
            size if size > 0 => size as usize,
            _ => 4096,
        };
        let len = STACK_BYTES + page;
        // SAFETY: a fresh anonymous mapping, owned by the Stack.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let stack = Stack { base, len };
        // SAFETY: the lowest page of our own mapping.
        if unsafe { libc::mprotect(base, page, libc::PROT_NONE) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(stack)
    }

    /// Stacks grow down: the child starts at the top.
    fn top(&self) -> *mut libc::c_void {
        // SAFETY: one past the end of the mapping, 16-byte aligned (page-aligned).
        unsafe { self.base.cast::<u8>().add(self.len).cast() }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // SAFETY: our own mapping, no child is using it (the thread is exiting).
        unsafe { libc::munmap(self.base, self.len) };
    }
}

thread_local! {
    static STACK: RefCell<Option<Stack>> = const { RefCell::new(None) };
}

/// Clones the child and returns once it has exec'd or exited.
fn clone_child(plan: &Plan, with_pidfd: bool) -> io::Result<(libc::pid_t, Option<OwnedFd>)> {
    STACK.with(|cell| {
        let mut cell = cell.borrow_mut();
        if cell.is_none() {
            *cell = Some(Stack::new()?);
        }
        let stack = cell.as_ref().expect("just made");
        let mut flags = libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD;
        if with_pidfd {
            flags |= libc::CLONE_PIDFD;
        }
        let mut pidfd: libc::c_int = -1;
        // Signals stay blocked from here until the child has reset its handlers:
        // a handler of the worker must not run in the child, on the worker's
        // memory. (pthread_sigmask leaves glibc's own two alone; glibc sends
        // them only for setuid and pthread_cancel, which the worker never calls.)
        let mut all: libc::sigset_t = unsafe { std::mem::zeroed() };
        let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: plain signal-mask calls on local sets; clone runs `child` on
        // our own stack with `plan`, which outlives it: CLONE_VFORK returns only
        // after the child has exec'd or exited.
        let pid = unsafe {
            libc::sigfillset(&mut all);
            libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
            let pid = libc::clone(
                child,
                stack.top(),
                flags,
                plan as *const Plan as *mut libc::c_void,
                &mut pidfd as *mut libc::c_int,
            );
            let error = io::Error::last_os_error();
            libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
            if pid == -1 {
                return Err(error);
            }
            pid
        };
        let pidfd = (with_pidfd && pidfd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(pidfd) });
        Ok((pid, pidfd))
    })
}

/// The child. Only system calls on what `plan` holds, then exec or `_exit`.
extern "C" fn child(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the parent's `Plan`, alive and unchanged while the
    // parent sleeps in clone.
    let plan = unsafe { &*(arg as *const Plan) };
    unsafe {
        let fail = |step: u8| -> ! {
            plan.step.store(step, Ordering::Release);
            plan.errno
                .store(*libc::__errno_location(), Ordering::Release);
            libc::_exit(127)
        };
        reset_signal_handlers();
        if libc::setpgid(0, 0) != 0 {
            fail(STEP_SETUP);
        }
        // A job must not outlive its worker. The signal follows the thread that
        // cloned: the worker's threads live as long as the worker.
        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
            fail(STEP_SETUP);
        }
        if libc::getppid() != plan.parent {
            // The worker died before the signal was set.
            *libc::__errno_location() = libc::ESRCH;
            fail(STEP_SETUP);
        }
        if let Some(max) = plan.max_file_bytes {
            let limit = libc::rlimit {
                rlim_cur: max as libc::rlim_t,
                rlim_max: max as libc::rlim_t,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                fail(STEP_SETUP);
            }
        }
        for (target, fd) in plan.fds.iter().enumerate() {
            if libc::dup2(*fd, target as libc::c_int) < 0 {
                fail(STEP_SETUP);
            }
        }
        if libc::chdir(plan.cwd.as_ptr()) != 0 {
            fail(STEP_CHDIR);
        }
        let empty: libc::sigset_t = std::mem::zeroed();
        libc::pthread_sigmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
        libc::execve(
            plan.program.as_ptr(),
            plan.argv.as_ptr(),
            plan.envp.as_ptr(),
        );
        if *libc::__errno_location() == libc::ENOEXEC {
            // Not a binary and no `#!` line: /bin/sh runs it, as shells do.
            libc::execve(
                c"/bin/sh".as_ptr(),
                plan.sh_argv.as_ptr(),
                plan.envp.as_ptr(),
            );
            *libc::__errno_location() = libc::ENOEXEC;
        }
        fail(STEP_EXEC)
    }
}

/// Every handler the worker installed goes back to the default, and SIGPIPE
/// (which Rust ignores) too, as std does for its children; other ignored
/// signals stay ignored, as across any exec. glibc's own two signals (32, 33)
/// are refused by sigaction; glibc sends them only for setuid and
/// pthread_cancel, which the worker never calls.
unsafe fn reset_signal_handlers() {
    for signal in 1..=64 {
        if signal == libc::SIGKILL || signal == libc::SIGSTOP || signal == 32 || signal == 33 {
            continue;
        }
        let mut current: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(signal, std::ptr::null(), &mut current) != 0 {
            continue;
        }
        let handler = current.sa_sigaction;
        let ignored_pipe = signal == libc::SIGPIPE && handler == libc::SIG_IGN;
        if (handler != libc::SIG_DFL && handler != libc::SIG_IGN) || ignored_pipe {
            let mut default: libc::sigaction = std::mem::zeroed();
            default.sa_sigaction = libc::SIG_DFL;
            libc::sigaction(signal, &default, std::ptr::null_mut());
        }
    }
}

#[cfg(test)]
#[path = "spawn_tests.rs"]
mod tests;
