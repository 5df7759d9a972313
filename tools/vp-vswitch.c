/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * vp-vswitch: the "vSwitch path", for comparison with vhost-pci.
 *
 * A stock vhost-user backend for N frontend ports (one server socket; every
 * frontend that becomes READY is a port, driven by a vp_net) that forwards
 * every frame from one port to another the way a software switch does: copy
 * out of port A's TX ring into a local buffer, copy into port B's RX ring.
 * Two copies and a core in the middle, where vhost-pci has one copy and no
 * middle.
 *
 * Two ports: each forwards to the other. More: MAC learning; unknown and
 * broadcast destinations are flooded (best effort, drops counted).
 * By default a full destination holds the source back (no loss, like
 * vhost-pci's backpressure); --drop makes it drop and count instead, as
 * OVS does.
 */
#include <errno.h>
#include <getopt.h>
#include <sched.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vhostpci/log.h"
#include "vmlib.h"
#include "vp-version.h"

static const char usage_text[] =
"Usage: vp-vswitch --listen SOCK [OPTIONS]\n"
"\n"
"A software switch between vhost-user frontend ports (like OVS-DPDK with\n"
"dpdkvhostuser ports): each frame is copied out of the sender's TX ring and\n"
"into the receiver's RX ring. Frontends connect to SOCK (vp-vm --frontend\n"
"--vhost-user --connect SOCK, QEMU, DPDK virtio-user).\n"
"\n"
"Options:\n"
"  --listen SOCK          the vhost-user socket (required)\n"
"  --ports N              most ports, 2..%u (default 2); with 2 each port\n"
"                         forwards to the other, with more by learned MAC\n"
"  --drop                 drop (and count) what a full port cannot take,\n"
"                         instead of holding the sender back\n"
"  --burst N              frames per burst, 1..%u (default 32)\n"
"  --mode poll|irq|adaptive  wait strategy (default adaptive)\n"
"  --cpu N                pin to CPU N\n"
"  --seconds SEC          exit after SEC (default: run until a signal)\n"
"  --json                 final report as one JSON line on stdout\n"
"  --quiet                no progress line (every second on stderr)\n"
"  --log-level LEVEL      err, warn, info (default) or debug\n"
"  -h, --help             this help\n"
"  -V, --version          show the version and exit\n"
"\n"
"SIGINT/SIGTERM: report and exit 0. Exit status 1 on a runtime error, 2 on\n"
"a usage error.\n";

#define MAC_TABLE 256

struct pend {
	struct vp_pkt *pk;
	unsigned n, off;  /* pk[off..n) still to send */
	int dst;          /* link index */
};

struct sw {
	struct vp_port *port;
	struct vp_waitset *ws;
	unsigned maxports, burst;
	bool drop;
	enum vp_net_mode mode;
	bool json, quiet;
	uint8_t *mem;
	struct pend pend[VP_PORT_MAX_LINKS];
	struct { uint8_t mac[6]; int link; bool used; } macs[MAC_TABLE];
	uint64_t rx_pkts, rx_bytes, fwd_pkts, fwd_bytes, drop_full, drop_nodst, flooded;
	int64_t t0, first, last, prog_at;
	uint64_t prog_fwd;
};

static unsigned mac_hash(const uint8_t *m)
{
	return (unsigned)(m[3] * 31u + m[4] * 7u + m[5]) % MAC_TABLE;
}

static void learn(struct sw *s, const uint8_t *src, int link)
{
	unsigned h = mac_hash(src);

	if (src[0] & 1)
		return;
	memcpy(s->macs[h].mac, src, 6);
	s->macs[h].link = link;
	s->macs[h].used = true;
}

/* Destination link of a frame from link `from`: -1 flood, -2 nowhere. */
static int lookup(struct sw *s, const uint8_t *dst, int from)
{
	unsigned up = vp_port_nlinks_up(s->port), h;

	if (up < 2)
		return -2;
	if (up == 2) {
		for (int i = 0; i < VP_PORT_MAX_LINKS; i++)
			if (i != from && vp_port_link_up(s->port, i))
				return i;
		return -2;
	}
	h = mac_hash(dst);
	if (!(dst[0] & 1) && s->macs[h].used && !memcmp(s->macs[h].mac, dst, 6) &&
	    vp_port_link_up(s->port, s->macs[h].link) && s->macs[h].link != from)
		return s->macs[h].link;
	return -1;
}

/* Forget MACs of links that went down. */
static void age(struct sw *s)
{
	for (unsigned i = 0; i < MAC_TABLE; i++)
		if (s->macs[i].used && !vp_port_link_up(s->port, s->macs[i].link))
			s->macs[i].used = false;
}

/* Send pend[i] as far as it goes. Returns true if something moved. */
static bool flush(struct sw *s, struct pend *p, int64_t now)
{
	int r;

	if (p->off == p->n)
		return false;
	if (!vp_port_link_up(s->port, p->dst)) {
		s->drop_nodst += p->n - p->off;
		p->off = p->n = 0;
		return true;
	}
	r = vp_port_tx(s->port, p->dst, p->pk + p->off, p->n - p->off,
		       s->drop ? VP_NET_TX_DROP : 0);
	if (r <= 0) {
		if (r < 0) { /* the link broke: its frames are gone */
			s->drop_nodst += p->n - p->off;
			p->off = p->n = 0;
			return true;
		}
		return false;
	}
	for (int k = 0; k < r; k++)
		s->fwd_bytes += p->pk[p->off + (unsigned)k].len;
	s->fwd_pkts += (uint64_t)r;
	if (!s->first)
		s->first = now;
	s->last = now;
	p->off += (unsigned)r;
	if (p->off == p->n)
		p->off = p->n = 0;
	return true;
}

/* One pass over every port. */
static bool step(struct sw *s, int64_t now, bool *want_tx)
{
	bool did = false;

	*want_tx = false;
	for (int i = 0; i < VP_PORT_MAX_LINKS; i++) {
		struct pend *p = &s->pend[i];
		int n;

		if (p->n) {
			did |= flush(s, p, now);
			if (p->n) {
				*want_tx = true;
				continue;
			}
		}
		/* Alone on the switch: frames wait in the sender's ring until
		 * a second port comes (no loss while the others connect). */
		if (!vp_port_link_up(s->port, i) || vp_port_nlinks_up(s->port) < 2)
			continue;
		for (unsigned k = 0; k < s->burst; k++)
			p->pk[k].len = VP_NET_MAX_PKT;
		n = vp_port_rx_link(s->port, i, p->pk, s->burst);
		if (n <= 0)
			continue;
		did = true;
		s->rx_pkts += (uint64_t)n;
		for (int k = 0; k < n; k++) {
			s->rx_bytes += p->pk[k].len;
			if (p->pk[k].len >= 12)
				learn(s, (const uint8_t *)p->pk[k].data + 6, i);
		}
		/* Frames of one burst go where the first one goes, in order; a
		 * burst that mixes destinations is split at the first change. */
		unsigned start = 0;

		while (start < (unsigned)n) {
			const uint8_t *d0 = p->pk[start].data;
			int dst = p->pk[start].len >= 6 ? lookup(s, d0, i) : -2;
			unsigned end = start + 1;

			while (end < (unsigned)n && p->pk[end].len >= 6 &&
			       lookup(s, p->pk[end].data, i) == dst)
				end++;
			if (dst == -2) {
				s->drop_nodst += end - start;
			} else if (dst == -1) {
				/* Flood: best effort to every other port. */
				for (int j = 0; j < VP_PORT_MAX_LINKS; j++) {
					int r;

					if (j == i || !vp_port_link_up(s->port, j))
						continue;
					r = vp_port_tx(s->port, j, p->pk + start, end - start,
						       VP_NET_TX_DROP);
					if (r > 0)
						s->flooded += (uint64_t)r;
				}
				s->fwd_pkts += end - start;
			} else {
				/* Unicast: keep the rest of the burst pending if B is full. */
				p->dst = dst;
				p->off = start;
				p->n = end;
				flush(s, p, now);
				if (p->n) {
					/* Frames after `end` (another destination) wait for
					 * the next burst: drop them rather than reorder. */
					if (end < (unsigned)n)
						s->drop_full += (unsigned)n - end;
					*want_tx = true;
					break;
				}
			}
			start = end;
		}
	}
	return did;
}

static void report(struct sw *s, int64_t now)
{
	struct vp_net_stats st;
	struct vp_port_counters cnt;
	double cpu = (double)vm_cpu_ns() / 1e9;
	int64_t ns = s->last - s->first;

	vp_port_stats(s->port, &st);
	vp_port_counters(s->port, &cnt);
	if (s->json) {
		struct vm_json j;

		vm_json_begin(&j);
		vm_json_str(&j, "name", "vswitch");
		vm_json_str(&j, "mode", vm_mode_name(s->mode));
		vm_json_dbl(&j, "seconds", (double)(now - s->t0) / 1e9);
		vm_json_u64(&j, "rx_packets", s->rx_pkts);
		vm_json_u64(&j, "rx_bytes", s->rx_bytes);
		vm_json_u64(&j, "fwd_packets", s->fwd_pkts);
		vm_json_u64(&j, "fwd_bytes", s->fwd_bytes);
		vm_json_dbl(&j, "fwd_mpps", vm_mpps(s->fwd_pkts, ns));
		vm_json_dbl(&j, "fwd_gbps", vm_gbps(s->fwd_bytes, ns));
		vm_json_obj(&j, "drops");
		vm_json_u64(&j, "full", s->drop_full + st.tx_drop_no_buf);
		vm_json_u64(&j, "no_port", s->drop_nodst);
		vm_json_u64(&j, "too_big", st.tx_drop_too_big + st.rx_drop_too_big);
		vm_json_u64(&j, "bad", st.rx_drop_bad);
		vm_json_end_obj(&j);
		vm_json_u64(&j, "flooded", s->flooded);
		vm_json_u64(&j, "signals", st.signals);
		vm_json_u64(&j, "wakeups", st.wakeups);
		vm_json_dbl(&j, "cpu_s", cpu);
		vm_json_dbl(&j, "pkts_per_cpu_s", cpu > 0 ? (double)s->fwd_pkts / cpu : 0);
		vm_json_u64(&j, "link_ups", cnt.link_ups);
		vm_json_u64(&j, "link_downs", cnt.link_downs);
		vm_json_bool(&j, "ok", true);
		printf("%s\n", vm_json_finish(&j));
	} else {
		printf("vp-vswitch (%s): %.2f s\n", vm_mode_name(s->mode), (double)(now - s->t0) / 1e9);
		printf("  received %" PRIu64 ", forwarded %" PRIu64 " frames: %.3f Mpps, %.3f Gbit/s\n",
		       s->rx_pkts, s->fwd_pkts, vm_mpps(s->fwd_pkts, ns), vm_gbps(s->fwd_bytes, ns));
		printf("  drops: port full %" PRIu64 ", no port %" PRIu64 ", too big %" PRIu64
		       ", bad %" PRIu64 "; flooded copies %" PRIu64 "\n",
		       s->drop_full + st.tx_drop_no_buf, s->drop_nodst,
		       st.tx_drop_too_big + st.rx_drop_too_big, st.rx_drop_bad, s->flooded);
		printf("  cpu %.3f s (%.3f M frames per CPU-second), link up/down %" PRIu64 "/%" PRIu64
		       "\n", cpu, cpu > 0 ? (double)s->fwd_pkts / cpu / 1e6 : 0.0, cnt.link_ups,
		       cnt.link_downs);
	}
	fflush(stdout);
}

enum { O_LISTEN = 256, O_PORTS, O_DROP, O_BURST, O_MODE, O_CPU, O_SECONDS, O_JSON, O_QUIET,
       O_LOGLEVEL };

int main(int argc, char **argv)
{
	static const struct option lopts[] = {
		{ "listen", required_argument, NULL, O_LISTEN },
		{ "ports", required_argument, NULL, O_PORTS },
		{ "drop", no_argument, NULL, O_DROP },
		{ "burst", required_argument, NULL, O_BURST },
		{ "mode", required_argument, NULL, O_MODE },
		{ "cpu", required_argument, NULL, O_CPU },
		{ "seconds", required_argument, NULL, O_SECONDS },
		{ "json", no_argument, NULL, O_JSON },
		{ "quiet", no_argument, NULL, O_QUIET },
		{ "log-level", required_argument, NULL, O_LOGLEVEL },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	static struct sw sw;
	struct sw *s = &sw;
	const char *path = NULL;
	double seconds = 0;
	bool has_deadline = false;
	int cpu = -1, c, r;
	uint64_t v;

	setvbuf(stderr, NULL, _IOLBF, 0);
	vm_cli_init("vp-vswitch");
	vp_log_set_handler(vm_log_handler, NULL);
	s->maxports = 2;
	s->burst = 32;
	s->mode = VP_NET_ADAPTIVE;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":hV", lopts, NULL)) != -1) {
		switch (c) {
		case O_LISTEN:
			path = optarg;
			break;
		case O_PORTS:
			if (vm_parse_u64(optarg, &v) < 0 || v < 2 || v > VP_PORT_MAX_LINKS)
				return vm_usage_error("bad --ports '%s' (2..%u)", optarg, VP_PORT_MAX_LINKS);
			s->maxports = (unsigned)v;
			break;
		case O_DROP:
			s->drop = true;
			break;
		case O_BURST:
			if (vm_parse_u64(optarg, &v) < 0 || v < 1 || v > VP_NET_MAX_BURST)
				return vm_usage_error("bad --burst '%s' (1..%u)", optarg, VP_NET_MAX_BURST);
			s->burst = (unsigned)v;
			break;
		case O_MODE:
			if (vm_parse_mode(optarg, &s->mode) < 0)
				return vm_usage_error("bad --mode '%s' (poll, irq or adaptive)", optarg);
			break;
		case O_CPU:
			if (vm_parse_u64(optarg, &v) < 0 || v >= CPU_SETSIZE)
				return vm_usage_error("bad --cpu '%s'", optarg);
			cpu = (int)v;
			break;
		case O_SECONDS:
			if (vm_parse_seconds(optarg, &seconds) < 0)
				return vm_usage_error("bad --seconds '%s'", optarg);
			has_deadline = true;
			break;
		case O_JSON:
			s->json = true;
			break;
		case O_QUIET:
			s->quiet = true;
			break;
		case O_LOGLEVEL:
			if (!strcmp(optarg, "err"))
				vp_log_set_level(VP_LOG_ERR);
			else if (!strcmp(optarg, "warn"))
				vp_log_set_level(VP_LOG_WARN);
			else if (!strcmp(optarg, "info"))
				vp_log_set_level(VP_LOG_INFO);
			else if (!strcmp(optarg, "debug"))
				vp_log_set_level(VP_LOG_DEBUG);
			else
				return vm_usage_error("bad --log-level '%s' (err, warn, info, debug)", optarg);
			break;
		case 'h':
			printf(usage_text, VP_PORT_MAX_LINKS, VP_NET_MAX_BURST);
			return VM_EXIT_OK;
		case 'V':
			printf("vp-vswitch %s\n", VP_VERSION);
			return VM_EXIT_OK;
		case ':':
			return vm_usage_error("option '%s' needs a value", argv[optind - 1]);
		default:
			return vm_usage_error("unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind < argc)
		return vm_usage_error("unexpected argument '%s'", argv[optind]);
	if (!path)
		return vm_usage_error("--listen SOCK is required");
	if (cpu >= 0 && (r = vm_pin_cpu(cpu)) < 0) {
		vp_log(VP_LOG_ERR, "cannot pin to CPU %d: %s", cpu, strerror(-r));
		return VM_EXIT_FAIL;
	}
	/* One buffer set per port: frames wait there while their destination is full. */
	size_t cap = (VP_NET_MAX_PKT + 63) & ~(size_t)63;

	s->mem = malloc(cap * s->burst * VP_PORT_MAX_LINKS);
	for (unsigned i = 0; i < VP_PORT_MAX_LINKS; i++)
		s->pend[i].pk = calloc(s->burst, sizeof(struct vp_pkt));
	for (unsigned i = 0; i < VP_PORT_MAX_LINKS; i++)
		if (!s->pend[i].pk)
			s->mem = (free(s->mem), NULL);
	if (!s->mem) {
		vp_log(VP_LOG_ERR, "out of memory");
		return VM_EXIT_FAIL;
	}
	for (unsigned i = 0; i < VP_PORT_MAX_LINKS; i++)
		for (unsigned k = 0; k < s->burst; k++)
			s->pend[i].pk[k].data = s->mem + cap * (i * s->burst + k);
	vm_signals_init();
	struct vp_port_config pc = { .side = VP_PORT_BACKEND, .name = "vswitch", .path = path,
				     .mode = s->mode };
	int ws_port;

	/* The port logs why it could not be made. */
	if (vp_port_new(&s->port, &pc) < 0)
		return VM_EXIT_FAIL;
	if (vp_waitset_new(&s->ws) < 0 || (ws_port = vp_waitset_add_port(s->ws, s->port)) < 0) {
		vp_log(VP_LOG_ERR, "out of memory");
		vp_port_free(s->port);
		return VM_EXIT_FAIL;
	}
	s->t0 = s->prog_at = vm_now_ns();
	int64_t deadline = s->t0 + (int64_t)(seconds * 1e9), next_ctl = 0, last_work = 0;
	int rc = VM_EXIT_OK;

	while (!vm_stop_signal) {
		int64_t now = vm_now_ns();
		bool want_tx, did;

		if (has_deadline && now >= deadline)
			break;
		if (now >= next_ctl) {
			if (vp_port_control(s->port) < 0) {
				vp_log(VP_LOG_ERR, "%s", vp_port_error(s->port));
				rc = VM_EXIT_FAIL;
				break;
			}
			if (vp_port_nlinks_up(s->port) > s->maxports) {
				/* Over the limit: the newest port is dropped. */
				int last = -1;

				uint64_t id, newest = 0;

				for (int i = 0; i < VP_PORT_MAX_LINKS; i++)
					if (vp_port_link_device(s->port, i, &id) == 0 &&
					    (last < 0 || id > newest)) {
						last = i;
						newest = id;
					}
				vp_port_drop_link(s->port, last, "vp-vswitch: all ports in use");
			}
			age(s);
			next_ctl = now + 1000000;
			if (!s->quiet && now - s->prog_at >= 1000000000ll) {
				double dt = (double)(now - s->prog_at) / 1e9;

				fprintf(stderr, "vp-vswitch: %5.1fs  fwd %7.3f Mpps  ports %u  drops %" PRIu64
					"\n", (double)(now - s->t0) / 1e9,
					(double)(s->fwd_pkts - s->prog_fwd) / dt / 1e6,
					vp_port_nlinks_up(s->port), s->drop_full + s->drop_nodst);
				s->prog_at = now;
				s->prog_fwd = s->fwd_pkts;
			}
		}
		did = step(s, now, &want_tx);
		if (did) {
			last_work = now;
			continue;
		}
		int64_t left = s->quiet ? 100000000 : s->prog_at + 1000000000ll - now;
		int tms = left > 100000000 ? 100 : left <= 0 ? 0 : (int)(left / 1000000) + 1;

		if (has_deadline && deadline - now < (int64_t)tms * 1000000)
			tms = (int)((deadline - now) / 1000000) + 1;
		vp_waitset_want(s->ws, ws_port, true, want_tx);
		vp_waitset_wait(s->ws, tms);
		if (now - last_work >= 50000)
			next_ctl = 0;
	}
	if (vm_stop_signal)
		vp_log(VP_LOG_INFO, "%s: stopping", strsignal(vm_stop_signal));
	report(s, vm_now_ns());
	vp_waitset_free(s->ws);
	vp_port_free(s->port);
	for (unsigned i = 0; i < VP_PORT_MAX_LINKS; i++)
		free(s->pend[i].pk);
	free(s->mem);
	return rc;
}
