#!/bin/bash
# SPDX-License-Identifier: MIT
# Power cut after the registering process died without a sync point (see
# README.md, power-cut contract; lib/guard.h).  rdma_write_file runs under
# the preload; a peer RDMA-WRITEs the file mapping (no sync: -y none), the
# writer holds; then it dies, and once its safe_mr-guardian has exited, the
# cut.  The disk image must hold what the NIC wrote.  On every filesystem:
#   kill:  SIGKILL;
#   segv, exit, exec: the writer crashes (SIGSEGV), calls _exit, calls
#          execve (rdma_write_file -D, on SIGUSR1 in the hold);
#   off:   negative control, SAFE_MR_GUARDIAN=off, SIGKILL: the NIC's data
#          died with the process, the image holds the old data.
# The writers run side by side (TCG is slow to start each).
. "$SAFE_MR_SRC/tests/vm/lib.sh"
step=$1
cases() { # fs name death guardian want
	for fs in ext4 xfs btrfs; do
		echo "$fs guardian-kill KILL on new"
		echo "$fs guardian-segv segv on new"
		echo "$fs guardian-exit exit on new"
		echo "$fs guardian-exec exec on new"
		echo "$fs guardian-off KILL off old"
	done
}

# The guardian watching pid $1 (its argv: safe_mr-guardian PID LEVEL).
guardian_of() {
	local f
	f=$(grep -lsaP "^safe_mr-guardian\x00$1\x00" /proc/[0-9]*/cmdline | head -n1)
	[ -n "$f" ] && { f=${f#/proc/}; echo "${f%/cmdline}"; }
}
# Still running (not gone, not a zombie: init here may not reap)?
running() { [ -e /proc/$1/stat ] && [ "$(cut -d' ' -f3 /proc/$1/stat 2>/dev/null)" != Z ]; }

case $step in
guest)
	[ -x "$VM_RWF" ] && [ -e "$VM_PRELOAD" ] || { vm_result - build FAIL "rdma_write_file or preload not built"; vm_exit; }
	declare -A W G
	t0=$SECONDS
	while read -r fs name death guard want; do
		d=; [ $death = KILL ] || d="-D $death"
		SAFE_MR_GUARDIAN=$guard SAFE_MR_LOG=warn LD_PRELOAD=$VM_PRELOAD \
			"$VM_RWF" -H -o write -y none $d -E "$VM_PC_OUT/$fs-$name.bytes" \
			"$VM_MNT/$fs/pc-$name" > "$VM_PC_OUT/$fs-$name.log" 2>&1 &
		W[$fs-$name]=$!
	done < <(cases)
	for i in $(seq 1200); do
		all=1
		for k in "${!W[@]}"; do
			grep -q '^HOLD' "$VM_PC_OUT/$k.log" || ! kill -0 ${W[$k]} 2>/dev/null || all=0
		done
		[ $all = 1 ] && break
		sleep 0.1
	done
	echo "20-guardian: writers holding after $((SECONDS - t0)) s" >&2
	while read -r fs name death guard want; do
		k=$fs-$name w=${W[$fs-$name]}
		log=$VM_PC_OUT/$k.log exp=$VM_PC_OUT/$k.bytes
		if ! grep -q '^HOLD' "$log" || [ ! -s "$exp" ]; then
			vm_result $fs powercut-$name FAIL "writer did not reach HOLD: $(head -n3 "$log" | tr '\n' ' ')"
			kill -9 $w 2>/dev/null
			unset "W[$k]"
			continue
		fi
		g=$(guardian_of $w)
		G[$k]=$g
		if [ $guard = on ] && [ -z "$g" ]; then
			vm_result $fs powercut-$name FAIL "no safe_mr-guardian for writer $w"
		elif [ $guard = off ] && [ -n "$g" ]; then
			vm_result $fs powercut-$name FAIL "a guardian runs with SAFE_MR_GUARDIAN=off"
		fi
		# Nothing synced: the page cache still has the old data.
		cmp -s "$exp" "$VM_MNT/$fs/pc-$name" &&
			vm_result $fs powercut-$name FAIL "the file had the NIC's data before the death"
		if [ $death = KILL ]; then kill -KILL $w; else kill -USR1 $w; fi
	done < <(cases)
	t1=$SECONDS
	for k in "${!W[@]}"; do wait ${W[$k]} 2>/dev/null; done
	for i in $(seq 600); do
		busy=0
		for k in "${!G[@]}"; do [ -n "${G[$k]}" ] && running ${G[$k]} && busy=1; done
		[ $busy = 0 ] && break
		sleep 0.1
	done
	while read -r fs name death guard want; do
		k=$fs-$name
		[ -n "${W[$k]:-}" ] || continue
		g=${G[$k]}
		if [ -n "$g" ] && running $g; then
			vm_result $fs powercut-$name FAIL "guardian $g still running after 60 s"
			continue
		fi
		sha=$(sha256sum < "$VM_PC_OUT/$k.bytes" | cut -d' ' -f1)
		echo "$sha $want" > "$VM_PC_OUT/$k.expect"
		cmp -s "$VM_PC_OUT/$k.bytes" "$VM_MNT/$fs/pc-$name" && now=holds || now=lacks
		vm_result $fs powercut-$name-armed PASS "writer ended by $death; guardian $guard; file $now the NIC's data before the cut; $(grep -h 'safe_mr-guardian' "$VM_PC_OUT/$k.log" | head -n1 | cut -d: -f2-)"
	done < <(cases)
	echo "20-guardian: deaths to guardians done: $((SECONDS - t1)) s, all: $((SECONDS - t0)) s" >&2
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
