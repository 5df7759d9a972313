#!/usr/bin/env python3
# The shared library's ABI (issue #13): it exports exactly the VP_API functions
# of the public headers, each carrying a version from lib/libvhostpci.map, the
# map lists the same set, and the installed programs given link the shared
# library and bind to versioned symbols.
# Usage: test_abi.py LIBVHOSTPCI.so MAP INCLUDEDIR PROGRAM...
import glob
import re
import subprocess
import sys

lib, mapfile, incdir, progs = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
bad = 0


def fail(msg):
    global bad
    print('FAIL', msg)
    bad += 1


# VP_API declarations: the name is the first vp_ identifier before '(' after VP_API.
declared = set()
for h in glob.glob(incdir + '/vhostpci/*.h'):
    text = open(h).read()
    for m in re.finditer(r'^VP_API\b([^(;]*?)\b(vp_\w+)\s*\(', text, re.M):
        declared.add(m.group(2))
if len(declared) < 50:
    fail(f'only {len(declared)} VP_API declarations found in {incdir}: the scan is broken')

# The map: names between 'global:' and 'local:' of every node.
maptext = re.sub(r'/\*.*?\*/', '', open(mapfile).read(), flags=re.S)
nodes = dict(re.findall(r'([\w.]+)\s*\{(.*?)\}', maptext, re.S))
in_map = {}
for node, body in nodes.items():
    g = re.search(r'global:(.*?)(?:local:|$)', body, re.S)
    for name in re.findall(r'(\w+)\s*;', g.group(1) if g else ''):
        in_map[name] = node
if set(in_map) != declared:
    fail(f'map and headers differ: only in map {sorted(set(in_map) - declared)}, '
         f'only in headers {sorted(declared - set(in_map))}')

# What the library really exports.
out = subprocess.run(['nm', '-D', '--defined-only', lib], capture_output=True, text=True,
                     check=True).stdout
exported = {}
for line in out.splitlines():
    parts = line.split()
    sym = parts[-1]
    if len(parts) == 3 and parts[1] == 'A' and sym in nodes:
        continue  # the version node itself
    name, _, ver = sym.partition('@@')
    if not ver:
        fail(f'{sym} exported without a version')
    elif in_map.get(name) != ver:
        fail(f'{sym}: version {ver}, map says {in_map.get(name)}')
    exported[name] = ver
if set(exported) != declared:
    fail(f'exports and headers differ: not VP_API {sorted(set(exported) - declared)}, '
         f'VP_API not exported {sorted(declared - set(exported))}')
print(f'ok {len(exported)} symbols exported, all versioned, {len(declared)} VP_API declarations')

for prog in progs:
    dyn = subprocess.run(['readelf', '-d', prog], capture_output=True, text=True,
                         check=True).stdout
    if 'libvhostpci.so.0]' not in dyn:
        fail(f'{prog} does not link libvhostpci.so.0')
    und = subprocess.run(['nm', '-D', '--undefined-only', prog], capture_output=True,
                         text=True, check=True).stdout
    uses = [s for s in und.split() if s.startswith('vp_')]
    if not uses or any('@VHOSTPCI_' not in s for s in uses):
        fail(f'{prog}: vp_ imports {uses[:5]} not all versioned')
    else:
        print(f'ok {prog}: {len(uses)} versioned vp_ imports')
sys.exit(1 if bad else 0)
