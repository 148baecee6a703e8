#!/bin/bash
# Review reproducers for safe_mrd (run as root on a host; not part of the
# suite).  Builds safe_mrd from this tree and the hostile client, starts the
# service on a private socket, and attacks it as user nobody.
#   repro.sh [CHECK...]   checks: leak append bigslot spin stake reserve
# Prints "VULNERABLE" or "ok" per check; exit status: number vulnerable.
set -u
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
work=$(mktemp -d /tmp/safe_mrd-review.XXXXXX)
chmod 755 "$work"
sock=$work/s.sock
as_nobody="setpriv --reuid=65534 --regid=65534 --clear-groups"
bad=0
checks=${*:-leak append bigslot spin stake}

gcc -std=gnu11 -D_GNU_SOURCE -O1 -g -Wall -Wextra -I"$top/include" -I"$top/lib" "$top/service/safe_mrd.c" \
	"$top/lib/guardcore.c" "$top/lib/hash.c" -o "$work/safe_mrd" -lpthread || exit 100
gcc -std=gnu11 -O1 -g -Wall -Wextra "$here/hostile.c" -o "$work/hostile" || exit 100
chmod 755 "$work/hostile"
mkdir "$work/u" && chown 65534:65534 "$work/u"

start() {
	"$work/safe_mrd" --foreground --socket "$sock" --log-level info "$@" 2>"$work/d.log" &
	D=$!
	for _ in $(seq 100); do [ -S "$sock" ] && return; sleep 0.05; done
	echo "safe_mrd did not start"; exit 100
}
stop() { kill -KILL "$D" 2>/dev/null; wait "$D" 2>/dev/null; rm -f "$sock"; }
verdict() {	# name, vulnerable?(0/1), detail
	if [ "$2" = 1 ]; then echo "VULNERABLE $1: $3"; bad=$((bad + 1)); else echo "ok $1: $3"; fi
}
nfd() { ls "/proc/$D/fd" | wc -l; }
cpu() { awk '{print $14 + $15}' "/proc/$D/stat"; }

for c in $checks; do
	case $c in
	leak)	# GM_QUERY with two descriptors: the second stays open in the service
		start
		a=$(nfd)
		$as_nobody "$work/hostile" "$sock" leak2 200 >/dev/null
		sleep 0.3
		b=$(nfd)
		verdict leak $((b > a)) "service descriptors $a -> $b after 200 two-fd queries"
		stop ;;
	append)	# O_APPEND set after the check: the writeback appends, past the
		# client's RLIMIT_FSIZE and past the file's end
		start
		$as_nobody truncate -s 64K "$work/u/ap"
		$as_nobody env HOSTILE_FSIZE=1048576 HOSTILE_APPEND=1 HOSTILE_NREC=100 \
			"$work/hostile" "$sock" fill "$work/u/ap" 16 >/dev/null
		sleep 2
		s=$(stat -c %s "$work/u/ap")
		verdict append $((s != 65536)) "file of 64 KiB is $s bytes after the writeback (client limit 1 MiB)"
		stop ;;
	bigslot)	# one GM_FILE at slot 2^24-1: a 64 MiB slot table per connection
		start
		a=$(awk '/VmRSS/{print $2}' "/proc/$D/status")
		$as_nobody "$work/hostile" "$sock" bigslot 4 >/dev/null &
		h=$!
		sleep 2
		b=$(awk '/VmRSS/{print $2}' "/proc/$D/status")
		kill "$h"
		verdict bigslot $((b - a > 65536)) "service RSS ${a} KiB -> ${b} KiB after 4 messages"
		stop ;;
	spin)	# overlapping chunk records: recovery work unbounded by the arena
		start
		$as_nobody "$work/hostile" "$sock" spin "$work/u/ap" 4 >/dev/null
		sleep 0.5
		a=$(cpu)
		sleep 3
		b=$(cpu)
		verdict spin $((b - a > 100)) "service CPU $((b - a)) ticks in 3 s after the client died"
		stop ;;
	stake)	# a stale connection of a dead pid: another user's process that
		# gets that pid is "guarded", and a wait for it blocks
		start
		out=$($as_nobody "$work/hostile" "$sock" stake)
		p=${out% *}
		h=${out#* }
		echo $((p - 1)) >/proc/sys/kernel/ns_last_pid
		setpriv --reuid=1000 --regid=1000 --clear-groups sleep 30 &
		v=$!
		w=$("$work/hostile" "$sock" wait "$v" 2000)
		kill "$v" "$h"
		verdict stake $([ "$v" = "$p" ] && [[ $w == *blocked* ]] && echo 1 || echo 0) \
			"victim pid $v (staked $p): $w"
		stop ;;
	reserve)	# ext4's root-reserved blocks: fsuid 0 may use them
		truncate -s 64M "$work/ext4.img"
		mkfs.ext4 -q -F "$work/ext4.img"
		mkdir "$work/mnt"
		mount -o loop "$work/ext4.img" "$work/mnt" || { echo "no loop mount"; continue; }
		mkdir "$work/mnt/u" && chown 65534:65534 "$work/mnt/u"
		$as_nobody truncate -s 16M "$work/mnt/u/holes"
		$as_nobody dd if=/dev/zero of="$work/mnt/u/fill" bs=4k 2>/dev/null
		sync
		start
		$as_nobody "$work/hostile" "$sock" fill "$work/mnt/u/holes" 256 >/dev/null
		sleep 2
		n=$(stat -c %b "$work/mnt/u/holes")
		verdict reserve $((n > 0)) "the user got ENOSPC; the service then allocated $n sectors for it"
		stop
		umount "$work/mnt" ;;
	esac
done
rm -rf "$work"
exit $bad
