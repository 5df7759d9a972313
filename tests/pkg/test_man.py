#!/usr/bin/env python3
# The generated man pages (issue #13): each has a .TH naming the page and the
# section its file name says, a NAME section whatis can parse, and renders
# without a single warning, through groff -ww and through man -l at 80 columns.
# Usage: test_man.py PAGE...
import os
import re
import shutil
import subprocess
import sys

bad = 0


def fail(msg):
    global bad
    print('FAIL', msg)
    bad += 1


env = dict(os.environ, MANWIDTH='80', LC_ALL='C.UTF-8')
for page in sys.argv[1:]:
    before = bad
    base = os.path.basename(page)
    name, sec = base.rsplit('.', 1)
    text = open(page).read()
    th = re.search(r'^\.TH "([^"]*)" "([^"]*)"', text, re.M)
    if not th or th.group(1) != name.upper() or th.group(2) != sec:
        fail(f'{base}: .TH is {th.group(0) if th else None!r}, want "{name.upper()}" "{sec}"')
    if not re.search(r'^\.SH NAME\n\.PP\n' + re.escape(name) + r' \\?- \S', text, re.M):
        fail(f'{base}: no NAME section of the form "{name} - summary"')
    r = subprocess.run(['groff', '-t', '-man', '-ww', '-z', page], capture_output=True,
                       text=True, env=env)
    if r.returncode != 0 or r.stderr:
        fail(f'{base}: groff -ww: exit {r.returncode}\n{r.stderr}')
    if shutil.which('man'):
        r = subprocess.run(['man', '--warnings', '-l', page], capture_output=True, text=True,
                           env=env)
        if r.returncode != 0 or r.stderr or name not in r.stdout:
            fail(f'{base}: man -l: exit {r.returncode}\n{r.stderr}')
    if shutil.which('lexgrog'):
        r = subprocess.run(['lexgrog', page], capture_output=True, text=True, env=env)
        if r.returncode != 0 or f'"{name} - ' not in r.stdout:
            fail(f'{base}: lexgrog (whatis): {r.stdout.strip()} {r.stderr.strip()}')
    if bad == before:
        print(f'ok {base}')
sys.exit(1 if bad else 0)
