/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Two-process ring harness, shared by the ring-harness test and ring-bench.
 *
 * The parent is the driver (the "guest"): it maps a memfd as its RAM, lays
 * out two virtqueues like virtio-net (q0 TX driver -> device, q1 RX device
 * -> driver) and buffer pools, all addressed by gpa = offset in the memfd.
 * The forked child is the device (the "backend"): it maps the same memfd
 * through vp_mem_add_region() at a different address and walks the rings
 * with vp_vq_dev_*(). Kicks and calls are eventfds, one pair per queue.
 */
#ifndef VP_HARNESS_H
#define VP_HARNESS_H

#include <stdbool.h>
#include <stdint.h>

/* Longest descriptor chain a harness packet or RX buffer is split into. */
#define HX_MAX_CHAIN 64

enum hx_verify {
	HX_VERIFY_FULL,		/* every byte from a seeded PRNG, checked */
	HX_VERIFY_STAMP,	/* payload copied in and out, seq stamp checked */
};

/* Faults the harness can inject into itself, to prove it catches them. */
enum hx_inject {
	HX_INJ_NONE,
	HX_INJ_CORRUPT_TX,	/* driver flips a TX payload byte */
	HX_INJ_CORRUPT_RX,	/* device flips an RX payload byte */
	HX_INJ_BAD_LEN,		/* device reports an RX used length one short */
	HX_INJ_DEV_EXIT,	/* device exits with status 3 */
	HX_INJ_DEV_ABORT,	/* device dies of SIGABRT */
	HX_INJ_NO_CALL,		/* device stops signalling the driver */
	HX_INJ_DRV_EXIT,	/* driver exits: the device must not linger */
};

struct hx_opts {
	uint64_t count;		/* buffers per direction; 0 = until seconds */
	double seconds;		/* run for this long instead (bench) */
	unsigned qsize;		/* ring size, power of two */
	unsigned max_chain;	/* 1..HX_MAX_CHAIN descriptors per chain */
	unsigned bufs;		/* exactly this many per chain; 0 = random
				 * 1..max_chain (1 if the size is fixed) */
	unsigned min_size;	/* packet sizes, bytes; equal = fixed size, */
	unsigned max_size;	/* which also means one-buffer chains */
	bool indirect;
	bool event_idx;
	bool tx, rx;		/* directions to run */
	bool busy_poll;		/* never sleep: notifications stay off */
	bool probe;		/* cross-core latency probe before and after */
	enum hx_verify verify;
	int cpu_drv, cpu_dev;	/* pin to these cores; -1 = do not pin */
	uint64_t seed;
	unsigned stall_ms;	/* a wait longer than this is a failure */
	unsigned timeout_s;	/* whole run */
	enum hx_inject inject;	/* at packet count / 2 */
};

struct hx_result {
	/* as counted by the driver, and by the device */
	uint64_t tx_pkts, tx_bytes, rx_pkts, rx_bytes;
	uint64_t dev_tx_pkts, dev_tx_bytes, dev_rx_pkts, dev_rx_bytes;
	uint64_t kicks, calls;		/* eventfd writes by driver / device */
	uint64_t drv_sleeps, dev_sleeps; /* waits in poll() */
	double elapsed_s;
	double lat_before_ns, lat_after_ns; /* one-way, median; < 0: none */
	double drv_cpu, dev_cpu;	/* share of a CPU in the run; < 0: n/a */
	uint64_t drv_base, dev_base;	/* where each side mapped gpa 0 */
};

void hx_opts_default(struct hx_opts *o);

/* "corrupt-tx", "corrupt-rx", ... to enum hx_inject; -1 if unknown. */
int hx_parse_inject(const char *s);

/* Parse "A,B" into two core numbers. 0 or -1. */
int hx_parse_cores(const char *s, int *a, int *b);

/*
 * Run one configuration. 0 on success with *r filled in; -1 on any failure
 * (mismatch, broken queue, stall, timeout, child died), with the reason
 * already printed to stderr. The child is always reaped.
 */
int hx_run(const struct hx_opts *o, struct hx_result *r);

#endif
