#!/usr/bin/env bash
# The vhost-pci demo (the README's first command): install what is missing,
# build an optimised tree, run vp-demo on its built-in defaults. No QEMU, no
# hugepages. Arguments go to vp-demo (try: scripts/demo.sh --help, --quick).
#
# Environment: BUILD_DIR (default ./build-release), CC (default gcc).
# Exit status: vp-demo's (0 = every frame verified), or 1 if the build failed.
set -euo pipefail
cd "$(dirname "$0")/.."
B=${BUILD_DIR:-build-release}

scripts/deps.sh

echo "demo: building in $B (release)" >&2
if [ -f "$B/build.ninja" ]; then
	meson setup --reconfigure "$B" --buildtype=release >"$B.setup.log" 2>&1 ||
		{ cat "$B.setup.log" >&2; exit 1; }
else
	rm -rf "$B"
	CC=${CC:-gcc} meson setup "$B" --buildtype=release >"$B.setup.log" 2>&1 ||
		{ cat "$B.setup.log" >&2; exit 1; }
fi
# The demo needs the VM tools; the daemon is used if it builds.
if ! ninja -C "$B" tools/vp-demo tools/vp-vm tools/vp-vswitch >"$B.build.log" 2>&1; then
	tail -40 "$B.build.log" >&2
	echo "demo: build failed (full log: $B.build.log)" >&2
	exit 1
fi
ninja -C "$B" daemon/vhost-pcid >>"$B.build.log" 2>&1 ||
	echo "demo: vhost-pcid did not build; the demo runs without it" >&2
rm -f "$B.setup.log"

exec "$B/tools/vp-demo" "$@"
