#!/usr/bin/env python3
# meson dist (issue #13): the release tarball, made from the committed tree,
# configures, builds warning-free (-Dwerror=true) and passes the unit tests
# on its own, outside the git checkout.
# Usage: test_dist.py MESON SOURCE_ROOT BUILD_ROOT WORKDIR VERSION
import glob
import os
import shutil
import sys
import tarfile

from pkgtest import run

meson, src, build, work, version = sys.argv[1:6]
if not os.path.exists(os.path.join(src, '.git')):
    print('SKIP: the source is not a git checkout (meson dist needs one)')
    sys.exit(77)



shutil.rmtree(work, ignore_errors=True)
os.makedirs(work)
# --allow-dirty: the tarball is HEAD either way; a developer's uncommitted
# edits must not make the test fail.
run(meson, 'dist', '-C', build, '--no-tests', '--allow-dirty', '--formats', 'xztar')
tarball = os.path.join(build, 'meson-dist', f'vhostpci-{version}.tar.xz')
if not os.path.exists(tarball):
    raise SystemExit(f'FAIL no {tarball}: {glob.glob(os.path.join(build, "meson-dist", "*"))}')
with tarfile.open(tarball) as t:
    names = t.getnames()
    top = {n.split('/')[0] for n in names}
    if top != {f'vhostpci-{version}'}:
        raise SystemExit(f'FAIL tarball top level is {sorted(top)}')
    t.extractall(work)
tree = os.path.join(work, f'vhostpci-{version}')
for must in ('meson.build', 'lib/libvhostpci.map', 'docs/man.lua', 'dist/vhost-pcid.conf',
             'include/vhostpci/vhostpci.h', 'README.md'):
    if not os.path.exists(os.path.join(tree, must)):
        raise SystemExit(f'FAIL {must} is not in the tarball')
b = os.path.join(work, 'build')
run(meson, 'setup', b, tree, '-Dwerror=true')
run('ninja', '-C', b)
r = run(meson, 'test', '-C', b, '--suite', 'unit', '--print-errorlogs')
summary = [l for l in r.stdout.splitlines() if l.startswith(('Ok:', 'Fail:'))]
print(f'ok {os.path.basename(tarball)}: {len(names)} entries; built; unit tests: {summary}')
if not any(l.startswith('Ok:') and int(l.split()[1]) > 0 for l in summary):
    raise SystemExit('FAIL no unit test ran in the tarball build')
shutil.rmtree(work, ignore_errors=True)
