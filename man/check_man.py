#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Checks of the man pages, run by meson test (suite unit).

  check_man.py lint MANDIR [VERSION]   every page formats without a groff
                                       warning, has its sections, its .so
                                       links and SEE ALSO references resolve,
                                       and its .TH footer is "safe_mr
                                       VERSION" and "safe_mr Manual"
                                       (source pages: VERSION is @VERSION@,
                                       which the build replaces)
  check_man.py coverage HEADER MANDIR  every function declared in HEADER
                                       has a page (a page or a .so link)
                                       that names it and shows its prototype
"""
import os
import re
import shutil
import subprocess
import sys

PAGE_RE = re.compile(r'^[A-Za-z0-9_.\-]+\.[1-8]$')
REQUIRED = {
    '3': ['NAME', 'SYNOPSIS', 'DESCRIPTION', 'RETURN VALUE', 'ERRORS', 'NOTES', 'SEE ALSO'],
    '7': ['NAME', 'DESCRIPTION', 'SEE ALSO'],
}


def pages(mandir):
    return sorted(f for f in os.listdir(mandir) if PAGE_RE.match(f))


def read(mandir, page):
    with open(os.path.join(mandir, page), encoding='utf-8') as f:
        return f.read()


def so_target(text):
    """The page a .so link points to, or None for a real page."""
    for line in text.splitlines():
        if line.startswith('.\\"') or not line.strip():
            continue
        m = re.match(r'^\.so\s+(\S+)\s*$', line)
        return os.path.basename(m.group(1)) if m else None
    return None


def sections(text):
    """{section title: its source text}."""
    out, cur = {}, None
    for line in text.splitlines():
        m = re.match(r'^\.SH\s+"?([^"]*)"?\s*$', line)
        if m:
            cur = m.group(1).strip()
            out[cur] = ''
        elif cur is not None:
            out[cur] += line + '\n'
    return out


def plain(troff):
    """Source text with font escapes and requests stripped, for name lookups."""
    t = troff.replace('\\-', '-')
    t = re.sub(r'\\f[BIRP]|\\f\(..|\\%|\\&', '', t)
    t = re.sub(r'^\.(?:B|I|BI|BR|IR|RB|RI)\s+', '', t, flags=re.M)
    return t.replace('"', '')


def names(text):
    """Names listed in the NAME section."""
    name = plain(sections(text).get('NAME', ''))
    head = name.split(' - ')[0]
    return {n.strip() for n in head.replace('\n', ' ').split(',') if n.strip()}


def resolve(mandir, page, problems):
    text = read(mandir, page)
    target = so_target(text)
    if target is None:
        return page, text
    if not os.path.exists(os.path.join(mandir, target)):
        problems.append(f'{page}: .so link to missing page {target}')
        return None, None
    ttext = read(mandir, target)
    if so_target(ttext) is not None:
        problems.append(f'{page}: .so link to {target}, itself a link')
        return None, None
    return target, ttext


def groff_warnings(path):
    out = []
    for dev in ('utf8', 'ps'):
        r = subprocess.run(['groff', '-man', '-ww', '-z', '-T' + dev, path],
                           capture_output=True, text=True,
                           env=dict(os.environ, LC_ALL='C.UTF-8'))
        out += [f'groff -T{dev}: {l}' for l in r.stderr.splitlines()]
        if r.returncode:
            out.append(f'groff -T{dev} exited {r.returncode}')
    return out


def th_fields(text):
    """The .TH line's arguments (quoted ones as one)."""
    m = re.search(r'^\.TH\s+(.*)$', text, re.M)
    return re.findall(r'"([^"]*)"|(\S+)', m.group(1)) if m else []


def lint(mandir, version='@VERSION@'):
    if not shutil.which('groff'):
        print('FAIL: groff not found (Debian: apt-get install groff-base)')
        return 1
    problems = []
    all_pages = pages(mandir)
    if not all_pages:
        problems.append(f'no man pages in {mandir}')
    for page in all_pages:
        sect = page.rsplit('.', 1)[1]
        target, text = resolve(mandir, page, problems)
        if target is None:
            continue
        if target != page:
            stem = page.rsplit('.', 1)[0]
            if stem not in names(text):
                problems.append(f'{page}: links to {target}, whose NAME does not list {stem}')
            continue
        for w in groff_warnings(os.path.join(mandir, page)):
            problems.append(f'{page}: {w}')
        th = re.search(r'^\.TH\s+(\S+)\s+(\S+)', text, re.M)
        stem = page.rsplit('.', 1)[0]
        if not th:
            problems.append(f'{page}: no .TH line')
        elif th.group(1).upper() != stem.upper() or th.group(2) != sect:
            problems.append(f'{page}: .TH {th.group(1)} {th.group(2)} does not match the file name')
        if th:
            f = [q or w for q, w in th_fields(text)]
            if len(f) != 5 or not re.match(r'^\d{4}-\d\d-\d\d$', f[2]):
                problems.append(f'{page}: .TH needs NAME SECTION YYYY-MM-DD "source" "manual"')
            elif f[3] != f'safe_mr {version}' or f[4] != 'safe_mr Manual':
                problems.append(f'{page}: .TH footer "{f[3]}" "{f[4]}", not '
                                f'"safe_mr {version}" "safe_mr Manual"')
        secs = sections(text)
        for s in REQUIRED.get(sect, ['NAME', 'DESCRIPTION']):
            if s not in secs:
                problems.append(f'{page}: no {s} section')
        if stem not in names(text):
            problems.append(f'{page}: NAME does not list {stem}')
        for ref, rsect in set(re.findall(r'\b((?:fi_)?safe_mr[\w-]*)\s*\((\d)\)', plain(secs.get('SEE ALSO', ''))
                                     + plain(secs.get('DESCRIPTION', ''))
                                     + plain(secs.get('NOTES', '')))):
            if not os.path.exists(os.path.join(mandir, f'{ref}.{rsect}')):
                problems.append(f'{page}: refers to {ref}({rsect}), which has no page')
    for p in problems:
        print('FAIL:', p)
    print(f'{len(all_pages)} pages checked, {len(problems)} problem(s)')
    return 1 if problems else 0


def declared_functions(header):
    with open(header, encoding='utf-8') as f:
        src = f.read()
    src = re.sub(r'/\*.*?\*/', ' ', src, flags=re.S)
    src = re.sub(r'//[^\n]*', ' ', src)
    src = re.sub(r'^\s*#.*$', ' ', src, flags=re.M)
    return sorted(set(re.findall(r'\b(safe_mr_[a-z0-9_]+)\s*\(', src)))


def coverage(header, mandir):
    problems = []
    funcs = declared_functions(header)
    if not funcs:
        problems.append(f'no functions found in {header}')
    for fn in funcs:
        page = f'{fn}.3'
        if not os.path.exists(os.path.join(mandir, page)):
            problems.append(f'{fn}: no page {page} (write one or add a .so link)')
            continue
        target, text = resolve(mandir, page, problems)
        if target is None:
            continue
        secs = sections(text)
        if fn not in names(text):
            problems.append(f'{fn}: {target} does not list it in NAME')
        if not re.search(r'\b' + fn + r'\s*\(', plain(secs.get('SYNOPSIS', ''))):
            problems.append(f'{fn}: {target} has no prototype of it in SYNOPSIS')
        else:
            print(f'ok: {fn} -> {target}')
    for p in problems:
        print('FAIL:', p)
    print(f'{len(funcs)} functions in {os.path.basename(header)}, {len(problems)} problem(s)')
    return 1 if problems else 0


def main(argv):
    if len(argv) in (3, 4) and argv[1] == 'lint':
        return lint(*argv[2:])
    if len(argv) == 4 and argv[1] == 'coverage':
        return coverage(argv[2], argv[3])
    print(__doc__)
    return 2


if __name__ == '__main__':
    sys.exit(main(sys.argv))
