#!/bin/bash
# SPDX-License-Identifier: BSD-3-Clause
#
# Instructions per frame on the 64 B paths, independent of the machine's load:
#   bench/callgrind-frame.sh BUILD DIR fe2be|be2fe [SECONDS]
# Runs vp-vm gen -> sink twice, each time with one side under callgrind and the
# peer native (so the measured side is the slower one and sees full bursts). The
# measured side is instrumented only for SECONDS (default 3) of steady traffic
# (dump 1), then for 1 s with the peer stopped (dump 2: idle polls only), and the
# idle polls of dump 1 are taken out with dump 2's cost per call. Prints the
# inclusive instructions per frame of the data-path calls. Needs valgrind.
# VP_CG_FE_ARGS adds frontend options, e.g. "--features
# mrg_rxbuf,event_idx,indirect_desc,ring_packed" for packed rings (the backend
# accepts them by default).
# bench/README.md ("callgrind-frame.sh") says how to read it.
set -u
B=${1:?build dir}; O=${2:?output dir}; D=${3:?fe2be or be2fe}; W=${4:-3}
case $D in
fe2be) BEAPP=sink; FEAPP=gen ;;
be2fe) BEAPP=gen; FEAPP=sink ;;
*) echo "direction: fe2be or be2fe" >&2; exit 2 ;;
esac
command -v valgrind >/dev/null || { echo "valgrind missing" >&2; exit 2; }
mkdir -p "$O"
VG=(valgrind --tool=callgrind --instr-atstart=no)
ARGS=(--mode poll --verify header --ring 1024 --size 64 --seconds 60 --connect-timeout 60 --quiet)
BP=; FP=
cleanup() {
	for p in $BP $FP; do kill -CONT "$p" 2>/dev/null; kill -TERM "$p" 2>/dev/null; done
	wait 2>/dev/null
}
trap cleanup EXIT INT TERM
for meas in be fe; do
	S=$O/$D-$meas.sock
	rm -f "$S" "$O/$D-$meas.cg"*
	vb=(); vf=()
	[ $meas = be ] && vb=("${VG[@]}" --callgrind-out-file="$O/$D-be.cg")
	[ $meas = fe ] && vf=("${VG[@]}" --callgrind-out-file="$O/$D-fe.cg")
	"${vb[@]}" "$B/tools/vp-vm" --backend --listen "$S" --app $BEAPP --cpu 1 "${ARGS[@]}" \
		>"$O/$D-$meas.be.log" 2>&1 &
	BP=$!
	for _ in $(seq 100); do [ -S "$S" ] && break; sleep 0.2; done
	"${vf[@]}" "$B/tools/vp-vm" --frontend --connect "$S" --app $FEAPP --cpu 0 "${ARGS[@]}" \
		${VP_CG_FE_ARGS:-} \
		>"$O/$D-$meas.fe.log" 2>&1 &
	FP=$!
	sleep 3
	if [ $meas = be ]; then MP=$BP; PP=$FP; else MP=$FP; PP=$BP; fi
	callgrind_control -i on $MP >/dev/null 2>&1
	sleep "$W"
	callgrind_control -d busy $MP >/dev/null 2>&1
	kill -STOP $PP
	sleep 0.5
	callgrind_control -z $MP >/dev/null 2>&1
	sleep 1
	callgrind_control -d idle $MP >/dev/null 2>&1
	kill -CONT $PP
	kill -TERM $FP $BP 2>/dev/null
	wait $FP $BP 2>/dev/null
	BP=; FP=
	python3 - "$O/$D-$meas.cg" "$D" "$meas" <<'PY'
import re, subprocess, sys
base, d, side = sys.argv[1:4]

def parse(f):
    out = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--tree=caller", f],
                         capture_output=True, text=True).stdout
    incl, calls, pend = {}, {}, 0
    for line in out.splitlines():
        m = re.match(r"\s*[\d,]+ .*?<\s+\S+:(\S+) \(([\d,]+)x\)", line)
        if m:
            pend += int(m.group(2).replace(",", ""))
            continue
        m = re.match(r"\s*([\d,]+) .*?\*\s+\S+:(\S+)", line)
        if m:
            fn = m.group(2).split(".")[0]
            # inlined parts are listed per source file: keep the largest
            if int(m.group(1).replace(",", "")) >= incl.get(fn, 0):
                incl[fn] = int(m.group(1).replace(",", ""))
                calls[fn] = pend
        pend = 0
    return incl, calls

bi, bc = parse(base + ".1")
ii, ic = parse(base + ".2")
build = bc.get("vm_pkt_build_tmpl", 0)
prod = bc.get("verify_burst", 0) or bc.get("vp_port_tx_commit", 0)
# A sink's bursts are full (32) when its peer is native; a gen counts its builds.
frames = build or 32 * prod
loops = bc.get("rx_verify", 0)
role = "gen" if build else "sink"
print(f"{d} {'backend' if side == 'be' else 'frontend'} {role}: {frames} frames, {prod} bursts, "
      f"{loops} loop iterations (idle ones taken out)")
per_loop = {"main", "rx_verify", "vp_port_rx", "be_rx", "vp_net_rx_burst", "vp_port_rx_borrow",
            "vp_netfe_rx_borrow", "vp_port_tx_reserve", "vp_netfe_tx_reserve", "vp_net_tx_reserve"}
for n in ["main", "rx_verify", "verify_burst", "vm_verify_burst", "vm_pkt_build_tmpl", "vp_port_rx",
          "be_rx", "vp_net_rx_burst", "vp_port_rx_borrow", "vp_port_rx_release", "vp_port_tx_reserve",
          "vp_port_tx_commit", "vp_vq_drv_add_burst", "vp_vq_dev_push_burst",
          "vp_vq_dev_pop_burst", "vp_vq_packed_pop_burst", "vp_vq_packed_push_burst",
          "vp_vq_drv_get_used"]:
    if n not in bi or not frames:
        continue
    c = loops if n == "main" else bc.get(n, 0)
    ci = ic.get("rx_verify", 0) if n == "main" else ic.get(n, 0)
    idle = ii.get(n, 0) / ci if ci else 0
    extra = max(0, c - prod) if n in per_loop else 0
    print(f"  {n:20s} {(bi[n] - extra * idle) / frames:7.1f} per frame")
PY
done
