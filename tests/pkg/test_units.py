#!/usr/bin/env python3
# systemd-analyze verify on vhost-pcid.service and .socket, with ExecStart and
# the config pointed at the built daemon and the shipped config; then the
# daemon is started exactly as ExecStart says (the config alone: no server
# yet) to show the shipped config is accepted.
# Usage: test_units.py SERVICE SOCKET CONF VHOST_PCID SYSTEMD_ANALYZE|''
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

service, sock, conf, pcid, analyze = [os.path.abspath(a) if a else a for a in sys.argv[1:6]]
if not analyze:
    print('SKIP: systemd-analyze not installed (scripts/deps.sh installs systemd)')
    sys.exit(77)
tmp = tempfile.mkdtemp(prefix='vp-units-')
try:
    text = open(service).read()
    m = re.search(r'^ExecStart=(\S+) --config (\S+)$', text, re.M)
    assert m, 'ExecStart is "vhost-pcid --config FILE"'
    assert m.group(1).endswith('/vhost-pcid') and m.group(2).endswith('/vhost-pci/vhost-pcid.conf')
    text = text.replace(m.group(0), f'ExecStart={pcid} --config {conf}')
    for k in ('Type=notify', 'RuntimeDirectory=vhost-pci', 'ExecReload='):
        assert k in text, k + ' in the service'
    with open(os.path.join(tmp, 'vhost-pcid.service'), 'w') as f:
        f.write(text)
    shutil.copy(sock, tmp)
    r = subprocess.run([analyze, 'verify', '--man=no',
                        os.path.join(tmp, 'vhost-pcid.service'),
                        os.path.join(tmp, 'vhost-pcid.socket')],
                       capture_output=True, text=True, timeout=20)
    # Lines about units this test does not ship (the container's own) are noise.
    own = [l for l in (r.stdout + r.stderr).splitlines() if 'vhost-pcid' in l]
    print(r.stdout + r.stderr)
    if r.returncode != 0 or own:
        print('FAIL: systemd-analyze verify:', own or r.returncode)
        sys.exit(1)
    print('ok systemd-analyze verify: no complaint about the units')
    # The shipped config: all comments, so no server; the daemon runs on it.
    ctl = os.path.join(tmp, 'control.sock')
    p = subprocess.Popen([pcid, '--config', conf, '--control', ctl],
                         stderr=subprocess.PIPE, text=True)
    end = time.monotonic() + 10
    while not os.path.exists(ctl) and time.monotonic() < end and p.poll() is None:
        time.sleep(0.05)
    p.send_signal(signal.SIGTERM)
    out = p.communicate(timeout=10)[1]
    if p.returncode != 0 or 'no servers configured' not in out:
        print('FAIL: the daemon on the shipped config:', p.returncode, out)
        sys.exit(1)
    print('ok the daemon starts on the shipped config (no server yet) and stops cleanly')
    # The config shows how a server line looks.
    ex = [l[1:] for l in open(conf) if l.startswith('#server ')]
    assert len(ex) >= 3, 'the config shows examples'
finally:
    shutil.rmtree(tmp, ignore_errors=True)
