# SPDX-License-Identifier: BSD-3-Clause
"""Process handling for bench/suite: start, watch, sample, stop, clean up.

Every process the suite starts goes through Procs.spawn(): it runs in its own
session (process group), is remembered, and is stopped (SIGCONT, SIGTERM,
then SIGKILL) by Procs.stop_all(), which the suite calls on every exit path
(normal end, exception, Ctrl-C, SIGTERM).
"""
import os
import queue
import re
import signal
import subprocess
import threading
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")

PROGRESS_RE = re.compile(
    r"vp-vm\[(?P<name>[^\]]+)\]:\s+(?P<t>[\d.]+)s\s+tx\s+(?P<tx>[\d.]+) Mpps\s+rx\s+"
    r"(?P<rx>[\d.]+) Mpps\s+ok (?P<ok>\d+) lost (?P<lost>\d+) bad (?P<bad>\d+)\s+(?P<links>.*)$")


def now():
    return time.monotonic()


# ---------------------------------------------------------------- /proc readers

def read_file(path, default=None):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return default


def thread_run_ns(pid, tid):
    """sum_exec_runtime of one thread (ns), from /proc/PID/task/TID/schedstat."""
    s = read_file(f"/proc/{pid}/task/{tid}/schedstat")
    if not s:
        return None
    return int(s.split()[0])


def proc_run_ns(pid):
    """CPU time of all live threads of a process (ns), from schedstat."""
    total = 0
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    for tid in tids:
        v = thread_run_ns(pid, tid)
        if v is not None:
            total += v
    return total


def proc_utime_stime(pid):
    """utime+stime of the whole process (s), from /proc/PID/stat."""
    s = read_file(f"/proc/{pid}/stat")
    if not s:
        return None
    fields = s[s.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_mem_kb(pid):
    """(VmRSS, Pss) in KiB."""
    rss = pss = None
    s = read_file(f"/proc/{pid}/status", "")
    m = re.search(r"^VmRSS:\s+(\d+)", s, re.M)
    if m:
        rss = int(m.group(1))
    s = read_file(f"/proc/{pid}/smaps_rollup", "")
    m = re.search(r"^Pss:\s+(\d+)", s, re.M)
    if m:
        pss = int(m.group(1))
    return rss, pss


def thread_ids(pid, comm_prefix):
    out = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            c = read_file(f"/proc/{pid}/task/{tid}/comm", "").strip()
            if c.startswith(comm_prefix):
                out.append(int(tid))
    except OSError:
        pass
    return sorted(out)


def cpu_times():
    """Per CPU: (busy_ticks, steal_ticks, total_ticks) from /proc/stat."""
    out = {}
    for line in (read_file("/proc/stat", "") or "").splitlines():
        if line.startswith("cpu") and line[3:4].isdigit():
            f = line.split()
            v = [int(x) for x in f[1:]]
            user, nice, system, idle, iowait, irq, softirq, steal = (v + [0] * 8)[:8]
            busy = user + nice + system + irq + softirq
            out[int(f[0][3:])] = (busy, steal, busy + idle + iowait + steal)
    return out


# ---------------------------------------------------------------- workers

class Worker:
    """A thread that should own (a share of) a core while measuring."""

    def __init__(self, label, pid, tid, core, busy):
        self.label, self.pid, self.tid, self.core, self.busy = label, pid, tid, core, busy


class Sampler:
    """Snapshots of the run: worker thread run time, process CPU, /proc/stat."""

    def __init__(self):
        self.workers = []
        self.procs = {}  # label -> pid
        self.lock = threading.Lock()

    def add_worker(self, w):
        self.workers.append(w)

    def add_proc(self, label, pid):
        self.procs[label] = pid

    def sample(self):
        with self.lock:
            t = now()
            ws = {w.label: thread_run_ns(w.pid, w.tid) for w in self.workers}
            ps = {k: proc_run_ns(p) for k, p in self.procs.items()}
            return {"t": t, "w": ws, "p": ps, "cpu": cpu_times()}

    def window(self, a, b):
        """Describe the window between two samples: shares and validity."""
        dt = b["t"] - a["t"]
        shares = {}
        for w in self.workers:
            x, y = a["w"].get(w.label), b["w"].get(w.label)
            shares[w.label] = (y - x) / 1e9 / dt if x is not None and y is not None and dt > 0 else None
        valid, why = True, []
        cores = sorted({w.core for w in self.workers})
        for c in cores:
            members = [w for w in self.workers if w.core == c]
            if not any(w.busy for w in members):
                continue
            tot = sum(shares[w.label] or 0.0 for w in members)
            if tot < 0.97:
                valid = False
                why.append(f"core {c}: {'+'.join(w.label for w in members)} had {tot * 100:.1f}%")
        cpu_s = {}
        for k in self.procs:
            x, y = a["p"].get(k), b["p"].get(k)
            cpu_s[k] = (y - x) / 1e9 if x is not None and y is not None else None
        busy = steal = tot_ticks = 0
        for c, (bu, st, to) in b["cpu"].items():
            if c in a["cpu"]:
                busy += bu - a["cpu"][c][0]
                steal += st - a["cpu"][c][1]
                tot_ticks += to - a["cpu"][c][2]
        ours = sum(v for v in cpu_s.values() if v)
        machine_busy = busy / CLK_TCK
        return {
            "dt": dt, "shares": shares, "valid": valid, "why": "; ".join(why),
            "cpu_s": cpu_s, "cpu_total_s": ours,
            "machine_busy_s": machine_busy, "steal_s": steal / CLK_TCK,
            "foreign_cpu": max(0.0, machine_busy - ours) / dt if dt > 0 else None,
        }


# ---------------------------------------------------------------- processes

class Proc:
    def __init__(self, name, argv, popen, logpath):
        self.name, self.argv, self.popen, self.logpath = name, argv, popen, logpath
        self.pid = popen.pid
        self.lines = queue.Queue()      # testpmd: stdout lines
        self.progress = []              # vp-vm: (t, parsed dict, sample)
        self.progress_cv = threading.Condition()
        self.stopped = False
        self.paused = False
        self.threads = []

    def alive(self):
        return self.popen.poll() is None

    def send(self, text):
        self.popen.stdin.write(text.encode())
        self.popen.stdin.flush()


class Procs:
    def __init__(self, logdir, log):
        self.logdir = logdir
        self.log = log
        self.all = []
        self.lock = threading.Lock()
        self.seq = 0

    def spawn(self, name, argv, stdin=False, pipe_out=False, pipe_err=False, sampler=None,
              env=None, cwd=None):
        """Start argv. pipe_out: stdout lines go to Proc.lines (and the log).
        pipe_err: stderr is watched for vp-vm progress lines; each one is
        time-stamped and paired with a sampler snapshot."""
        with self.lock:
            self.seq += 1
            seq = self.seq
        base = os.path.join(self.logdir, f"{seq:04d}-{name}")
        out_f = open(base + ".out", "wb")
        err_f = open(base + ".err", "wb")
        p = subprocess.Popen(argv, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                             stdout=subprocess.PIPE if pipe_out else out_f,
                             stderr=subprocess.PIPE if pipe_err else err_f,
                             start_new_session=True, env=env, cwd=cwd)
        pr = Proc(name, argv, p, base)
        pr.out_f, pr.err_f = out_f, err_f
        with self.lock:
            self.all.append(pr)
        if pipe_out:
            t = threading.Thread(target=self._read_out, args=(pr, out_f), daemon=True)
            t.start()
            pr.threads.append(t)
        if pipe_err:
            t = threading.Thread(target=self._read_err, args=(pr, err_f, sampler), daemon=True)
            t.start()
            pr.threads.append(t)
        return pr

    @staticmethod
    def _read_out(pr, f):
        for raw in iter(pr.popen.stdout.readline, b""):
            f.write(raw)
            f.flush()
            pr.lines.put(raw.decode(errors="replace").rstrip("\n"))
        pr.lines.put(None)

    @staticmethod
    def _read_err(pr, f, sampler):
        for raw in iter(pr.popen.stderr.readline, b""):
            t = now()
            line = raw.decode(errors="replace").rstrip("\n")
            m = PROGRESS_RE.search(line)
            if m:
                snap = sampler.sample() if sampler else None
                d = m.groupdict()
                rec = {"t": t, "tx": float(d["tx"]), "rx": float(d["rx"]), "ok": int(d["ok"]),
                       "lost": int(d["lost"]), "bad": int(d["bad"]), "links": d["links"],
                       "snap": snap}
                with pr.progress_cv:
                    pr.progress.append(rec)
                    pr.progress_cv.notify_all()
            f.write(raw)
            f.flush()
        with pr.progress_cv:
            pr.progress_cv.notify_all()

    def pause(self, pr):
        if pr.alive() and not pr.paused:
            os.kill(pr.pid, signal.SIGSTOP)
            pr.paused = True

    def resume(self, pr):
        if pr.paused:
            try:
                os.kill(pr.pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
            pr.paused = False

    def stop(self, pr, timeout=4.0, sig=signal.SIGTERM):
        """Stop one process (its whole process group)."""
        if pr.stopped:
            return pr.popen.returncode
        self.resume(pr)
        if pr.alive():
            try:
                os.killpg(pr.pid, sig)
            except ProcessLookupError:
                pass
            end = now() + timeout
            while pr.alive() and now() < end:
                time.sleep(0.02)
            if pr.alive():
                self.log(f"  {pr.name} (pid {pr.pid}) did not stop on {signal.Signals(sig).name}: SIGKILL")
                try:
                    os.killpg(pr.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                pr.popen.wait()
        # the group may still hold children (none expected): make sure
        try:
            os.killpg(pr.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        for t in pr.threads:
            t.join(timeout=2)
        pr.stopped = True
        for f in (pr.out_f, pr.err_f):
            try:
                f.close()
            except OSError:
                pass
        return pr.popen.returncode

    def stop_all(self):
        with self.lock:
            procs = list(reversed(self.all))
        for pr in procs:
            if not pr.stopped:
                try:
                    self.stop(pr, timeout=3.0)
                except Exception as e:  # keep going: stop the others
                    self.log(f"  stopping {pr.name}: {e}")

    def running(self):
        return [p for p in self.all if not p.stopped and p.alive()]


def last_json(path):
    """The last line of a file that parses as a JSON object."""
    import json
    s = read_file(path, "") or ""
    for line in reversed(s.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                continue
    return None
