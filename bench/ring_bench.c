/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * ring-bench: split-ring throughput between two pinned, busy-polling
 * processes (the ring harness's driver and device), with a cross-core
 * latency probe taken in the same run. See README.md.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: ring-bench [options]\n"
		"  --seconds S      measuring window (default 5)\n"
		"  --size N         packet bytes (default 64)\n"
		"  --cores A,B      pin driver to core A, device to core B (default 0,1)\n"
		"  --indirect       negotiate indirect descriptors (implies --bufs 2)\n"
		"  --event-idx      negotiate event index\n"
		"  --bufs N         buffers per chain (default 1)\n"
		"  --qsize N        ring size (default 256)\n"
		"  --dir D          tx, rx or both (default both)\n"
		"  --verify         check every payload byte (PRNG) instead of\n"
		"                   copying it and checking a sequence stamp\n"
		"  --help\n");
}

static int num(const char *s, double lo, double hi, double *v)
{
	char *end;

	*v = strtod(s, &end);
	if (end == s || *end || *v < lo || *v > hi) {
		fprintf(stderr, "ring-bench: bad number '%s'\n", s);
		return -1;
	}
	return 0;
}

static int set_dir(const char *s, struct hx_opts *o)
{
	o->tx = !strcmp(s, "tx") || !strcmp(s, "both");
	o->rx = !strcmp(s, "rx") || !strcmp(s, "both");
	if (o->tx || o->rx)
		return 0;
	fprintf(stderr, "ring-bench: --dir wants tx, rx or both\n");
	return -1;
}

static int parse(int argc, char **argv, struct hx_opts *o)
{
	static const struct option lo[] = {
		{ "seconds", 1, 0, 't' }, { "size", 1, 0, 's' },
		{ "cores", 1, 0, 'c' }, { "indirect", 0, 0, 'i' },
		{ "event-idx", 0, 0, 'e' }, { "bufs", 1, 0, 'b' },
		{ "qsize", 1, 0, 'q' }, { "dir", 1, 0, 'd' },
		{ "verify", 0, 0, 'v' }, { "help", 0, 0, 'h' }, { 0 },
	};
	double v = 0;
	int c, bad = 0;

	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (c) {
		case 't': bad |= num(optarg, 0.1, 3600, &v); o->seconds = v; break;
		case 's': bad |= num(optarg, 1, 65536, &v);
			  o->min_size = o->max_size = (unsigned)v; break;
		case 'c': if (hx_parse_cores(optarg, &o->cpu_drv, &o->cpu_dev)) {
				  fprintf(stderr, "ring-bench: --cores wants A,B\n");
				  bad = 1;
			  }
			  break;
		case 'i': o->indirect = true; break;
		case 'e': o->event_idx = true; break;
		case 'b': bad |= num(optarg, 1, HX_MAX_CHAIN, &v); o->bufs = (unsigned)v; break;
		case 'q': bad |= num(optarg, 1, 32768, &v); o->qsize = (unsigned)v; break;
		case 'd': bad |= set_dir(optarg, o); break;
		case 'v': o->verify = HX_VERIFY_FULL; break;
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); return -1;
		}
	}
	if (optind < argc) {
		usage(stderr);
		return -1;
	}
	return bad ? -1 : 0;
}

static void defaults(struct hx_opts *o)
{
	hx_opts_default(o);
	o->count = 0;
	o->seconds = 5;
	o->min_size = o->max_size = 64;
	o->bufs = 0;
	o->busy_poll = true;
	o->probe = true;
	o->verify = HX_VERIFY_STAMP;
	o->cpu_drv = 0;
	o->cpu_dev = 1;
	o->stall_ms = 5000;
}

static void line(const char *name, uint64_t pkts, uint64_t bytes, double s)
{
	printf("  %-18s %8.3f Mpps  %7.2f Gbit/s  (%" PRIu64 " packets)\n",
	       name, (double)pkts / s / 1e6, (double)bytes * 8 / s / 1e9, pkts);
}

static void report(const struct hx_opts *o, const struct hx_result *r)
{
	printf("ring-bench: %u B packets, %u buf%s/chain, qsize %u, indirect %s, "
	       "event-idx %s, cores %d,%d, %.2f s, payload %s\n",
	       o->max_size, o->bufs, o->bufs > 1 ? "s" : "", o->qsize,
	       o->indirect ? "on" : "off", o->event_idx ? "on" : "off",
	       o->cpu_drv, o->cpu_dev, r->elapsed_s,
	       o->verify == HX_VERIFY_FULL ? "PRNG-checked every byte" :
	       "copied in and out, seq stamp checked");
	if (o->tx)
		line("tx driver->device", r->tx_pkts, r->tx_bytes, r->elapsed_s);
	if (o->rx)
		line("rx device->driver", r->rx_pkts, r->rx_bytes, r->elapsed_s);
	printf("  cross-core one-way latency, median: %.1f ns before, %.1f ns after\n",
	       r->lat_before_ns, r->lat_after_ns);
	printf("  cpu share: driver %.1f%%, device %.1f%%%s\n", r->drv_cpu * 100,
	       r->dev_cpu * 100, r->drv_cpu < 0.97 || r->dev_cpu < 0.97 ?
	       "  (below 97%: another task took CPU; do not trust this run)" : "");
}

int main(int argc, char **argv)
{
	struct hx_opts o;
	struct hx_result r;

	defaults(&o);
	if (parse(argc, argv, &o))
		return 2;
	if (!o.bufs)
		o.bufs = o.indirect ? 2 : 1;
	if (o.bufs > o.max_chain)
		o.max_chain = o.bufs;
	if (o.cpu_drv == o.cpu_dev)
		fprintf(stderr, "ring-bench: warning: both sides on core %d: "
			"busy-polling will crawl\n", o.cpu_drv);
	o.timeout_s = (unsigned)o.seconds + 60;
	if (hx_run(&o, &r)) {
		fprintf(stderr, "ring-bench: FAILED\n");
		return 1;
	}
	report(&o, &r);
	return 0;
}
