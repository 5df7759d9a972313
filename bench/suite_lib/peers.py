# SPDX-License-Identifier: BSD-3-Clause
"""The measured programs: vp-vm, vp-vswitch, vhost-pcid, testpmd, OVS-DPDK."""
import os
import re
import shutil
import subprocess
import time

from .procs import now, thread_ids

OVS_VSWITCHD = "/usr/lib/openvswitch-switch-dpdk/ovs-vswitchd-dpdk"
OVS_SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema"
TESTPMD = "dpdk-testpmd"
DPDK_RUNDIR = "/var/run/dpdk"


class PeerError(RuntimeError):
    pass


def wait_path(path, timeout, proc=None):
    end = now() + timeout
    while now() < end:
        if os.path.exists(path):
            return True
        if proc is not None and not proc.alive():
            return False
        time.sleep(0.02)
    return False


# ---------------------------------------------------------------- vp-vm

def vp_vm_argv(bins, role, sock, app, cpu, mode, size=64, ring=1024, vhost_user=False,
               port2=None, rate=None, seconds=None, name=None, verify="header", extra=()):
    a = [bins["vp-vm"]]
    if role == "frontend":
        a += ["--frontend", "--connect", sock]
        if vhost_user:
            a.append("--vhost-user")
    elif role in ("pair21", "pair21-serve"):
        # 2.1 peers (docs/window21.md): one serves the pair broker, one joins
        a += ["--" + role, sock]
    else:
        a += ["--backend", "--listen", sock]
    a += ["--app", app, "--mode", mode, "--verify", verify, "--json", "--ring", str(ring),
          "--connect-timeout", "20"]
    if app in ("gen", "sink", "ping"):
        a += ["--size", str(size)]
    if cpu is not None:
        a += ["--cpu", str(cpu)]
    if port2:
        a += ["--port2", port2]
    if rate:
        a += ["--rate", str(int(rate))]
    if seconds is not None:
        a += ["--seconds", f"{seconds:.3f}"]
    if name:
        a += ["--name", name]
    if size > 1518:
        a += ["--ram", "256M"]
    a += list(extra)
    return a


# ---------------------------------------------------------------- testpmd

class TestPmd:
    """An interactive dpdk-testpmd driven through stdin."""

    def __init__(self, procs, name, prefix, lcores, vdevs, fwd_mode, size, sampler,
                 worker_core, extra_app=()):
        self.procs, self.prefix, self.nports = procs, prefix, len(vdevs)
        # stdbuf: testpmd's stdout is a pipe here; without line buffering its
        # answers would sit in the stdio buffer
        argv = ["stdbuf", "-oL", "-eL", TESTPMD, "--lcores", lcores, "--file-prefix", prefix, "--no-huge", "-m", "256",
                "--no-pci", "--no-telemetry", "--log-level", "lib.eal:error"]
        for v in vdevs:
            argv += ["--vdev", v]
        argv += ["--", "-i", "--nb-cores=1", f"--forward-mode={fwd_mode}", "--txd=1024",
                 "--rxd=1024", "--total-num-mbufs=16384", "--burst=32"]
        if size > 1518:
            # one mbuf per jumbo frame: mergeable RX on the virtio side,
            # big data rooms on both
            argv += ["--mbuf-size=10240", f"--max-pkt-len={size + 18}", "--total-num-mbufs=8192"]
            argv.remove("--total-num-mbufs=16384")
        argv += [f"--txpkts={size}"] + list(extra_app)
        self.p = procs.spawn(name, argv, stdin=True, pipe_out=True)
        self.name = name
        self.worker_core = worker_core
        self.sampler = sampler

    def wait_ready(self, timeout=20):
        """Until the interactive prompt is reached (ports started)."""
        end = now() + timeout
        buf = []
        while now() < end:
            try:
                line = self.p.lines.get(timeout=0.2)
            except Exception:
                if not self.p.alive():
                    break
                continue
            if line is None:
                break
            buf.append(line)
            if "Press enter to exit" in line or re.search(r"^Done$", line.strip()) and any(
                    "Checking link statuses" in b for b in buf):
                return True
        raise PeerError(f"{self.name} did not start: " + " | ".join(buf[-8:]))

    def worker_tid(self, timeout=5):
        end = now() + timeout
        while now() < end:
            t = thread_ids(self.p.pid, "rte-worker")
            if t:
                return t[0]
            time.sleep(0.05)
        raise PeerError(f"{self.name}: no rte-worker thread")

    def cmd(self, text):
        self.p.send(text + "\n")

    def drain(self):
        while True:
            try:
                if self.p.lines.get_nowait() is None:
                    return
            except Exception:
                return

    def stats(self, timeout=3.0):
        """{port: (rx_packets, tx_packets)} from 'show port stats all'."""
        self.drain()
        self.cmd("show port stats all")
        t = now()
        res, port, end = {}, None, now() + timeout
        while now() < end and len(res) < self.nports:
            try:
                line = self.p.lines.get(timeout=0.1)
            except Exception:
                continue
            if line is None:
                raise PeerError(f"{self.name} exited")
            m = re.search(r"NIC statistics for port (\d+)", line)
            if m:
                port = int(m.group(1))
                rx = tx = None
                continue
            m = re.search(r"RX-packets:\s+(\d+)", line)
            if m and port is not None:
                rx = int(m.group(1))
            m = re.search(r"TX-packets:\s+(\d+)", line)
            if m and port is not None:
                tx = int(m.group(1))
                res[port] = (rx, tx)
        if len(res) < self.nports:
            raise PeerError(f"{self.name}: no port stats")
        return t, res

    def stop(self):
        if self.p.alive():
            try:
                self.cmd("stop")
                self.cmd("quit")
            except OSError:
                pass
            end = now() + 3
            while self.p.alive() and now() < end:
                time.sleep(0.05)
        self.procs.stop(self.p)
        clean_dpdk_prefix(self.prefix)


def clean_dpdk_prefix(prefix):
    """What a DPDK process with --file-prefix PREFIX leaves behind."""
    d = os.path.join(DPDK_RUNDIR, prefix)
    if os.path.isdir(d):
        shutil.rmtree(d, ignore_errors=True)
    for base in ("/dev/shm", "/dev/hugepages"):
        try:
            for n in os.listdir(base):
                if n.startswith(prefix):
                    try:
                        os.unlink(os.path.join(base, n))
                    except OSError:
                        pass
        except OSError:
            pass


# ---------------------------------------------------------------- OVS-DPDK

class Ovs:
    """A private OVS-DPDK: own db, run dir, control sockets; one PMD on pmd_core."""

    def __init__(self, procs, rundir, prefix, pmd_core, main_core, log):
        self.procs, self.dir, self.prefix, self.log = procs, rundir, prefix, log
        self.pmd_core, self.main_core = pmd_core, main_core
        self.db = os.path.join(rundir, "db.sock")
        self.ctl = os.path.join(rundir, "ovs-vswitchd.ctl")
        self.mgmt = os.path.join(rundir, "br0.mgmt")
        self.env = dict(os.environ, OVS_RUNDIR=rundir, OVS_LOGDIR=rundir, OVS_DBDIR=rundir,
                        OVS_SYSCONFDIR=rundir, OVS_PKGDATADIR="/usr/share/openvswitch")
        self.dbp = self.vsp = None
        self.ports = []

    def vsctl(self, *args, wait=True):
        a = ["ovs-vsctl", f"--db=unix:{self.db}", "--timeout=30"]
        if not wait:
            a.append("--no-wait")
        r = subprocess.run(a + list(args), env=self.env, capture_output=True, text=True)
        if r.returncode:
            raise PeerError(f"ovs-vsctl {' '.join(args)}: {r.stderr.strip()}")
        return r.stdout

    def ofctl(self, *args):
        r = subprocess.run(["ovs-ofctl", "-O", "OpenFlow13"] + list(args[:1]) + [f"unix:{self.mgmt}"]
                           + list(args[1:]), env=self.env, capture_output=True, text=True)
        if r.returncode:
            raise PeerError(f"ovs-ofctl {' '.join(args)}: {r.stderr.strip()}")
        return r.stdout

    def start(self, ports, flows, mtu=None):
        os.makedirs(self.dir, exist_ok=True)
        conf = os.path.join(self.dir, "conf.db")
        if os.path.exists(conf):
            os.unlink(conf)
        subprocess.run(["ovsdb-tool", "create", conf, OVS_SCHEMA], check=True, env=self.env)
        self.dbp = self.procs.spawn("ovsdb-server", [
            "ovsdb-server", conf, f"--remote=punix:{self.db}",
            f"--pidfile={self.dir}/ovsdb-server.pid", f"--unixctl={self.dir}/ovsdb-server.ctl",
            f"--log-file={self.dir}/ovsdb-server.log"], env=self.env)
        if not wait_path(self.db, 10, self.dbp):
            raise PeerError("ovsdb-server did not come up")
        self.vsctl("init", wait=False)
        self.vsctl("set", "Open_vSwitch", ".", "other_config:dpdk-init=true",
                   # --no-huge implies legacy memory; saying so stops OVS from
                   # adding --in-memory, which DPDK refuses with legacy memory
                   f"other_config:dpdk-extra=--no-huge --legacy-mem -m 1024 --no-pci "
                   f"--file-prefix {self.prefix} --no-telemetry",
                   "other_config:per-port-memory=true",
                   f"other_config:dpdk-lcore-mask={1 << self.main_core:#x}",
                   f"other_config:pmd-cpu-mask={1 << self.pmd_core:#x}",
                   "other_config:vhost-sock-dir=.", wait=False)
        self.vsp = self.procs.spawn("ovs-vswitchd", [
            OVS_VSWITCHD, f"unix:{self.db}", f"--pidfile={self.dir}/ovs-vswitchd.pid",
            f"--unixctl={self.ctl}", f"--log-file={self.dir}/ovs-vswitchd.log"], env=self.env)
        if not wait_path(self.ctl, 30, self.vsp):
            raise PeerError("ovs-vswitchd did not come up (see ovs-vswitchd.log)")
        self.vsctl("add-br", "br0", "--", "set", "bridge", "br0", "datapath_type=netdev",
                   "fail_mode=secure")
        for i, name in enumerate(ports):
            a = ["add-port", "br0", name, "--", "set", "Interface", name, "type=dpdkvhostuser",
                 f"ofport_request={i + 1}"]
            if mtu:
                a.append(f"mtu_request={mtu}")
            self.vsctl(*a)
            if not wait_path(os.path.join(self.dir, name), 10, self.vsp):
                raise PeerError(f"OVS port {name}: no socket")
        self.ports = list(ports)
        self.ofctl("del-flows")
        for a, b in flows:
            self.ofctl("add-flow", f"in_port={ports.index(a) + 1},actions=output:{ports.index(b) + 1}")
        return self

    def sock(self, port):
        return os.path.join(self.dir, port)

    def pmd_tid(self, timeout=10):
        end = now() + timeout
        while now() < end:
            t = thread_ids(self.vsp.pid, "pmd")
            if t:
                return t[0]
            time.sleep(0.1)
        raise PeerError("OVS: no pmd thread")

    def pause(self):
        self.procs.pause(self.vsp)

    def resume(self):
        self.procs.resume(self.vsp)

    def stop(self):
        for p in (self.vsp, self.dbp):
            if p is not None:
                self.procs.stop(p, timeout=8)
        clean_dpdk_prefix(self.prefix)
