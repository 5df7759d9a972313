# Guest test: boots and loads the modules (nothing else); useful for timing.
. /lib/vp.sh
vp_info "uptime=$(cut -d' ' -f1 /proc/uptime) modules=$(wc -l </proc/modules)"
exit 0
