#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""check_map.py MAP HEADER LIBRARY

The version script names every exported symbol explicitly (no wildcard in
a global: list), the public node(s) export exactly the functions of the
public header, SAFE_MR_PRIVATE holds only sm_set_libc_next, and the built
library exports what the script says, in the node it says."""
import re
import subprocess
import sys


def nodes(path):
    src = re.sub(r'/\*.*?\*/', ' ', open(path, encoding='utf-8').read(), flags=re.S)
    out = {}
    for name, body in re.findall(r'([A-Za-z0-9_.]+)\s*\{(.*?)\}', src, flags=re.S):
        glob = re.search(r'global:(.*?)(?:local:|$)', body, flags=re.S)
        out[name] = [s.strip() for s in (glob.group(1) if glob else body).split(';') if s.strip()]
    return out


def header_functions(path):
    src = open(path, encoding='utf-8').read()
    src = re.sub(r'/\*.*?\*/', ' ', src, flags=re.S)
    src = re.sub(r'^\s*#.*$', ' ', src, flags=re.M)
    return set(re.findall(r'\b(safe_mr_[a-z0-9_]+)\s*\(', src))


def exported(lib):
    r = subprocess.run(['readelf', '--dyn-syms', '-W', lib], capture_output=True, text=True, check=True)
    out = set()
    for line in r.stdout.splitlines():
        f = line.split()
        if len(f) >= 8 and f[0].endswith(':') and f[6] != 'UND' and f[4] != 'LOCAL' and '@' in f[7]:
            name, _, node = f[7].partition('@')
            out.add((name, node.lstrip('@')))
    return out


def main(mapfile, header, lib):
    problems = []
    n = nodes(mapfile)
    for node, syms in n.items():
        for s in syms:
            if any(c in s for c in '*?['):
                problems.append(f'{node}: wildcard "{s}" (name every symbol)')
    public = {s for node, syms in n.items() if node != 'SAFE_MR_PRIVATE' for s in syms}
    funcs = header_functions(header)
    for s in sorted(funcs - public):
        problems.append(f'{s}: declared in the header, not exported by the map')
    for s in sorted(public - funcs):
        problems.append(f'{s}: exported by the map, not declared in the header')
    if n.get('SAFE_MR_PRIVATE') != ['sm_set_libc_next']:
        problems.append(f'SAFE_MR_PRIVATE is {n.get("SAFE_MR_PRIVATE")}, not [sm_set_libc_next]')
    want = {(s, node) for node, syms in n.items() for s in syms}
    have = exported(lib)
    for s, node in sorted(want - have):
        problems.append(f'{s}@{node}: in the map, not exported by {lib}')
    for s, node in sorted(have - want):
        problems.append(f'{s}@{node}: exported by {lib}, not in the map')
    for p in problems:
        print('FAIL:', p)
    print(f'{len(want)} symbols in {len(n)} nodes, {len(funcs)} header functions, '
          f'{len(problems)} problem(s)')
    return 1 if problems else 0


if __name__ == '__main__':
    if len(sys.argv) != 4:
        print(__doc__)
        sys.exit(2)
    sys.exit(main(*sys.argv[1:]))
