#!/bin/sh
# SPDX-License-Identifier: MIT
# run.sh SAFE_MR_RUN CFG_PROG STATIC_PROG PRELOAD ENGINE [PUT_FILE]: the
# launcher protects when it can and refuses (exit 126, a message, nothing
# left running) when it cannot; also under Open MPI's mpirun ($MPIRUN).
# PRELOAD is the preload the launcher must pick by itself; ENGINE a real
# library that is not the preload (loads fine, never reports: the runtime
# check's negative case).
set -u
# meson test puts the build directories of the depends on LD_LIBRARY_PATH,
# the libibverbs test double among them: the tools find theirs by RUNPATH.
unset LD_LIBRARY_PATH
run=$1 prog=$2 static=$3 preload=$4 engine=$5 put_file=${6:-}
fail=0
dir=$(mktemp -d "${TMPDIR:-/tmp}/safe_mr-run.XXXXXX") || exit 1
trap 'rm -rf "$dir"' EXIT
unset SAFE_MR_MODE SAFE_MR_LOG SAFE_MR_STATS SAFE_MR_STATS_FILE SAFE_MR_FLUSH_MS SAFE_MR_WRITEBACK
unset SAFE_MR_RUN_CHECK FI_HOOK FI_PROVIDER_PATH
# Sanitizer builds pass the ASan runtime in LD_PRELOAD: it must stay first.
base_preload=${LD_PRELOAD-}

ok() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; fail=1; }
show() { printf '%s\n' "$1" | sed 's/^/    /'; }

# 1. Protects: the preload is loaded (absolute path), its report consumed.
out=$("$run" -- sh -c 'echo "LD_PRELOAD=$LD_PRELOAD"; echo "CHECK=${SAFE_MR_RUN_CHECK-unset}"; grep -c libsafe_mr_preload /proc/$$/maps' 2>&1); rc=$?
want=$preload
[ -n "$base_preload" ] && want=$base_preload:$preload
if [ $rc -eq 0 ] && printf '%s\n' "$out" | grep -qxF "LD_PRELOAD=$want" &&
   printf '%s\n' "$out" | grep -qx 'CHECK=unset' && ! printf '%s\n' "$out" | grep -qx 0; then
	ok "runs with LD_PRELOAD=$want, preload mapped, check variable consumed"
else bad "protected run (rc $rc):"; show "$out"; fi

# The engine says, at info level, that it is active through the preload.
out=$("$run" --log=info --guardian=off -- true 2>&1)
printf '%s\n' "$out" | grep -q 'safe_mr\[[0-9]*\]: info: safe_mr active: mode=bounce, preload, protector: none (SAFE_MR_GUARDIAN=off)' &&
	ok "info line: active through the preload" || { bad "no 'safe_mr active ... preload' line:"; show "$out"; }

# An LD_PRELOAD already set is kept, after ours (or after the ASan runtime).
out=$(LD_PRELOAD=${base_preload:+$base_preload:}$engine "$run" -- sh -c 'echo "LD_PRELOAD=$LD_PRELOAD"' 2>&1)
printf '%s\n' "$out" | grep -qxF "LD_PRELOAD=${base_preload:+$base_preload:}$preload:$engine" &&
	ok "prepended to an existing LD_PRELOAD" || { bad "existing LD_PRELOAD:"; show "$out"; }

# 2. The program's exit status and signals are its own.
"$run" -- sh -c 'exit 7'; rc=$?
[ $rc -eq 7 ] && ok "exit status passed on" || bad "exit 7 came back as $rc"
"$run" -- sh -c 'kill -USR1 $$'; rc=$?
[ $rc -eq 138 ] && ok "death by signal passed on" || bad "SIGUSR1 death came back as $rc"
"$run" -- sh -c "echo \$\$ > $dir/pid; exec sleep 30" & lpid=$!
i=0; while [ ! -s "$dir/pid" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
sleep 0.3
kill -TERM $lpid; wait $lpid; rc=$?
[ $rc -eq 143 ] && ! kill -0 "$(cat "$dir/pid")" 2>/dev/null &&
	ok "SIGTERM to the launcher reaches the program" || bad "SIGTERM forwarding: rc $rc"
rm -f "$dir/pid"

# 3. Options become SAFE_MR_* variables; bad values are refused up front.
out=$("$run" --mode=auto --log=info --stats --flush-ms=50 --writeback=pwrite --reserve=off \
	--guardian=off --stats-file="$dir/s.%p" --log-file="$dir/l.%h.%r" -- env 2>&1)
for v in SAFE_MR_MODE=auto SAFE_MR_LOG=info SAFE_MR_STATS=1 SAFE_MR_FLUSH_MS=50 \
	 SAFE_MR_WRITEBACK=pwrite SAFE_MR_RESERVE=off SAFE_MR_GUARDIAN=off \
	 "SAFE_MR_STATS_FILE=$dir/s.%p" "SAFE_MR_LOG_FILE=$dir/l.%h.%r"; do
	printf '%s\n' "$out" | grep -qxF "$v" || { bad "option did not set $v"; show "$out"; }
done
ok "options set SAFE_MR_MODE/LOG/STATS/FLUSH_MS/WRITEBACK/RESERVE/GUARDIAN/STATS_FILE/LOG_FILE"
# Usage errors: 125 (as env), the option named, and a pointer to --help.
for o in --mode=fast --log=loud --flush-ms=soon --writeback=aio --reserve=always \
	--guardian=maybe --check-timeout=0 --stats-file=s.%q --log-file=l.% --bogus; do
	out=$("$run" "$o" -- true 2>&1); rc=$?
	if [ $rc -eq 125 ] && printf '%s\n' "$out" | grep -qF -- "${o%%=*}" &&
	   printf '%s\n' "$out" | tail -1 | grep -q "^Try 'safe_mr-run --help'"; then
		ok "$o refused (125), named, 'Try --help'"
	else bad "$o: exit $rc, want 125, the option and 'Try --help':"; show "$out"; fi
done
out=$("$run" 2>&1); rc=$?
[ $rc -eq 125 ] && ok "no program: 125" || { bad "no program: exit $rc"; show "$out"; }

# 4. Refusals before anything runs: exit 126 and the reason.
expect_refusal() { # NAME REGEX CMD...
	name=$1 re=$2; shift 2
	out=$("$@" 2>&1); rc=$?
	if [ $rc -eq 126 ] && printf '%s\n' "$out" | grep -qE "$re"; then ok "$name: refused (126)"
	else bad "$name: exit $rc, want 126 and /$re/:"; show "$out"; fi
}
expect_refusal "static program" "statically linked: LD_PRELOAD cannot reach it" "$run" -- "$static"
if [ "$(id -u)" = 0 ]; then
	cp "$prog" "$dir/suid" && chown nobody "$dir/suid" && chmod 4755 "$dir/suid"
	expect_refusal "setuid program" "set-user/group-ID: the dynamic loader ignores" "$run" -- "$dir/suid"
else
	echo "skip: not root: cannot make a setuid program to test the refusal"
fi
expect_refusal "missing preload" "the preload $dir/none.so: No such file" "$run" --preload="$dir/none.so" -- true
expect_refusal "SAFE_MR_MODE=off inherited" "SAFE_MR_MODE=off is set in the environment" env SAFE_MR_MODE=off "$run" -- true
out=$("$run" --mode=off -- true 2>&1) && ok "--mode=off asked for: runs" || { bad "--mode=off:"; show "$out"; }
"$run" -- "$dir/nonexistent" 2>/dev/null; rc=$?
[ $rc -eq 127 ] && ok "no such program: 127" || bad "no such program: exit $rc"
"$run" -- no-such-program-anywhere 2>/dev/null; rc=$?
[ $rc -eq 127 ] && ok "no such program in PATH: 127" || bad "no such program in PATH: exit $rc"
# Exists but cannot be executed: 126, as the shell says.
printf 'data\n' > "$dir/notexec"
chmod 644 "$dir/notexec"
out=$("$run" -- "$dir/notexec" 2>&1); rc=$?
[ $rc -eq 126 ] && ok "not executable: 126" || { bad "not executable: exit $rc, want 126"; show "$out"; }
# A script whose #! interpreter is missing: the message names the script.
printf '#!%s/no-interp\necho hi\n' "$dir" > "$dir/script"; chmod 755 "$dir/script"
out=$("$run" -- "$dir/script" 2>&1); rc=$?
[ $rc -eq 126 ] && printf '%s\n' "$out" | grep -qF "$dir/script: its #! interpreter $dir/no-interp: No such file" &&
	ok "missing #! interpreter: 126, names the script" || { bad "missing interpreter: exit $rc"; show "$out"; }
# Another architecture, by name (a 32-bit x86 program, where gcc can build one).
if [ "$(uname -m)" = x86_64 ] && printf 'int main(void){return 0;}\n' |
	cc -m32 -x c -o "$dir/prog32" - 2>/dev/null; then
	expect_refusal "32-bit program" "prog32 is built for i386 \\(32-bit x86\\), the preload for x86-64" \
		"$run" -- "$dir/prog32"
else
	echo "skip: no 32-bit x86 compiler (gcc-multilib): architecture names untested"
fi

# 5. The runtime check.  A library that is not the preload loads fine and
# never reports: the program is stopped, nothing stays behind.
start=$(date +%s)
out=$("$run" --preload="$engine" --check-timeout=2 -- sh -c "echo \$\$ > $dir/pid; exec sleep 30" 2>&1); rc=$?
took=$(( $(date +%s) - start ))
pid=$(cat "$dir/pid" 2>/dev/null)
if [ $rc -eq 126 ] && [ $took -lt 15 ] && [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null &&
   printf '%s\n' "$out" | grep -q 'safe_mr is not active in it (no report from safe_mr within 2 s); stopped it'; then
	ok "no report: program stopped after ${took}s, exit 126"
else bad "no report: exit $rc after ${took}s, pid '$pid':"; show "$out"; fi
out=$("$run" --preload="$engine" -- true 2>&1); rc=$?
[ $rc -eq 126 ] && printf '%s\n' "$out" | grep -q 'it exited with status 0 without safe_mr' &&
	ok "exited without a report: 126, not its own 0" || { bad "exited without report: $rc"; show "$out"; }
# Negative control of the check itself: the same with the preload passes.
"$run" --preload="$preload" --check-timeout=2 -- true && ok "control: the real preload passes" ||
	bad "control: the real preload did not pass"

# 6. --fabric: the hook's variables, after the probe.
if "$run" -n --fabric -- true >/dev/null 2>&1; then
	out=$("$run" --fabric -- sh -c 'echo "FI_HOOK=$FI_HOOK"; echo "FI_PROVIDER_PATH=$FI_PROVIDER_PATH"' 2>&1)
	printf '%s\n' "$out" | grep -qx 'FI_HOOK=safe_mr' &&
		printf '%s\n' "$out" | grep -q '^FI_PROVIDER_PATH=/.*' &&
		ok "--fabric sets FI_HOOK and FI_PROVIDER_PATH" || { bad "--fabric:"; show "$out"; }
	out=$(FI_PROVIDER_PATH=/nonexistent "$run" --fabric -- sh -c 'echo "FI_PROVIDER_PATH=$FI_PROVIDER_PATH"' 2>&1)
	printf '%s\n' "$out" | grep -q '^FI_PROVIDER_PATH=/.*:/nonexistent$' &&
		ok "--fabric prepends to FI_PROVIDER_PATH" || { bad "--fabric FI_PROVIDER_PATH:"; show "$out"; }
else
	bad "--fabric unavailable: $("$run" -n --fabric -- true 2>&1)"
fi

# 7. Under Open MPI's mpirun: every rank checks itself.
if [ -z "${MPIRUN:-}" ]; then
	bad "Open MPI's mpirun not found (apt-get install openmpi-bin)"
else
	export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
	mpi="$MPIRUN --oversubscribe --bind-to none -np 2 --mca oob_tcp_if_include lo"
	[ -n "$base_preload" ] && mpi="$mpi -x LD_PRELOAD -x ASAN_OPTIONS"
	out=$($mpi "$run" --stats-file="$dir/rank.%r" -- "$prog" register 2>&1); rc=$?
	if [ $rc -eq 0 ] && grep -q '^safe_mr: stats pid=[0-9]* registrations=1 ' "$dir/rank.0" \
	   && grep -q '^safe_mr: stats pid=[0-9]* registrations=1 ' "$dir/rank.1"; then
		ok "mpirun -np 2 safe_mr-run: both ranks protected, one stats file per rank"
	else bad "mpirun protected run (rc $rc):"; show "$out"; ls "$dir"; fi
	start=$(date +%s)
	out=$($mpi "$run" --preload="$engine" --check-timeout=3 -- sleep 60 2>&1); rc=$?
	took=$(( $(date +%s) - start ))
	n=$(printf '%s\n' "$out" | grep -c 'safe_mr is not active in it')
	if [ $rc -ne 0 ] && [ $took -lt 40 ] && [ "$n" -ge 1 ]; then
		ok "mpirun: unprotected ranks stopped, job failed (exit $rc after ${took}s, $n rank messages)"
	else bad "mpirun refusal: exit $rc after ${took}s, $n messages:"; show "$out"; fi
	# An unmodified one-sided MPI job through the launcher with --fabric:
	# preload and hook, and the data on disk (put_file's own verdict).
	if [ -n "$put_file" ]; then
		out=$(FI_PROVIDER=sockets FI_SOCKETS_IFACE=lo $mpi --mca pml ob1 --mca btl self,ofi \
			--mca btl_ofi_mode 2 --mca btl_ofi_provider_include sockets \
			--mca osc rdma --mca osc_rdma_btls ofi -x FI_PROVIDER -x FI_SOCKETS_IFACE \
			"$run" --fabric --stats -- "$put_file" "$dir/put.dat" --expect shadow-msync 2>&1); rc=$?
		if [ $rc -eq 0 ] && printf '%s\n' "$out" | grep -q '^put_file\[0\]: PASS (shadow-msync)' &&
		   printf '%s\n' "$out" | grep -qE '^safe_mr: stats pid=[0-9]+ registrations=[1-9][0-9]* shadowed=[1-9]'; then
			ok "mpirun safe_mr-run --fabric: MPI_Put into a file window shadowed and on disk"
		else bad "mpirun --fabric put_file (rc $rc):"; show "$out"; fi
	fi
fi
exit $fail
