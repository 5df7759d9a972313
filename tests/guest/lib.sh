# Common helpers for the guest-VM test kit (sourced, not executed).
# shellcheck shell=bash

# shellcheck disable=SC2034  # used by the scripts that source this file
VP_GUEST_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
VP_GUEST_CACHE=${VP_GUEST_CACHE:-/var/cache/vhost-pci-guest}
# The file that setup.sh writes once a kernel is ready; sourced by the other tools.
VP_GUEST_ENV="$VP_GUEST_CACHE/guest.env"

vp_prog=${vp_prog:-$(basename "$0" .sh)}

vp_log()  { printf '%s: %s\n' "$vp_prog" "$*" >&2; }
vp_die()  { printf '%s: error: %s\n' "$vp_prog" "$*" >&2; exit "${VP_DIE_RC:-1}"; }

# Seconds since the epoch with millisecond precision, and a difference of two.
vp_now()  { date +%s.%N | cut -c1-14; }
vp_elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

# Load guest.env (kernel paths) or fail with a hint.
vp_load_env() {
    [ -r "$VP_GUEST_ENV" ] ||
        vp_die "no guest kernel in $VP_GUEST_CACHE: run tests/guest/setup.sh first"
    # shellcheck disable=SC1090
    . "$VP_GUEST_ENV"
    [ -r "$VP_VMLINUX" ] || vp_die "$VP_VMLINUX missing: re-run tests/guest/setup.sh"
}

# Is a dpkg package installed (state "install ok installed")?
vp_pkg_installed() {
    [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]
}

# Real hardware virtualization? /dev/kvm alone is not enough: on this kind of machine it is
# provided by kvm_pvm, under which a stock guest crawls. Require vmx/svm and no kvm_pvm.
vp_have_real_kvm() {
    [ -w /dev/kvm ] || return 1
    [ -d /sys/module/kvm_pvm ] && return 1
    grep -qwE 'vmx|svm' /proc/cpuinfo
}

# Print the script's leading comment block (its usage text).
vp_usage() { sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p}' "$0"; }

# vp_wait_serial LOG PID SECONDS PATTERN [FROM-LINE]: PATTERN in the serial log LOG after
# line FROM, as long as the guest's QEMU (PID) runs. Polls every 0.1 s; 1 on timeout.
vp_wait_serial() {
    local _
    for _ in $(seq $(($3 * 10))); do
        tail -n +"${5:-1}" "$1" 2>/dev/null | grep -q -- "$4" && return 0
        kill -0 "$2" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}
