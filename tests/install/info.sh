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
# Per-path errors on stderr, not stdout.
o1=$("$info" --no-fabric --no-probe /nonexistent/x 2>/dev/null)
e1=$("$info" --no-fabric --no-probe /nonexistent/x 2>&1 >/dev/null)
! printf '%s\n' "$o1" | grep -q nonexistent && printf '%s\n' "$e1" | grep -qx 'safe_mr-info: /nonexistent/x: No such file or directory' &&
	ok "per-path error on stderr" || { bad "per-path error:"; show "$o1"; show "$e1"; }
# Usage error: 2, as the man page says.
"$info" --bogus >/dev/null 2>&1; rc=$?
[ $rc -eq 2 ] && ok "--bogus: exit 2" || bad "--bogus: exit $rc, want 2"
grep -q '^2 for a usage error' "$(dirname "$0")/../../man/safe_mr-info.1" &&
	ok "man page: 2 for a usage error" || bad "man page does not say 2 for a usage error"
# No contradictory verdicts: /dev/zero is shmem; a file you can only read
# is not shadowed.
printf '%s\n' "$out" | grep -qF "/dev/zero" && bad "unexpected /dev/zero"
o=$("$info" --no-fabric --no-probe /dev/zero 2>&1)
printf '%s\n' "$o" | grep -qF "/dev/zero: not shadowed: a shared mapping of /dev/zero is anonymous shared memory (shmem)" &&
	ok "/dev/zero: shmem, not a device" || { bad "/dev/zero:"; show "$o"; }
if [ "$(id -u)" = 0 ] && command -v runuser >/dev/null; then
	chmod 644 "$disk"; chmod o+x "$(dirname "$info")" 2>/dev/null
	o=$(runuser -u nobody -- "$info" --no-fabric --no-probe "$disk" 2>&1)
else
	chmod 444 "$disk"; o=$("$info" --no-fabric --no-probe "$disk" 2>&1); chmod 644 "$disk"
fi
printf '%s\n' "$o" | grep -qF "$disk: not shadowed: you cannot open it for writing: only a read-only mapping" &&
	ok "read-only file: not shadowed, no contradiction" || { bad "read-only file:"; show "$o"; }
# Kernel behaviour: labelled inferred (no device here) or probed (the test
# double, which behaves as the kernel it is told).
printf '%s\n' "$out" | grep -qE "^kernel $rel \((inferred from the version|probed on [^)]*)" &&
	ok "kernel behaviour labelled probed or inferred" || bad "kernel line has no label"
# The test double plays 6.1 by naming the mapped file through
# /proc/self/map_files, which needs CAP_SYS_ADMIN: root only.
if [ "$(id -u)" = 0 ]; then
o=$(LD_LIBRARY_PATH=$fake FAKE_VERBS_KERNEL=6.1 "$info" --no-fabric 2>&1)
printf '%s\n' "$o" | grep -qx "kernel $rel (probed on fake0):" &&
	printf '%s\n' "$o" | grep -qF "writable registration of a shared file mapping: accepted but unsafe (before 6.5)" &&
	ok "probed on the device (test double as 6.1): accepted but unsafe" || { bad "probe 6.1:"; show "$o"; }
elif [ -n "${CI:-}" ]; then
	bad "probe 6.1: the test double needs root"
else
	echo "SKIP: probe 6.1 (the test double needs root to play 6.1)"
fi
o=$(LD_LIBRARY_PATH=$fake FAKE_VERBS_KERNEL=6.5 "$info" --no-fabric 2>&1)
printf '%s\n' "$o" | grep -qF "writable registration of a shared file mapping: refused with EFAULT (since 6.5)" &&
	ok "probed on the device (test double as 6.5): EFAULT" || { bad "probe 6.5:"; show "$o"; }
o=$("$info" --no-fabric --no-probe 2>&1)
printf '%s\n' "$o" | grep -qx "kernel $rel (inferred from the version: not probed):" &&
	ok "--no-probe: inferred" || { bad "--no-probe:"; show "$o"; }
# No device: a hint (modules, rxe), in text and JSON.
if printf '%s\n' "$out" | grep -qE '^RDMA devices: (none|error: )'; then
	printf '%s\n' "$out" | grep -qE '^  hint: load the NIC.s driver modules .*rdma_rxe' &&
		ok "no device: hint" || bad "no device: no hint"
fi

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
assert "devices_error" in d and "devices_hint" in d, d.keys()
if not d["devices"]:
    assert d["devices_hint"] and "rdma_rxe" in d["devices_hint"], d
assert d["kernel"]["source"].startswith(("probed on ", "inferred from the version")), d["kernel"]
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
# JSON keeps errors: a path that cannot be read has an error key.
"$info" --json --no-fabric --no-probe /nonexistent/x 2>/dev/null | python3 -c '
import json, sys
d = json.load(sys.stdin)
assert d["paths"][0]["error"] == "No such file or directory", d["paths"]
' && ok "--json: a path error keeps its error key" || bad "--json path error"

# --config: the effective settings and their warnings, like ucx_info -c.
o=$(env -u SAFE_MR_LOG SAFE_MR_MODE=fast SAFE_MR_FLUSH_MS=50 FI_SAFE_MR_RESERVE=off SAFE_MR_MDOE=1 \
	"$info" --config 2>/dev/null); rc=$?
if [ $rc -eq 1 ] && printf '%s\n' "$o" | grep -q '^  SAFE_MR_MODE=bounce	(default;' &&
   printf '%s\n' "$o" | grep -qF 'warning: ignoring SAFE_MR_MODE=fast: not a valid value (accepted: bounce, auto, off)' &&
   printf '%s\n' "$o" | grep -q '^  SAFE_MR_FLUSH_MS=50	(SAFE_MR_FLUSH_MS;' &&
   printf '%s\n' "$o" | grep -q '^  SAFE_MR_RESERVE=off	(FI_SAFE_MR_RESERVE (libfabric hook only);' &&
   printf '%s\n' "$o" | grep -q '^  SAFE_MR_GUARDIAN=on	(default;' &&
   printf '%s\n' "$o" | grep -qF 'warning: unknown variable SAFE_MR_MDOE ignored'; then
	ok "--config: values, sources, warnings (exit 1)"
else bad "--config (exit $rc):"; show "$o"; fi
o=$(env -u SAFE_MR_MODE "$info" --config 2>&1) && ok "--config, all valid: exit 0" || { bad "--config valid:"; show "$o"; }
env SAFE_MR_MODE=fast "$info" --json --config 2>/dev/null | python3 -c '
import json, sys
c = {x["name"]: x for x in json.load(sys.stdin)["config"]}
assert c["SAFE_MR_MODE"]["value"] == "bounce" and "fast" in c["SAFE_MR_MODE"]["warning"], c
assert c["SAFE_MR_GUARDIAN"]["fabric_parameter"] == "FI_SAFE_MR_GUARDIAN"
assert len([x for x in c.values() if x["fabric_parameter"]]) == 7
' && ok "--json --config" || bad "--json --config"

# --pid: is this process protected?
preload=$(dirname "$info")/../preload/libsafe_mr_preload.so
env LD_PRELOAD="${LD_PRELOAD:+$LD_PRELOAD:}$preload" sleep 60 & p1=$!
sleep 60 & p2=$!
env LD_PRELOAD="${LD_PRELOAD:+$LD_PRELOAD:}$preload" SAFE_MR_MODE=off sleep 60 & p3=$!
# A stand-in guardian: a process named safe_mr-guardian, argv[1] the pid.
gdir=$(mktemp -d) && cp "$(command -v sleep)" "$gdir/safe_mr-guardian"
"$gdir/safe_mr-guardian" "$p1" & g=$!
sleep 0.5
o=$("$info" --pid "$p1" 2>&1); rc=$?
[ $rc -eq 0 ] && printf '%s\n' "$o" | grep -qx '  safe_mr: preload' &&
	printf '%s\n' "$o" | grep -qx "  protector: guardian (pid $g); node service: none" &&
	printf '%s\n' "$o" | grep -q '^  bytes shadowed: 0 ' && printf '%s\n' "$o" | grep -q '^  writeback pending: not shown' &&
	printf '%s\n' "$o" | tail -1 | grep -qx '  protected' &&
	ok "--pid: preloaded, guardian alive: protected (0)" || { bad "--pid preloaded (exit $rc):"; show "$o"; }
o=$("$info" --pid "$p2" 2>&1); rc=$?
[ $rc -eq 1 ] && printf '%s\n' "$o" | tail -1 | grep -qx '  not protected: safe_mr is not loaded in it' &&
	printf '%s\n' "$o" | grep -qx '  protector: none; node service: none' &&
	ok "--pid: plain process: not protected (1)" || { bad "--pid plain (exit $rc):"; show "$o"; }
o=$("$info" --pid "$p3" 2>&1); rc=$?
[ $rc -eq 1 ] && printf '%s\n' "$o" | tail -1 | grep -q '^  not protected: SAFE_MR_MODE=off' &&
	ok "--pid: mode off: not protected" || { bad "--pid mode off (exit $rc):"; show "$o"; }
"$info" --json --pid "$p1" | python3 -c '
import json, sys
p = json.load(sys.stdin)["process"]
assert p["safe_mr"] == "preload" and p["protector"] == "guardian" and p["verdict"] == "protected", p
assert p["node_service"] == "none" and p["writeback_pending"] is None and p["bytes_shadowed"] == 0, p
' && ok "--json --pid" || bad "--json --pid"
kill "$p1" "$p2" "$p3" "$g" 2>/dev/null; wait 2>/dev/null; rm -rf "$gdir"
# PID 1 of its own PID namespace (a container without an init): no
# guardian can outlive it, so it is not protected, and says why.
if [ "$(id -u)" = 0 ] && unshare --pid --fork true 2>/dev/null; then
	unshare --pid --fork env LD_PRELOAD="${LD_PRELOAD:+$LD_PRELOAD:}$preload" sleep 60 & u=$!
	sleep 0.5
	p4=$(cat /proc/$u/task/$u/children 2>/dev/null | tr -d ' ')
	o=$("$info" --pid "$p4" 2>&1); rc=$?
	[ $rc -eq 1 ] && printf '%s\n' "$o" | tail -1 | grep -q '^  not protected: it is PID 1 of its PID namespace' &&
		ok "--pid: PID 1 of a PID namespace: not protected, and why" ||
		{ bad "--pid of a namespace's PID 1 ($p4, exit $rc):"; show "$o"; }
	kill -KILL "$p4" "$u" 2>/dev/null; wait 2>/dev/null	# PID 1 takes only SIGKILL from outside
elif [ -n "${CI:-}" ]; then
	bad "--pid of a namespace's PID 1: needs root and unshare"
else
	echo "SKIP: --pid of a namespace's PID 1 (needs root)"
fi
o=$("$info" --pid 999999999 2>&1); rc=$?
[ $rc -eq 1 ] && printf "%s\n" "$o" | grep -q "^safe_mr-info: --pid 999999999: /proc/999999999/maps: No such file" && ok "--pid of nothing: 1, reason on stderr" || { bad "--pid 999999999: exit $rc"; show "$o"; }
exit $fail
