#!/bin/sh
# SPDX-License-Identifier: MIT
# fabric_readme.sh SRCDIR: documents that agree.  fabric/README.md names
# every FI_SAFE_MR_* parameter of fabric/params.c; the README's figures
# are docs/benchmarks.md's (it points there instead of repeating them);
# CHANGELOG and debian/changelog agree on whether the packaged version is
# released.
set -u
src=$1
fail=0
ok() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; fail=1; }
n=0
for p in $(sed -n 's/^\t{ "\([a-z_]*\)", "SAFE_MR_.*/\1/p' "$src/fabric/params.c"); do
	n=$((n + 1))
	v=FI_SAFE_MR_$(printf '%s' "$p" | tr a-z A-Z)
	grep -q "\`$v\`" "$src/fabric/README.md" && ok "fabric/README.md names $v" || bad "fabric/README.md lacks $v"
done
[ $n -eq 7 ] && ok "seven parameters in fabric/params.c" || bad "$n parameters in fabric/params.c, the README says seven"
# Figures of docs/benchmarks.md that the README used to repeat, wrongly.
for stale in '5.5×' '3-7 µs' '0.4 %' '14-31 µs' '1.6 %'; do
	grep -qF "$stale" "$src/README.md" && bad "README repeats a stale figure: $stale" || ok "README: no stale '$stale'"
done
grep -q 'docs/benchmarks.md' "$src/README.md" && ok "README points to docs/benchmarks.md" || bad "README does not point to docs/benchmarks.md"
# Released or not, the same in both changelogs.
v=$(dpkg-parsechangelog -l "$src/debian/changelog" -S Version); v=${v%-*}
dist=$(dpkg-parsechangelog -l "$src/debian/changelog" -S Distribution)
line=$(grep -m1 "^$v\b" "$src/CHANGELOG")
case $line in
*"not released"*) want=UNRELEASED ;;
"") bad "CHANGELOG has no section $v"; want=? ;;
*) want=released ;;
esac
if { [ "$want" = UNRELEASED ] && [ "$dist" = UNRELEASED ]; } ||
   { [ "$want" = released ] && [ "$dist" != UNRELEASED ]; }; then
	ok "CHANGELOG '$line' and debian/changelog ($dist) agree"
else bad "CHANGELOG '$line' but debian/changelog $v is $dist"; fi
exit $fail
