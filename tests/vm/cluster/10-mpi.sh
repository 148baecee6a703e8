#!/bin/bash
# SPDX-License-Identifier: MIT
# Unmodified MPI across the two nodes: Open MPI 4.1 and MPICH 4.0, both
# over UCX (RC verbs on rxe0, the nodes' eth0: the bytes cross the emulated
# wire between the 6.1 and the newest kernel), launched by srun (PMIx for
# Open MPI, PMI-2 for MPICH), two ranks: rank 0 on n1 (6.1), rank 1 on n2
# (the new kernel).  tests/mpi/win_ckpt.c: windows on the NFS exports (nfs:
# ext4 on the server, nfsx: xfs) and on node-local ext4 xfs btrfs dax; the
# other rank puts, accumulates and gets; the owner msync()s and reads its
# file back with O_DIRECT (NFS: from the server).
#
# With safe_mr (srun --export=...,LD_PRELOAD): one job per MPI in which
# BOTH ranks own a window on every filesystem (--all: on NFS each its own
# region of one file, locally each its node's own file), so each line is
# about a window owned on 6.1 and one owned on the new kernel; every byte
# on disk, and after the job the other node reads the NIC's bytes from the
# NFS files.
# Without safe_mr: an owner on 6.1 (--owner 0) loses the NIC's bytes on
# NFS, ext4, xfs and btrfs (one job) and is refused on dax (a job of its
# own: the MPIs die at a refused window); an owner on the new kernel
# (--owner 1) is refused at its first window (EFAULT), which ends the job,
# so the other filesystems' refusals on that kernel are shown by a
# registration of one page of a file there (safe_mr-info's probe).
# Each line carries the rxe0 packets of its job.
. "$SAFE_MR_SRC/tests/vm/cluster/lib.sh"
FS_ALL="nfs nfsx ext4 xfs btrfs dax"
SIZE=${CL_MPI_SIZE:-256k} ROUNDS=${CL_MPI_ROUNDS:-2}
cl_mpi_env
for m in ompi mpich; do
	[ -x "$SAFE_MR_BUILD/tests/mpi/win_ckpt_$m" ] ||
		{ cl_result - build FAIL "tests/mpi/win_ckpt_$m missing (apt-get install libopenmpi-dev libmpich-dev)"; cl_exit; }
done
K1=$(cl_kernel n1) K2=$(cl_kernel n2)

path() { # FS TAG
	case $1 in nfs|nfsx) echo $VM_SHARED/$1/$2 ;; *) echo $VM_LOCAL/$1/$2 ;; esac
}
pmi() { case $1 in ompi) echo pmix ;; mpich) echo pmi2 ;; esac; }
clean() { # TAG: remove the files of TAG on both nodes
	local fs
	for n in n1 n2; do cl_on $n rm -f $(for fs in $FS_ALL; do path $fs $1; done); done
}

# job MPI PRELOAD OUTFILE WIN_CKPT-ARGS... (background-safe)
job() {
	local mpi=$1 pre=$2 o=$3 exp=ALL lim=180 ref='ibv_reg_mr.*failed: (Bad address|Operation not supported)'; shift 3
	[ "$pre" != - ] && { exp="ALL,LD_PRELOAD=$pre"; lim=360; ref=; }
	CL_MPI_REFUSED=$ref cl_srun_mpi $o $lim 2 -N2 -n2 --mpi=$(pmi $mpi) --export="$exp" -K1 \
		"$SAFE_MR_BUILD/tests/mpi/win_ckpt_$mpi" --size $SIZE --rounds $ROUNDS --keep "$@"
}
load() { out=$(cat $1); rc=$(echo "$out" | sed -n 's/^rc=//p' | tail -n1); }
show() { echo "== $1: rc=$rc"; echo "$out" | grep -v '^win_ckpt\[' | sed 's/^/  /' | tail -n 25; }
verdict() { # PATH OWNER: the RESULT word of OWNER's window on PATH
	echo "$out" | grep -m1 -E "^win_ckpt: $1 RESULT .* owner=$2 " | sed 's/.* RESULT \([a-z]*\).*/\1/'
}
why() { echo "$out" | grep -m2 -E 'FAIL|rror|Bad address|not supported|signal|abort' | cut -c1-160 | tr '\n' ' '; }
pkts() { echo "$(cl_cnt n1 rxe0 sent_pkts) $(cl_cnt n2 rxe0 sent_pkts)"; }
pkdiff() { local a0 b0 a1 b1; read -r a0 b0 <<< "$1"; read -r a1 b1 <<< "$2"; echo "n1 sent $((a1 - a0)), n2 sent $((b1 - b0))"; }

mpi_case() {
	local mpi=$1 fs v p0 p1 t0 lostfs=() got
	# --- without safe_mr ---
	local tag=wc-$mpi
	p0=$(pkts)
	for fs in $FS_ALL; do [ $fs != dax ] && lostfs+=("$(path $fs $tag-0)"); done
	job $mpi - $VM_OUT/$mpi-lost.out --owner 0 "${lostfs[@]}" &
	job $mpi - $VM_OUT/$mpi-dax0.out --owner 0 "$(path dax $tag-0)" &
	job $mpi - $VM_OUT/$mpi-new.out --owner 1 $(for fs in $FS_ALL; do path $fs $tag-1; done) &
	wait
	p1=$(pkts)
	load $VM_OUT/$mpi-lost.out; show "$mpi without safe_mr, owner rank 0 (n1), ${lostfs[*]}"
	for fs in $FS_ALL; do
		[ $fs = dax ] && continue
		v=$(verdict "$(path $fs $tag-0)" 0)
		if [ "$v" = lost ]; then
			CL_KERNEL=$K1 cl_result $fs $mpi-without PASS "premise: LOST after msync ($(echo "$out" | grep -m1 "$(path $fs $tag-0) RESULT" | grep -o 'disk_missing=[0-9]*')); rxe0 $(pkdiff "$p0" "$p1") (the premise jobs)"
		else
			CL_KERNEL=$K1 cl_result $fs $mpi-without FAIL "want lost, got '$v' rc=$rc: $(why)"
		fi
	done
	load $VM_OUT/$mpi-dax0.out; show "$mpi without safe_mr, owner rank 0 (n1), dax"
	if [ -z "$(verdict "$(path dax $tag-0)" 0)" ] || [ "$(verdict "$(path dax $tag-0)" 0)" = refused ] &&
		echo "$out" | grep -q 'ibv_reg_mr.*Operation not supported'; then
		CL_KERNEL=$K1 cl_result dax $mpi-without PASS "premise: window refused, ibv_reg_mr: Operation not supported; the job dies of it"
	else
		CL_KERNEL=$K1 cl_result dax $mpi-without FAIL "want refused (EOPNOTSUPP), rc=$rc: $(why)"
	fi
	load $VM_OUT/$mpi-new.out; show "$mpi without safe_mr, owner rank 1 (n2), all filesystems"
	if echo "$out" | grep -q 'ibv_reg_mr.*Bad address' && [ "$rc" != 0 ] && ! echo "$out" | grep -q ' RESULT ok'; then
		CL_KERNEL=$K2 cl_result nfs $mpi-without PASS "premise: the first window (NFS) refused, ibv_reg_mr: Bad address; the job dies of it"
	else
		CL_KERNEL=$K2 cl_result nfs $mpi-without FAIL "want the window refused (EFAULT), rc=$rc: $(why)"
	fi
	# The other filesystems on the new kernel: one page registered there.
	got=$(cl_on n2 bash -c "for fs in $FS_ALL; do case \$fs in nfs|nfsx) d=$VM_SHARED/\$fs ;; *) d=$VM_LOCAL/\$fs ;; esac; cd \$d && echo \"\$fs \$($SAFE_MR_BUILD/tools/safe_mr-info --no-fabric 2>&1 | grep -m1 -E 'registration of (a shared file mapping|an fsdax file)')\"; done" 2>&1)
	for fs in nfsx ext4 xfs btrfs dax; do
		local line=$(echo "$got" | grep "^$fs ")
		# fsdax: a plain registration gets EFAULT on this kernel (the
		# writable-file check comes first), UCX's ODP one EOPNOTSUPP.
		local want='refused with EFAULT'; [ $fs = dax ] && want='refused with (EFAULT|EOPNOTSUPP)'
		if echo "$line" | grep -q -E "$want"; then
			CL_KERNEL=$K2 cl_result $fs $mpi-without PASS "premise: $(echo "$line" | grep -o -E 'refused with [A-Z]+') (a page registered on rxe0 there); the job above died at its first window"
		else
			CL_KERNEL=$K2 cl_result $fs $mpi-without FAIL "probe on n2: '$line'"
		fi
	done
	clean $tag-0; clean $tag-1

	# --- with safe_mr: both ranks own a window on every filesystem ---
	p0=$(pkts); t0=$SECONDS
	job $mpi "$VM_PRELOAD" $VM_OUT/$mpi-safe.out --all $(for fs in $FS_ALL; do path $fs $tag; done)
	p1=$(pkts)
	load $VM_OUT/$mpi-safe.out; show "$mpi with safe_mr, both ranks own"
	local min=$(( $(numfmt --from=iec ${SIZE^^}) / 4096 )) a b
	read -r a b <<< "$(pkdiff "$p0" "$p1" | sed 's/n1 sent \([0-9]*\), n2 sent \([0-9]*\)/\1 \2/')"
	for fs in $FS_ALL; do
		for own in 0 1; do
			v=$(verdict "$(path $fs $tag)" $own)
			k=$K1; [ $own = 1 ] && k=$K2
			if { [ "$rc" = 0 ] || { [ "$rc" = finalize-hang ] || [ "$rc" = finalize-died ]; }; } && [ "$v" = ok ] && [ "$a" -ge $min ] && [ "$b" -ge $min ]; then
				CL_KERNEL=$k cl_result $fs $mpi-safe_mr PASS "owner rank $own (n$((own + 1))): every byte on disk after each msync and after MPI_Win_free; rxe0 $(pkdiff "$p0" "$p1"); job $((SECONDS - t0))s$({ [ "$rc" = finalize-hang ] || [ "$rc" = finalize-died ]; } && echo ', then hung in MPI_Finalize (cancelled)')"
			else
				CL_KERNEL=$k cl_result $fs $mpi-safe_mr FAIL "owner rank $own: got '$v' rc=$rc $(pkdiff "$p0" "$p1"): $(why)"
			fi
		done
	done
	# The file after MPI_Finalize, read by its owner (win_ckpt's
	# AFTER_FINALIZE line; none from a rank that never left MPI_Finalize:
	# the Open MPI spin, cancelled).  0.2 failed it with MPICH: page 0 of
	# every window held MPICH's own bytes (the restore's mremap went
	# through UCX 1.13's four-argument hook: README).
	for fs in $FS_ALL; do
		for own in 0 1; do
			local af
			af=$(echo "$out" | grep -m1 -E "^win_ckpt: $(path $fs $tag) AFTER_FINALIZE .* owner=$own ")
			k=$K1; [ $own = 1 ] && k=$K2
			if echo "$af" | grep -q ' AFTER_FINALIZE ok '; then
				CL_KERNEL=$k cl_result $fs $mpi-after-finalize PASS "owner rank $own reads every NIC byte after MPI_Finalize"
			elif [ -z "$af" ] && { [ "$rc" = finalize-hang ] || [ "$rc" = finalize-died ]; }; then
				continue
			else
				CL_KERNEL=$k cl_result $fs $mpi-after-finalize FAIL "owner rank $own: ${af:-no AFTER_FINALIZE line (rc=$rc)}"
			fi
		done
	done
	for fs in nfs nfsx; do
		for n in n1 n2; do
			got=$(cl_on $n "$SAFE_MR_BUILD/tests/mpi/win_ckpt_$mpi" --verify "$(path $fs $tag)" \
				--all --ranks 2 --size $SIZE --rounds $ROUNDS 2>&1)
			if [ "$(echo "$got" | grep -c ' VERIFY ok')" = 2 ]; then
				cl_result $fs $mpi-read-$n PASS "after the job $n reads both ranks' NIC bytes from the NFS file"
			else
				cl_result $fs $mpi-read-$n FAIL "$n: $(echo "$got" | grep -v '^srun' | tail -n2 | tr '\n' ' ')"
				echo "$got"
			fi
		done
	done
	clean $tag
}

for mpi in ${CL_MPIS:-ompi mpich}; do
	mpi_case $mpi
done
cl_exit
