# SPDX-License-Identifier: BSD-3-Clause
"""results.json -> results.md (tables) + PNG plots."""
import json
import os
import re

from .stats import fmt_mmm, median, mmm

PATHS = {
    "A": "A vhost-pci (vp-vm fe <-> vp-vm be)",
    "B": "B DPDK vhost <-> virtio-user (testpmd)",
    "C": "C VM -> OVS-DPDK -> VM",
    "D": "D VM -> testpmd io -> VM",
    "E": "E VM -> vp-vswitch -> VM",
    "A-daemon": "A via vhost-pcid (backend=)",
    "A21": "A21 2.1 pair (vp-vm peer <-> vp-vm peer over a window)",
    "AV": "AV vhost-pci over vhost-user, split rings (vp-vm fe <-> vp-vm be)",
    "AP": "AP vhost-pci over vhost-user, packed rings (vp-vm fe <-> vp-vm be)",
}
DIRS = {"fe2be": "frontend -> backend", "be2fe": "backend -> frontend",
        "bidir": "bidirectional (sum)", "loop": "loop (per direction)"}


def pair_of(r):
    m = re.search(r"#(\d+)", r.get("label", ""))
    return int(m.group(1)) if m else 0


def group(results, **kw):
    out = []
    for r in results:
        if "error" in r and r.get("test") is None:
            # failed before the runner filled anything in: recover from the label
            pass
        if all(r.get(k) == v for k, v in kw.items()):
            out.append(r)
    return out


def vals(rs, key="mpps"):
    return [r.get(key) for r in rs if r.get(key) is not None]


def ratio_mmm(rs_a, rs_b, key="mpps"):
    a = {pair_of(r): r.get(key) for r in rs_a}
    b = {pair_of(r): r.get(key) for r in rs_b}
    xs = [a[p] / b[p] for p in a if p in b and a[p] and b[p]]
    return mmm(xs), len(xs)


def label_fix(results):
    """Runs that failed early carry only a label: parse it."""
    for r in results:
        if r.get("test"):
            continue
        f = r.get("label", "").split()
        if not f:
            continue
        if f[0] == "tput" and len(f) >= 4:
            r.update(test="tput", path=f[1], dir=f[2], size=int(f[3].rstrip("B")))
        elif f[0] == "lat" and len(f) >= 3:
            r.update(test="lat", path=f[1], mode=f[2])
        elif f[0] == "chain" and len(f) >= 3:
            r.update(test="chain", path=f[1], vms=int(f[2]))
        elif f[0] == "zeroloss":
            r.update(test="zeroloss", path=f[1])


def lat_validity(res):
    """A latency run is valid when every window after the first (start-up)
    was. Runs that did not skip that window themselves (no "lat_warm") are
    judged again here from their stored windows."""
    for r in res:
        if r.get("test") != "lat" or r.get("lat_warm") or "windows" not in r:
            continue
        ws = ((r.get("windows") or {}).get("ping") or [])[1:]
        r["valid"] = all(w["valid"] for w in ws) if ws else None


def render(outdir, log=print):
    with open(os.path.join(outdir, "results.json")) as f:
        doc = json.load(f)
    res = doc["results"]
    label_fix(res)
    lat_validity(res)
    md, summary = tables(doc, res)
    with open(os.path.join(outdir, "results.md"), "w") as f:
        f.write(md)
    with open(os.path.join(outdir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    try:
        plots(outdir, res, summary)
    except ImportError:
        log("matplotlib missing (bench/suite setup): no plots")


# ---------------------------------------------------------------- tables

def tables(doc, res):
    L = []
    S = {"tput": {}, "ratio": {}, "lat": {}, "zl": {}, "chain": {}, "cost": {}}
    m = doc.get("machine", {})
    L.append(f"# bench/suite results ({'quick' if doc.get('quick') else 'full'} run)\n")
    L.append(f"- date {m.get('date')}, git {m.get('git')}, command `{' '.join(doc.get('argv', []))}`")
    c = m.get("lscpu", {})
    L.append(f"- {c.get('Model name')} x{c.get('CPU(s)')} ({c.get('Hypervisor vendor', 'bare metal')} guest), "
             f"L2 {c.get('L2 cache')}, L3 {c.get('L3 cache')}; kernel {m.get('kernel')}; "
             f"DPDK {m.get('dpdk')}; OVS {m.get('ovs')}; gcc {m.get('gcc')}")
    L.append(noise_line(doc, res))
    L.append("")
    L.append("Cells: median over runs (min-max over runs); a run's value is the median of its valid 1 s "
             "windows (a window is dropped when a polling worker, or the threads sharing its core, had "
             "< 97% of the CPU per /proc/PID/task/TID/schedstat). Ratios: median (min-max) of the "
             "per-pair ratios of interleaved runs; 'unfiltered': the median over all windows, dropped ones "
             "included, to show what the filter changed. Mpps per direction unless said. Payload: header-only on "
             "every path (vp-vm --verify header: the sender writes the first 56 B, the receiver checks "
             "them; testpmd txonly/rxonly/flowgen/mac touch headers only). Frame copies per crossing: DPDK one "
             "(vhost copies every mbuf); vhost-pci none backend -> frontend (the backend builds each frame "
             "in the frontend's receive buffer, the frontend checks it there) and one frontend -> backend "
             "(the frontend builds in its transmit slot, the backend copies out); in the loop, two per "
             "round trip, as DPDK's (the backend echo receives into the frontend's receive buffer; the "
             "frontend echo sends each frame back from the buffer it arrived in). 9000 B: one 9216-byte "
             "buffer per frame on the frontend (vp-vm sizes them from --size), 10 KiB mbufs for testpmd "
             "(see docs/performance.md).\n")

    # ---- 2.1 pair vs 2.0 (the pair21 phase: its own A runs, interleaved)
    tp21 = group(res, test="tput")
    rows = []
    for d in DIRS:
        for s in sorted({r["size"] for r in tp21 if r.get("path") == "A21" and r.get("dir") == d}):
            r21 = [r for r in tp21 if r.get("path") == "A21" and r.get("dir") == d and r.get("size") == s]
            r20 = [r for r in tp21 if r.get("path") == "A" and r.get("dir") == d and r.get("size") == s
                   and "(21)" in r.get("label", "")]
            rt, n = ratio_mmm(r21, r20)
            rows.append(f"| {DIRS[d]} | {s} | {fmt_mmm(mmm(vals(r21)))} | {fmt_mmm(mmm(vals(r20)))} | "
                        f"{fmt_mmm(rt)} | {n} |")
    if rows:
        L.append("## 2.1 pair (A21) vs 2.0 (A)\n")
        L.append("| direction | frame B | A21 Mpps | A Mpps | A21/A | pairs |")
        L.append("|---|---|---|---|---|---|")
        L += rows
        L.append("")

    # ---- packed rings vs split (the packed phase: AP and AV interleaved)
    rows = []
    for d in DIRS:
        for s in sorted({r["size"] for r in tp21 if r.get("path") == "AP" and r.get("dir") == d}):
            rp = [r for r in tp21 if r.get("path") == "AP" and r.get("dir") == d and r.get("size") == s]
            rv = [r for r in tp21 if r.get("path") == "AV" and r.get("dir") == d and r.get("size") == s]
            rt, n = ratio_mmm(rp, rv)
            rows.append(f"| {DIRS[d]} | {s} | {fmt_mmm(mmm(vals(rp)))} | {fmt_mmm(mmm(vals(rv)))} | "
                        f"{fmt_mmm(rt)} | {n} |")
    if rows:
        L.append("## Packed rings (AP) vs split (AV)\n")
        L.append("Both: vp-vm frontend over vhost-user to a vp-vm backend (poll mode); AP's frontend "
                 "offers ring_packed, so only the ring layout differs.\n")
        L.append("| direction | frame B | AP Mpps | AV Mpps | AP/AV | pairs |")
        L.append("|---|---|---|---|---|---|")
        L += rows
        L.append("")

    # ---- throughput A vs B
    tp = group(res, test="tput")
    sizes = sorted({r["size"] for r in tp if r.get("path") in ("A", "B")})
    for d in DIRS:
        rows = []
        for s in sizes:
            ra = [r for r in tp if r.get("path") == "A" and r.get("dir") == d and r.get("size") == s
                  and "(vs)" not in r.get("label", "") and "(21)" not in r.get("label", "")]
            rb = [r for r in tp if r.get("path") == "B" and r.get("dir") == d and r.get("size") == s]
            if not ra and not rb:
                continue
            ma, mb = mmm(vals(ra)), mmm(vals(rb))
            rt, n = ratio_mmm(ra, rb)
            S["tput"].setdefault("A", {}).setdefault(d, {})[s] = ma
            S["tput"].setdefault("B", {}).setdefault(d, {})[s] = mb
            S["ratio"].setdefault(d, {})[s] = rt
            gb = f"{ma[0] * s * 8 / 1e3:.2f}" if ma[0] else "-"
            ua, ub = median(vals(ra, "mpps_unfiltered")), median(vals(rb, "mpps_unfiltered"))
            rows.append(f"| {s} | {fmt_mmm(ma)} | {gb} | {fmt_mmm(mb)} | {fmt_mmm(rt)} | {n} | "
                        f"{nvalid(ra)} / {nvalid(rb)} | {fmt(ua)} / {fmt(ub)} |")
        if rows:
            L.append(f"## Throughput, {DIRS[d]}: A vhost-pci vs B DPDK vhost<->virtio-user\n")
            L.append("| frame B | A Mpps | A Gbit/s | B Mpps | A/B | pairs | valid windows A / B | "
                     "unfiltered A / B |")
            L.append("|---|---|---|---|---|---|---|---|")
            L += rows
            L.append("")
    # ---- vSwitch paths
    vs = [r for r in tp if r.get("path") in ("A", "C", "D", "E") and (r.get("path") != "A" or "(vs)" in r.get("label", "")
                                                                       or r.get("dir") == "fe2be")]
    for d in ("fe2be", "bidir", "loop"):
        rows = []
        for s in sorted({r["size"] for r in vs if r.get("dir") == d and r.get("path") != "A"}):
            cells, per = [], {}
            for p in ("A", "C", "D", "E"):
                rr = [r for r in vs if r.get("path") == p and r.get("dir") == d and r.get("size") == s
                      and (p != "A" or d == "fe2be" or "(vs)" in r.get("label", ""))]
                if p == "A" and d == "fe2be":
                    # only the runs interleaved with the switches
                    rr = [r for r in rr if "(vs)" in r.get("label", "")]
                per[p] = rr
                t = mmm(vals(rr))
                S["tput"].setdefault(p, {}).setdefault("vs-" + d, {})[s] = t
                cells.append(fmt_mmm(t))
            rac, _ = ratio_mmm(per["A"], per["C"])
            S["ratio"].setdefault("A/C " + d, {})[s] = rac
            cpp = {p: median(vals(per[p], "cpu_ns_per_pkt")) for p in per}
            rows.append(f"| {s} | " + " | ".join(cells) + f" | {fmt_mmm(rac)} | "
                        + " / ".join(f"{cpp[p]:.0f}" if cpp[p] else "-" for p in ("A", "C", "D", "E")) + " |")
        if rows:
            L.append(f"## VM to VM through a vSwitch, {DIRS[d] if d != 'fe2be' else 'one way (VM1 -> VM2)'}\n")
            L.append("A: vhost-pci, 2 VMs on cores 0 and 1, busy-poll. C/D/E: the switch's polling thread on "
                     "core 1, both VMs (vp-vm --vhost-user, adaptive) on core 0.\n")
            L.append("| frame B | A vhost-pci | C OVS-DPDK | D testpmd io | E vp-vswitch | A/C | CPU ns/pkt A / C / D / E |")
            L.append("|---|---|---|---|---|---|---|")
            L += rows
            L.append("")
    # ---- zero loss
    zl = group(res, test="zeroloss")
    if zl:
        L.append("## Zero-loss throughput, 64 B (binary search on the offered rate, loss = 0 over the window)\n")
        L.append("| path | Mpps at zero loss | searches |")
        L.append("|---|---|---|")
        for p in ("A", "B", "C"):
            rr = [r for r in zl if r.get("path") == p]
            t = mmm(vals(rr))
            S["zl"][p] = t
            L.append(f"| {PATHS[p]} | {fmt_mmm(t, 3)} | {len(vals(rr))} |")
        L.append("\nA: vp-vm gen (frontend, core 0) -> vp-vm sink (vhost-pci backend, core 1). "
                 "B: vp-vm gen (frontend --vhost-user, core 0) -> testpmd vhost PMD rxonly (core 1): testpmd "
                 "has no rate control, so our generator drives DPDK's vhost backend. C: vp-vm gen -> OVS -> "
                 "vp-vm sink (VMs on core 0, PMD on core 1). Pass = no frame lost and the generator "
                 "achieved >= 99.5% of the offered rate.\n")
    # ---- latency
    lat = group(res, test="lat")
    if lat:
        L.append("## Latency, 64 B ping-pong round trip (us)\n")
        L.append("| path | mode | p50 | p99 | p99.9 | runs valid |")
        L.append("|---|---|---|---|---|---|")
        for mode in ("poll", "irq"):
            for p in ("A", "B", "C"):
                rr = [r for r in lat if r.get("path") == p and r.get("mode") == mode]
                if not rr:
                    continue
                good = [r for r in rr if r.get("valid") is not False] or rr
                t = {k: mmm(vals(good, k)) for k in ("p50_us", "p99_us", "p999_us")}
                S["lat"].setdefault(p, {})[mode] = t
                nd = 2 if (t["p50_us"][0] or 0) < 10 else 1
                L.append(f"| {PATHS[p]} | {mode} | {fmt_mmm(t['p50_us'], nd)} | {fmt_mmm(t['p99_us'], nd)} | "
                         f"{fmt_mmm(t['p999_us'], nd)} | {valid_runs(rr)} |")
        L.append("\nA: vp-vm ping (frontend, core 0) <-> vp-vm echo (backend, core 1), both in the mode shown. "
                 "B: vp-vm ping (frontend --vhost-user, core 0) <-> testpmd io-forward on one vhost port "
                 "(reflects every frame, polls on core 1): DPDK's vhost backend as the direct peer (testpmd "
                 "has no ping-pong). C: vp-vm ping (core 0) -> OVS (PMD core 1) -> vp-vm echo (core 0, irq) "
                 "-> OVS -> ping. DPDK and OVS always poll; 'irq' applies to our VMs.\n")
    # ---- chains
    ch = group(res, test="chain")
    if ch:
        L.append(f"## Service chain, 64 B, VMs in {ch[0].get('mode', 'irq')} mode\n")
        L.append("| VMs | vhost-pci Mpps | OVS Mpps | vhost-pci Mpkts/CPU-s | OVS Mpkts/CPU-s | vp/OVS per CPU-s | "
                 "CPUs busy vp / OVS | valid windows vp / OVS | unfiltered Mpps vp / OVS |")
        L.append("|---|---|---|---|---|---|---|---|---|")
        for n in sorted({r["vms"] for r in ch}):
            rv = [r for r in ch if r.get("path") == "vp" and r.get("vms") == n]
            ro = [r for r in ch if r.get("path") == "ovs" and r.get("vms") == n]
            mv, mo = mmm(vals(rv)), mmm(vals(ro))
            cv, co = mmm([x / 1e6 for x in vals(rv, "pkts_per_cpu_s")]), mmm([x / 1e6 for x in vals(ro, "pkts_per_cpu_s")])
            rt, _ = ratio_mmm(rv, ro, "pkts_per_cpu_s")
            S["chain"][n] = {"vp": mv, "ovs": mo, "vp_cpu": cv, "ovs_cpu": co, "ratio": rt}
            L.append(f"| {n} | {fmt_mmm(mv, 3)} | {fmt_mmm(mo, 3)} | {fmt_mmm(cv, 3)} | {fmt_mmm(co, 3)} | "
                     f"{fmt_mmm(rt)} | {fmt(median(vals(rv, 'cpu_cores')))} / {fmt(median(vals(ro, 'cpu_cores')))} | "
                     f"{nvalid(rv)} / {nvalid(ro)} | {fmt(median(vals(rv, 'mpps_unfiltered')))} / "
                     f"{fmt(median(vals(ro, 'mpps_unfiltered')))} |")
        rm = [r for r in ch if r.get("path") == "vpmod"]
        if rm:
            L.append(f"\nModerated: the same vhost-pci chain, every link with vp-vm --coalesce "
                     f"{rm[0].get('coalesce')}.\n")
            L.append("| VMs | Mpps | Mpkts/CPU-s | per CPU-s, moderated / not | CPUs busy | valid windows |")
            L.append("|---|---|---|---|---|---|")
            for n in sorted({r["vms"] for r in rm}):
                rn = [r for r in rm if r.get("vms") == n]
                rv = [r for r in ch if r.get("path") == "vp" and r.get("vms") == n]
                cm = mmm([x / 1e6 for x in vals(rn, "pkts_per_cpu_s")])
                rt, _ = ratio_mmm(rn, rv, "pkts_per_cpu_s")
                S["chain"].setdefault(n, {})["mod_cpu"] = cm
                L.append(f"| {n} | {fmt_mmm(mmm(vals(rn)), 3)} | {fmt_mmm(cm, 3)} | {fmt_mmm(rt)} | "
                         f"{fmt(median(vals(rn, 'cpu_cores')))} | {nvalid(rn)} |")
        ns = sorted(S["chain"])
        if ns and ns[0] == 2 and S["chain"][2].get("vp_cpu", (None,))[0]:
            last = ns[-1]
            for k in ("vp_cpu", "ovs_cpu", "mod_cpu"):
                a = (S["chain"][2].get(k) or (None,))[0]
                b = (S["chain"][last].get(k) or (None,))[0]
                if a and b:
                    L.append(f"\n{dict(vp_cpu='vhost-pci', ovs_cpu='OVS', mod_cpu='vhost-pci moderated')[k]}: {last} VMs deliver "
                             f"{b / a * 100:.0f}% of the 2-VM packets per CPU-second.")
        L.append("\nvhost-pci: VMs on cores 0,1 alternately, each hop a direct vhost-pci link. OVS: every VM's "
                 "ports on one OVS-DPDK (PMD on core 1, always polling), VMs on core 0. The generator is "
                 "unlimited; Mpkts/CPU-s = delivered packets / (sum of the CPU time of every process of the "
                 "configuration, OVS included).\n")
    # ---- targets
    L += targets(S)
    # ---- cost
    L.append("## Cost: CPU per packet and memory\n")
    L.append("| configuration | CPU ns per delivered packet | RSS MiB (PSS MiB) per process |")
    L.append("|---|---|---|")
    for key, rr in cost_groups(res):
        cpp = mmm(vals(rr, "cpu_ns_per_pkt"))
        mem = {}
        for r in rr:
            for k, v in (r.get("mem") or {}).items():
                mem.setdefault(k, []).append(v)
        ms = ", ".join(f"{k} {median([x['rss_kb'] for x in v if x.get('rss_kb')]) / 1024:.1f} "
                       f"({median([x['pss_kb'] for x in v if x.get('pss_kb')]) / 1024:.1f})"
                       for k, v in sorted(mem.items()) if any(x.get("rss_kb") for x in v))
        S["cost"][key] = {"cpu_ns_per_pkt": cpp}
        L.append(f"| {key} | {fmt_mmm(cpp, 0)} | {ms} |")
    L.append("\nCPU ns per packet: CPU time of every process of the configuration over the valid windows "
             "divided by the packets delivered. RSS counts the VM's shared memfd pages it touched; PSS "
             "splits shared pages between the processes mapping them.\n")
    # ---- failures
    errs = [r for r in res if r.get("error")]
    if errs:
        L.append("## Runs that failed\n")
        for r in errs:
            L.append(f"- {r.get('label')}: {r['error']}")
        L.append("")
    # ---- probe
    pr = [r["probe_ns"][0] for r in res if r.get("probe_ns")]
    if pr:
        near = sum(1 for x in pr if x < 60)
        L.append(f"Cross-core probe (ring-bench, one-way ns, before each run): median {median(pr):.0f}, "
                 f"min {min(pr):.0f}, max {max(pr):.0f}; {near}/{len(pr)} runs 'near' (< 60 ns).\n")
    return "\n".join(L) + "\n", S


def targets(S):
    """The project's targets, each with the measured value and the verdict."""
    rows = []

    def add(name, val, goal, txt=None, higher=True):
        if val is None:
            rows.append(f"| {name} | - | {txt or goal} | not measured |")
            return
        ok = val >= goal if higher else val <= goal
        if ok:
            verdict = "met"
        else:
            verdict = (f"missed by {(1 - val / goal) * 100:.0f}%" if higher
                       else f"missed: {val / goal:.2f}x the limit")
        rows.append(f"| {name} | {val:.2f} | {txt or goal} | {verdict} |")

    r = S["ratio"]
    for d, lab in (("fe2be", "frontend -> backend"), ("be2fe", "backend -> frontend"), ("loop", "loop")):
        add(f"A/B at 64 B, {lab}", (r.get(d, {}).get(64) or (None,))[0], 1.3, ">= 1.3x")
    for d, lab in (("fe2be", "frontend -> backend"), ("be2fe", "backend -> frontend"), ("loop", "loop")):
        add(f"A/B at 1518 B, {lab}", (r.get(d, {}).get(1518) or (None,))[0], 1.0, ">= 1.0x")
    add("A/C (OVS-DPDK in the middle) at 64 B, one way", (r.get("A/C fe2be", {}).get(64) or (None,))[0], 5.0,
        ">= 5x")
    ch = S["chain"]
    if 2 in ch and ch:
        last = max(ch)
        a, b = ch[2]["vp_cpu"][0], ch[last]["vp_cpu"][0]
        add(f"vhost-pci chain: {last} VMs / 2 VMs, packets per CPU-s", b / a if a and b else None, 0.9,
            ">= 0.90")
        for n in sorted(ch):
            add(f"chain of {n}: vhost-pci / OVS, packets per CPU-s", (ch[n]["ratio"] or (None,))[0], 1.0,
                "> 1 (ahead)")
            v, o = ch[n]["vp"][0], ch[n]["ovs"][0]
            add(f"chain of {n}: vhost-pci / OVS, delivered Mpps", v / o if v and o else None, 1.0, "> 1 (ahead)")
    la = S["lat"]
    a = la.get("A", {}).get("poll", {}).get("p99_us", (None,))[0]
    b = la.get("B", {}).get("poll", {}).get("p99_us", (None,))[0]
    add("latency p99 busy-poll, A / B (DPDK direct)", a / b if a and b else None, 1.0, "<= 1.0", higher=False)
    out = ["## Targets\n", "| target | measured | goal | verdict |", "|---|---|---|---|"] + rows
    out.append("\nRatios are medians of per-pair ratios (see the tables above for min-max).\n")
    return out


def valid_runs(rr):
    checked = [r for r in rr if r.get("valid") is not None]
    if not checked:
        return "not checked (no full window)"
    return f"{sum(1 for r in checked if r['valid'])}/{len(checked)}"


def fmt(v):
    return "-" if v is None else f"{v:.2f}"


def nvalid(rs):
    return f"{sum(r.get('n_valid', 0) for r in rs)}/{sum(r.get('n_windows', 0) for r in rs)}"


def cost_groups(res):
    out = []
    for label, sel in (("A vhost-pci 64 B one way", dict(test="tput", path="A", dir="fe2be", size=64)),
                       ("A via vhost-pcid 64 B one way", dict(test="tput", path="A-daemon", size=64)),
                       ("B DPDK 64 B one way (virtio-user tx)", dict(test="tput", path="B", dir="fe2be", size=64)),
                       ("C OVS 64 B one way", dict(test="tput", path="C", dir="fe2be", size=64)),
                       ("D testpmd io 64 B one way", dict(test="tput", path="D", dir="fe2be", size=64)),
                       ("E vp-vswitch 64 B one way", dict(test="tput", path="E", dir="fe2be", size=64)),
                       ("A vhost-pci 1518 B one way", dict(test="tput", path="A", dir="fe2be", size=1518)),
                       ("B DPDK 1518 B one way", dict(test="tput", path="B", dir="fe2be", size=1518)),
                       ("chain vhost-pci 5 VMs", dict(test="chain", path="vp", vms=5)),
                       ("chain OVS 5 VMs", dict(test="chain", path="ovs", vms=5))):
        rr = group(res, **sel)
        if rr:
            out.append((label, rr))
    return out


def noise_line(doc, res):
    n = doc.get("noise") or {}
    parts = []
    if n.get("cpu_start") and n.get("cpu_end"):
        a, b = n["cpu_start"], n["cpu_end"]
        busy = sum(b[c][0] - a[c][0] for c in b if c in a)
        steal = sum(b[c][1] - a[c][1] for c in b if c in a)
        tot = sum(b[c][2] - a[c][2] for c in b if c in a)
        if tot:
            parts.append(f"machine busy {busy / tot * 100:.0f}% of 2 CPUs over the run, steal {steal / tot * 100:.1f}%")
    f = [r.get("foreign_cpu") for r in res if r.get("foreign_cpu") is not None]
    if f:
        parts.append(f"CPU used by tasks outside the measured configuration during windows: median "
                     f"{median(f) * 100:.1f}% of a CPU, max {max(f) * 100:.0f}%")
    nv = sum(r.get("n_valid", 0) for r in res if r.get("test") in ("tput", "chain"))
    nt = sum(r.get("n_windows", 0) for r in res if r.get("test") in ("tput", "chain"))
    if nt:
        parts.append(f"{nt - nv} of {nt} windows dropped (< 97% CPU)")
    if n.get("others_start"):
        busy = [l for l in n["others_start"][1:] if _pcpu(l) > 5]
        if busy:
            parts.append("busy at start: " + "; ".join(" ".join(l.split()[3:4] + l.split()[1:2]) + "%" for l in busy))
    ob = [r.get("others_cpu_before") for r in res if r.get("others_cpu_before") is not None]
    if ob:
        parts.append(f"other tasks' CPU just before a run: median {median(ob) * 100:.0f}% of a CPU, "
                     f"max {max(ob) * 100:.0f}%, {sum(1 for x in ob if x >= 0.3)} of {len(ob)} runs "
                     f"started on a busy machine after waiting")
    if doc.get("waited_for_quiet_s"):
        parts.append(f"waited {doc['waited_for_quiet_s']:.0f} s in total for a quiet machine")
    if doc.get("dropped_runs"):
        parts.append(f"{len(doc['dropped_runs'])} runs repeated because all their windows were dropped")
    la = doc.get("machine", {}).get("loadavg_start")
    if la:
        parts.append(f"loadavg at start {' '.join(la)}" + (f", at end {' '.join(n['loadavg_end'])}" if n.get("loadavg_end") else ""))
    return "- noise: " + "; ".join(parts)


def _pcpu(line):
    try:
        return float(line.split()[1])
    except (IndexError, ValueError):
        return 0.0


# ---------------------------------------------------------------- plots

def plots(outdir, res, S):
    import logging
    import matplotlib
    matplotlib.use("Agg")
    logging.getLogger("matplotlib").setLevel(logging.ERROR)
    import matplotlib.pyplot as plt

    colors = {"A": "tab:blue", "B": "tab:orange", "C": "tab:red", "D": "tab:green", "E": "tab:purple"}
    # throughput per direction
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    for ax, d in zip(axes.flat, DIRS):
        for p in ("A", "B"):
            t = S["tput"].get(p, {}).get(d, {})
            xs = sorted(s for s in t if t[s][0] is not None)
            if not xs:
                continue
            ys = [t[s][0] for s in xs]
            lo = [t[s][0] - t[s][1] for s in xs]
            hi = [t[s][2] - t[s][0] for s in xs]
            ax.errorbar(xs, ys, yerr=[lo, hi], marker="o", capsize=3, color=colors[p], label=PATHS[p])
        if d in ("fe2be",):
            for p in ("C", "D", "E"):
                t = S["tput"].get(p, {}).get("vs-fe2be", {})
                xs = sorted(s for s in t if t[s][0] is not None)
                if xs:
                    ax.plot(xs, [t[s][0] for s in xs], marker="s", ls="--", color=colors[p], label=PATHS[p])
        ax.set_xscale("log")
        ax.set_xticks([64, 128, 256, 512, 1024, 1518, 9000])
        ax.set_xticklabels(["64", "128", "256", "512", "1024", "1518", "9000"], rotation=45, fontsize=8)
        ax.minorticks_off()
        ax.set_title(DIRS[d])
        ax.set_xlabel("frame bytes")
        ax.set_ylabel("Mpps")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("Throughput (median of runs, bars min-max)")
    fig.tight_layout()
    fig.savefig(os.path.join(outdir, "throughput.png"), dpi=90)
    plt.close(fig)

    # A/B ratio
    fig, ax = plt.subplots(figsize=(9, 5))
    allx = sorted({s for d in DIRS for s, v in S["ratio"].get(d, {}).items() if v[0] is not None})
    for i, d in enumerate(DIRS):
        t = S["ratio"].get(d, {})
        xs = sorted(s for s in t if t[s][0] is not None)
        if not xs:
            continue
        pos = [allx.index(s) + (i - 1.5) * 0.18 for s in xs]
        ax.errorbar(pos, [t[s][0] for s in xs], yerr=[[t[s][0] - t[s][1] for s in xs], [t[s][2] - t[s][0] for s in xs]],
                    fmt="o", capsize=3, label=DIRS[d])
    ax.set_xticks(range(len(allx)))
    ax.set_xticklabels([str(s) for s in allx])
    ax.axhline(1.3, color="g", ls=":", label="target 1.3x (64 B)")
    ax.axhline(1.0, color="k", ls=":", label="parity")
    ax.set_ylabel("A / B (median of per-pair ratios)")
    ax.set_xlabel("frame bytes")
    ax.set_title("vhost-pci vs DPDK vhost<->virtio-user")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(outdir, "ratio_a_b.png"), dpi=90)
    plt.close(fig)

    # latency
    if S["lat"]:
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharey=False)
        for ax, mode in zip(axes, ("poll", "irq")):
            ps = [p for p in ("A", "B", "C") if mode in S["lat"].get(p, {})]
            for j, k in enumerate(("p50_us", "p99_us", "p999_us")):
                ys = [S["lat"][p][mode][k][0] or 0 for p in ps]
                ax.bar([i + (j - 1) * 0.27 for i in range(len(ps))], ys, width=0.27, label=k.replace("_us", ""))
            ax.set_xticks(range(len(ps)))
            ax.set_xticklabels(["A vhost-pci", "B DPDK vhost", "C OVS"][:len(ps)] if ps == ["A", "B", "C"] else ps)
            ax.set_yscale("log")
            ax.set_ylabel("round trip us")
            ax.set_title(f"64 B ping-pong, {mode}")
            ax.grid(alpha=0.3, axis="y")
            ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(os.path.join(outdir, "latency.png"), dpi=90)
        plt.close(fig)

    # chain
    if S["chain"]:
        ns = sorted(S["chain"])
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
        for key, lab, c in (("vp", "vhost-pci hops", "tab:blue"), ("ovs", "all VMs on one OVS", "tab:red")):
            axes[0].plot(ns, [S["chain"][n][key][0] for n in ns], marker="o", color=c, label=lab)
            axes[1].plot(ns, [S["chain"][n][key + "_cpu"][0] for n in ns], marker="o", color=c, label=lab)
        axes[0].set_ylabel("delivered Mpps")
        axes[1].set_ylabel("delivered Mpkts per CPU-second")
        for ax in axes:
            ax.set_xlabel("VMs in the chain")
            ax.set_xticks(ns)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
            ax.set_ylim(bottom=0)
        fig.suptitle("Service chain, 64 B, interrupt mode")
        fig.tight_layout()
        fig.savefig(os.path.join(outdir, "chain.png"), dpi=90)
        plt.close(fig)

    # zero loss
    if S["zl"]:
        ps = [p for p in ("A", "B", "C") if S["zl"].get(p, (None,))[0] is not None]
        if ps:
            fig, ax = plt.subplots(figsize=(7, 4))
            ax.bar(range(len(ps)), [S["zl"][p][0] for p in ps], color=[colors[p] for p in ps])
            ax.set_xticks(range(len(ps)))
            ax.set_xticklabels([PATHS[p].split(" (")[0] for p in ps], fontsize=8)
            ax.set_ylabel("Mpps at zero loss, 64 B")
            ax.grid(alpha=0.3, axis="y")
            fig.tight_layout()
            fig.savefig(os.path.join(outdir, "zeroloss.png"), dpi=90)
            plt.close(fig)
