# SPDX-License-Identifier: BSD-3-Clause
"""bench/suite profile: where the cycles go, A (vhost-pci) vs B (DPDK).

perf record on both polling processes of a one-way run, then perf report
(self time, per symbol). perf must work in this VM (it does on the 2-vCPU
EPYC guests); otherwise use valgrind --tool=callgrind on a short run."""
import os
import subprocess
import time

from .peers import TestPmd, vp_vm_argv, wait_path
from .procs import Sampler, now


def perf_pair(ctx, outdir, tag, pids, seconds):
    procs = []
    for name, pid in pids:
        data = os.path.join(outdir, f"{tag}-{name}.data")
        procs.append((name, data, subprocess.Popen(
            ["perf", "record", "-F", "1999", "-g", "-o", data, "-p", str(pid), "--", "sleep", str(seconds)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)))
    for _, _, p in procs:
        p.wait(timeout=seconds + 30)
    out = []
    for name, data, _ in procs:
        r = subprocess.run(["perf", "report", "-i", data, "--no-children", "--stdio", "-g", "none",
                            "--percent-limit", "1.5", "--sort", "dso,symbol"],
                           capture_output=True, text=True)
        lines = [l for l in r.stdout.splitlines() if l.strip() and not l.startswith("#")]
        txt = f"### {tag} {name}\n" + "\n".join(lines[:18])
        with open(os.path.join(outdir, f"{tag}-{name}.txt"), "w") as f:
            f.write(r.stdout)
        out.append(txt)
    return out


def run_profile(ctx, outdir, sizes, seconds=2.0):
    report = []
    for size in sizes:
        for d in ("fe2be", "be2fe"):
            # A
            sd = ctx.sockdir()
            sock = os.path.join(sd, "be.sock")
            be_app, fe_app = ("sink", "gen") if d == "fe2be" else ("gen", "sink")
            be = ctx.procs.spawn("prof-be-" + be_app, vp_vm_argv(ctx.bins, "backend", sock, be_app, 1, "poll", size,
                                                                 seconds=600 if be_app == "gen" else None,
                                                                 extra=["--quiet"]))
            wait_path(sock, 10, be)
            fe = ctx.procs.spawn("prof-fe-" + fe_app, vp_vm_argv(ctx.bins, "frontend", sock, fe_app, 0, "poll", size,
                                                                 seconds=600 if fe_app == "gen" else None,
                                                                 extra=["--quiet"]))
            time.sleep(1.5)
            report += perf_pair(ctx, outdir, f"A-{d}-{size}", [("fe-" + fe_app, fe.pid), ("be-" + be_app, be.pid)],
                                seconds)
            ctx.procs.stop(fe)
            ctx.procs.stop(be)
            # B
            sd = ctx.sockdir()
            sock = os.path.join(sd, "vhost.sock")
            modes = ("txonly", "rxonly") if d == "be2fe" else ("rxonly", "txonly")
            smp = Sampler()
            vh = TestPmd(ctx.procs, "prof-testpmd-vhost", ctx.prefix("pvh"), "0@0,1@0",
                         [f"net_vhost0,iface={sock},queues=1"], modes[0], size, smp, 0)
            vh.wait_ready()
            vu = TestPmd(ctx.procs, "prof-testpmd-virtio", ctx.prefix("pvu"), "0@1,1@1",
                         [f"net_virtio_user0,path={sock},queues=1,queue_size=1024"], modes[1], size, smp, 1)
            vu.wait_ready()
            vh.cmd("start")
            vu.cmd("start")
            time.sleep(1.0)
            report += perf_pair(ctx, outdir, f"B-{d}-{size}",
                                [("vhost-" + modes[0], vh.p.pid), ("virtio-" + modes[1], vu.p.pid)], seconds)
            vu.stop()
            vh.stop()
    with open(os.path.join(outdir, "profile.md"), "w") as f:
        f.write("# perf profiles (self time per symbol, >= 1.5%)\n\n```\n" + "\n\n".join(report) + "\n```\n")
    return report
