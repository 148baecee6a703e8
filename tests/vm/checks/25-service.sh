#!/bin/bash
# SPDX-License-Identifier: MIT
# The node service safe_mrd (safe_mrd(8)) against the deaths that kill a
# process's own guardian with it.  rdma_write_file runs under the preload on
# ext4; a peer RDMA-WRITEs the file mapping (no sync: -y none), the writer
# holds; then it dies:
#   cgkill: cgroup v2 cgroup.kill of its cgroup (Slurm's job kill, systemd);
#   oom:    the OOM killer with memory.oom.group=1 (a hog in its cgroup);
#   pidns:  it runs under the init of a new PID namespace, and the init dies;
#   term:   SIGTERM to its process group (a job stop's first signal).
# Each with SAFE_MR_SERVICE=off (its own guardian: lost in cgkill and pidns,
# which kill the guardian with the writer; the OOM group kill kills the
# guardian too, but one task after the other: the guardian may see the
# writer's end and write before its turn comes, so there the check is that
# the OOM killer killed it, and what the file holds is reported; written
# after term, which the guardian ignores) and with safe_mrd running outside
# the cgroups and the namespace (written in every case).  All writers side by side (TCG is slow to start
# each).  cgroup2 is mounted here if the guest has none.
. "$SAFE_MR_SRC/tests/vm/lib.sh"
unset LD_PRELOAD
SMD=$SAFE_MR_BUILD/service/safe_mrd
for f in "$VM_RWF" "$VM_PRELOAD" "$SMD"; do
	[ -e "$f" ] || { vm_result - build FAIL "$f not built"; vm_exit; }
done
command -v unshare >/dev/null || { vm_result - setup FAIL "unshare not found"; vm_exit; }
CG=$(awk '$3 == "cgroup2" { print $2; exit }' /proc/mounts)
if [ -z "$CG" ]; then
	CG=/run/smvm-cg
	mkdir -p $CG && mount -t cgroup2 none $CG ||
		{ vm_result - setup FAIL "cannot mount cgroup2"; vm_exit; }
fi
echo +memory > $CG/cgroup.subtree_control ||
	{ vm_result - setup FAIL "no memory controller in cgroup2"; vm_exit; }
OUT=$VM_OUT D=$VM_MNT/ext4/svc
mkdir -p "$D"
SOCK=/run/safe_mr/safe_mrd.sock
# The service: in the root cgroup and PID namespace, outside every job.
"$SMD" --daemon --socket $SOCK --pidfile /run/safe_mrd.pid --log-level info 2>"$OUT/safe_mrd.log" ||
	{ vm_result - setup FAIL "safe_mrd --daemon failed: $(cat "$OUT/safe_mrd.log")"; vm_exit; }

cases() { # name death service want
	for s in off on; do
		w=old; [ $s = on ] && w=new
		echo "cgkill-$s cgkill $s $w"
		o=any; [ $s = on ] && o=new
		echo "oom-$s oom $s $o"
		echo "pidns-$s pidns $s $w"
		echo "term-$s term $s new"
	done
}
# The writer, in cgroup $2 (made here) and its own process group.
writer() { # name cg service
	local svc=$SOCK
	[ $3 = off ] && svc=off
	mkdir -p $CG/$2
	setsid sh -c 'echo $$ > "$1/cgroup.procs" && shift && exec "$@"' sh $CG/$2 \
		env SAFE_MR_SERVICE=$svc SAFE_MR_LOG=info LD_PRELOAD=$VM_PRELOAD \
		"$VM_RWF" -H -o write -y none -E "$OUT/$1.bytes" "$D/$1" > "$OUT/$1.log" 2>&1
}
declare -A W P G
# The writer in cgroup $1 (its guardian, if any, is there too).
writer_in() {
	local p
	for p in $(cat $CG/$1/cgroup.procs); do
		tr '\0' ' ' < /proc/$p/cmdline 2>/dev/null | grep -q rdma_write_file && echo $p
	done | head -n1
}
guardian_of() {
	local f
	f=$(grep -lsaP "^safe_mr-guardian\x00$1\x00" /proc/[0-9]*/cmdline | head -n1)
	[ -n "$f" ] && { f=${f#/proc/}; echo "${f%/cmdline}"; }
}
t0=$SECONDS
while read -r name death svc want; do
	case $death in
	pidns)
		# unshare's child is the namespace's init (sh); the writer its child.
		sv=$SOCK; [ $svc = off ] && sv=off
		setsid unshare --pid --fork sh -c '"$@" > "$0" 2>&1 & wait' "$OUT/$name.log" \
			env SAFE_MR_SERVICE=$sv SAFE_MR_LOG=info LD_PRELOAD=$VM_PRELOAD \
			"$VM_RWF" -H -o write -y none -E "$OUT/$name.bytes" "$D/$name" &
		W[$name]=$!;;
	*)
		writer $name job-$name $svc & W[$name]=$!;;
	esac
done < <(cases)
for i in $(seq 1200); do
	all=1
	while read -r name death svc want; do
		grep -q '^HOLD' "$OUT/$name.log" 2>/dev/null || all=0
	done < <(cases)
	[ $all = 1 ] && break
	sleep 0.1
done
echo "25-service: writers holding after $((SECONDS - t0)) s" >&2
t1=$SECONDS
while read -r name death svc want; do
	if ! grep -q '^HOLD' "$OUT/$name.log" || [ ! -s "$OUT/$name.bytes" ]; then
		vm_result ext4 service-$name FAIL "writer did not reach HOLD: $(head -n3 "$OUT/$name.log" | tr '\n' ' ')"
		continue
	fi
	cmp -s "$OUT/$name.bytes" "$D/$name" &&
		vm_result ext4 service-$name FAIL "the file had the NIC's data before the death"
	case $death in
	cgkill)
		echo 1 > $CG/job-$name/cgroup.kill;;
	oom)
		G[$name]=$(guardian_of "$(writer_in job-$name)")
		# Room for a little more than the writer (and its guardian) use:
		# the hog's first megabytes trigger the OOM killer, which kills
		# the whole cgroup.
		echo 1 > $CG/job-$name/memory.oom.group
		echo $(( $(cat $CG/job-$name/memory.current) + (16 << 20) )) > $CG/job-$name/memory.max
		sh -c 'echo $$ > "$1/cgroup.procs" && exec sh -c "head -c 300M /dev/zero | tail -c 300M > /dev/null"' \
			sh $CG/job-$name > "$OUT/$name.hog.log" 2>&1 &;;
	pidns)
		init=$(cat /proc/${W[$name]}/task/*/children 2>/dev/null | tr -s ' ' '\n' | head -n1)
		[ -n "$init" ] && kill -KILL $init ||
			vm_result ext4 service-$name FAIL "no namespace init under unshare ${W[$name]}";;
	term)
		# The writer leads its group (setsid); its guardian has its own.
		pg=$(writer_in job-$name)
		[ -n "$pg" ] && kill -TERM -- -$pg ||
			vm_result ext4 service-$name FAIL "no writer in $CG/job-$name";;
	esac
done < <(cases)
# Everything of the jobs gone (cgroups empty, unshare ended), then the
# writebacks: the service's lines in its log, the guardians' in the
# writers' logs; the files are compared once nothing moves for them.
for i in $(seq 600); do
	busy=0
	for c in $CG/job-*; do [ -n "$(cat $c/cgroup.procs)" ] && busy=1; done
	for n in "${!W[@]}"; do kill -0 ${W[$n]} 2>/dev/null && busy=1; done
	pgrep -f '^safe_mr-guardian' >/dev/null && busy=1
	[ $busy = 0 ] && break
	sleep 0.1
done
for i in $(seq 300); do
	done_=1
	while read -r name death svc want; do
		[ $want = new ] && ! cmp -s "$OUT/$name.bytes" "$D/$name" && done_=0
	done < <(cases)
	[ $done_ = 1 ] && break
	sleep 0.1
done
echo "25-service: deaths to writebacks: $((SECONDS - t1)) s, all: $((SECONDS - t0)) s" >&2
while read -r name death svc want; do
	grep -q '^HOLD' "$OUT/$name.log" || continue
	cmp -s "$OUT/$name.bytes" "$D/$name" && got=new || got=old
	how=$(grep -h 'safe_mr-guardian\|pages written' "$OUT/$name.log" | head -n1 | cut -d: -f2- | cut -c1-80)
	[ $svc = on ] && how="safe_mrd: $(grep -c 'pages written back' "$OUT/safe_mrd.log") writebacks logged"
	if [ $name = oom-off ]; then
		g=${G[$name]}
		if [ -n "$g" ] && dmesg | grep -q "Killed process $g (safe_mr-guardia"; then
			vm_result ext4 service-$name PASS "oom, service off: the OOM group kill killed the guardian ($g) too; the file holds the $got data (the guardian writes if it sees the writer end before its own turn)"
		else
			vm_result ext4 service-$name FAIL "oom, service off: the guardian (${g:-none found}) was not OOM-killed; the file holds the $got data"
		fi
	elif [ $got = $want ]; then
		vm_result ext4 service-$name PASS "$death, service $svc: the file holds the $got data ($how)"
	else
		vm_result ext4 service-$name FAIL "$death, service $svc: the file holds the $got data, want $want ($how)"
	fi
done < <(cases)
kill -TERM "$(cat /run/safe_mrd.pid)"
for i in $(seq 100); do [ -e /run/safe_mrd.pid ] || break; sleep 0.1; done
[ -e /run/safe_mrd.pid ] && vm_result - service-stop FAIL "safe_mrd did not stop on SIGTERM" ||
	vm_result - service-stop PASS "safe_mrd stopped on SIGTERM"
vm_exit
