#!/usr/bin/env python3
# vhost-pcid as a service, without systemd running: the journal log format,
# sd_notify readiness on a fake NOTIFY_SOCKET, socket activation with fake
# LISTEN_FDS, and SIGHUP re-reading the config. Each case starts the daemon in
# a fresh temp dir and kills whatever it left on failure.
#
# Usage: test_service.py CASE VHOST_PCID VHOST_PCI_CTL VP_VM
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

case, PCID, CTL, VM = sys.argv[1:5]
tmp = tempfile.mkdtemp(prefix='vp-service-')
procs = []


def fail(msg):
    print('FAIL', msg)
    raise SystemExit(1)


def check(cond, msg):
    if not cond:
        fail(msg)
    print('ok', msg)


def wait_for(pred, what, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    fail('timed out waiting for ' + what)


def start(args, env=None, pass_fds=(), prefix=(), stderr_path=None):
    errf = open(stderr_path or os.path.join(tmp, 'pcid.err'), 'w')
    e = dict(os.environ)
    e.pop('JOURNAL_STREAM', None)
    e.pop('NOTIFY_SOCKET', None)
    e.update(env or {})
    p = subprocess.Popen(list(prefix) + [PCID] + args, stdout=subprocess.DEVNULL,
                         stderr=errf, env=e, pass_fds=pass_fds)
    errf.close()
    procs.append(p)
    return p


def stop(p, timeout=10):
    p.send_signal(signal.SIGTERM)
    rc = p.wait(timeout)
    procs.remove(p)
    return rc


def read_err(path=None):
    with open(path or os.path.join(tmp, 'pcid.err')) as f:
        return f.read()


def ctl(*args):
    r = subprocess.run([CTL, '--control', os.path.join(tmp, 'control.sock'), '--json'] +
                       list(args), capture_output=True, text=True, timeout=10)
    return json.loads(r.stdout) if r.returncode == 0 else None


def servers():
    j = ctl('servers')
    return sorted(s['id'] for s in j['servers']) if j else None


# ---------------------------------------------------------------------------

def case_journal():
    ctl_path = os.path.join(tmp, 'control.sock')
    args = ['--server', f'path={tmp}/net0.sock,id=net0', '--control', ctl_path]
    errp = os.path.join(tmp, 'pcid.err')
    # JOURNAL_STREAM names stderr (dev:ino of the file it writes): journal format.
    open(errp, 'w').close()
    st = os.stat(errp)
    p = start(args, env={'JOURNAL_STREAM': f'{st.st_dev}:{st.st_ino}'}, stderr_path=errp)
    wait_for(lambda: 'running' in read_err(), 'the daemon to start')
    check(stop(p) == 0, 'daemon stops with exit 0 on SIGTERM')
    lines = read_err().splitlines()
    check(len(lines) >= 3, f'{len(lines)} log lines')
    bad = [l for l in lines if not re.fullmatch(r'<[0-7]>[^<].*', l)]
    check(not bad, f'every line has a <N> priority prefix (bad: {bad[:2]})')
    check(all(not re.search(r'\d\d:\d\d:\d\d|vhost-pcid\[\d+\]', l) for l in lines),
          'no own timestamp or pid under the journal')
    check(any(l.startswith('<6>') and 'running' in l for l in lines), 'info lines are <6>')
    # JOURNAL_STREAM naming another file than stderr: the stderr format. A
    # second daemon on a live control socket fails, so it logs an error too.
    js = {'JOURNAL_STREAM': f'{st.st_dev}:{st.st_ino}'}
    p = start(args, env=js, stderr_path=errp)
    wait_for(lambda: 'running' in read_err(errp), 'the daemon to start again')
    p2 = start(args, env=js, stderr_path=os.path.join(tmp, 'second.err'))
    check(p2.wait(10) == 1, 'a second daemon on the same control socket fails')
    procs.remove(p2)
    second = read_err(os.path.join(tmp, 'second.err')).splitlines()
    check(second and all(re.match(r'\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} vhost-pcid\[\d+\] '
                                  r'(err|info): ', l) for l in second),
          'stderr not the stream JOURNAL_STREAM names: own timestamp, pid and level')
    stop(p)
    # --log-target journal forces it; an error line is <3>.
    p = start(args + ['--log-target', 'journal'],
              stderr_path=os.path.join(tmp, 'forced.err'))
    wait_for(lambda: 'running' in read_err(os.path.join(tmp, 'forced.err')), 'daemon 3')
    p2 = start(args + ['--log-target', 'journal'], stderr_path=os.path.join(tmp, 'fail.err'))
    check(p2.wait(10) == 1, 'a second daemon fails')
    procs.remove(p2)
    err = read_err(os.path.join(tmp, 'fail.err'))
    check(re.search(r'^<3>another vhost-pcid is already running', err, re.M),
          'an error is logged as <3>')
    stop(p)
    r = subprocess.run([PCID, '--log-target', 'bogus', '--server', f'{tmp}/x.sock'],
                       capture_output=True, text=True)
    check(r.returncode == 2 and 'log target' in r.stderr, 'a bad --log-target is a usage error')


CASES = {'journal': case_journal}

try:
    CASES[case]()
finally:
    for p in procs:
        p.kill()
        p.wait()
    shutil.rmtree(tmp, ignore_errors=True)
