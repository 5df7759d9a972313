#!/usr/bin/env python3
# Every program answers --version with its name and the project's version, and
# --help with exit 0 and a usage text that offers --version.
# Usage: test_version.py VERSION PROGRAM...
import os
import subprocess
import sys

version, progs = sys.argv[1], sys.argv[2:]
bad = 0
for prog in progs:
    name = os.path.basename(prog)
    r = subprocess.run([prog, '--version'], capture_output=True, text=True, timeout=10)
    want = f'{name} {version}\n'
    if r.returncode != 0 or r.stdout != want:
        print(f'FAIL {name} --version: exit {r.returncode}, stdout {r.stdout!r}, want {want!r}')
        bad += 1
    r2 = subprocess.run([prog, '-V'], capture_output=True, text=True, timeout=10)
    if r2.returncode != 0 or r2.stdout != want:
        print(f'FAIL {name} -V: exit {r2.returncode}, stdout {r2.stdout!r}')
        bad += 1
    r = subprocess.run([prog, '--help'], capture_output=True, text=True, timeout=10)
    if r.returncode != 0 or 'Usage' not in r.stdout or '--version' not in r.stdout:
        print(f'FAIL {name} --help: exit {r.returncode}, stdout starts {r.stdout[:80]!r}')
        bad += 1
    else:
        print(f'ok {name}: {want.strip()}')
sys.exit(1 if bad else 0)
