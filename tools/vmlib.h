/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * vmlib: what the userspace-VM tools (vp-vm, vp-vswitch, vp-demo) share.
 *
 *  - RAM: a memfd of a power-of-two size, guest-physical address = offset.
 *    (The VMs' network ports are the library's: vhostpci/port.h, and they
 *    sleep in a vhostpci/waitset.h.)
 *  - Test packets: Ethernet frame + a header carrying stream, sequence
 *    number, send time and a checksum over the whole frame; a per-stream
 *    tracker finds loss, reordering, duplicates and corruption.
 *  - Latency histogram (log-linear, ~1.6% resolution), rates, CPU time,
 *    option parsing, a small JSON writer and reader for the report line.
 *
 * Threading: everything here is single-threaded; the caller owns the loop.
 */
#ifndef VP_TOOLS_VMLIB_H
#define VP_TOOLS_VMLIB_H

#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "vhostpci/log.h"
#include "vhostpci/net.h"
#include "vhostpci/server.h"
#include "vhostpci/client.h"
#include "vhostpci/port.h"
#include "vhostpci/waitset.h"

#define VM_EXIT_OK 0
#define VM_EXIT_FAIL 1   /* verification failed or runtime error */
#define VM_EXIT_USAGE 2

/* ---- command-line plumbing shared by the tools ---- */

/* The program name used in messages ("vp-vm", "vp-vswitch"). */
void vm_cli_init(const char *prog);
/* "PROG: message" and a hint on stderr; returns VM_EXIT_USAGE. */
int vm_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* err | warn | info | debug; 0 or -EINVAL. */
int vm_parse_log_level(const char *s, enum vp_log_level *out);
/* A vp_log handler: "PROG[NAME]: level: msg" on stderr. opaque is NULL or a
 * const char ** to the instance name, read at each message (it may change). */
void vm_log_handler(enum vp_log_level level, const char *msg, void *opaque);

/* ---- time ---- */
int64_t vm_now_ns(void);
/* CPU time (user + system) this process used, in ns. */
int64_t vm_cpu_ns(void);

/* ---- parsing ("nothing lost on bad input": every error is reported) ---- */
/* Unsigned integer with optional k/K (1000) or Ki/M/Mi/G/Gi suffixes. */
int vm_parse_u64(const char *s, uint64_t *out);
/* Byte size: plain number or with K/M/G (powers of 1024). */
int vm_parse_bytes(const char *s, uint64_t *out);
/* Non-negative decimal seconds ("2", "0.5"). */
int vm_parse_seconds(const char *s, double *out);
/* "N" or "MIN-MAX". */
int vm_parse_range(const char *s, uint64_t *lo, uint64_t *hi);
/* "poll", "irq", "adaptive". */
int vm_parse_mode(const char *s, enum vp_net_mode *out);
const char *vm_mode_name(enum vp_net_mode m);
/* Pin the calling process to one CPU. */
int vm_pin_cpu(int cpu);

/* ---- RAM ---- */
struct vm_ram {
	int fd;
	uint8_t *p;
	uint64_t size;
};
/* size must be a power of two >= 1 MiB. */
int vm_ram_new(struct vm_ram *r, uint64_t size, const char *name, bool sealed);
void vm_ram_free(struct vm_ram *r);

/* ---- test packets ---- */
#define VM_ETH_HDR 14u
#define VM_ETHERTYPE 0x88b5u  /* IEEE local experimental */
#define VM_HDR_OFF VM_ETH_HDR
#define VM_HDR_LEN 42u  /* 40 + 2 bytes pad: the payload starts 8-aligned */
#define VM_PKT_MIN (VM_ETH_HDR + VM_HDR_LEN)  /* 56 */
#define VM_PKT_MAX 9000u                       /* jumbo, fits in merged RX buffers */
#define VM_MAGIC 0x564d5054u                   /* "TPMV" */

enum vm_pkt_type {
	VM_PKT_DATA = 1,
	VM_PKT_END = 2,    /* seq = number of DATA packets the stream sent */
	VM_PKT_PING = 3,
};

struct vm_pkt_info {
	uint16_t type;
	uint32_t stream;
	uint32_t len;
	uint64_t seq;
	int64_t stamp_ns;
};

/* Write a test frame of len bytes (>= VM_PKT_MIN). full: fill the whole
 * payload with a pattern derived from (stream, seq); else only the header.
 * The checksum always covers the whole frame. */
void vm_pkt_build(uint8_t *buf, uint32_t len, const uint8_t dst[6], const uint8_t src[6],
		  const struct vm_pkt_info *in, bool full);

/*
 * The same frame, header-only (as vm_pkt_build(.., full = false)), from a
 * template: everything but length, sequence, stamp and checksum is written
 * once, and the checksum is updated from the template's, so a generator
 * writes 56 bytes per frame and reads none back.
 */
struct vm_pkt_tmpl {
	uint8_t b[VM_PKT_MIN];
	uint64_t sum;  /* frame sum with len, seq, stamp and csum zero */
};
void vm_pkt_tmpl_init(struct vm_pkt_tmpl *t, const uint8_t dst[6], const uint8_t src[6],
		      uint16_t type, uint32_t stream);
void vm_pkt_build_tmpl(uint8_t *buf, uint32_t len, const struct vm_pkt_tmpl *t, uint64_t seq,
		       int64_t stamp_ns);

enum vm_pkt_verdict {
	VM_PKT_OK = 0,
	VM_PKT_FOREIGN,   /* not a test frame (wrong ethertype or magic) */
	VM_PKT_BADLEN,    /* length in the header differs from the received length */
	VM_PKT_BADSUM,    /* checksum mismatch: corrupted */
};
/* Check a received frame; it is only read. */
enum vm_pkt_verdict vm_pkt_check(const uint8_t *buf, uint32_t len, struct vm_pkt_info *out);

/* ---- latency histogram ---- */
#define VM_HIST_SUB 64  /* buckets per power of two */
struct vm_hist {
	uint64_t count, sum, min, max;
	uint64_t b[64 * VM_HIST_SUB];
};
void vm_hist_add(struct vm_hist *h, uint64_t v);
uint64_t vm_hist_pct(const struct vm_hist *h, double pct);

/* ---- receive-side verification, per stream ---- */
#define VM_MAX_STREAMS 64  /* a sink may hear a whole backend's 32 links, and more */
struct vm_stream {
	uint32_t id;
	uint64_t next_seq;   /* expected */
	uint64_t received;   /* in-order or late DATA packets */
	uint64_t lost;       /* gaps (minus late arrivals) */
	uint64_t reordered;  /* arrived after a later one */
	uint64_t dup;
	bool ended;
	uint64_t end_count;  /* from the END packet */
};
struct vm_verify {
	struct vm_stream s[VM_MAX_STREAMS];
	unsigned nstreams, ended;
	uint64_t ok, corrupt, badlen, foreign, too_many_streams;
	uint64_t data_bytes;
	struct vm_hist *lat;   /* one-way (sink) or round trip (own stream), may be NULL */
};
/* Account one received frame. Returns its verdict; info filled when OK. */
enum vm_pkt_verdict vm_verify_pkt(struct vm_verify *v, const uint8_t *buf, uint32_t len,
				  struct vm_pkt_info *info);
/* What vm_verify_burst() saw besides the counts it keeps in v. */
struct vm_burst_seen {
	bool data_from;      /* a DATA frame of stream `from` */
	bool end_from;       /* the END marker of stream `from` */
	unsigned ends;       /* END markers in the burst (markers, not traffic) */
	uint64_t end_bytes;  /* their bytes */
};
/* vm_verify_pkt() for n frames, and each good DATA frame's age (now - its stamp,
 * when not negative) into lat (may be NULL). */
void vm_verify_burst(struct vm_verify *v, const struct vp_pkt *pk, unsigned n, int64_t now,
		     struct vm_hist *lat, uint32_t from, struct vm_burst_seen *seen);
uint64_t vm_verify_lost(const struct vm_verify *v);
uint64_t vm_verify_received(const struct vm_verify *v);
uint64_t vm_verify_reordered(const struct vm_verify *v);
uint64_t vm_verify_dup(const struct vm_verify *v);
bool vm_verify_clean(const struct vm_verify *v);

/* ---- signals ---- */
/* SIGINT/SIGTERM set the flag (no SA_RESTART, so blocking calls wake). */
void vm_signals_init(void);
extern volatile int vm_stop_signal;

/* ---- JSON report (jansson) ---- */
struct json_t;
struct vm_json {
	char buf[4096];             /* vm_json_finish()'s one line */
	struct json_t *stack[8];    /* [0] the report, then the open objects */
	int depth;
	bool err;                   /* out of memory or misuse */
};
void vm_json_begin(struct vm_json *j);
void vm_json_obj(struct vm_json *j, const char *key);  /* nested object */
void vm_json_end_obj(struct vm_json *j);
void vm_json_str(struct vm_json *j, const char *key, const char *v);
void vm_json_u64(struct vm_json *j, const char *key, uint64_t v);
void vm_json_dbl(struct vm_json *j, const char *key, double v);
void vm_json_bool(struct vm_json *j, const char *key, bool v);
/* The report as one compact line (closing what is open); frees the tree. A
 * report that cannot be written becomes {"error": ...}. */
const char *vm_json_finish(struct vm_json *j);

/* Pick a number or a boolean out of a report: the first member named key,
 * nested ones too, in document order. Returns 0 or -ENOENT (also when the
 * text is not JSON). */
int vm_json_get_num(const char *json, const char *key, double *out);
int vm_json_get_bool(const char *json, const char *key, bool *out);

/* ---- misc ---- */
double vm_mpps(uint64_t pkts, int64_t ns);
double vm_gbps(uint64_t bytes, int64_t ns);
/* Fill a random UUID (version 4) / a locally administered MAC. */
void vm_random_bytes(void *buf, size_t n);
void vm_random_uuid(uint8_t uuid[16]);
void vm_mac_from_index(uint8_t mac[6], unsigned idx);
int vm_parse_mac(const char *s, uint8_t mac[6]);
/* virtio-net features: a hex mask or names joined by ',' (csum, guest_csum,
 * mrg_rxbuf, event_idx, indirect_desc, version_1, host_tso4, host_tso6,
 * host_ecn, guest_tso4, guest_tso6, guest_ecn). VERSION_1 is always added;
 * -EINVAL for a name unknown or a bit the data path does not support
 * (VP_NET_FEATURES, VP_NET_TSO_FEATURES). */
int vm_parse_features(const char *s, uint64_t *out);

#endif
