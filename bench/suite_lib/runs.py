# SPDX-License-Identifier: BSD-3-Clause
"""One measurement each: start the processes of a configuration, measure
windows, stop everything, return a plain dict (JSON-ready)."""
import os
import re
import subprocess
import time

from .procs import Sampler, Worker, last_json, now, proc_mem_kb, proc_utime_stime
from .peers import PeerError, TestPmd, vp_vm_argv, wait_path
from .stats import median

VM_PATHS = ("A", "C", "D", "E")


class RunError(RuntimeError):
    pass


# ---------------------------------------------------------------- context

class Ctx:
    """What every run needs: binaries, process table, dirs, options."""

    def __init__(self, bins, procs, workdir, log, opts):
        self.bins, self.procs, self.workdir, self.log, self.o = bins, procs, workdir, log, opts
        self.seq = 0
        self.ovs = None          # started on first use, paused between runs
        self.tag = f"vpsuite{os.getpid()}"

    def sockdir(self):
        self.seq += 1
        d = os.path.join(self.workdir, f"r{self.seq:04d}")
        os.makedirs(d, exist_ok=True)
        return d

    def prefix(self, what):
        self.seq += 1
        return f"{self.tag}-{what}{self.seq}"


# ---------------------------------------------------------------- probe

PROBE_RE = re.compile(r"median:\s+([\d.]+) ns before,\s+([\d.]+) ns after")


def probe(ctx):
    """Cross-core one-way latency (ns) between cores 0 and 1, ring-bench's probe."""
    try:
        r = subprocess.run([ctx.bins["ring-bench"], "--seconds", "0.1", "--dir", "tx",
                            "--cores", "0,1"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = PROBE_RE.search(r.stdout + r.stderr)
    if not m:
        return None
    return [float(m.group(1)), float(m.group(2))]


# ---------------------------------------------------------------- helpers

def wait_log(proc, text, timeout):
    end = now() + timeout
    while now() < end:
        try:
            with open(proc.logpath + ".err", errors="replace") as f:
                if text in f.read():
                    return True
        except OSError:
            pass
        if not proc.alive():
            break
        time.sleep(0.05)
    raise RunError(f"{proc.name}: no '{text}' within {timeout} s")


def link_up(links):
    return "down" not in links and not links.startswith("0 ")


def snapshot_mem(procs_by_label):
    out = {}
    for label, pid in procs_by_label.items():
        rss, pss = proc_mem_kb(pid)
        out[label] = {"rss_kb": rss, "pss_kb": pss, "cpu_s_total": proc_utime_stime(pid)}
    return out


def wait_windows(ctx, vms, need, timeout):
    """Wait until each VM in vms has `need` progress lines after link-up."""
    end = now() + timeout
    while True:
        ok = True
        for vm in vms:
            with vm.progress_cv:
                ups = [i for i, r in enumerate(vm.progress) if link_up(r["links"])]
                have = len(vm.progress) - ups[0] - 1 if ups else 0
                if have < need:
                    ok = False
                    if not vm.alive():
                        raise RunError(f"{vm.name} exited early (see {vm.logpath}.err)")
                    vm.progress_cv.wait(timeout=0.2)
        if ok:
            return
        if now() > end:
            raise RunError("timed out waiting for measuring windows: " + ", ".join(
                f"{v.name}: {len(v.progress)} lines" for v in vms))


def vm_windows(sampler, vm, key, warm):
    """Windows between consecutive progress lines after link-up + warm-up."""
    recs = vm.progress
    ups = [i for i, r in enumerate(recs) if link_up(r["links"])]
    if not ups:
        return []
    out = []
    for i in range(ups[0] + 1 + warm, len(recs)):
        a, b = recs[i - 1], recs[i]
        if not (link_up(a["links"]) and link_up(b["links"])):
            continue
        w = sampler.window(a["snap"], b["snap"])
        w["mpps"] = b[key]
        out.append(w)
    return out


def summarize(windows_by_dir, size, opts_valid_only=True):
    """Run value = sum over directions of the median over valid windows."""
    val, per = 0.0, {}
    nvalid = ntotal = 0
    for d, ws in windows_by_dir.items():
        ntotal += len(ws)
        good = [w for w in ws if w["valid"]]
        nvalid += len(good)
        m = median([w["mpps"] for w in good])
        per[d] = m
        if m is None:
            val = None
        elif val is not None:
            val += m
    return val, per, nvalid, ntotal


def cpu_per_pkt(windows, total_mpps):
    """ns of CPU (all processes of the configuration) per delivered packet."""
    xs = []
    for w in windows:
        if w["valid"] and total_mpps and w["dt"] > 0:
            xs.append(w["cpu_total_s"] / (total_mpps * 1e6 * w["dt"]) * 1e9)
    return median(xs)


def stop_vms(ctx, vms):
    reports = {}
    for vm in vms:
        ctx.procs.stop(vm)
    for vm in vms:
        reports[vm.name] = last_json(vm.logpath + ".out")
    return reports


# ---------------------------------------------------------------- switches

class Switch:
    """The middle box of paths C, D, E: start/resume before a run, pause/stop after."""

    def __init__(self, ctx, kind):
        self.ctx, self.kind = ctx, kind
        self.tp = None
        self.vs = None
        self.sockdir = None

    def ports(self):
        if self.kind == "C":
            return self.ctx.ovs.sock("vhu1"), self.ctx.ovs.sock("vhu2")
        if self.kind == "D":
            return os.path.join(self.sockdir, "d0.sock"), os.path.join(self.sockdir, "d1.sock")
        return os.path.join(self.sockdir, "vsw.sock"), os.path.join(self.sockdir, "vsw.sock")

    def up(self, sampler, core=1):
        ctx = self.ctx
        if self.kind == "C":
            ensure_ovs(ctx)
            ctx.ovs.resume()
            sampler.add_worker(Worker("ovs-pmd", ctx.ovs.vsp.pid, ctx.ovs.pmd_tid(), core, True))
            sampler.add_proc("ovs-vswitchd", ctx.ovs.vsp.pid)
            sampler.add_proc("ovsdb-server", ctx.ovs.dbp.pid)
        elif self.kind == "D":
            self.sockdir = ctx.sockdir()
            a, b = self.ports()
            self.tp = TestPmd(ctx.procs, "testpmd-io", ctx.prefix("io"), f"0@0,1@{core}",
                              [f"net_vhost0,iface={a},queues=1", f"net_vhost1,iface={b},queues=1"],
                              "io", 64, sampler, core)
            self.tp.wait_ready()
            self.tp.cmd("start")
            sampler.add_worker(Worker("testpmd-io", self.tp.p.pid, self.tp.worker_tid(), core, True))
            sampler.add_proc("testpmd-io", self.tp.p.pid)
        else:
            self.sockdir = ctx.sockdir()
            a, _ = self.ports()
            self.vs = ctx.procs.spawn("vp-vswitch", [
                ctx.bins["vp-vswitch"], "--listen", a, "--ports", "2", "--mode", "poll",
                "--cpu", str(core), "--json", "--quiet", "--log-level", "warn"])
            if not wait_path(a, 10, self.vs):
                raise RunError("vp-vswitch did not listen")
            sampler.add_worker(Worker("vp-vswitch", self.vs.pid, self.vs.pid, core, True))
            sampler.add_proc("vp-vswitch", self.vs.pid)

    def down(self):
        ctx = self.ctx
        if self.kind == "C":
            time.sleep(0.3)   # let OVS see the frontends go
            ctx.ovs.pause()
        elif self.kind == "D":
            self.tp.stop()
        else:
            ctx.procs.stop(self.vs)
            return last_json(self.vs.logpath + ".out")
        return None


def ensure_ovs(ctx):
    from .peers import Ovs
    if ctx.ovs is None:
        ctx.log("  starting a private OVS-DPDK (ovsdb-server + ovs-vswitchd, one PMD on core 1)")
        d = os.path.join(ctx.workdir, "ovs")
        ports = ["vhu1", "vhu2", "c1o", "c2i", "c2o", "c3i", "c3o", "c4i", "c4o", "c5i"]
        flows = [("vhu1", "vhu2"), ("vhu2", "vhu1"), ("c1o", "c2i"), ("c2o", "c3i"),
                 ("c3o", "c4i"), ("c4o", "c5i")]
        ovs = Ovs(ctx.procs, d, ctx.prefix("ovs"), pmd_core=1, main_core=0, log=ctx.log)
        ctx.ovs = ovs
        ovs.start(ports, flows)
        ovs.pmd_tid()
    return ctx.ovs


# ---------------------------------------------------------------- throughput: VM paths

def run_vm_tput(ctx, path, direction, size):
    """A (vhost-pci), A21 (2.1 pair), AV / AP (A's VMs over vhost-user on split / packed
    rings), C (OVS), D (testpmd io), E (vp-vswitch) with vp-vm VMs.

    direction: fe2be | be2fe (A, A21 only) | bidir | loop. For C/D/E 'fe2be' means
    VM1 -> switch -> VM2 (the only one-way direction there). For A21 the
    'backend' is the peer serving the pair broker, the 'frontend' the one
    joining it."""
    o = ctx.o
    sampler = Sampler()
    vms, measured, sw = [], [], None
    res = {"test": "tput", "path": path, "dir": direction, "size": size}
    res["probe_ns"] = probe(ctx)
    try:
        if path in ("A", "A21", "AV", "AP"):
            be_role, fe_role = ("pair21-serve", "pair21") if path == "A21" else ("backend", "frontend")
            d = ctx.sockdir()
            sock = os.path.join(d, "be.sock")
            mode = "poll"
            # the frontend's default features, plus packed rings for AP
            fe_extra = ["--features", "mrg_rxbuf,event_idx,indirect_desc,ring_packed"] \
                if path == "AP" else []
            be_app, fe_app = {"fe2be": ("sink", "gen"), "be2fe": ("gen", "sink"),
                              "bidir": ("gen", "gen"), "loop": ("echo", "echo")}[direction]
            # the loop is testpmd's: both sides reflect, each injected 1024
            # frames first ('start tx_first 32' = 32 bursts of 32 per port)
            extra = ["--tx-first", "1024", "--size", str(size)] if direction == "loop" else []
            be = ctx.procs.spawn("vm-be-" + be_app, vp_vm_argv(
                ctx.bins, be_role, sock, be_app, 1, mode, size, name="be",
                seconds=600 if be_app == "gen" else None, extra=extra),
                pipe_err=True, sampler=sampler)
            if not wait_path(sock, 10, be):
                raise RunError("backend VM did not listen")
            fe = ctx.procs.spawn("vm-fe-" + fe_app, vp_vm_argv(
                ctx.bins, fe_role, sock, fe_app, 0, mode, size, name="fe",
                vhost_user=path in ("AV", "AP"),
                seconds=600 if fe_app == "gen" else None, extra=extra + fe_extra),
                pipe_err=True, sampler=sampler)
            vms = [fe, be]
            sampler.add_worker(Worker("vm-fe", fe.pid, fe.pid, 0, True))
            sampler.add_worker(Worker("vm-be", be.pid, be.pid, 1, True))
            sampler.add_proc("vm-fe", fe.pid)
            sampler.add_proc("vm-be", be.pid)
            measured = {"fe2be": [(be, "rx", "fe2be")], "be2fe": [(fe, "rx", "be2fe")],
                        "bidir": [(be, "rx", "fe2be"), (fe, "rx", "be2fe")],
                        "loop": [(fe, "rx", "loop")]}[direction]
        else:
            sw = Switch(ctx, path)
            sw.up(sampler, core=1)
            s1, s2 = sw.ports()
            mode = "adaptive"
            a1, a2 = {"fe2be": ("gen", "sink"), "bidir": ("gen", "gen"),
                      "loop": ("gen", "echo")}[direction]
            vm2 = ctx.procs.spawn("vm2-" + a2, vp_vm_argv(
                ctx.bins, "frontend", s2, a2, 0, mode, size, vhost_user=True, name="vm2",
                seconds=600 if a2 == "gen" else None), pipe_err=True, sampler=sampler)
            time.sleep(0.2)
            vm1 = ctx.procs.spawn("vm1-" + a1, vp_vm_argv(
                ctx.bins, "frontend", s1, a1, 0, mode, size, vhost_user=True, name="vm1",
                seconds=600 if a1 == "gen" else None), pipe_err=True, sampler=sampler)
            vms = [vm1, vm2]
            # both VMs share core 0; the generator never idles, so the core
            # must be ours all the time
            sampler.add_worker(Worker("vm1", vm1.pid, vm1.pid, 0, True))
            sampler.add_worker(Worker("vm2", vm2.pid, vm2.pid, 0, a2 == "gen"))
            sampler.add_proc("vm1", vm1.pid)
            sampler.add_proc("vm2", vm2.pid)
            measured = {"fe2be": [(vm2, "rx", "1to2")],
                        "bidir": [(vm2, "rx", "1to2"), (vm1, "rx", "2to1")],
                        "loop": [(vm1, "rx", "loop")]}[direction]
        mvms = list({id(m[0]): m[0] for m in measured}.values())
        wait_windows(ctx, mvms, o.warm + o.windows, timeout=o.warm + o.windows + 25)
        res["mem"] = snapshot_mem(sampler.procs)
        wins = {lab: vm_windows(sampler, vm, key, o.warm) for vm, key, lab in measured}
    finally:
        reps = stop_vms(ctx, vms)
        if sw is not None:
            swrep = sw.down()
            if swrep:
                reps["vp-vswitch"] = swrep
    return finish(res, wins, reps, size)


def finish(res, wins, reps, size):
    val, per, nv, nt = summarize(wins, size)
    # the same without the CPU-share filter, to show what dropping changed
    unf = 0.0
    for ws in wins.values():
        m = median([w["mpps"] for w in ws])
        unf = None if m is None or unf is None else unf + m
    res.update(mpps=val, per_dir=per, n_valid=nv, n_windows=nt, mpps_unfiltered=unf,
               gbps=val * size * 8 / 1e3 if val else None,
               windows=wins, reports=reps)
    allw = [w for ws in wins.values() for w in ws]
    first = next(iter(wins.values()), [])
    res["cpu_ns_per_pkt"] = cpu_per_pkt(first, val)
    res["foreign_cpu"] = median([w["foreign_cpu"] for w in allw])
    res["steal_s"] = sum(w["steal_s"] for w in allw)
    bad = sum((r or {}).get("corrupt", 0) for r in reps.values() if isinstance(r, dict))
    res["corrupt"] = bad
    why = sorted({w["why"] for w in allw if not w["valid"] and w["why"]})
    res["invalid_why"] = why[:4]
    return res


# ---------------------------------------------------------------- throughput: DPDK pair (B)

def run_dpdk_tput(ctx, direction, size):
    """B: testpmd vhost (core 0) <-> testpmd virtio-user (core 1)."""
    o = ctx.o
    sampler = Sampler()
    res = {"test": "tput", "path": "B", "dir": direction, "size": size}
    res["probe_ns"] = probe(ctx)
    d = ctx.sockdir()
    sock = os.path.join(d, "vhost.sock")
    modes = {"be2fe": ("txonly", "rxonly"), "fe2be": ("rxonly", "txonly"),
             "bidir": ("flowgen", "flowgen"), "loop": ("mac", "mac")}[direction]
    vh = vu = None
    try:
        vh = TestPmd(ctx.procs, "testpmd-vhost", ctx.prefix("vh"), "0@0,1@0",
                     [f"net_vhost0,iface={sock},queues=1"], modes[0], size, sampler, 0)
        vh.wait_ready()
        if not wait_path(sock, 10, vh.p):
            raise RunError("testpmd vhost: no socket")
        vu = TestPmd(ctx.procs, "testpmd-virtio", ctx.prefix("vu"), "0@1,1@1",
                     [f"net_virtio_user0,path={sock},queues=1,queue_size=1024"], modes[1], size,
                     sampler, 1)
        vu.wait_ready()
        sampler.add_worker(Worker("testpmd-vhost", vh.p.pid, vh.worker_tid(), 0, True))
        sampler.add_worker(Worker("testpmd-virtio", vu.p.pid, vu.worker_tid(), 1, True))
        sampler.add_proc("testpmd-vhost", vh.p.pid)
        sampler.add_proc("testpmd-virtio", vu.p.pid)
        start = "start tx_first 32" if direction == "loop" else "start"
        # the receiver first
        first, second = (vu, vh) if direction == "be2fe" else (vh, vu)
        first.cmd(start)
        second.cmd(start)
        time.sleep(0.3)
        meas = {"be2fe": [(vu, "be2fe")], "fe2be": [(vh, "fe2be")],
                "bidir": [(vh, "fe2be"), (vu, "be2fe")], "loop": [(vu, "loop")]}[direction]
        snaps = []
        t_next = now() + 1.0
        for i in range(o.warm + o.windows + 1):
            time.sleep(max(0.0, t_next - now()))
            t_next += 1.0
            snap = sampler.sample()
            counts = {}
            for tp, lab in meas:
                t, st = tp.stats()
                counts[lab] = (t, st[0][0])
            snaps.append((snap, counts))
        res["mem"] = snapshot_mem(sampler.procs)
        wins = {lab: [] for _, lab in meas}
        for i in range(o.warm + 1, len(snaps)):
            (sa, ca), (sb, cb) = snaps[i - 1], snaps[i]
            for lab in wins:
                w = sampler.window(sa, sb)
                dt = cb[lab][0] - ca[lab][0]
                w["mpps"] = (cb[lab][1] - ca[lab][1]) / dt / 1e6 if dt > 0 else None
                wins[lab].append(w)
    finally:
        for tp in (vu, vh):
            if tp is not None:
                tp.stop()
    return finish(res, wins, {}, size)


# ---------------------------------------------------------------- latency

def run_latency(ctx, path, mode):
    """64 B ping-pong round trip. mode: poll (the pinging VM and, on A, the
    echo VM busy-poll) or irq (both VMs sleep on eventfds). DPDK and OVS
    always poll."""
    o = ctx.o
    sampler = Sampler()
    res = {"test": "lat", "path": path, "mode": mode, "size": 64}
    res["probe_ns"] = probe(ctx)
    vms, tp, sw = [], None, None
    secs = o.lat_seconds
    try:
        if path in ("A", "A21"):
            be_role, fe_role = ("pair21-serve", "pair21") if path == "A21" else ("backend", "frontend")
            d = ctx.sockdir()
            sock = os.path.join(d, "be.sock")
            be = ctx.procs.spawn("vm-be-echo", vp_vm_argv(ctx.bins, "backend", sock, "echo", 1, mode),
                                 pipe_err=True, sampler=sampler)
            wait_path(sock, 10, be)
            sampler.add_worker(Worker("vm-be", be.pid, be.pid, 1, mode == "poll"))
            sampler.add_proc("vm-be", be.pid)
            vms.append(be)
            target, vu = sock, False
        elif path == "B":
            d = ctx.sockdir()
            sock = os.path.join(d, "vhost.sock")
            tp = TestPmd(ctx.procs, "testpmd-vhost-io", ctx.prefix("lat"), "0@1,1@1",
                         [f"net_vhost0,iface={sock},queues=1"], "io", 64, sampler, 1)
            tp.wait_ready()
            tp.cmd("start")
            sampler.add_worker(Worker("testpmd-io", tp.p.pid, tp.worker_tid(), 1, True))
            sampler.add_proc("testpmd-io", tp.p.pid)
            target, vu = sock, True
        else:  # C: ping VM1 -> OVS -> echo VM2 -> OVS -> VM1
            sw = Switch(ctx, "C")
            sw.up(sampler, core=1)
            s1, s2 = sw.ports()
            echo = ctx.procs.spawn("vm2-echo", vp_vm_argv(ctx.bins, "frontend", s2, "echo", 0, "irq",
                                                          vhost_user=True, name="vm2"),
                                   pipe_err=True, sampler=sampler)
            sampler.add_worker(Worker("vm2", echo.pid, echo.pid, 0, False))
            sampler.add_proc("vm2", echo.pid)
            vms.append(echo)
            time.sleep(0.3)
            target, vu = s1, True
        ping = ctx.procs.spawn("vm-ping", vp_vm_argv(ctx.bins, "frontend", target, "ping", 0, mode,
                                                     vhost_user=vu, seconds=secs, name="ping"),
                               pipe_err=True, sampler=sampler)
        sampler.add_worker(Worker("vm-ping", ping.pid, ping.pid, 0, mode == "poll"))
        sampler.add_proc("vm-ping", ping.pid)
        vms.insert(0, ping)
        end = now() + secs + 25
        while ping.alive() and now() < end:
            time.sleep(0.05)
            if len(ping.progress) >= 2 and "mem" not in res:
                res["mem"] = snapshot_mem(sampler.procs)
        wins = vm_windows(sampler, ping, "rx", 1)   # the first second holds the start-up
    finally:
        reps = stop_vms(ctx, vms)
        if tp is not None:
            tp.stop()
        if sw is not None:
            sw.down()
    rep = reps.get("vm-ping") or {}
    lat = rep.get("lat_ns") or {}
    # no window (a ping shorter than 2 s): not checked
    allv = all(w["valid"] for w in wins) if wins else None
    res.update(lat_warm=1, p50_us=lat.get("p50", 0) / 1e3 if lat else None,
               p99_us=lat.get("p99", 0) / 1e3 if lat else None,
               p999_us=lat.get("p999", 0) / 1e3 if lat else None,
               samples=lat.get("samples"), pongs=rep.get("pongs"), lost=rep.get("lost"),
               n_valid=sum(w["valid"] for w in wins), n_windows=len(wins), valid=allv,
               foreign_cpu=median([w["foreign_cpu"] for w in wins]), windows={"ping": wins},
               reports=reps)
    if not lat or not lat.get("samples"):
        res["valid"] = False
        res["error"] = "no pongs"
    return res


# ---------------------------------------------------------------- zero loss

def zl_trial(ctx, path, rate, size=64):
    """One trial at `rate` pps: 1 s warm-up, then o.zl_windows 1 s windows.
    Returns (passed, detail dict).

    The generator starts when its link is up; a vSwitch may still be setting
    its port up then, and vp-vm's rate limiter sends what it could not send
    at once in a catch-up burst: the warm-up second is not judged (RFC 2544's
    trials also start after a learning phase). A and C: loss = sequence gaps
    the sink found inside the windows. B: testpmd only counts, so loss = all
    frames sent minus all received over the trial (our frontend's TX ring
    backpressures, so DPDK's vhost backend cannot lose them silently)."""
    o = ctx.o
    secs = 2.5 + o.zl_windows
    sampler = Sampler()
    vms, tp, sw = [], None, None
    before = rx = None
    try:
        if path in ("A", "A21"):
            be_role, fe_role = ("pair21-serve", "pair21") if path == "A21" else ("backend", "frontend")
            d = ctx.sockdir()
            sock = os.path.join(d, "be.sock")
            rx = ctx.procs.spawn("vm-be-sink", vp_vm_argv(ctx.bins, "backend", sock, "sink", 1, "poll", size),
                                 pipe_err=True, sampler=sampler)
            wait_path(sock, 10, rx)
            vms.append(rx)
            target, vu, cpu, mode = sock, False, 0, "poll"
        elif path == "B":
            d = ctx.sockdir()
            sock = os.path.join(d, "vhost.sock")
            tp = TestPmd(ctx.procs, "testpmd-vhost-rx", ctx.prefix("zl"), "0@1,1@1",
                         [f"net_vhost0,iface={sock},queues=1"], "rxonly", size, sampler, 1)
            tp.wait_ready()
            tp.cmd("start")
            _, st = tp.stats()
            before = st[0][0]
            target, vu, cpu, mode = sock, True, 0, "poll"
        else:
            sw = Switch(ctx, "C")
            sw.up(sampler, core=1)
            s1, s2 = sw.ports()
            # both VMs on core 0 (the PMD owns core 1), both sleeping on their
            # eventfds when idle (plan: zl_c_*_mode); polling VMs sharing a
            # core starve each other and OVS drops what the sink cannot take
            rx = ctx.procs.spawn("vm2-sink", vp_vm_argv(ctx.bins, "frontend", s2, "sink", 0,
                                                        o.zl_c_sink_mode, size, vhost_user=True),
                                 pipe_err=True, sampler=sampler)
            vms.append(rx)
            wait_log(rx, "link up", 15)
            time.sleep(0.3)
            target, vu, cpu, mode = s1, True, 0, o.zl_c_gen_mode
        gen = ctx.procs.spawn("vm-gen", vp_vm_argv(ctx.bins, "frontend", target, "gen", cpu, mode, size,
                                                   vhost_user=vu, rate=rate, seconds=secs, name="gen"),
                              pipe_err=True, sampler=sampler)
        if path == "B":
            wait_log(gen, "link up", 20)
            time.sleep(1.0)
            t1, st = tp.stats()
            r1 = st[0][0]
            time.sleep(o.zl_windows)
            t2, st = tp.stats()
            win_rate = (st[0][0] - r1) / (t2 - t1)
            win_lost = 0
        end = now() + secs + 25
        while gen.alive() and now() < end:
            time.sleep(0.05)
        time.sleep(0.3)
        reps = stop_vms(ctx, [gen] + vms)
        g = reps.get("vm-gen") or {}
        sent = g.get("tx_packets", 0)
        if path == "B":
            _, st = tp.stats()
            got = st[0][0] - before - (1 if g.get("ok") else 0)
            lost_all = sent - got
            win_lost = max(0, lost_all)
        else:
            r = reps.get(rx.name) or {}
            got = r.get("received", 0)
            lost_all = sent - got
            recs = rx.progress
            ups = [i for i, x in enumerate(recs) if x["links"] and link_up(x["links"]) and x["ok"] > 0]
            win_rate, win_lost = 0.0, None
            if ups and len(recs) >= ups[0] + 2 + o.zl_windows:
                i0 = ups[0] + 1          # the first full second of traffic ends here
                i1 = i0 + o.zl_windows
                a, b = recs[i0], recs[i1]
                dt = b["t"] - a["t"]
                win_rate = (b["ok"] - a["ok"]) / dt if dt > 0 else 0.0
                win_lost = b["lost"] - a["lost"]
    finally:
        stop_vms(ctx, vms)
        if tp is not None:
            tp.stop()
        if sw is not None:
            sw.down()
    ok = win_lost is not None and win_lost <= 0 and win_rate >= 0.995 * rate
    return ok, {"rate_mpps": rate / 1e6, "sent": sent, "received": got, "lost_total": lost_all,
                "lost": win_lost, "achieved_mpps": win_rate / 1e6, "pass": ok}


def run_zero_loss(ctx, path, hi_pps, size=64):
    o = ctx.o
    res = {"test": "zeroloss", "path": path, "size": size, "probe_ns": probe(ctx), "trials": []}
    lo, hi = 0.0, float(hi_pps)
    best = 0.0
    rate = hi
    for it in range(o.zl_steps):
        ok, det = zl_trial(ctx, path, rate, size)
        res["trials"].append(det)
        ctx.log(f"      {path} {rate / 1e6:7.3f} Mpps offered: {'pass' if ok else 'FAIL'} "
                f"(in the windows: {det['achieved_mpps']:.3f} Mpps delivered, lost {det['lost']}; "
                f"whole trial incl. warm-up: sent {det['sent']}, lost {det['lost_total']})")
        if ok:
            best = max(best, rate)
            lo = rate
            if it == 0:
                break   # the ceiling itself passed
        else:
            hi = rate
            if det["lost"] is not None and det["lost"] <= 0 and det["achieved_mpps"] > 0:
                # nothing lost but held back (backpressure, or the generator's
                # own limit): no higher rate can pass
                hi = min(hi, det["achieved_mpps"] * 1e6)
            if hi <= lo:
                break
        if hi - lo <= o.zl_resolution * hi:
            break
        if not ok and det["lost"] is not None and det["lost"] <= 0 and hi < rate:
            rate = hi * 0.98   # just below what was delivered without loss
        else:
            rate = (lo + hi) / 2 if lo > 0 else hi / 2
    res["mpps"] = best / 1e6
    return res


# ---------------------------------------------------------------- chains

def run_chain(ctx, path, n, size=64):
    """n VMs: gen -> fwd ... -> sink. 'vp': each hop a vhost-pci link, VMs on
    cores 0,1 alternately; 'vpmod': the same with interrupt moderation on
    every link (vp-vm --coalesce); 'ovs': every VM's ports on one OVS (PMD on
    core 1), VMs on core 0. All VMs in the chain mode (irq by default)."""
    o = ctx.o
    sampler = Sampler()
    mode = o.chain_mode
    res = {"test": "chain", "path": path, "vms": n, "size": size, "mode": mode}
    res["probe_ns"] = probe(ctx)
    vms, sw = [], None
    extra = ["--coalesce", o.chain_coalesce] if path == "vpmod" else []
    if extra:
        res["coalesce"] = o.chain_coalesce
    try:
        if path in ("vp", "vpmod"):
            d = ctx.sockdir()
            socks = [os.path.join(d, f"vm{i + 1}.sock") for i in range(n)]
            for k in range(n - 1, -1, -1):
                cpu = k % 2
                if k == 0:
                    argv = vp_vm_argv(ctx.bins, "frontend", socks[1], "gen", cpu, mode, size,
                                      seconds=600, name="vm1", extra=extra)
                elif k == n - 1:
                    argv = vp_vm_argv(ctx.bins, "backend", socks[k], "sink", cpu, mode, size,
                                      name=f"vm{k + 1}", extra=extra)
                else:
                    argv = vp_vm_argv(ctx.bins, "backend", socks[k], "fwd", cpu, mode, size,
                                      port2=f"frontend,connect={socks[k + 1]}", name=f"vm{k + 1}",
                                      extra=extra)
                p = ctx.procs.spawn(f"chain-vm{k + 1}", argv, pipe_err=True, sampler=sampler)
                if k > 0:
                    wait_path(socks[k], 10, p)
                vms.insert(0, p)
                sampler.add_worker(Worker(f"vm{k + 1}", p.pid, p.pid, cpu, False))
                sampler.add_proc(f"vm{k + 1}", p.pid)
        else:
            ovs = ensure_ovs(ctx)
            ovs.resume()
            sampler.add_worker(Worker("ovs-pmd", ovs.vsp.pid, ovs.pmd_tid(), 1, True))
            sampler.add_proc("ovs-vswitchd", ovs.vsp.pid)
            sampler.add_proc("ovsdb-server", ovs.dbp.pid)
            for k in range(n - 1, -1, -1):
                if k == 0:
                    argv = vp_vm_argv(ctx.bins, "frontend", ovs.sock("c1o"), "gen", 0, mode, size,
                                      vhost_user=True, seconds=600, name="vm1")
                elif k == n - 1:
                    argv = vp_vm_argv(ctx.bins, "frontend", ovs.sock(f"c{k + 1}i"), "sink", 0, mode,
                                      size, vhost_user=True, name=f"vm{k + 1}")
                else:
                    argv = vp_vm_argv(ctx.bins, "frontend", ovs.sock(f"c{k + 1}i"), "fwd", 0, mode,
                                      size, vhost_user=True,
                                      port2=f"frontend,connect={ovs.sock(f'c{k + 1}o')},vhost-user",
                                      name=f"vm{k + 1}")
                p = ctx.procs.spawn(f"ovschain-vm{k + 1}", argv, pipe_err=True, sampler=sampler)
                vms.insert(0, p)
                sampler.add_worker(Worker(f"vm{k + 1}", p.pid, p.pid, 0, False))
                sampler.add_proc(f"vm{k + 1}", p.pid)
            time.sleep(0.2)
        sink = vms[-1]
        wait_windows(ctx, [sink], o.warm + o.windows, timeout=o.warm + o.windows + 30)
        res["mem"] = snapshot_mem(sampler.procs)
        wins = vm_windows(sampler, sink, "rx", o.warm)
    finally:
        reps = stop_vms(ctx, vms)
        if path == "ovs" and ctx.ovs is not None:
            time.sleep(0.3)
            ctx.ovs.pause()
    for w in wins:
        # in irq mode nobody owns a core: a window is also dropped when other
        # tasks (or the host: steal) took more than 5% of one CPU
        if w["valid"] and (w["foreign_cpu"] or 0) + w["steal_s"] / max(w["dt"], 1e-9) > 0.05:
            w["valid"] = False
            w["why"] = f"foreign {w['foreign_cpu'] * 100:.1f}% of a CPU"
    good = [w for w in wins if w["valid"]]
    res["mpps"] = median([w["mpps"] for w in good])
    res["mpps_unfiltered"] = median([w["mpps"] for w in wins])
    res["pkts_per_cpu_s"] = median([w["mpps"] * 1e6 * w["dt"] / w["cpu_total_s"]
                                    for w in good if w["cpu_total_s"]])
    res["cpu_cores"] = median([w["cpu_total_s"] / w["dt"] for w in good])
    res.update(n_valid=len(good), n_windows=len(wins), windows={"sink": wins}, reports=reps,
               foreign_cpu=median([w["foreign_cpu"] for w in wins]))
    return res


# ---------------------------------------------------------------- vhost-pcid in the middle (cost)

def run_daemon_tput(ctx, size=64):
    """A via vhost-pcid: frontend -> daemon server (backend=) -> backend VM.
    The daemon is only on the control path; this measures its cost (RSS, CPU)."""
    o = ctx.o
    sampler = Sampler()
    res = {"test": "tput", "path": "A-daemon", "dir": "fe2be", "size": size, "probe_ns": probe(ctx)}
    d = ctx.sockdir()
    be_sock, fe_sock, ctl = (os.path.join(d, x) for x in ("be.sock", "net0.sock", "control.sock"))
    vms, dmn = [], None
    try:
        be = ctx.procs.spawn("vm-be-sink", vp_vm_argv(ctx.bins, "backend", be_sock, "sink", 1, "poll", size,
                                                      name="be"), pipe_err=True, sampler=sampler)
        wait_path(be_sock, 10, be)
        dmn = ctx.procs.spawn("vhost-pcid", [ctx.bins["vhost-pcid"], "--control", ctl,
                                             "--log-level", "warn", "--server",
                                             f"path={fe_sock},id=net0,backend={be_sock}"])
        if not wait_path(fe_sock, 10, dmn):
            raise RunError("vhost-pcid did not listen")
        fe = ctx.procs.spawn("vm-fe-gen", vp_vm_argv(ctx.bins, "frontend", fe_sock, "gen", 0, "poll", size,
                                                     seconds=600, name="fe"), pipe_err=True, sampler=sampler)
        vms = [fe, be]
        sampler.add_worker(Worker("vm-fe", fe.pid, fe.pid, 0, True))
        sampler.add_worker(Worker("vm-be", be.pid, be.pid, 1, True))
        for lab, p in (("vm-fe", fe), ("vm-be", be), ("vhost-pcid", dmn)):
            sampler.add_proc(lab, p.pid)
        wait_windows(ctx, [be], o.warm + o.windows, timeout=o.warm + o.windows + 25)
        res["mem"] = snapshot_mem(sampler.procs)
        wins = {"fe2be": vm_windows(sampler, be, "rx", o.warm)}
    finally:
        reps = stop_vms(ctx, vms)
        if dmn is not None:
            ctx.procs.stop(dmn)
    return finish(res, wins, reps, size)
