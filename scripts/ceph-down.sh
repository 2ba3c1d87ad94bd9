#!/usr/bin/env bash
# Stops the daemons scripts/ceph-up.sh started under DIR, by their pid files only (never by name).
# Usage: scripts/ceph-down.sh DIR [--purge]   (--purge also removes DIR)
set -uo pipefail
D=${1:?usage: ceph-down.sh DIR [--purge]}
for f in "$D"/run/client.rgw.ci.pid "$D"/run/osd.*.pid "$D"/run/mon.a.pid; do
  [ -f "$f" ] || continue
  p=$(cat "$f")
  kill "$p" 2>/dev/null || continue
  for _ in $(seq 30); do kill -0 "$p" 2>/dev/null || break; sleep 0.5; done
  kill -9 "$p" 2>/dev/null || true
done
if [ "${2:-}" = "--purge" ]; then rm -rf "$D"; fi
exit 0
