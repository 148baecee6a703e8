#!/bin/bash
# SPDX-License-Identifier: MIT
# Install anywhere, the tools, on the real RDMA stack of this kernel:
# 1. safe_mr-info reports this kernel (silent loss before 6.5, EFAULT from
#    6.5), rxe0 (On-Demand Paging for RC from 6.15), and for files on
#    ext4/xfs/btrfs (shadowed), fsdax (shadowed, dax) and tmpfs (not);
# 2. `meson install` into a scratch DESTDIR, then from there only: the
#    preload (both paths), safe_mr-run, the C API (pkg-config, cc) and the
#    libfabric hook over verbs on rxe0, each against the control without.
. "$SAFE_MR_SRC/tests/vm/lib.sh"
unset LD_PRELOAD LD_LIBRARY_PATH
B=$SAFE_MR_BUILD
info=$B/tools/safe_mr-info
for f in "$info" "$B/tools/safe_mr-run" "$VM_RWF"; do
	[ -x "$f" ] || { vm_result - build FAIL "$f not built"; vm_exit; }
done
kv=$(vm_kver_num)

# ---- 1. safe_mr-info
files=()
for fs in ext4 xfs btrfs dax; do
	echo data > "$VM_MNT/$fs/info-file"; files+=("$VM_MNT/$fs/info-file")
done
echo data > "$TMPDIR/info-file"; files+=("$TMPDIR/info-file")
out=$("$info" --no-fabric "${files[@]}" 2>&1); rc=$?
echo "$out" | sed 's/^/    /'
if [ "$kv" -ge 605 ]; then want='refused with EFAULT (since 6.5)'; jk=efault
else want='accepted but unsafe (before 6.5)'; jk=silent-loss; fi
echo "$out" | grep -qF "writable registration of a shared file mapping: $want" &&
	vm_result - info-kernel PASS "$want" || vm_result - info-kernel FAIL "rc=$rc, no '$want'"
if [ "$kv" -ge 615 ]; then re="^  $VM_RXE: On-Demand Paging for RC \(send recv write read atomic\)"; odp=True
else re="^  $VM_RXE: no On-Demand Paging for RC"; odp=False; fi
echo "$out" | grep -qE "$re" && vm_result - info-rxe-odp PASS "$(echo "$out" | grep -E "^  $VM_RXE:")" ||
	vm_result - info-rxe-odp FAIL "no /$re/"
for fs in ext4 xfs btrfs; do
	echo "$out" | grep -qE "^$VM_MNT/$fs/info-file: shadowed: .* has writeback" &&
		vm_result $fs info-path PASS shadowed || vm_result $fs info-path FAIL "not reported shadowed"
done
echo "$out" | grep -qE "^$VM_MNT/dax/info-file: shadowed: fsdax file" &&
	vm_result dax info-path PASS "shadowed (fsdax)" || vm_result dax info-path FAIL "not reported as fsdax"
echo "$out" | grep -qF "$TMPDIR/info-file: not shadowed: tmpfs has no writeback" &&
	vm_result - info-path-tmpfs PASS "not shadowed" || vm_result - info-path-tmpfs FAIL "tmpfs"
"$info" --json --no-fabric "${files[@]}" | python3 -c '
import json, sys
d = json.load(sys.stdin)
jk, rxe, odp, dax = sys.argv[1], sys.argv[2], sys.argv[3] == "True", sys.argv[4]
assert d["kernel"]["writable_file_registration"] == jk, d["kernel"]
dev = [x for x in d["devices"] if x["name"] == rxe]
assert dev and dev[0]["odp_rc"] == odp, d["devices"]
p = {x["path"]: x for x in d["paths"]}
assert p[dax]["dax"] is True and p[dax]["shadowed"] is True, p[dax]
' "$jk" "$VM_RXE" "$odp" "$VM_MNT/dax/info-file" && vm_result - info-json PASS "parses, agrees" ||
	vm_result - info-json FAIL "json"
rm -f "${files[@]}"

# ---- 2. the installed tree.  meson install writes its log into the build
# directory, read-only here: a scratch build directory that links to it.
sb=$TMPDIR/inst-build dest=$TMPDIR/inst
mkdir -p "$sb/meson-logs" && cp -a "$B/meson-private" "$sb/"
for e in "$B"/*; do
	case ${e##*/} in meson-private|meson-logs) ;; *) ln -s "$e" "$sb/${e##*/}" ;; esac
done
if ! (cd / && meson install -C "$sb" --no-rebuild --quiet --destdir "$dest") >"$TMPDIR/inst.log" 2>&1; then
	vm_result - install FAIL "$(tail -n3 "$TMPDIR/inst.log" | tr '\n' ' ')"; vm_exit
fi
pl=$(find "$dest" -path '*/safe_mr/libsafe_mr_preload.so' | head -n1)
run=$(find "$dest" -path '*/bin/safe_mr-run' | head -n1)
iinfo=$(find "$dest" -path '*/bin/safe_mr-info' | head -n1)
L=${pl%/safe_mr/*}
[ -n "$pl" ] && [ -n "$run" ] && [ -e "$L/libsafe_mr.so.0" ] &&
	vm_result - install PASS "$dest: $pl" || { vm_result - install FAIL "files missing"; vm_exit; }

f=$VM_MNT/ext4/inst-file
# rdma_write_file's verdict: 0 on disk; 1 lost (< 6.5); 2 refused (>= 6.5).
out=$("$VM_RWF" -y msync "$f" 2>&1); rc=$?
if { [ "$kv" -ge 605 ] && [ $rc = 2 ]; } || { [ "$kv" -lt 605 ] && [ $rc = 1 ]; }; then
	vm_result ext4 inst-control PASS "without safe_mr: rc=$rc $out"
else vm_result ext4 inst-control FAIL "without safe_mr: expected lost/refused, rc=$rc $out"; fi
expect_ok() { # CASE CMD...: rdma_write_file (or the linked one) puts the data on disk, shadowed
	local case=$1; shift
	local out rc
	out=$(SAFE_MR_STATS=1 "$@" 2>&1); rc=$?
	if [ $rc = 0 ] && echo "$out" | grep -qE 'safe_mr: stats .*shadowed=[1-9]'; then
		vm_result ext4 $case PASS "$(echo "$out" | grep -m1 '^PASS')"
	else vm_result ext4 $case FAIL "rc=$rc: $(echo "$out" | tr '\n' ' ' | cut -c1-300)"; fi
}
expect_ok inst-preload env LD_PRELOAD="$pl" "$VM_RWF" -y msync "$f"
expect_ok inst-preload-link env LD_PRELOAD="$L/libsafe_mr_preload.so" "$VM_RWF" -y fsync "$f"
eng=$(LD_PRELOAD=$pl cat /proc/self/maps | awk '/libsafe_mr\.so/ { print $6; exit }')
[ "$(realpath "$eng")" = "$(realpath "$L/libsafe_mr.so.0")" ] &&
	vm_result - inst-engine-path PASS "$eng" || vm_result - inst-engine-path FAIL "engine from '$eng'"
expect_ok inst-run "$run" -- "$VM_RWF" -y dereg "$f"

# The C API from the install: pkg-config and the header, built here.
flags=$(PKG_CONFIG_PATH=$L/pkgconfig PKG_CONFIG_SYSROOT_DIR=$dest pkg-config --cflags --libs safe_mr)
if cc -o "$TMPDIR/rwf_api" -D_GNU_SOURCE -DRWF_SAFE_MR_API "$SAFE_MR_SRC/examples/rdma_write_file.c" $flags \
	-lpthread -Wl,-rpath,"$L" >"$TMPDIR/cc.log" 2>&1; then
	expect_ok inst-c-api "$TMPDIR/rwf_api" -y msync "$f"
else vm_result ext4 inst-c-api FAIL "cc: $(head -n3 "$TMPDIR/cc.log" | tr '\n' ' ')"; fi

# The hook over verbs on rxe0: libfabric loads the installed provider and
# opens the verbs fabric through it.
if [ -n "$iinfo" ] && [ -f "$L/libfabric/libsafe_mr-fi.so" ]; then
	hook=$(FI_PROVIDER='verbs;ofi_rxm' FI_UNIVERSE_SIZE=16 "$iinfo" --json | python3 -c '
import json, sys; d = json.load(sys.stdin)["libfabric"]; print(d["hook"], "-", d["detail"])')
	[[ $hook == active* ]] && vm_result - inst-hook-verbs PASS "$hook" || vm_result - inst-hook-verbs FAIL "$hook"
	out=$(FI_PROVIDER='verbs;ofi_rxm' FI_UNIVERSE_SIZE=16 "$run" --fabric -- true 2>&1) &&
		vm_result - inst-run-fabric PASS "safe_mr-run --fabric accepted" ||
		vm_result - inst-run-fabric FAIL "$out"
else
	vm_result - inst-hook-verbs FAIL "no installed hook in $L/libfabric"
fi
rm -f "$f"
vm_exit
