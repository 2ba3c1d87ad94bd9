#!/usr/bin/env bash
# Prints the Debian archive URL this machine's apt already uses (its first non-security source),
# so the project's scripts add suites or build images from it without naming any mirror.
# Exits 1, printing nothing, when apt has no such source.
set -eu  # no pipefail: grep reports a missing sources file, awk decides
grep -hE '^(URIs:|deb )' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null \
  | grep -v -- '-security' \
  | awk '{for (i = 2; i <= NF; i++) if ($i ~ /^[a-z+]+:\/\//) { print $i; found = 1; exit }}
         END { exit !found }'
