#!/bin/sh
# SPDX-License-Identifier: MIT
# info.sh SAFE_MR_INFO FAKE_VERBS_DIR: safe_mr-info reports this machine:
# the kernel's behaviour for its version, a file on a writeback filesystem
# (shadowed) against tmpfs and a device (not), devices with and without
# On-Demand Paging (the libibverbs test double), the libfabric hook, and
# --json that parses and says the same.
set -u
# meson test puts the build directories of the depends on LD_LIBRARY_PATH,
# the libibverbs test double among them: the tools find theirs by RUNPATH.
unset LD_LIBRARY_PATH
info=$1 fake=$2
fail=0
ok() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; fail=1; }
show() { printf '%s\n' "$1" | sed 's/^/    /'; }

# A file here (the build directory: not tmpfs, the tests require it) and
# one on tmpfs.
disk=$(mktemp "$PWD/safe_mr-info.XXXXXX") || exit 1
shm=$(mktemp /dev/shm/safe_mr-info.XXXXXX) || exit 1
trap 'rm -f "$disk" "$shm"' EXIT
[ "$(stat -f -c %T /dev/shm)" = tmpfs ] || bad "/dev/shm is not tmpfs here"
fstype=$(stat -f -c %T "$disk")
case $fstype in tmpfs|ramfs) bad "$PWD is on $fstype: need a disk filesystem"; exit 1 ;; esac

out=$("$info" "$disk" "$shm" /dev/null 2>&1); rc=$?
[ $rc -eq 0 ] || bad "exit $rc"
show "$out"
printf '%s\n' "$out" | head -1 | grep -qE '^safe_mr [0-9]+\.[0-9]+\.[0-9]+ \(engine [0-9]+\.[0-9]+\.[0-9]+\)$' &&
	ok "version line" || bad "version line"
rel=$(uname -r); maj=${rel%%.*}; min=${rel#*.}; min=${min%%[!0-9]*}
if [ "$maj" -gt 6 ] || { [ "$maj" -eq 6 ] && [ "$min" -ge 5 ]; }; then
	want='refused with EFAULT (since 6.5)'; jwant=efault
else
	want='accepted but unsafe (before 6.5)'; jwant=silent-loss
fi
printf '%s\n' "$out" | grep -qF "writable registration of a shared file mapping: $want" &&
	ok "kernel $rel: $want" || bad "kernel $rel: no '$want'"
printf '%s\n' "$out" | grep -qF "registration of an fsdax file: refused with EOPNOTSUPP" &&
	ok "fsdax line" || bad "fsdax line"
printf '%s\n' "$out" | grep -qE "^$disk: shadowed: .* has writeback" &&
	ok "$fstype file: shadowed" || bad "$fstype file not shadowed"
printf '%s\n' "$out" | grep -qF "$shm: not shadowed: tmpfs has no writeback" &&
	ok "tmpfs file: not shadowed" || bad "tmpfs file"
printf '%s\n' "$out" | grep -qF "/dev/null: not shadowed: device mapping" &&
	ok "device: not shadowed" || bad "device"
printf '%s\n' "$out" | grep -qE '^io_uring: (usable|not usable: )' && ok "io_uring line" || bad "io_uring line"
if printf '%s\n' "$out" | grep -qE '^libfabric hook: no-support:'; then
	ok "built without libfabric: says so"
else
	printf '%s\n' "$out" | grep -qE "^libfabric hook: active: libfabric [0-9.]+ loaded .*/libsafe_mr-fi.so; provider .* opens through the hook" &&
		ok "libfabric finds the hook and applies it" || bad "hook line"
fi
"$info" /nonexistent/x >/dev/null 2>&1 && bad "a missing path exits 0" || ok "a missing path: exit 1"

# --json: parses, and says the same.
json=$("$info" --json "$disk" "$shm" /dev/null) || bad "--json exit $?"
printf '%s' "$json" | python3 -c '
import json, sys
d = json.load(sys.stdin)
want_kernel, disk, shm = sys.argv[1:4]
assert d["kernel"]["writable_file_registration"] == want_kernel, d["kernel"]
assert d["kernel"]["fsdax_registration"] == "eopnotsupp"
p = {x["path"]: x for x in d["paths"]}
assert p[disk]["shadowed"] is True and p[disk]["kind"] == "regular", p[disk]
assert p[shm]["shadowed"] is False and p[shm]["filesystem"] == "tmpfs", p[shm]
assert p["/dev/null"]["shadowed"] is False and p["/dev/null"]["kind"] == "device"
assert isinstance(d["io_uring"]["usable"], bool)
assert d["libfabric"]["hook"] in ("active", "no-support"), d["libfabric"]
print("json ok:", d["version"], d["kernel"]["release"], len(d["devices"]), "devices")
' "$jwant" "$disk" "$shm" && ok "--json parses and agrees" || bad "--json"

# Devices: the libibverbs test double, without and with ODP for RC.
out=$(LD_LIBRARY_PATH=$fake "$info" --no-fabric 2>&1)
printf '%s\n' "$out" | grep -qx '  fake0: no On-Demand Paging for RC: file pages are shadowed' &&
	ok "device without ODP" || { bad "device without ODP:"; show "$out"; }
out=$(LD_LIBRARY_PATH=$fake FAKE_VERBS_ODP=1 "$info" --no-fabric 2>&1)
printf '%s\n' "$out" | grep -qx '  fake0: On-Demand Paging for RC (send recv write read atomic): SAFE_MR_MODE=auto registers file pages with ODP' &&
	ok "device with ODP for RC" || { bad "device with ODP:"; show "$out"; }
LD_LIBRARY_PATH=$fake FAKE_VERBS_ODP=1 "$info" --json --no-fabric | python3 -c '
import json, sys
d = json.load(sys.stdin)
assert [(x["name"], x["odp_rc"], x["mode_auto"]) for x in d["devices"]] == [("fake0", True, "odp")], d["devices"]
assert d["libfabric"]["hook"] == "not-probed"
' && ok "--json devices" || bad "--json devices"
exit $fail
