#!/bin/bash
# SPDX-License-Identifier: MIT
# Power cut after the registering process died without a sync point (see
# README.md, power-cut contract; lib/guard.h).  On ext4, xfs and btrfs:
#   kill:  rdma_write_file under the preload, a peer RDMA-WRITEs the file
#          mapping (no sync: -y none), the writer holds; SIGKILL; once its
#          safe_mr-guardian has exited, the cut.  The disk image must hold
#          what the NIC wrote.
#   segv:  the same, the writer dies of SIGSEGV.
#   off:   negative control, SAFE_MR_GUARDIAN=off, SIGKILL: the NIC's data
#          died with the process; the image holds the old data.
# (_exit and execve: tests/unit/test_guardian.c.)
. "$SAFE_MR_SRC/tests/vm/lib.sh"
step=$1
cases() { # fs name signal guardian want
	for fs in ext4 xfs btrfs; do
		echo "$fs guardian-kill KILL on new"
		echo "$fs guardian-segv SEGV on new"
		echo "$fs guardian-off KILL off old"
	done
}

# The guardian watching pid $1 (its argv: safe_mr-guardian PID LEVEL).
guardian_of() {
	local d
	for d in /proc/[0-9]*; do
		case "$(tr '\0' ' ' < "$d/cmdline" 2>/dev/null)" in
		"safe_mr-guardian $1 "*) echo "${d#/proc/}"; return 0 ;;
		esac
	done
	return 1
}
# Still running (not gone, not a zombie: init here may not reap)?
running() { [ -e /proc/$1/stat ] && [ "$(cut -d' ' -f3 /proc/$1/stat 2>/dev/null)" != Z ]; }

case $step in
guest)
	[ -x "$VM_RWF" ] && [ -e "$VM_PRELOAD" ] || { vm_result - build FAIL "rdma_write_file or preload not built"; vm_exit; }
	while read -r fs name sig guard want; do
		f=$VM_MNT/$fs/pc-$name
		log=$VM_PC_OUT/$fs-$name.log
		exp=$VM_PC_OUT/$fs-$name.bytes
		SAFE_MR_GUARDIAN=$guard SAFE_MR_LOG=warn LD_PRELOAD=$VM_PRELOAD \
			"$VM_RWF" -H -o write -y none -E "$exp" "$f" > "$log" 2>&1 &
		w=$!
		for i in $(seq 600); do grep -q '^HOLD' "$log" && break; kill -0 $w 2>/dev/null || break; sleep 0.1; done
		if ! grep -q '^HOLD' "$log" || [ ! -s "$exp" ]; then
			vm_result $fs powercut-$name FAIL "writer did not reach HOLD: $(head -n3 "$log" | tr '\n' ' ')"
			kill -9 $w 2>/dev/null
			continue
		fi
		sha=$(sha256sum < "$exp" | cut -d' ' -f1)
		before=$(sha256sum < "$f" | cut -d' ' -f1)
		g=$(guardian_of $w)
		if [ $guard = on ] && [ -z "$g" ]; then
			vm_result $fs powercut-$name FAIL "no safe_mr-guardian for writer $w"
		elif [ $guard = off ] && [ -n "$g" ]; then
			vm_result $fs powercut-$name FAIL "a guardian runs with SAFE_MR_GUARDIAN=off"
		fi
		# Nothing synced: the page cache still has the old data.
		[ "$before" != "$sha" ] || vm_result $fs powercut-$name FAIL "the file had the NIC's data before the death"
		kill -$sig $w
		wait $w 2>/dev/null
		t0=$SECONDS
		if [ -n "$g" ]; then
			for i in $(seq 300); do running $g || break; sleep 0.1; done
			running $g && { vm_result $fs powercut-$name FAIL "guardian $g still running after 30 s"; continue; }
		fi
		after=$(sha256sum < "$f" | cut -d' ' -f1)
		echo "$sha $want" > "$VM_PC_OUT/$fs-$name.expect"
		vm_result $fs powercut-$name-armed PASS "writer died of SIG$sig; guardian $guard${g:+ done in $((SECONDS - t0)) s}; file $( [ "$after" = "$sha" ] && echo holds || echo lacks ) the NIC's data before the cut"
	done < <(cases)
	vm_exit
	;;
host)
	vm_exit
	;;
verify)
	n=0
	for e in "$VM_PC_OUT"/*.expect; do
		[ -e "$e" ] || continue
		n=$((n + 1))
		b=$(basename "$e" .expect); fs=${b%%-*}; name=${b#*-}
		read -r sha want < "$e"
		f=$VM_MNT/$fs/pc-$name
		got=$(dd if="$f" iflag=direct bs=1M 2>/dev/null | sha256sum | cut -d' ' -f1)
		if [ ! -e "$f" ]; then
			vm_result $fs powercut-$name FAIL "file lost in the power cut"
		elif { [ $want = new ] && [ "$got" = "$sha" ]; } || { [ $want = old ] && [ "$got" != "$sha" ]; }; then
			vm_result $fs powercut-$name PASS "after the cut and recovery the file holds the $want data"
		else
			vm_result $fs powercut-$name FAIL "after the cut and recovery the file should hold the $want data"
		fi
	done
	[ $n -gt 0 ] || vm_result - powercut-guardian FAIL "no expectations in $VM_PC_OUT"
	vm_exit
	;;
esac
