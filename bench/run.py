#!/usr/bin/env python3
"""drover's benchmarks, side by side with GNU parallel and HyperQueue.

One command (`python3 bench/run.py`, see bench/README.md) installs what it needs
(GNU parallel from apt, HyperQueue from PyPI into a virtualenv under target/),
builds drover --release, runs every system several times in this one invocation
on this one machine, and prints a table of medians and drover's ratio to each peer.
Ratios measured in one invocation are what to compare: the machine may be busy.
"""

import argparse
import base64
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = ROOT / "target"
VENV = TARGET / "bench" / "venv"
DROVER = TARGET / "release" / "drover"
HQ_VERSION = "0.27.0"
NPROC = os.cpu_count() or 1


def log(msg):
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# Setup: what the peers and drover need
# --------------------------------------------------------------------------


def ensure_parallel():
    if shutil.which("parallel"):
        return
    log("installing GNU parallel (apt-get install -y parallel)")
    if subprocess.run(["apt-get", "install", "-y", "parallel"], capture_output=True).returncode:
        subprocess.run(["apt-get", "update"], check=True, capture_output=True)
        subprocess.run(["apt-get", "install", "-y", "parallel"], check=True, capture_output=True)


def ensure_hyperqueue():
    py = VENV / "bin" / "python"
    probe = [str(py), "-c", f"import hyperqueue, importlib.metadata as m; assert m.version('hyperqueue') == '{HQ_VERSION}'"]
    if py.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return py
    log(f"installing hyperqueue=={HQ_VERSION} into {VENV}")
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    subprocess.run([str(py), "-m", "pip", "install", "-q", f"hyperqueue=={HQ_VERSION}"], check=True)
    return py


def build_drover(skip):
    if skip and DROVER.exists():
        return
    log("building drover --release")
    subprocess.run(["cargo", "build", "--release", "--bin", "drover"], cwd=ROOT, check=True)


# --------------------------------------------------------------------------
# A drover controller for one measurement
# --------------------------------------------------------------------------


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Drover:
    """`drover controller` with local workers, in a fresh data folder."""

    def __init__(self, work, *flags):
        self.dir = Path(tempfile.mkdtemp(prefix="ctl-", dir=work))
        self.data = self.dir / "data"
        self.url = f"http://127.0.0.1:{free_port()}"
        self.log = open(self.dir / "controller.log", "w")
        self.proc = subprocess.Popen(
            [str(DROVER), "controller", "--data-dir", str(self.data), "--listen", self.url[7:], *flags],
            cwd=self.dir, stdout=self.log, stderr=self.log, start_new_session=True,
            env={**os.environ, "RUST_LOG": "warn"},
        )
        deadline = time.time() + 30
        while True:
            try:
                urllib.request.urlopen(self.url + "/healthz", timeout=1).read()
                break
            except (urllib.error.URLError, ConnectionError):
                if time.time() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(f"controller did not start: {(self.dir / 'controller.log').read_text()}")
                time.sleep(0.05)
        token = self.data / "submit.token"
        self.token = token.read_text().strip() if token.exists() else None
        self.env = {**os.environ, "DROVER_CONTROLLER": self.url}
        if self.token:
            self.env["DROVER_TOKEN"] = self.token

    def request(self, method, path, body=None, raw=None):
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if body is not None:
            req.add_header("Content-Type", "application/json")
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        with urllib.request.urlopen(req, timeout=120) as resp:
            text = resp.read()
        return json.loads(text) if text else None

    def cli(self, *args, cwd=None):
        return subprocess.run([str(DROVER), *args], cwd=cwd or self.dir, env=self.env,
                              capture_output=True, text=True, check=True)

    def count(self, states, limit):
        return len(self.request("GET", f"/v1/jobs?state={states}&limit={limit}"))

    def wait_idle(self, expect, timeout=1800):
        """Until no job is queued, assigned or running; then checks all succeeded."""
        deadline = time.time() + timeout
        while self.count("created,queued,assigned,running", 1):
            if time.time() > deadline:
                raise RuntimeError("jobs did not finish in time")
            time.sleep(0.05)
        done = self.count("succeeded", expect + 1)
        if done != expect:
            failed = self.request("GET", "/v1/jobs?state=failed&limit=3")
            raise RuntimeError(f"{done} of {expect} jobs succeeded; failed: {json.dumps(failed)[:2000]}")

    def worker_pids(self):
        """The local worker processes of this controller: (pid, command line)."""
        out = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            line = b" ".join(cmd).decode(errors="replace")
            if len(cmd) > 1 and cmd[1] == b"worker" and self.url in line:
                out.append((int(pid), line))
        return out

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def job_writes(ctl):
    """Job record writes so far: one insert per job, plus one conditional write
    per state change (the metric counts each change the store accepted)."""
    text = urllib.request.urlopen(ctl.url + "/metrics", timeout=10).read().decode()
    changes = sum(float(l.rsplit(" ", 1)[1]) for l in text.splitlines()
                  if l.startswith("drover_job_transitions_total{"))
    created = ctl.count("created,queued,assigned,running,succeeded,failed,cancelled", 1_000_000)
    return changes + created


def controller_flags(workers, slots, heartbeat=None, ping=None):
    flags = ["--max-workers", str(workers), "--min-workers", str(workers),
             "--slots-per-worker", str(slots), "--reconcile-interval", "500ms"]
    if heartbeat:
        flags += ["--heartbeat-timeout", heartbeat, "--ping-interval", ping]
    return flags


def wait_workers(ctl, n, timeout=60):
    """Until `n` local workers run, then one job through them (warms the path)."""
    deadline = time.time() + timeout
    while len(ctl.worker_pids()) < n:
        if time.time() > deadline:
            raise RuntimeError(f"{n} workers did not start: {ctl.worker_pids()}")
        time.sleep(0.05)
    warm = ctl.dir / "warm.jdl"
    warm.write_text('[ Executable = "/bin/true"; ]\n')
    job = ctl.cli("submit", str(warm)).stdout.strip()
    ctl.cli("wait", job, "--timeout", f"{timeout}s")


# --------------------------------------------------------------------------
# 1. Throughput
# --------------------------------------------------------------------------

BARE_JDL = """[
  JobType = "Parametric";
  Executable = "/bin/true";
  Parameters = {n};
]
"""

SANDBOX_JDL = """[
  JobType = "Parametric";
  Executable = "/bin/true";
  Parameters = {n};
  InputSandbox = {{"inputs/in__PARAM_.txt"}};
  StdOutput = "out.txt";
  OutputSandbox = {{"out.txt"}};
]
"""


def drover_throughput(work, n, sandboxes, workers, slots):
    ctl = Drover(work, *controller_flags(workers, slots))
    try:
        wait_workers(ctl, workers)
        jdl = ctl.dir / "sweep.jdl"
        if sandboxes:
            (ctl.dir / "inputs").mkdir()
            for i in range(n):
                (ctl.dir / "inputs" / f"in_{i}.txt").write_text(f"input {i}\n")
            jdl.write_text(SANDBOX_JDL.format(n=n))
        else:
            jdl.write_text(BARE_JDL.format(n=n))
        start = time.perf_counter()
        out = ctl.cli("submit", str(jdl)).stdout.split()
        submitted = time.perf_counter()
        assert len(out) == n, f"submit printed {len(out)} ids for {n} jobs"
        ctl.wait_idle(n + 1)  # + the warm-up job
        end = time.perf_counter()
        return {"jobs_per_s": n / (end - start), "submit_s": submitted - start, "total_s": end - start,
                "job_writes_per_job": job_writes(ctl) / (n + 1)}
    finally:
        ctl.stop()


def parallel_throughput(n):
    """The same no-op commands through GNU parallel, one slot per core."""
    lines = "\n".join(str(i) for i in range(n)) + "\n"
    start = time.perf_counter()
    subprocess.run(["parallel", "-j", str(NPROC), "/bin/true"], input=lines, text=True,
                   check=True, capture_output=True)
    end = time.perf_counter()
    return {"jobs_per_s": n / (end - start), "total_s": end - start}


HQ_SCRIPT = r"""
import sys, time, json, tempfile
from hyperqueue import Job, LocalCluster
from hyperqueue.cluster import WorkerConfig
n, cores = int(sys.argv[1]), int(sys.argv[2])
with tempfile.TemporaryDirectory() as d, LocalCluster(server_dir=d) as cluster:
    cluster.start_worker(WorkerConfig(cores=cores))
    client = cluster.client()
    warm = Job(); warm.program(["/bin/true"], stdout=None, stderr=None)
    client.wait_for_jobs([client.submit(warm)])
    job = Job()
    for i in range(n):
        job.program(["/bin/true"], stdout=None, stderr=None)
    start = time.perf_counter()
    submitted = client.submit(job)
    client.wait_for_jobs([submitted])
    end = time.perf_counter()
print(json.dumps({"jobs_per_s": n / (end - start), "total_s": end - start}))
"""


def hq_throughput(py, work, n):
    script = Path(work) / "hq_bench.py"
    script.write_text(HQ_SCRIPT)
    out = subprocess.run([str(py), str(script), str(n), str(NPROC)], capture_output=True, text=True,
                         check=True, cwd=work)
    return json.loads(out.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------
# 2. Submit: single (the API's three requests) and bulk (batches)
# --------------------------------------------------------------------------


def input_archive(jdl):
    """A job's input archive as the CLI makes it: the JDL at .drover/job.jdl."""
    import io
    import tarfile
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        data = jdl.encode()
        info = tarfile.TarInfo(".drover/job.jdl")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def percentile(values, p):
    values = sorted(values)
    k = max(0, min(len(values) - 1, int(round(p / 100 * (len(values) - 1)))))
    return values[k]


class KeepAlive:
    """Requests to a controller over one kept-alive HTTP connection."""

    def __init__(self, ctl):
        import http.client
        host, port = ctl.url[len("http://"):].split(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=120)
        self.token = ctl.token

    def request(self, method, path, body=None):
        headers = {"Content-Type": "application/json"} if body is not None else {}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        data = json.dumps(body).encode() if body is not None else None
        self.conn.request(method, path, body=data, headers=headers)
        resp = self.conn.getresponse()
        text = resp.read()
        if resp.status >= 400:
            raise RuntimeError(f"{method} {path}: {resp.status} {text[:500]!r}")
        return json.loads(text) if text else None

    def close(self):
        self.conn.close()


def submit_bench(work, singles, bulk_n):
    # No workers: submission alone is measured, every job stays queued.
    ctl = Drover(work, "--max-workers", "0")
    try:
        jdl = '[\n  Executable = "/bin/true";\n]\n'
        archive = input_archive(jdl)
        inline = base64.b64encode(archive).decode()
        api = KeepAlive(ctl)
        # Single submits: allocate, then submit with the (small) input along:
        # two requests, over one kept-alive connection as a client library would.
        lat = []
        start = time.perf_counter()
        for _ in range(singles):
            t0 = time.perf_counter()
            job = api.request("POST", "/v1/jobs")["id"]
            api.request("POST", f"/v1/jobs/{job}/submit", {"jdl": jdl, "input": inline})
            lat.append(time.perf_counter() - t0)
        single_rate = singles / (time.perf_counter() - start)
        # Bulk through the API: 500 a batch, inputs along, two requests a batch.
        batch_lat = []
        start = time.perf_counter()
        done = 0
        while done < bulk_n:
            k = min(500, bulk_n - done)
            t0 = time.perf_counter()
            ids = api.request("POST", "/v1/batches", {"count": k})["ids"]
            api.request("POST", "/v1/batches/submit",
                        {"jobs": [{"id": j, "jdl": jdl, "input": inline} for j in ids]})
            batch_lat.append(time.perf_counter() - t0)
            done += k
        bulk_rate = bulk_n / (time.perf_counter() - start)
        api.close()
        # Bulk through the CLI: a parametric JDL, packed and uploaded by `drover submit`.
        sweep = ctl.dir / "sweep.jdl"
        sweep.write_text(BARE_JDL.format(n=bulk_n))
        start = time.perf_counter()
        ctl.cli("submit", str(sweep))
        cli_rate = bulk_n / (time.perf_counter() - start)
        queued = ctl.count("queued", singles + 2 * bulk_n + 1)
        assert queued == singles + 2 * bulk_n, f"{queued} queued"
        return {
            "single_jobs_per_s": single_rate,
            "single_p50_ms": 1000 * percentile(lat, 50),
            "single_p99_ms": 1000 * percentile(lat, 99),
            "bulk_api_jobs_per_s": bulk_rate,
            "bulk_batch500_p50_ms": 1000 * percentile(batch_lat, 50),
            "bulk_batch500_p99_ms": 1000 * percentile(batch_lat, 99),
            "bulk_cli_jobs_per_s": cli_rate,
        }
    finally:
        ctl.stop()


# --------------------------------------------------------------------------
# 3. Dispatch latency and 4. failure detection
# --------------------------------------------------------------------------


def dispatch_bench(work, samples):
    ctl = Drover(work, *controller_flags(1, NPROC))
    try:
        wait_workers(ctl, 1)
        jdl = '[\n  Executable = "/bin/true";\n]\n'
        archive = input_archive(jdl)
        lat = []
        for _ in range(samples):
            job = ctl.request("POST", "/v1/jobs")["id"]
            ctl.request("PUT", f"/v1/jobs/{job}/input", raw=archive)
            queued = ctl.request("POST", f"/v1/jobs/{job}/submit", {"jdl": jdl})["queued_at"]
            done = ctl.request("GET", f"/v1/jobs/{job}/wait?timeout_ms=30000")
            lat.append(done["attempts"][0]["started_at"] - queued)
        return {"dispatch_p50_ms": percentile(lat, 50), "dispatch_p99_ms": percentile(lat, 99)}
    finally:
        ctl.stop()


def failure_bench(work, heartbeat, ping, how=signal.SIGKILL):
    """Time from a worker's failure to its job running on the other worker.

    SIGKILL: the process is gone, which the local fleet sees at its next look.
    SIGSTOP: the worker hangs (alive but silent, as behind a network partition),
    so only the missed heartbeats tell."""
    flags = controller_flags(2, 1, heartbeat, ping) if heartbeat else controller_flags(2, 1)
    ctl = Drover(work, *flags)
    try:
        wait_workers(ctl, 2)
        jdl = ctl.dir / "long.jdl"
        jdl.write_text('[\n  Executable = "/bin/sleep";\n  Arguments = "600";\n]\n')
        job = ctl.cli("submit", str(jdl)).stdout.strip()
        while True:
            j = ctl.request("GET", f"/v1/jobs/{job}")
            if j["state"] == "running":
                break
            time.sleep(0.02)
        worker = j["attempts"][-1]["worker"]
        victims = [pid for pid, cmd in ctl.worker_pids() if worker in cmd]
        assert victims, f"no process for worker {worker}: {ctl.worker_pids()}"
        killed = time.time()
        for pid in victims:
            os.kill(pid, how)
        while True:
            j = ctl.request("GET", f"/v1/jobs/{job}")
            if len(j["attempts"]) >= 2 and j["attempts"][-1].get("started_at"):
                break
            if time.time() - killed > 120:
                raise RuntimeError(f"job not rerun: {j}")
            time.sleep(0.02)
        return {"rerun_s": (j["attempts"][-1]["started_at"] / 1000) - killed}
    finally:
        if how == signal.SIGSTOP:
            for pid, _ in ctl.worker_pids():
                os.kill(pid, signal.SIGCONT)
        ctl.stop()


# --------------------------------------------------------------------------
# 5. Controller scale (a Rust example drives the reconcilers and the store)
# --------------------------------------------------------------------------


def scale_bench(skip_build):
    cmd = ["cargo", "run", "--release", "-q", "--example", "scale", "--", "100000", "1000"]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------
# 6. AWS calls per job (an integration test against moto)
# --------------------------------------------------------------------------


def ensure_moto():
    """moto server, as .ci/run installs it (the test would install it into a
    virtualenv under target/ itself; installing it here first saves that)."""
    if shutil.which("moto_server"):
        return
    log("installing moto[server] (pip install 'moto[server]')")
    if subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "moto[server]"]).returncode:
        log("pip install moto failed; the test will install it itself")


def aws_bench():
    """tests/aws_calls.rs: a controller on moto with DynamoDB, S3, EC2 and SNS
    runs 100 jobs with sandboxes and 100 bare ones; its `drover_aws_calls_total`
    counters, less the idle background, give the calls per job. A debug build:
    call counts do not depend on optimisation, and the test build is shared."""
    ensure_moto()
    cmd = ["cargo", "test", "--all-features", "--test", "aws_calls", "--", "--nocapture"]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    line = next((l for l in out.stdout.splitlines() if l.startswith("FIGURES aws_calls_per_job ")), None)
    if line is None:
        raise RuntimeError(f"no FIGURES line from {' '.join(cmd)}:\n{out.stdout[-4000:]}\n{out.stderr[-4000:]}")
    figures = json.loads(line.split(" ", 2)[2])
    figures["test_passed"] = out.returncode == 0
    if out.returncode:
        log("tests/aws_calls.rs failed (a bound was crossed?):\n" + out.stdout[-3000:])
    return figures


def aws_report(a):
    services = ["dynamodb", "s3", "ec2", "sns", "total"]
    idle = a["idle"]
    lines = ["", f"AWS calls per job (moto, {a['workers']} EC2 workers, reconcile {a['reconcile_interval']}, "
                 f"pings {a['ping_interval']}; idle background subtracted)"
                 + ("" if a.get("test_passed", True) else " -- THE TEST FAILED, see above")]
    lines.append("| round | " + " | ".join(services) + " | top operations |")
    lines.append("|---|" + "---:|" * len(services) + "---|")
    for r in a["rounds"]:
        ops = sorted(r["ops_per_job"].items(), key=lambda kv: -kv[1])
        top = ", ".join(f"{k} {v:g}" for k, v in ops[:5])
        lines.append(f"| {r['round']} ({r['jobs']} jobs, {r['seconds']:.0f} s) | "
                     + " | ".join(f"{r['per_job'].get(s, 0):.2f}" for s in services) + f" | {top} |")
    top = ", ".join(f"{k} {v:g}" for k, v in sorted(idle["ops_per_s"].items(), key=lambda kv: -kv[1]))
    lines.append(f"| idle, calls/s ({idle['seconds']:.0f} s) | "
                 + " | ".join(f"{idle['per_s'].get(s, 0):.2f}" for s in services) + f" | {top} |")
    return "\n".join(lines)


# --------------------------------------------------------------------------


def median_of(runs, key):
    return statistics.median(r[key] for r in runs)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=10_000, help="jobs per throughput run (default 10000)")
    ap.add_argument("--runs", type=int, default=3, help="runs of each system (default 3)")
    ap.add_argument("--singles", type=int, default=500, help="single submits measured (default 500)")
    ap.add_argument("--dispatch", type=int, default=50, help="dispatch latency samples (default 50)")
    ap.add_argument("--slots", type=int, default=0, help="slots of drover's worker (default: 2 x cores)")
    ap.add_argument("--skip-build", action="store_true", help="use target/release/drover as it is")
    ap.add_argument("--only", default="throughput,submit,dispatch,failure,scale,aws",
                    help="comma-separated parts (default: all)")
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args()
    parts = set(args.only.split(","))
    slots = args.slots or 2 * NPROC

    if "throughput" in parts:
        ensure_parallel()
        py = ensure_hyperqueue()
    if parts & {"throughput", "submit", "dispatch", "failure"}:
        build_drover(args.skip_build)
    work = Path(tempfile.mkdtemp(prefix="drover-bench-"))
    results = {"machine": machine(), "jobs": args.jobs, "runs": args.runs, "slots": slots}
    try:
        if "throughput" in parts:
            t = {"drover_sandboxes": [], "drover_bare": [], "hyperqueue": [], "parallel": []}
            for r in range(args.runs):
                # Interleaved, so a burst of load from elsewhere hits every system alike.
                log(f"throughput run {r + 1}/{args.runs}: GNU parallel")
                t["parallel"].append(parallel_throughput(args.jobs))
                log(f"throughput run {r + 1}/{args.runs}: HyperQueue")
                t["hyperqueue"].append(hq_throughput(py, work, args.jobs))
                log(f"throughput run {r + 1}/{args.runs}: drover bare")
                t["drover_bare"].append(drover_throughput(work, args.jobs, False, 1, slots))
                log(f"throughput run {r + 1}/{args.runs}: drover with sandboxes")
                t["drover_sandboxes"].append(drover_throughput(work, args.jobs, True, 1, slots))
            results["throughput"] = t
        if "submit" in parts:
            log("submit")
            results["submit"] = [submit_bench(work, args.singles, args.jobs) for _ in range(args.runs)]
        if "dispatch" in parts:
            log("dispatch latency")
            results["dispatch"] = [dispatch_bench(work, args.dispatch) for _ in range(args.runs)]
        if "failure" in parts:
            for how, label in ((signal.SIGKILL, "kill"), (signal.SIGSTOP, "hang")):
                log(f"failure detection, worker {label}: default heartbeat (15s timeout, 5s pings)")
                results[f"failure_{label}_default"] = [failure_bench(work, None, None, how)]
                log(f"failure detection, worker {label}: short heartbeat (2s timeout, 300ms pings)")
                results[f"failure_{label}_short"] = [failure_bench(work, "2s", "300ms", how)
                                                     for _ in range(args.runs)]
        if "scale" in parts:
            log("controller scale")
            results["scale"] = [scale_bench(args.skip_build)]
        if "aws" in parts:
            log("AWS calls per job (cargo test --all-features --test aws_calls, against moto)")
            results["aws"] = aws_bench()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    print(report(results))


def machine():
    mem = next((l.split()[1] for l in Path("/proc/meminfo").read_text().splitlines() if l.startswith("MemTotal")), "?")
    return {"nproc": NPROC, "mem_gib": round(int(mem) / 2**20, 1) if mem != "?" else "?",
            "kernel": os.uname().release, "load_before": os.getloadavg()[0]}


def report(res):
    lines = []
    m = res["machine"]
    lines.append(f"machine: {m['nproc']} cores, {m['mem_gib']} GiB, kernel {m['kernel']}, "
                 f"load {m['load_before']:.1f} at start; {res['runs']} runs, medians")
    if "throughput" in res:
        t = res["throughput"]
        med = {k: median_of(v, "jobs_per_s") for k, v in t.items()}
        lines.append("")
        lines.append(f"| throughput, {res['jobs']} no-op jobs | jobs/s (median) | runs |")
        lines.append("|---|---:|---|")
        names = {"drover_sandboxes": "drover, own input sandbox + output archive each",
                 "drover_bare": "drover, bare commands", "hyperqueue": f"HyperQueue {HQ_VERSION}, bare",
                 "parallel": "GNU parallel, bare"}
        for k, v in t.items():
            lines.append(f"| {names[k]} | {med[k]:.0f} | {', '.join('%.0f' % r['jobs_per_s'] for r in v)} |")
        lines.append("")
        writes = statistics.median(r["job_writes_per_job"] for r in t["drover_bare"])
        lines.append(f"job record writes per job (insert + conditional updates): {writes:.2f}")
        for d in ("drover_bare", "drover_sandboxes"):
            for p in ("hyperqueue", "parallel"):
                lines.append(f"ratio {d} / {p}: {med[d] / med[p]:.2f}")
    if "submit" in res:
        s = res["submit"]
        lines.append("")
        lines.append("| submit | median |")
        lines.append("|---|---:|")
        for k in s[0]:
            lines.append(f"| {k} | {median_of(s, k):.1f} |")
    if "dispatch" in res:
        d = res["dispatch"]
        lines.append("")
        lines.append(f"dispatch (submit to start, idle cluster): p50 {median_of(d, 'dispatch_p50_ms'):.0f} ms, "
                     f"p99 {median_of(d, 'dispatch_p99_ms'):.0f} ms")
    for k, label in (("failure_kill_default", "killed (SIGKILL), default heartbeat (15s)"),
                     ("failure_kill_short", "killed (SIGKILL), short heartbeat (2s)"),
                     ("failure_hang_default", "hung (SIGSTOP), default heartbeat (15s)"),
                     ("failure_hang_short", "hung (SIGSTOP), short heartbeat (2s)")):
        if k in res:
            lines.append(f"worker {label} to its job running elsewhere: {median_of(res[k], 'rerun_s'):.2f} s")
    if "scale" in res:
        s = res["scale"][0]
        lines.append("")
        lines.append("controller scale: " + ", ".join(f"{k} {v}" for k, v in s.items()))
    if "aws" in res:
        lines.append(aws_report(res["aws"]))
    return "\n".join(lines)


if __name__ == "__main__":
    main()
