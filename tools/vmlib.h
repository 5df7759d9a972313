/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * vmlib: what the userspace-VM tools (vp-vm, vp-vswitch, vp-demo) share.
 *
 *  - RAM: a memfd of a power-of-two size, guest-physical address = offset.
 *  - Ports: one network port of a VM. A FRONTEND port is a vp_netfe in the
 *    VM's RAM, announced to a vhost-pci server (native) or to a stock
 *    vhost-user backend, and re-announced after the link was lost. A BACKEND
 *    port is a vp_server: every READY device gets a vp_net ("link"); STOPPED
 *    and REMOVED let go of it. Both expose the same burst calls.
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
/* Check a received frame (buf is modified: the checksum field is zeroed
 * while summing and put back). */
enum vm_pkt_verdict vm_pkt_check(uint8_t *buf, uint32_t len, struct vm_pkt_info *out);

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
enum vm_pkt_verdict vm_verify_pkt(struct vm_verify *v, uint8_t *buf, uint32_t len,
				  struct vm_pkt_info *info);
uint64_t vm_verify_lost(const struct vm_verify *v);
uint64_t vm_verify_received(const struct vm_verify *v);
uint64_t vm_verify_reordered(const struct vm_verify *v);
uint64_t vm_verify_dup(const struct vm_verify *v);
bool vm_verify_clean(const struct vm_verify *v);

/* ---- ports ---- */
#define VM_MAX_LINKS VP_SERVER_DEFAULT_CONNECTIONS  /* a backend serves what its server admits */

enum vm_port_kind { VM_PORT_NONE = 0, VM_PORT_FRONTEND, VM_PORT_BACKEND };

struct vm_link {
	struct vp_net *net;
	uint64_t dev_id;
	unsigned generation;
	bool used;
	int64_t last_rx_ns;           /* last burst received */
	const struct vp_device *dev;  /* valid while used */
};

/* DRAIN: the connection is gone but our RX ring may still hold frames the
 * backend delivered: the app reads them before the device is reset. */
enum vm_fe_state { VM_FE_DOWN = 0, VM_FE_HANDSHAKE, VM_FE_UP, VM_FE_DRAIN };

struct vm_port {
	enum vm_port_kind kind;
	char name[16];
	const char *path;
	enum vp_net_mode mode;

	/* frontend */
	bool vhost_user;
	struct vp_netfe *fe;
	struct vp_client *cl;
	int vu_sock;
	enum vm_fe_state fe_state;
	bool fe_started;           /* vp_netfe_start() done since the last reset */
	uint64_t features;         /* negotiated, while up */
	int64_t retry_at_ns, give_up_ns;
	int64_t retry_ns;
	bool ever_up;
	char last_err[160];
	char down_why[160];
	int64_t drain_until_ns;
	int64_t last_rx_ns, last_tx_ns;
	uint64_t tx_accepted;      /* frames the frontend driver took */

	/* backend */
	struct vp_server *srv;
	struct vm_link links[VM_MAX_LINKS];
	unsigned max_links;        /* devices driven at once; more are refused */
	uint64_t refused;          /* devices refused (full, unusable) */
	unsigned rr;
	int resv_link;             /* the link of the last tx_reserve, -1 none */

	/* totals across links and resets */
	struct vp_net_stats acc;
	uint64_t link_ups, link_downs;
	uint64_t tx_no_link;       /* packets offered while no link was up */
};

struct vm_fe_opts {
	const char *path;
	bool vhost_user;
	struct vm_ram *ram;
	uint64_t ram_offset;
	uint8_t mac[6];
	uint8_t uuid[16];
	enum vp_net_mode mode;
	uint16_t ring;             /* 0: library default */
	uint64_t features;         /* 0: library default */
	int connect_timeout_ms;    /* keep retrying the first connect this long */
};

int vm_port_frontend(struct vm_port *p, const char *name, const struct vm_fe_opts *o);
/* A backend port: a vp_server on path (native, also vhost-user). */
struct vm_be_opts {
	uint64_t features;   /* accepted from frontends; 0: every feature the
			      * data path supports (VP_NET_FEATURES) */
	unsigned max_links;  /* 0: VM_MAX_LINKS; a device beyond it is refused
			      * with the reason, so its sender can retry later */
	bool allow_unsealed; /* accept frontend memory that can shrink */
};
int vm_port_backend(struct vm_port *p, const char *name, const char *path,
		    enum vp_net_mode mode, const struct vm_be_opts *o);
void vm_port_close(struct vm_port *p);

/* Serve the control side without blocking (server/client messages,
 * reconnects). Returns < 0 only for a fatal error (e.g. the first connect
 * timed out); the reason is in p->last_err. */
int vm_port_control(struct vm_port *p);
bool vm_port_up(const struct vm_port *p);
unsigned vm_port_nlinks_up(const struct vm_port *p);

/* Burst calls. rx: pkts[i].len must hold the capacity; *link gets the link
 * the packets came from. tx: link -1 = the next link that is up. Both
 * return a count, 0 when no link is up, or a negative errno (link broken:
 * it is taken down and the error logged). */
int vm_port_rx(struct vm_port *p, struct vp_pkt *pkts, unsigned n, int *link);
int vm_port_tx(struct vm_port *p, int link, const struct vp_pkt *pkts, unsigned n,
	       unsigned flags);
/* Backend port: receive from one link only. */
int vm_port_rx_link(struct vm_port *p, int link, struct vp_pkt *pkts, unsigned n);

/* Zero copy (see vp_netfe_tx_reserve(), vp_net_tx_reserve() and
 * vp_netfe_rx_borrow()). tx_reserve lends buffers of a link (-1: the first
 * one up; frontend: our TX slots; backend: the frontend's RX buffers) and
 * tx_commit sends the first n of them. rx_borrow is for frontend ports
 * (-ENOTSUP on a backend: its receive copies once); rx_release gives the
 * borrowed buffers back. Counts as the burst calls, 0 when no link is up. */
int vm_port_tx_reserve(struct vm_port *p, int link, struct vp_pkt *pkts, unsigned n);
int vm_port_tx_commit(struct vm_port *p, const struct vp_pkt *pkts, unsigned n);
int vm_port_rx_borrow(struct vm_port *p, struct vp_pkt *pkts, unsigned n);
void vm_port_rx_release(struct vm_port *p);
/* Backend port: receive from one link into buffers lent by a tx_reserve
 * (see vp_net_rx_into(): -EMSGSIZE if the next frame does not fit). */
int vm_port_rx_into(struct vm_port *p, int link, struct vp_pkt *pkts, unsigned n);
/* Backend port: frames waiting on one link (an upper bound). */
unsigned vm_port_rx_pending(struct vm_port *p, int link);

/* Negotiated virtio features of the (first) link that is up; 0 if none. */
uint64_t vm_port_features(const struct vm_port *p);

/* Totals (links that went away included). */
void vm_port_stats(const struct vm_port *p, struct vp_net_stats *out);

/* ---- waiting ---- */
/*
 * Call when a pass over the ports found no work. Waits until one of the
 * ports may have data path work (want_rx / want_tx per port), a control
 * socket or an extra fd (e.g. a TAP device) is readable, or timeout_ms
 * passes; it may also return early (the caller just looks again). POLL
 * returns at once; ADAPTIVE returns at once until the ports were idle for
 * 50 us since last_work_ns (the caller's last pass that found work).
 * Returns >= 0, or a negative errno.
 */
struct vm_wait_port {
	struct vm_port *port;
	bool want_rx, want_tx;
};
int vm_wait(struct vm_wait_port *wp, unsigned nports, const int *extra_fds,
	    unsigned nextra, int timeout_ms, int64_t last_work_ns);

/* ---- signals ---- */
/* SIGINT/SIGTERM set the flag (no SA_RESTART, so blocking calls wake). */
void vm_signals_init(void);
extern volatile int vm_stop_signal;

/* ---- JSON report ---- */
struct vm_json {
	char buf[4096];
	size_t len;
	bool first;
	int depth;
};
void vm_json_begin(struct vm_json *j);
void vm_json_obj(struct vm_json *j, const char *key);  /* nested object */
void vm_json_end_obj(struct vm_json *j);
void vm_json_str(struct vm_json *j, const char *key, const char *v);
void vm_json_u64(struct vm_json *j, const char *key, uint64_t v);
void vm_json_dbl(struct vm_json *j, const char *key, double v);
void vm_json_bool(struct vm_json *j, const char *key, bool v);
const char *vm_json_finish(struct vm_json *j);

/* Pick a number out of a flat report line: "key":NUMBER (first match,
 * nested keys are found by name too). Returns 0 or -ENOENT. */
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
 * mrg_rxbuf, event_idx, indirect_desc, version_1). VERSION_1 is always
 * added; -EINVAL for a name unknown or a bit the data path does not
 * support (VP_NET_FEATURES). */
int vm_parse_features(const char *s, uint64_t *out);

#endif
