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


def is_listening(path):
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        c.connect(path)
        return True
    except OSError:
        return False
    finally:
        c.close()


def case_notify():
    # The test plays the service manager: a datagram socket on NOTIFY_SOCKET.
    nsock = os.path.join(tmp, 'notify')
    n = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    n.bind(nsock)
    n.settimeout(10)
    conf = os.path.join(tmp, 'pcid.conf')
    with open(conf, 'w') as f:
        f.write(f'server path={tmp}/net0.sock,id=net0\n')
    ctl_path = os.path.join(tmp, 'control.sock')
    p = start(['--config', conf, '--control', ctl_path], env={'NOTIFY_SOCKET': nsock})
    msg = n.recv(4096).decode()
    # Checked the moment READY arrives: every socket must already accept.
    listening = is_listening(f'{tmp}/net0.sock') and is_listening(ctl_path)
    check(msg == 'READY=1', f'first notification is READY=1 (got {msg!r})')
    check(listening, 'the server and control sockets accept when READY=1 arrives')
    p.send_signal(signal.SIGHUP)
    check(n.recv(4096).decode() == 'RELOADING=1', 'SIGHUP: RELOADING=1')
    check(n.recv(4096).decode() == 'READY=1', 'then READY=1 again')
    p.send_signal(signal.SIGTERM)
    check(n.recv(4096).decode() == 'STOPPING=1', 'SIGTERM: STOPPING=1')
    check(p.wait(10) == 0, 'exit 0')
    procs.remove(p)
    # An abstract-namespace NOTIFY_SOCKET ("@name") works too.
    a = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    name = f'vp-service-test-{os.getpid()}'
    a.bind('\0' + name)
    a.settimeout(10)
    p = start(['--config', conf, '--control', ctl_path], env={'NOTIFY_SOCKET': '@' + name})
    check(a.recv(4096).decode() == 'READY=1', 'READY=1 on an abstract NOTIFY_SOCKET')
    check(stop(p) == 0, 'exit 0')
    # No manager listening: the daemon runs anyway and says why it could not tell.
    p = start(['--config', conf, '--control', ctl_path],
              env={'NOTIFY_SOCKET': os.path.join(tmp, 'nobody')})
    wait_for(lambda: 'running' in read_err(), 'the daemon to start without a manager')
    check('cannot notify the service manager' in read_err(), 'a failed notify is logged')
    check(stop(p) == 0, 'and is not fatal')


def listener(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.listen(8)
    return s


def case_activation():
    # Sockets made by "the manager" (this test), passed as fds 3.. with
    # LISTEN_PID set to the daemon's pid (sh execs it, keeping its pid).
    ctl_path = os.path.join(tmp, 'control.sock')
    net0, stray = listener(f'{tmp}/net0.sock'), listener(f'{tmp}/stray.sock')
    ctl_l = listener(ctl_path)
    ino = os.stat(f'{tmp}/net0.sock').st_ino
    stray_ino = os.fstat(stray.fileno()).st_ino
    fds = (net0.fileno(), ctl_l.fileno(), stray.fileno())
    sh = ('sh', '-c', f'exec 3<&{fds[0]} 4<&{fds[1]} 5<&{fds[2]}; '
          f'LISTEN_PID=$$ LISTEN_FDS=3 LISTEN_FDNAMES=net0:control:stray exec "$@"', 'sh')
    p = start(['--server', f'path={tmp}/net0.sock,id=net0',
               '--server', f'path={tmp}/net1.sock,id=net1', '--control', ctl_path],
              pass_fds=fds, prefix=sh)
    net0.close(), ctl_l.close(), stray.close()
    wait_for(lambda: 'running' in read_err(), 'the daemon to start')
    err = read_err()
    check('net0: listening on ' + f'{tmp}/net0.sock (passed to us)' in err,
          'net0 uses the passed socket')
    check(os.stat(f'{tmp}/net0.sock').st_ino == ino, 'its file was not replaced')
    check(is_listening(f'{tmp}/net1.sock'), 'net1 (not passed) made its own socket')
    check(re.search(r'fd 5 named stray is bound to no configured', err),
          'an unclaimed passed fd is logged and closed')
    check(servers() == ['net0', 'net1'], 'the passed control socket answers')
    vm = subprocess.Popen([VM, '--connect', f'{tmp}/net0.sock', '--app', 'sink', '--quiet'],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs.append(vm)
    wait_for(lambda: (ctl('list') or {}).get('devices'), 'a frontend on the passed socket')
    fds_dir = f'/proc/{p.pid}/fd'
    targets = [os.readlink(os.path.join(fds_dir, f)) for f in os.listdir(fds_dir)]
    check(f'socket:[{stray_ino}]' not in targets and any(t.startswith('socket:') for t in targets),
          'the unclaimed socket is closed in the daemon')
    check(stop(p) == 0, 'exit 0')
    check(os.path.exists(f'{tmp}/net0.sock') and os.path.exists(ctl_path),
          'passed sockets\' files are left to the manager')
    check(not os.path.exists(f'{tmp}/net1.sock'), 'its own socket file is removed')
    # LISTEN_PID of another process: not ours, nothing taken.
    p = start(['--server', f'path={tmp}/net2.sock,id=net2', '--control', ctl_path],
              env={'LISTEN_PID': '1', 'LISTEN_FDS': '1'})
    wait_for(lambda: 'running' in read_err(), 'the daemon to start')
    check('passed to us' not in read_err(), 'LISTEN_PID of another pid is ignored')
    stop(p)
    p = start(['--server', f'path={tmp}/net2.sock,id=net2', '--control', ctl_path],
              env={'LISTEN_PID': 'x', 'LISTEN_FDS': '1'})
    check(p.wait(10) == 1 and 'bad LISTEN_FDS' in read_err(), 'malformed LISTEN_* fail start-up')
    procs.remove(p)


def case_reload():
    conf = os.path.join(tmp, 'pcid.conf')

    def write_conf(*ids):
        with open(conf, 'w') as f:
            f.write('# test config\n')
            for i in ids:
                f.write(f'server path={tmp}/{i}.sock,id={i}\n')

    write_conf('keep', 'gone')
    p = start(['--config', conf, '--control', os.path.join(tmp, 'control.sock')])
    wait_for(lambda: 'running' in read_err(), 'the daemon to start')
    check(servers() == ['gone', 'keep'], 'two servers from the config')
    vm = subprocess.Popen([VM, '--connect', f'{tmp}/keep.sock', '--app', 'sink', '--quiet'],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    procs.append(vm)
    devs = wait_for(lambda: [d for d in (ctl('list') or {}).get('devices') or []
                             if d['state'] == 'ready'], 'a READY device on keep')
    dev = devs[0]
    check(dev['server'] == 'keep' and dev['state'] == 'ready', 'device on keep is ready')
    write_conf('keep', 'new')
    p.send_signal(signal.SIGHUP)
    wait_for(lambda: 'reloaded:' in read_err(), 'the reload')
    check('reloaded: 1 server kept, 1 started, 1 stopped, 0 failed' in read_err(),
          'reload: keep kept, new started, gone stopped')
    check(servers() == ['keep', 'new'], 'the servers are keep and new')
    check(is_listening(f'{tmp}/new.sock'), 'new listens')
    check(not os.path.exists(f'{tmp}/gone.sock'), 'gone\'s socket is removed')
    devs = (ctl('list') or {}).get('devices') or []
    check(len(devs) == 1 and devs[0]['id'] == dev['id'] and devs[0]['peer_pid'] == vm.pid and
          devs[0]['generation'] == dev['generation'] and devs[0]['state'] == 'ready',
          'the device on keep keeps its connection (same id, pid, generation)')
    check(vm.poll() is None, 'its frontend is still running')
    # A broken config changes nothing.
    with open(conf, 'a') as f:
        f.write('server nonsense=1\n')
    p.send_signal(signal.SIGHUP)
    wait_for(lambda: 'reload failed' in read_err(), 'the failed reload')
    check(servers() == ['keep', 'new'], 'a bad config leaves the servers as they were')
    # A changed spec restarts that server only.
    with open(conf, 'w') as f:
        f.write(f'server path={tmp}/keep.sock,id=keep\nserver path={tmp}/new.sock,id=new,'
                'connections=4\n')
    p.send_signal(signal.SIGHUP)
    wait_for(lambda: read_err().count('reloaded:') == 2, 'the third reload')
    check('server new: changed: restarting it' in read_err(), 'changed server restarted')
    j = ctl('servers')
    check({s['id']: s['max'] for s in j['servers']} == {'keep': 32, 'new': 4},
          'the changed server has its new limit')
    check(len((ctl('list') or {}).get('devices') or []) == 1, 'the device on keep is still there')
    check(stop(p) == 0, 'exit 0')


CASES = {'journal': case_journal, 'notify': case_notify, 'activation': case_activation,
         'reload': case_reload}

try:
    CASES[case]()
finally:
    for p in procs:
        p.kill()
        p.wait()
    shutil.rmtree(tmp, ignore_errors=True)
