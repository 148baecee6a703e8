# SPDX-License-Identifier: MIT
# Sourced by checks/6[2-3]-mpi-ucx-*.sh (one check per MPI, so that each
# stays within the per-check timeout).
# Unmodified MPI jobs over UCX on Soft-RoCE: Open MPI 4.1 (pml ucx, osc ucx),
# MPICH 4.0 (ch4:ucx) and mpi4py + numpy.memmap, two ranks, RC verbs
# between the two ends of the veth pair of vm_rxe_pair (rank 0 on srxa,
# rank 1 on srxb; UCX_TLS without shared memory, MPICH without its shm
# path): MPI_Win_create on a MAP_SHARED file mapping, put/get/accumulate
# in fence and lock epochs, msync(MS_SYNC), O_DIRECT read-back
# (tests/mpi/win_file.c, examples/mpi4py_memmap_put.py), and messages from
# anonymous buffers unmapped and mapped again at the same addresses.
#
# Without safe_mr (premise): 6.1 ext4/xfs/btrfs: the window's pages are
# cleaned by the msync right after MPI_Win_create, the NIC's writes leave
# them clean, the data never reaches the disk ("RESULT lost"); 6.1 fsdax:
# ibv_reg_mr EOPNOTSUPP; >= 6.5: ibv_reg_mr EFAULT (fsdax EOPNOTSUPP): the
# window is refused and the job dies.  With LD_PRELOAD=libsafe_mr_preload.so
# every byte is on disk after msync.  Every job must have moved its bytes
# through srxa and srxb (port counters before and after).
#
# UCX's registration cache under the preload (ucx-hooks-*): UCX installs
# its memory hooks and tests them; if a munmap does not reach libc's, UCX
# runs without its cache.  On tmpfs (no shadow needed, registers on every
# kernel), UCX_LOG_LEVEL=debug must say "using registration cache" for
# both rxe devices, with and without the preload, and the messages from
# buffers unmapped and mapped again at the same addresses must arrive
# intact (a cache that missed the munmap hands the NIC the old pages).
# Not UCX_RCACHE_CHECK_PFN: UCX 1.13 logs "failed to allocate pfn list" and
# crashes in MPI_Win_create with it, with or without the preload.
. "$SAFE_MR_SRC/tests/vm/lib.sh"
unset LD_PRELOAD
OMPI_PROG=$SAFE_MR_BUILD/tests/mpi/win_file_ompi
MPICH_PROG=$SAFE_MR_BUILD/tests/mpi/win_file_mpich
PY_PROG=$SAFE_MR_SRC/examples/mpi4py_memmap_put.py
PY=/usr/bin/python3
for f in "$OMPI_PROG" "$MPICH_PROG" "$VM_PRELOAD" /usr/bin/mpirun.openmpi /usr/bin/mpiexec.mpich; do
	[ -e "$f" ] || { vm_result - build FAIL "$f missing (meson setup with mpicc.openmpi/mpicc.mpich; apt-get install openmpi-bin mpich)"; vm_exit; }
done
$PY -c 'import mpi4py, numpy' 2>/dev/null ||
	{ vm_result - build FAIL "$PY cannot import mpi4py and numpy (apt-get install python3-mpi4py python3-numpy)"; vm_exit; }
if ! vm_rxe_pair; then
	vm_result - rxe-pair FAIL "vm_rxe_pair: $VM_PAIR_ERR"
	vm_exit
fi
kv=$(vm_kver_num)
SIZE=${VM_MPI_SIZE:-64k} ROUNDS=${VM_MPI_ROUNDS:-2} MSG=${VM_MPI_MSG:-32k}
# The ranks' environment (inherited through mpirun/hydra): RC verbs for the
# traffic, UD verbs for UCX's wireup, no shared memory (UCX_TLS has no
# sm/posix/cma), UD on rxe needs the DGID check off (brief §6);
# rendezvous (zero-copy from registered user buffers) from 16 KiB.
export UCX_TLS=rc_verbs,ud_verbs,self UCX_UD_ETH_DGID_CHECK=n UCX_RNDV_THRESH=16k
export UCX_WARN_UNUSED_ENV_VARS=n MPIR_CVAR_NOLOCAL=1
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
DEV_A=$VM_PAIR_RXE_A:1 DEV_B=$VM_PAIR_RXE_B:1
# Open MPI refuses the node name "(none)" of a guest that never set one.
[ "$(hostname)" = "(none)" ] && hostname smvm

cnt() { cat /sys/class/infiniband/$1/ports/1/hw_counters/$2 2>/dev/null || echo 0; }
snap() { echo "$(cnt $VM_PAIR_RXE_A sent_pkts) $(cnt $VM_PAIR_RXE_B sent_pkts) $(cnt $VM_PAIR_RXE_A rcvd_pkts) $(cnt $VM_PAIR_RXE_B rcvd_pkts)"; }

# job MPI PRELOAD PROG ARGS...: one two-rank job, rank 0 on srxa and
# rank 1 on srxb; sets out, rc, pk (packets sent by srxa, srxb).  PRELOAD
# is the library or "-"; extra rank environment in JOB_ENV (NAME=VALUE...);
# JOB_TIMEOUT: seconds (240).
job() {
	local mpi=$1 pre=$2 a0 a1 b0 b1 e envs=(); shift 2
	[ "$pre" != - ] && envs+=("LD_PRELOAD=$pre")
	for e in ${JOB_ENV:-}; do envs+=("$e"); done
	read -r a0 b0 _ _ <<< "$(snap)"
	case $mpi in
	ompi)
		local x=() v
		for v in "${envs[@]}"; do x+=(-x "$v"); done
		out=$(timeout ${JOB_TIMEOUT:-240} mpirun.openmpi --oversubscribe --bind-to none \
			--mca pml ucx --mca osc ucx --mca btl self \
			--mca pml_ucx_devices "$VM_PAIR_RXE_A,$VM_PAIR_RXE_B" \
			-np 1 "${x[@]}" -x UCX_NET_DEVICES=$DEV_A "$@" : \
			-np 1 "${x[@]}" -x UCX_NET_DEVICES=$DEV_B "$@" 2>&1) ;;
	mpich)
		local x=() v
		for v in "${envs[@]}"; do x+=(-env "${v%%=*}" "${v#*=}"); done
		out=$(timeout ${JOB_TIMEOUT:-240} mpiexec.mpich -hosts localhost \
			-n 1 "${x[@]}" -env UCX_NET_DEVICES $DEV_A "$@" : \
			-n 1 "${x[@]}" -env UCX_NET_DEVICES $DEV_B "$@" 2>&1) ;;
	esac
	rc=$?
	read -r a1 b1 _ _ <<< "$(snap)"
	pk="$((a1 - a0)) $((b1 - b0))"
}
# on_nic: both ends sent at least one packet per 4 KiB of window.
on_nic() {
	local a=${pk% *} b=${pk#* } min=$(( $(numfmt --from=iec ${SIZE^^}) / 4096 ))
	[ "$a" -ge $min ] && [ "$b" -ge $min ]
}
why() { echo "$out" | grep -m3 -E 'FAIL|RESULT|rror|ibv_reg_mr|Bad address|not supported|signal|Abort|abort' | cut -c1-200 | tr '\n' ' '; }
dump() { echo "$out" | sed 's/^/# /' | tail -n 40; }

# fs_verdict FS: the verdict for FS's window from the job's output
# (lines "<prog>: PATH RESULT x"; PATH is $VM_MNT/FS/...).
fs_verdict() { echo "$out" | grep -m1 -E ": $VM_MNT/$1/[^ ]* RESULT " | sed 's/.* RESULT \([a-z]*\).*/\1/'; }

# premise NAME FS...: the job ran without safe_mr; one line per FS.
premise() {
	local name=$1 fs v want; shift
	for fs in "$@"; do
		v=$(fs_verdict $fs)
		if [ $fs != dax ] && [ $kv -lt 605 ]; then
			if [ "$v" = lost ] && [ $rc != 0 ]; then
				vm_result $fs $name-nohook PASS "premise: data LOST after msync: $(echo "$out" | grep -m1 -E ": $VM_MNT/$fs/[^ ]* RESULT " | cut -d' ' -f4-7); job packets srxa/srxb $pk"
			else
				vm_result $fs $name-nohook FAIL "want RESULT lost (6.1: window pages cleaned before the NIC wrote), got '$v', rc=$rc: $(why)"; dump
			fi
			continue
		fi
		want='Bad address'; [ $fs = dax ] && want='Operation not supported'
		if [ $rc != 0 ] && { [ "$v" = refused ] || [ -z "$v" ]; } && echo "$out" | grep -q "$want"; then
			vm_result $fs $name-nohook PASS "premise: window refused$([ -z "$v" ] && echo ", job died before reporting it") ($want): $(echo "$out" | grep -m1 "$want" | cut -c1-140)"
		else
			vm_result $fs $name-nohook FAIL "want the window refused ($want), got '$v', rc=$rc: $(why)"; dump
		fi
	done
}
# fixed NAME FS...: the job ran under the preload.
fixed() {
	local name=$1 fs v; shift
	for fs in "$@"; do
		v=$(fs_verdict $fs)
		if [ $rc = 0 ] && [ "$v" = ok ] && on_nic; then
			vm_result $fs $name-safe_mr PASS "every byte on disk after msync$([ $name != mpi4py ] && echo ', messages at reused addresses intact'); job packets srxa/srxb $pk, ${jt}s"
		else
			vm_result $fs $name-safe_mr FAIL "got '$v', rc=$rc, packets srxa/srxb $pk: $(why)"; dump
		fi
	done
}

# One job per MPI and mode, one window per filesystem (opened in this
# order; a refused one is reported and skipped).  Without safe_mr the
# fsdax window gets a job of its own: Open MPI dies (SIGSEGV) after a
# refused MPI_Win_create, which would hide the other filesystems' verdicts.
paths() { local fs; for fs in "${@:2}"; do echo $VM_MNT/$fs/$1; done; }
cmdline() { # MPI FS...: sets runner, cmd
	local mpi=$1; shift
	case $mpi in
	ompi) runner=ompi; cmd=("$OMPI_PROG" $(paths wf-ompi "$@") --size $SIZE --rounds $ROUNDS --msg $MSG) ;;
	mpich) runner=mpich; cmd=("$MPICH_PROG" $(paths wf-mpich "$@") --size $SIZE --rounds $ROUNDS --msg $MSG) ;;
	mpi4py) runner=ompi; cmd=($PY -m mpi4py "$PY_PROG" $(paths py "$@")) ;;
	esac
}
# mpi_case MPI: the premise and the safe_mr jobs of one MPI (ompi, mpich,
# mpi4py) on every filesystem.
mpi_case() {
	local mpi=$1 group t0
	vm_dmesg_mark
	for group in "ext4 xfs btrfs" dax; do
		cmdline $mpi $group
		job $runner - "${cmd[@]}"
		premise $mpi $group
	done
	cmdline $mpi ext4 xfs btrfs dax
	t0=$SECONDS
	job $runner "$VM_PRELOAD" "${cmd[@]}"
	jt=$((SECONDS - t0))
	fixed $mpi ext4 xfs btrfs dax
	rm -f $VM_MNT/*/wf-* $VM_MNT/*/py.*
	vm_dmesg_clean - dmesg-clean
}
# UCX's own view of its registration cache, without and with the preload.
hooks() {
	local name=$1 pre=$2 n
	JOB_ENV="UCX_LOG_LEVEL=debug" job ompi $pre \
		"$OMPI_PROG" $TMPDIR/wf-hooks --size 64k --rounds 3 --msg 32k
	n=$(echo "$out" | grep -c -E "($VM_PAIR_RXE_A|$VM_PAIR_RXE_B): using registration cache")
	if [ $rc = 0 ] && echo "$out" | grep -q '^win_file: RESULT ok' && [ "$n" -ge 2 ] &&
		! echo "$out" | grep -q 'failed to create registration cache'; then
		vm_result - $name PASS "UCX: $n x '<rxe>: using registration cache' (rcache on, memory hooks installed and self-tested), 3 rounds of messages from/into buffers unmapped and remapped at the same addresses intact (a cache that missed the munmap would hand the NIC the old pages); packets srxa/srxb $pk"
	else
		vm_result - $name FAIL "rc=$rc, $n 'using registration cache' lines: $(echo "$out" | grep -m2 -E 'registration cache|pfn' | cut -c1-160 | tr '\n' ' ') $(why)"; dump
	fi
}
