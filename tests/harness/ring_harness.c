/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * ring-harness: one mode of the two-process ring test (see harness.h).
 * Exits 0 only if every buffer arrived, in order, with every byte right.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: ring-harness [options]\n"
		"  --count N        buffers per direction (default 1000000)\n"
		"  --indirect       negotiate indirect descriptors\n"
		"  --event-idx      negotiate event index\n"
		"  --size N         fixed N-byte packets in one-buffer chains\n"
		"  --max-size N     random sizes 1..N (default 4096)\n"
		"  --max-chain N    chains of 1..N buffers (default 8)\n"
		"  --bufs N         chains of exactly N buffers\n"
		"  --qsize N        ring size (default 256)\n"
		"  --seed N         payload and shape seed\n"
		"  --poll           busy-poll: never sleep on eventfds\n"
		"  --tx-only, --rx-only\n"
		"  --stall-ms N     fail if a wait lasts longer (default 10000)\n"
		"  --timeout S      fail if the run lasts longer (default 600)\n"
		"  --inject F       self-test: inject fault F halfway (corrupt-tx,\n"
		"                   corrupt-rx, bad-len, dev-exit, dev-abort,\n"
		"                   no-call, drv-exit); the run must then fail\n");
}

static int num(const char *s, unsigned long long lo, unsigned long long hi,
	       unsigned long long *v)
{
	char *end;

	*v = strtoull(s, &end, 0);
	if (end == s || *end || *v < lo || *v > hi) {
		fprintf(stderr, "ring-harness: bad number '%s'\n", s);
		return -1;
	}
	return 0;
}

static int parse(int argc, char **argv, struct hx_opts *o)
{
	static const struct option lo[] = {
		{ "count", 1, 0, 'c' }, { "indirect", 0, 0, 'i' },
		{ "event-idx", 0, 0, 'e' }, { "size", 1, 0, 's' },
		{ "max-size", 1, 0, 'm' }, { "max-chain", 1, 0, 'n' },
		{ "qsize", 1, 0, 'q' }, { "seed", 1, 0, 'S' },
		{ "poll", 0, 0, 'p' }, { "tx-only", 0, 0, 't' },
		{ "rx-only", 0, 0, 'r' }, { "stall-ms", 1, 0, 'w' },
		{ "timeout", 1, 0, 'T' }, { "inject", 1, 0, 'I' },
		{ "bufs", 1, 0, 'b' },
		{ "help", 0, 0, 'h' }, { 0 },
	};
	unsigned long long v = 0;
	int c, bad = 0;

	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (c) {
		case 'c': bad |= num(optarg, 1, UINT64_MAX, &v); o->count = v; break;
		case 'i': o->indirect = true; break;
		case 'e': o->event_idx = true; break;
		case 's': bad |= num(optarg, 1, 1 << 20, &v);
			  o->min_size = o->max_size = (unsigned)v; break;
		case 'm': bad |= num(optarg, 1, 1 << 20, &v);
			  o->min_size = 1; o->max_size = (unsigned)v; break;
		case 'n': bad |= num(optarg, 1, HX_MAX_CHAIN, &v);
			  o->max_chain = (unsigned)v; break;
		case 'q': bad |= num(optarg, 1, 32768, &v); o->qsize = (unsigned)v; break;
		case 'S': bad |= num(optarg, 0, UINT64_MAX, &v); o->seed = v; break;
		case 'b': bad |= num(optarg, 1, HX_MAX_CHAIN, &v);
			  o->bufs = (unsigned)v; break;
		case 'p': o->busy_poll = true; break;
		case 't': o->rx = false; break;
		case 'r': o->tx = false; break;
		case 'w': bad |= num(optarg, 1, 3600000, &v); o->stall_ms = (unsigned)v; break;
		case 'T': bad |= num(optarg, 1, 86400, &v); o->timeout_s = (unsigned)v; break;
		case 'I': c = hx_parse_inject(optarg);
			  if (c < 0)
				  fprintf(stderr, "ring-harness: no fault '%s'\n", optarg);
			  bad |= c < 0;
			  o->inject = c < 0 ? HX_INJ_NONE : (enum hx_inject)c; break;
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); return -1;
		}
	}
	if (o->bufs > o->max_chain)
		o->max_chain = o->bufs;
	if (optind < argc) {
		usage(stderr);
		return -1;
	}
	return bad ? -1 : 0;
}

static void report(const struct hx_opts *o, const struct hx_result *r)
{
	char shape[64];
	double mpps = (double)(r->tx_pkts > r->rx_pkts ? r->tx_pkts : r->rx_pkts)
		      / r->elapsed_s / 1e6;

	if (o->bufs)
		snprintf(shape, sizeof(shape), "%u..%u B x %u bufs", o->min_size,
			 o->max_size, o->bufs);
	else if (o->min_size == o->max_size)
		snprintf(shape, sizeof(shape), "fixed %u B", o->max_size);
	else
		snprintf(shape, sizeof(shape), "%u..%u B x 1..%u bufs",
			 o->min_size, o->max_size, o->max_chain);
	printf("ring-harness %s, indirect %s, event-idx %s%s: tx %" PRIu64
	       " bufs %.1f MB, rx %" PRIu64 " bufs %.1f MB, %.2f s, "
	       "%.2f Mpps/dir; kicks %" PRIu64 " calls %" PRIu64
	       " sleeps drv %" PRIu64 " dev %" PRIu64 "; RAM at 0x%" PRIx64
	       " (driver) 0x%" PRIx64 " (device)\n",
	       shape, o->indirect ? "on" : "off", o->event_idx ? "on" : "off",
	       o->busy_poll ? ", busy-poll" : "", r->tx_pkts,
	       (double)r->tx_bytes / 1e6, r->rx_pkts, (double)r->rx_bytes / 1e6,
	       r->elapsed_s, mpps, r->kicks, r->calls, r->drv_sleeps,
	       r->dev_sleeps, r->drv_base, r->dev_base);
}

int main(int argc, char **argv)
{
	struct hx_opts o;
	struct hx_result r;

	hx_opts_default(&o);
	if (parse(argc, argv, &o))
		return 2;
	if (hx_run(&o, &r)) {
		fprintf(stderr, "ring-harness: FAILED (indirect %s, event-idx %s)\n",
			o.indirect ? "on" : "off", o.event_idx ? "on" : "off");
		return 1;
	}
	report(&o, &r);
	return 0;
}
