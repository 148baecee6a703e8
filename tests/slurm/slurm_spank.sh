#!/bin/bash
# SPDX-License-Identifier: MIT
# spank_safe_mr.so in a real one-node Slurm cluster on this host: munged,
# slurmctld and slurmd as root, everything (keys, sockets, spool, state,
# logs) in a temporary directory, on free ports; no cgroups
# (proctrack/pgid, task/none).  plugstack.conf is reread by srun and by
# every step's slurmstepd, so each case rewrites it without a restart.
#
# usage: slurm_spank.sh PLUGIN PRELOAD PROBE STATIC_PROBE SRCDIR
# Fails (never skips) when slurm or munge is missing, or not as root.
set -u
plugin=$1 preload=$2 probe=$3 sprobe=$4 src=$5
fails=0

die() { echo "FAIL: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root: slurmd starts tasks as their user, and the test's tasks as root"
for p in munged munge slurmctld slurmd slurmstepd srun sbatch scontrol sinfo scancel squeue python3; do
	command -v "$p" >/dev/null ||
		die "$p not found: apt-get install munge slurmctld slurmd slurm-client (scripts/install-deps)"
done

T=$(mktemp -d /tmp/safe_mr-slurm.XXXXXX) || die mktemp
chmod 755 "$T"
export SLURM_CONF=$T/slurm.conf
unset SLURM_JOB_ID SLURM_JOBID SLURM_NODELIST SLURM_NTASKS LD_PRELOAD

# The daemons, by the pid files they wrote, then any slurmstepd of ours:
# they are exec'd by our slurmd and carry its SLURM_CONF.
stop() {
	local f pid i
	scancel --quiet --full --user=root 2>/dev/null
	for f in slurmd slurmctld munged; do
		pid=$(cat "$T/$f.pid" 2>/dev/null) || continue
		kill "$pid" 2>/dev/null
		for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$pid" 2>/dev/null
	done
	for pid in $(pgrep -x slurmstepd); do
		tr '\0' '\n' < "/proc/$pid/environ" 2>/dev/null | grep -qx "SLURM_CONF=$SLURM_CONF" &&
			kill -9 "$pid"
	done
}
cleanup() {
	stop
	if [ "$fails" != 0 ] || [ -n "${KEEP_SLURM_TEST:-}" ]; then
		for f in "$T"/log/*.log; do echo "--- $f (tail)"; tail -n 30 "$f"; done >&2
	fi
	rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

mkdir -p "$T/munge" "$T/spool" "$T/state" "$T/log" "$T/job"
chmod 700 "$T/munge"
chmod 777 "$T/job"
head -c 1024 /dev/urandom > "$T/munge/munge.key"
chmod 600 "$T/munge/munge.key"
munged --force --socket="$T/munge/sock" --key-file="$T/munge/munge.key" \
	--log-file="$T/log/munged.log" --pid-file="$T/munged.pid" \
	--seed-file="$T/munge/seed" || die "munged did not start"
echo ok | munge --socket="$T/munge/sock" | unmunge --socket="$T/munge/sock" >/dev/null ||
	die "munge cannot encode/decode through its socket"

read -r ctld_port slurmd_port < <(python3 -c '
import socket
ss = [socket.socket() for _ in range(2)]
for s in ss: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in ss])')
node=$(hostname -s)
cat > "$SLURM_CONF" <<EOF
ClusterName=safemrtest
SlurmctldHost=$node(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$T/munge/sock
CredType=cred/munge
StateSaveLocation=$T/state
SlurmdSpoolDir=$T/spool
SlurmctldPidFile=$T/slurmctld.pid
SlurmdPidFile=$T/slurmd.pid
SlurmctldLogFile=$T/log/slurmctld.log
SlurmdLogFile=$T/log/slurmd.log
SlurmdDebug=debug
ProctrackType=proctrack/pgid
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
MailProg=/bin/true
PlugStackConfig=$T/plugstack.conf
NodeName=$node NodeAddr=127.0.0.1 CPUs=$(nproc) State=UNKNOWN
PartitionName=debug Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
plugstack() { echo "$*" > "$T/plugstack.conf"; }
plugstack "required $plugin preload=$preload"

slurmctld -i || die "slurmctld did not start"
for i in $(seq 100); do scontrol ping 2>/dev/null | grep -q UP && break; sleep 0.2; done
scontrol ping | grep -q UP || die "slurmctld does not answer"
slurmd -N "$node" || die "slurmd did not start"
for i in $(seq 150); do
	[ "$(sinfo -h -n "$node" -o %T 2>/dev/null)" = idle ] && break
	sleep 0.2
done
[ "$(sinfo -h -n "$node" -o %T)" = idle ] || die "node $node not idle: $(sinfo -h -o '%T %E')"
echo "cluster up: node $node, slurmctld :$ctld_port, slurmd :$slurmd_port"

# run NAME EXPECTED_STATUS|nonzero srun-args...: srun's stdout/stderr in $T/NAME.out/.err
run() {
	local name=$1 want=$2 st
	shift 2
	timeout 120 srun --quiet -N1 -n1 "$@" > "$T/$name.out" 2> "$T/$name.err"
	st=$?
	echo "# $name: srun $* -> $st"
	sed 's/^/#   out: /' "$T/$name.out"
	sed 's/^/#   err: /' "$T/$name.err"
	if [ "$st" != "$want" ] && { [ "$want" != nonzero ] || [ "$st" = 0 ]; }; then
		echo "not ok: $name: exit status $st, want $want"
		fails=$((fails + 1))
		return 1
	fi
	return 0
}
has() {		# has NAME out|err PATTERN
	if grep -q -e "$3" "$T/$1.$2"; then
		echo "ok: $1: $2 has '$3'"
	else
		echo "not ok: $1: $2 lacks '$3'"
		fails=$((fails + 1))
	fi
}
lacks() {
	if grep -q -e "$3" "$T/$1.$2"; then
		echo "not ok: $1: $2 has '$3'"
		fails=$((fails + 1))
	else
		echo "ok: $1: $2 lacks '$3'"
	fi
}

# 1. --safe-mr: the preload is mapped into the task, first in LD_PRELOAD,
# before what the user exported, which stays.
libc=$(ldd "$probe" | awk '/libc\.so/ { print $3 }')
[ -f "$libc" ] || die "cannot find the probe's libc"
run on 0 --safe-mr "$probe"
has on out 'preload=loaded'
has on out "LD_PRELOAD=$preload SAFE_MR_GUARDIAN=(unset)"
run keep 0 --safe-mr --export=ALL,LD_PRELOAD="$libc" "$probe"
has keep out "preload=loaded LD_PRELOAD=$preload:$libc "

# 2. without the option: nothing.
run off 0 "$probe"
has off out 'preload=absent LD_PRELOAD=(unset)'

# 3. what the loader would not preload: the task fails, saying why, and
# the program never ran.
run static 126 --safe-mr "$sprobe"
has static err 'is statically linked: LD_PRELOAD cannot reach it'
has static err 'not running it without safe_mr'
lacks static out 'probe pid='
cp "$probe" "$T/job/suid_probe"
chown nobody "$T/job/suid_probe"
chmod 4755 "$T/job/suid_probe"
run suid_plain 0 "$T/job/suid_probe"	# it runs at all (as nobody)
has suid_plain out 'preload=absent'
run suid 126 --safe-mr "$T/job/suid_probe"
has suid err 'is set-user/group-ID: the dynamic loader ignores LD_PRELOAD'
lacks suid out 'probe pid='
# A program found in the PATH is the one checked.
PATH="$(dirname "$sprobe"):$PATH" run path_static 126 --safe-mr "$(basename "$sprobe")"
has path_static err "$sprobe is statically linked"

# What cannot be found cannot be checked.
run notfound 126 --safe-mr "$T/job/no-such-program"
has notfound err "$T/job/no-such-program: not found"

# --multi-prog: the plugin cannot see each task's program; refused, never
# run unchecked.
printf '0 %s\n' "$probe" > "$T/job/multi.conf"
run multiprog 126 --safe-mr --multi-prog "$T/job/multi.conf"
lacks multiprog out 'probe pid='

# 4. a node without the preload: every --safe-mr task fails; also when the
# site listed the plugin as optional (the plugin ends the task itself).
plugstack "required $plugin preload=$T/nowhere/libsafe_mr_preload.so"
run missing 126 --safe-mr "$probe"
has missing err "the preload $T/nowhere/libsafe_mr_preload.so: No such file or directory"
lacks missing out 'probe pid='
plugstack "optional $plugin preload=$T/nowhere/libsafe_mr_preload.so"
run missing_optional 126 --safe-mr "$probe"
has missing_optional err 'No such file or directory'
run missing_unasked 0 "$probe"		# who did not ask is not refused
has missing_unasked out 'preload=absent'
plugstack "required $plugin preload=$preload"

# 5. require: the guardian must start too; a bad value is refused by srun.
run require 0 --safe-mr=require "$probe"
has require out 'preload=loaded .* SAFE_MR_GUARDIAN=require'
run badvalue nonzero --safe-mr=maybe "$probe"
has badvalue err 'not one of on, require, off'
lacks badvalue out 'probe pid='
run modeoff 126 --safe-mr --export=ALL,SAFE_MR_MODE=off "$probe"
has modeoff err 'SAFE_MR_MODE=off is set'

# 6. default=on in plugstack.conf: every task, unless --safe-mr=off.
plugstack "required $plugin preload=$preload default=on"
run default_on 0 "$probe"
has default_on out 'preload=loaded'
run default_on_static 126 "$sprobe"
has default_on_static err 'statically linked'
run default_optout 0 --safe-mr=off "$probe"
has default_optout out 'preload=absent'
plugstack "required $plugin preload=$preload"

# 7. sbatch with #SBATCH --safe-mr: the batch script and its steps have it;
# a step the preload cannot reach fails with the message in the job's
# output, and the script goes on to say so.
cat > "$T/job/job.sbatch" <<EOF
#!/bin/bash
#SBATCH --safe-mr
#SBATCH -N1 -n1
#SBATCH -o $T/job/job.out
echo "script: \$(grep -c /libsafe_mr_preload.so /proc/\$\$/maps) mapping(s) of the preload"
"$probe"
srun "$probe"
srun "$sprobe"
echo "static step: exit \$?"
EOF
timeout 120 sbatch --wait --quiet "$T/job/job.sbatch" > "$T/sbatch.out" 2> "$T/sbatch.err"
echo "# sbatch: exit $?"
cp "$T/job/job.out" "$T/sbatch.out" 2>/dev/null
sed 's/^/#   job: /' "$T/sbatch.out"
sed 's/^/#   err: /' "$T/sbatch.err"
has sbatch out '^script: [1-9][0-9]* mapping'
if [ "$(grep -c 'probe pid=.* preload=loaded' "$T/sbatch.out")" = 2 ]; then
	echo "ok: sbatch: the script's program and its step both loaded"
else
	echo "not ok: sbatch: want 2 loaded probes"
	fails=$((fails + 1))
fi
has sbatch out 'is statically linked: LD_PRELOAD cannot reach it'
has sbatch out '^static step: exit 126'
# and without the option, nothing
sed -i '/#SBATCH --safe-mr/d' "$T/job/job.sbatch"
timeout 120 sbatch --wait --quiet "$T/job/job.sbatch" >/dev/null 2>&1
cp "$T/job/job.out" "$T/sbatch_off.out" 2>/dev/null
sed 's/^/#   job: /' "$T/sbatch_off.out"
has sbatch_off out '^script: 0 mapping'
lacks sbatch_off out 'preload=loaded'
has sbatch_off out '^static step: exit 0'

# salloc --safe-mr: the steps of the allocation have it.
timeout 120 salloc --quiet -N1 -n1 --safe-mr srun "$probe" > "$T/salloc.out" 2> "$T/salloc.err"
echo "# salloc: exit $?"
sed 's/^/#   out: /' "$T/salloc.out"
sed 's/^/#   err: /' "$T/salloc.err"
has salloc out 'preload=loaded'

# 8. examples/slurm/checkpoint.sbatch as shipped: two Open MPI ranks
# started by srun --mpi=pmix put into each other's file-backed windows,
# and the files hold what was put.  (Shared memory between the ranks here:
# no registration, so no SAFE_MR_STATS line; that the steps of a
# --safe-mr job have the preload is case 7.)
# Debian's python3, the one with mpi4py, whatever python3 comes first here.
(cd "$src" && PATH=/usr/bin:/bin OMPI_MCA_btl=self,vader timeout 180 sbatch --wait --quiet \
	-D "$T/job" -o "$T/job/ckpt.out" examples/slurm/checkpoint.sbatch "$T/job/ckpt") \
	> "$T/ckpt.err" 2>&1
echo "# checkpoint.sbatch: exit $?"
cp "$T/job/ckpt.out" "$T/ckpt.out" 2>/dev/null
sed 's/^/#   job: /' "$T/ckpt.out"
sed 's/^/#   err: /' "$T/ckpt.err"
has ckpt out '^batch script: safe_mr loaded'
has ckpt out 'mpi4py_memmap_put: .* ok'

if [ "$fails" != 0 ]; then
	echo "FAIL: $fails check(s)"
	exit 1
fi
echo "PASS"
