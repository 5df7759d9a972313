#!/usr/bin/env bash
# Install what building and testing vhost-pci needs, from Debian 12's packages.
# Does nothing (and needs no root) when everything is already there.
set -euo pipefail

pkgs=(meson ninja-build gcc g++ clang libclang-rt-14-dev llvm-14 pkg-config python3 libjansson-dev
	pandoc groff-base systemd ethtool)
# g++: the public headers as C++; pandoc: the man pages from docs/*.md; groff-base: the
# test that renders them; systemd: systemd-analyze verify of the units (suite pkg);
# ethtool: copied into the test guests (driver counters, multiqueue channels)
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "deps: installing ${missing[*]}" >&2
if [ "$(id -u)" -ne 0 ]; then
	echo "deps: missing packages and not root: run as root, or: apt-get install ${missing[*]}" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
