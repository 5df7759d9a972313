#!/usr/bin/env python3
# What `meson install` puts where, in the layout Debian uses (issue #13): a
# fresh build dir configured with --prefix=/usr --libdir lib/x86_64-linux-gnu
# --sysconfdir /etc, installed into a DESTDIR. Without -Dtools exactly the
# product lands (anything unexpected fails the test); with -Dtools=true the
# test and demo tools come on top. The installed daemon then runs from the
# DESTDIR against the installed shared library. With 'man' (pandoc found) the
# man pages must be there too, the tools' only with -Dtools=true.
# Usage: test_install.py MESON SOURCE_ROOT WORKDIR man|noman
import fnmatch
import glob
import os
import shutil
import subprocess
import sys

from pkgtest import run

meson, src, work, man = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == 'man'
LIBDIR = 'usr/lib/x86_64-linux-gnu'
bad = 0


def fail(msg):
    global bad
    print('FAIL', msg)
    bad += 1



def installed(destdir):
    out = set()
    for root, dirs, files in os.walk(destdir):
        for name in files + [d for d in dirs if os.path.islink(os.path.join(root, d))]:
            out.add(os.path.relpath(os.path.join(root, name), destdir))
        if not files and not dirs:
            out.add(os.path.relpath(root, destdir) + '/')
    return out


headers = sorted(os.path.basename(h) for h in glob.glob(src + '/include/vhostpci/*.h'))
# pattern -> how many files must match it (None: at least one)
product = {
    'usr/sbin/vhost-pcid': 1,
    'usr/bin/vhost-pci-ctl': 1,
    LIBDIR + '/libvhostpci.so': 1,
    LIBDIR + '/libvhostpci.so.0': 1,
    LIBDIR + '/libvhostpci.so.0.*': 1,
    LIBDIR + '/libvhostpci.a': 1,
    LIBDIR + '/pkgconfig/libvhostpci.pc': 1,
    '*lib/systemd/system/vhost-pcid.service': 1,
    '*lib/systemd/system/vhost-pcid.socket': 1,
    'etc/vhost-pci/vhost-pcid.conf': 1,
}
for h in headers:
    product['usr/include/vhostpci/' + h] = 1
tools = {
    'usr/bin/vp-vm': 1,
    'usr/bin/vp-vswitch': 1,
    'usr/bin/vp-demo': 1,
    'usr/libexec/vhost-pci/ring-bench': 1,
    'usr/libexec/vhost-pci/net-bench': 1,
    'usr/libexec/vhost-pci/mq-bench': 1,
}


if man:
    product.update({'usr/share/man/man8/vhost-pcid.8': 1, 'usr/share/man/man1/vhost-pci-ctl.1': 1,
                    'usr/share/man/man3/libvhostpci.3': 1})
    tools.update({f'usr/share/man/man1/{t}.1': 1 for t in ('vp-vm', 'vp-vswitch', 'vp-demo')})


def check(destdir, expect, label):
    files = installed(destdir)
    for pat, n in expect.items():
        got = fnmatch.filter(files, pat)
        if len(got) != n:
            fail(f'{label}: {pat}: {len(got)} installed, want {n} ({got})')
    extra = sorted(f for f in files if not any(fnmatch.fnmatch(f, p) for p in expect))
    if extra:
        fail(f'{label}: installed but not expected: {extra}')
    print(f'ok {label}: {len(files)} files checked')
    return files


build = os.path.join(work, 'build')
shutil.rmtree(work, ignore_errors=True)
os.makedirs(work)
run(meson, 'setup', build, src, '--prefix=/usr', '--libdir', 'lib/x86_64-linux-gnu',
    '--sysconfdir', '/etc', '--buildtype=release', '-Dman=' + ('enabled' if man else 'disabled'))
run('ninja', '-C', build)

d1 = os.path.join(work, 'destdir')
run(meson, 'install', '-C', build, '--destdir', d1, '--no-rebuild')
check(d1, product, 'default install')

# The installed programs run against the installed library, not the build's.
env = dict(os.environ, LD_LIBRARY_PATH=os.path.join(d1, LIBDIR))
for prog in ('usr/sbin/vhost-pcid', 'usr/bin/vhost-pci-ctl'):
    r = subprocess.run([os.path.join(d1, prog), '--version'], capture_output=True, text=True,
                       env=env, timeout=10)
    if r.returncode != 0:
        fail(f'installed {prog} --version: exit {r.returncode} {r.stderr.strip()}')
ldd = run('ldd', os.path.join(d1, 'usr/sbin/vhost-pcid'), env=env).stdout
if os.path.join(d1, LIBDIR, 'libvhostpci.so.0') not in ldd:
    fail(f'installed vhost-pcid does not resolve the installed libvhostpci.so.0:\n{ldd}')
pc = open(os.path.join(d1, LIBDIR, 'pkgconfig/libvhostpci.pc')).read()
if 'libdir=${prefix}/lib/x86_64-linux-gnu' not in pc or 'includedir=${prefix}/include' not in pc:
    fail(f'libvhostpci.pc paths:\n{pc}')

run(meson, 'configure', build, '-Dtools=true')
run('ninja', '-C', build)
d2 = os.path.join(work, 'destdir-tools')
run(meson, 'install', '-C', build, '--destdir', d2, '--no-rebuild')
check(d2, {**product, **tools}, 'install with -Dtools=true')

if not bad:
    shutil.rmtree(work, ignore_errors=True)
sys.exit(1 if bad else 0)
