/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The vhost-pci protocol codec: one table of messages, decode and encode.
 * docs/protocol.md is the specification; include/vhostpci/proto.h the API.
 *
 * Security model
 * --------------
 * Everything vp_msg_decode() sees comes from a peer we do not trust: a
 * frontend VM's QEMU or DPDK process, or our own frontend running in a
 * possibly compromised host process. A peer may send any bytes and any
 * number of fds, at any time. The codec guarantees:
 *
 *  - No read outside [buf, buf + len). The header is checked (version,
 *    flags, size <= VP_MSG_MAX_PAYLOAD) before the payload is looked at,
 *    and the payload is copied into the fixed-size msg->p before any field
 *    is checked, so nothing is read twice (no time-of-check/time-of-use).
 *  - Every payload size is EXACT for its type; variable payloads (memory
 *    tables, config, memory/device info) have their count field range-checked
 *    before the expected size is computed from it. There is no trailing junk
 *    and no short struct whose tail would be read as zeros.
 *  - Every field this layer can judge is judged: counts, reserved bits,
 *    magic and version, power-of-two ring sizes, unique ring indices, NUL
 *    termination, address ranges that would wrap around 2^64.
 *  - fds: decode owns the fds it is handed. On success they move into msg
 *    (the caller closes them with vp_msg_close_fds() or takes them); on ANY
 *    error every one of them is closed before returning, so a peer cannot
 *    leak fds into us by attaching them to messages that take none or by
 *    sending malformed messages (the DPDK lesson). A negative or repeated
 *    fd number is a transport bug and rejected, never closed twice.
 *  - No assert/abort/exit: a violation is a negative errno plus one WARN log
 *    line with the reason; the session layer then drops that connection
 *    only, so a peer can provoke at most one log line per connection.
 *
 * What decode does NOT check, because it needs session state: whether the
 * message is allowed in the current state or direction, whether a ring
 * index is below the negotiated queue count, whether regions overlap, and
 * whether addresses fall inside mapped memory (lib/mem.c does that on every
 * translation). docs/protocol.md says what the server does about those.
 *
 * Encode applies the same rules to what we send, so a message this library
 * produces always decodes, and decode(x) re-encodes to exactly x.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "vhostpci/log.h"
#include "vhostpci/mem.h"
#include "vhostpci/proto.h"

/* The payload structs are the wire layout: they must be little-endian and
 * free of compiler padding. */
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
	       "the vhost-pci codec assumes a little-endian host");
_Static_assert(sizeof(struct vp_vring_state) == 8, "vring state");
_Static_assert(sizeof(struct vp_vring_addr) == 40, "vring addr");
_Static_assert(sizeof(struct vp_mem_region_wire) == 32, "mem region");
_Static_assert(offsetof(struct vp_mem_table, regions) == 8, "mem table");
_Static_assert(sizeof(struct vp_mem_table) == 8 + 32 * VP_VU_MAX_REGIONS,
	       "mem table");
_Static_assert(sizeof(struct vp_log_base) == 16, "log base");
_Static_assert(offsetof(struct vp_config_space, region) == 12, "config");
_Static_assert(sizeof(struct vp_config_space) == 12 + VP_VU_CONFIG_MAX,
	       "config");
_Static_assert(sizeof(struct vp_mem_reg) == 40, "mem reg");
_Static_assert(sizeof(struct vp_pci_hello) == 16, "hello");
_Static_assert(sizeof(struct vp_pci_region) == 40, "pci region");
_Static_assert(offsetof(struct vp_pci_meminfo, regions) == 8, "meminfo");
_Static_assert(sizeof(struct vp_pci_meminfo) == 8 + 40 * VP_PCI_MAX_REGIONS,
	       "meminfo");
_Static_assert(sizeof(struct vp_pci_ring) == 40, "pci ring");
_Static_assert(offsetof(struct vp_pci_devinfo, config) == 8, "devinfo");
_Static_assert(offsetof(struct vp_pci_devinfo, rings) ==
	       8 + VP_PCI_CONFIG_MAX, "devinfo");
_Static_assert(sizeof(struct vp_pci_devinfo) ==
	       8 + VP_PCI_CONFIG_MAX + 40 * VP_PCI_MAX_RINGS, "devinfo");
_Static_assert(sizeof(struct vp_pci_features) == 16, "features");
_Static_assert(sizeof(struct vp_pci_error) == 8 + VP_PCI_REASON_MAX, "error");
_Static_assert(sizeof(((struct vp_msg *)0)->p) == sizeof(struct vp_pci_meminfo),
	       "the largest payload bounds the union");
_Static_assert(sizeof(((struct vp_msg *)0)->p) <= VP_MSG_MAX_PAYLOAD,
	       "every payload fits under the size limit");

/* How many fds a message carries. */
enum fd_rule {
	FD_ZERO,
	FD_ONE,
	FD_OPTIONAL,  /* 0 or 1: REM_MEM_REG (QEMU sends one, rust-vmm none) */
	FD_PAYLOAD,   /* follows from the payload (region count, NOFD, ring flags) */
	FD_WINDOW21,  /* VP_PCI_PAIR21_NFDS: a 2.1 peer's window */
};

struct msg_row {
	struct vp_msg_spec spec;
	unsigned char req_fds;    /* enum fd_rule */
	unsigned char reply_fds;
};

#define F2B VP_DIR_FRONT_TO_BACK
#define B2F VP_DIR_BACK_TO_FRONT
#define BOTH VP_DIR_BOTH
#define ROW(rq, name, dir, req, reply, has_reply, req_fds, reply_fds)      \
	{ { rq, name, dir, VP_PL_##req, VP_PL_##reply, has_reply },         \
	  FD_##req_fds, FD_##reply_fds }

/*
 * THE table. A reply kind of NONE means the request is not answered unless
 * it had NEED_REPLY, and then only with a REPLY_ACK u64 (reply_kind()).
 */
static const struct msg_row msg_table[] = {
	ROW(VP_VU_GET_FEATURES, "GET_FEATURES", F2B, NONE, U64, true, ZERO, ZERO),
	ROW(VP_VU_SET_FEATURES, "SET_FEATURES", F2B, U64, NONE, false, ZERO, ZERO),
	ROW(VP_VU_SET_OWNER, "SET_OWNER", F2B, NONE, NONE, false, ZERO, ZERO),
	ROW(VP_VU_RESET_OWNER, "RESET_OWNER", F2B, NONE, NONE, false, ZERO, ZERO),
	ROW(VP_VU_SET_MEM_TABLE, "SET_MEM_TABLE", F2B, MEM_TABLE, NONE, false,
	    PAYLOAD, ZERO),
	ROW(VP_VU_SET_LOG_BASE, "SET_LOG_BASE", F2B, LOG, NONE, false, ONE, ZERO),
	ROW(VP_VU_SET_LOG_FD, "SET_LOG_FD", F2B, NONE, NONE, false, ONE, ZERO),
	ROW(VP_VU_SET_VRING_NUM, "SET_VRING_NUM", F2B, VRING_STATE, NONE, false,
	    ZERO, ZERO),
	ROW(VP_VU_SET_VRING_ADDR, "SET_VRING_ADDR", F2B, VRING_ADDR, NONE, false,
	    ZERO, ZERO),
	ROW(VP_VU_SET_VRING_BASE, "SET_VRING_BASE", F2B, VRING_STATE, NONE, false,
	    ZERO, ZERO),
	ROW(VP_VU_GET_VRING_BASE, "GET_VRING_BASE", F2B, VRING_STATE, VRING_STATE,
	    true, ZERO, ZERO),
	ROW(VP_VU_SET_VRING_KICK, "SET_VRING_KICK", F2B, VRING_FD, NONE, false,
	    PAYLOAD, ZERO),
	ROW(VP_VU_SET_VRING_CALL, "SET_VRING_CALL", F2B, VRING_FD, NONE, false,
	    PAYLOAD, ZERO),
	ROW(VP_VU_SET_VRING_ERR, "SET_VRING_ERR", F2B, VRING_FD, NONE, false,
	    PAYLOAD, ZERO),
	ROW(VP_VU_GET_PROTOCOL_FEATURES, "GET_PROTOCOL_FEATURES", F2B, NONE, U64,
	    true, ZERO, ZERO),
	ROW(VP_VU_SET_PROTOCOL_FEATURES, "SET_PROTOCOL_FEATURES", F2B, U64, NONE,
	    false, ZERO, ZERO),
	ROW(VP_VU_GET_QUEUE_NUM, "GET_QUEUE_NUM", F2B, NONE, U64, true, ZERO, ZERO),
	ROW(VP_VU_SET_VRING_ENABLE, "SET_VRING_ENABLE", F2B, VRING_STATE, NONE,
	    false, ZERO, ZERO),
	ROW(VP_VU_SEND_RARP, "SEND_RARP", F2B, U64, NONE, false, ZERO, ZERO),
	ROW(VP_VU_NET_SET_MTU, "NET_SET_MTU", F2B, U64, NONE, false, ZERO, ZERO),
	ROW(VP_VU_SET_BACKEND_REQ_FD, "SET_BACKEND_REQ_FD", F2B, NONE, NONE, false,
	    ONE, ZERO),
	ROW(VP_VU_GET_CONFIG, "GET_CONFIG", F2B, CONFIG, CONFIG, true, ZERO, ZERO),
	ROW(VP_VU_SET_CONFIG, "SET_CONFIG", F2B, CONFIG, NONE, false, ZERO, ZERO),
	ROW(VP_VU_RESET_DEVICE, "RESET_DEVICE", F2B, NONE, NONE, false, ZERO, ZERO),
	ROW(VP_VU_GET_MAX_MEM_SLOTS, "GET_MAX_MEM_SLOTS", F2B, NONE, U64, true,
	    ZERO, ZERO),
	ROW(VP_VU_ADD_MEM_REG, "ADD_MEM_REG", F2B, MEM_REG, NONE, false, ONE, ZERO),
	ROW(VP_VU_REM_MEM_REG, "REM_MEM_REG", F2B, MEM_REG, NONE, false, OPTIONAL,
	    ZERO),
	ROW(VP_VU_SET_STATUS, "SET_STATUS", F2B, U64, NONE, false, ZERO, ZERO),
	ROW(VP_VU_GET_STATUS, "GET_STATUS", F2B, NONE, U64, true, ZERO, ZERO),

	ROW(VP_PCI_HELLO, "VHOST_PCI_HELLO", F2B, HELLO, HELLO, true, ZERO, ZERO),
	ROW(VP_PCI_GET_UUID, "VHOST_PCI_GET_UUID", B2F, NONE, UUID, true,
	    ZERO, ZERO),
	ROW(VP_PCI_GET_MEMORY_INFO, "VHOST_PCI_GET_MEMORY_INFO", B2F, NONE,
	    MEMINFO, true, ZERO, PAYLOAD),
	ROW(VP_PCI_GET_DEVICE_INFO, "VHOST_PCI_GET_DEVICE_INFO", B2F, NONE,
	    DEVINFO, true, ZERO, PAYLOAD),
	ROW(VP_PCI_GET_FEATURE_BITS, "VHOST_PCI_GET_FEATURE_BITS", B2F, NONE,
	    FEATURES, true, ZERO, ZERO),
	ROW(VP_PCI_SET_FEATURE_BITS, "VHOST_PCI_SET_FEATURE_BITS", B2F, U64, U64,
	    true, ZERO, ZERO),
	ROW(VP_PCI_START, "VHOST_PCI_START", B2F, U64, NONE, false, ZERO, ZERO),
	ROW(VP_PCI_STOP, "VHOST_PCI_STOP", F2B, U64, NONE, false, ZERO, ZERO),
	ROW(VP_PCI_ERROR, "VHOST_PCI_ERROR", BOTH, ERROR, NONE, false, ZERO, ZERO),
	ROW(VP_PCI_PAIR21_JOIN, "VHOST_PCI_PAIR21_JOIN", F2B, HELLO, U64, true, ZERO,
	    WINDOW21),
	ROW(VP_PCI_RING_BASE, "VHOST_PCI_RING_BASE", B2F, VRING_STATE, NONE, false, ZERO,
	    ZERO),
};

/*
 * Wire size of each payload kind: `base` bytes, plus `elem` bytes per
 * element of the trailing array whose count is in the payload itself.
 */
static const struct {
	const char *name;
	unsigned short base;
	unsigned short elem;
} kinds[] = {
	[VP_PL_NONE] = { "none", 0, 0 },
	[VP_PL_U64] = { "u64", 8, 0 },
	[VP_PL_VRING_STATE] = { "vring state", sizeof(struct vp_vring_state), 0 },
	[VP_PL_VRING_ADDR] = { "vring addr", sizeof(struct vp_vring_addr), 0 },
	[VP_PL_VRING_FD] = { "vring fd", 8, 0 },
	[VP_PL_MEM_TABLE] = { "mem table", offsetof(struct vp_mem_table, regions),
			      sizeof(struct vp_mem_region_wire) },
	[VP_PL_LOG] = { "log", sizeof(struct vp_log_base), 0 },
	[VP_PL_CONFIG] = { "config", offsetof(struct vp_config_space, region), 1 },
	[VP_PL_MEM_REG] = { "mem reg", sizeof(struct vp_mem_reg), 0 },
	[VP_PL_HELLO] = { "hello", sizeof(struct vp_pci_hello), 0 },
	[VP_PL_UUID] = { "uuid", 16, 0 },
	[VP_PL_MEMINFO] = { "meminfo", offsetof(struct vp_pci_meminfo, regions),
			    sizeof(struct vp_pci_region) },
	[VP_PL_DEVINFO] = { "devinfo", offsetof(struct vp_pci_devinfo, rings),
			    sizeof(struct vp_pci_ring) },
	[VP_PL_FEATURES] = { "features", sizeof(struct vp_pci_features), 0 },
	[VP_PL_ERROR] = { "error", sizeof(struct vp_pci_error), 0 },
};

/* What is being coded, for log lines. */
struct ctx {
	const char *op;          /* "decode" / "encode" */
	const struct msg_row *row;
	bool reply;
};

static int __attribute__((format(printf, 3, 4)))
reject(const struct ctx *c, int err, const char *fmt, ...)
{
	char why[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	if (c->row)
		vp_log(VP_LOG_WARN, "proto: %s %s%s: %s", c->op,
		       c->row->spec.name, c->reply ? " reply" : "", why);
	else
		vp_log(VP_LOG_WARN, "proto: %s: %s", c->op, why);
	return err;
}

static const struct msg_row *find_row(uint32_t request)
{
	for (size_t i = 0; i < sizeof(msg_table) / sizeof(msg_table[0]); i++)
		if (msg_table[i].spec.request == request)
			return &msg_table[i];
	return NULL;
}

const struct vp_msg_spec *vp_msg_spec(uint32_t request)
{
	const struct msg_row *row = find_row(request);

	return row ? &row->spec : NULL;
}

const char *vp_msg_name(uint32_t request)
{
	const struct msg_row *row = find_row(request);

	return row ? row->spec.name : "UNKNOWN";
}

unsigned vp_msg_max_fds(uint32_t request, bool reply)
{
	const struct msg_row *row = find_row(request);

	if (!row)
		return 0;
	switch (reply ? row->reply_fds : row->req_fds) {
	case FD_ZERO:
		return 0;
	case FD_ONE:
	case FD_OPTIONAL:
		return 1;
	case FD_WINDOW21:
		return VP_PCI_PAIR21_NFDS;
	default:
		return VP_MSG_MAX_FDS;
	}
}

/* A request without a reply payload may still be acked with a u64. */
static enum vp_payload reply_kind(const struct vp_msg_spec *s)
{
	return s->reply == VP_PL_NONE ? VP_PL_U64 : s->reply;
}

/*
 * Wire size of msg's payload from its own count field, range-checking that
 * count first: the count is what bounds every later array access.
 */
static int payload_size(const struct ctx *c, enum vp_payload kind,
			const struct vp_msg *m, uint32_t *size)
{
	uint32_t n = 0;

	switch (kind) {
	case VP_PL_MEM_TABLE:
		n = m->p.mem.nregions;
		if (n < 1 || n > VP_VU_MAX_REGIONS)
			return reject(c, -EINVAL, "nregions %" PRIu32 " not in 1..%d",
				      n, VP_VU_MAX_REGIONS);
		break;
	case VP_PL_CONFIG:
		n = m->p.config.size;
		if (n > VP_VU_CONFIG_MAX)
			return reject(c, -EINVAL, "config size %" PRIu32 " > %d",
				      n, VP_VU_CONFIG_MAX);
		break;
	case VP_PL_MEMINFO:
		n = m->p.meminfo.nregions;
		if (n < 1 || n > VP_PCI_MAX_REGIONS)
			return reject(c, -EINVAL, "nregions %" PRIu32 " not in 1..%d",
				      n, VP_PCI_MAX_REGIONS);
		break;
	case VP_PL_DEVINFO:
		n = m->p.devinfo.nrings;
		if (n < 1 || n > VP_PCI_MAX_RINGS)
			return reject(c, -EINVAL, "nrings %" PRIu32 " not in 1..%d",
				      n, VP_PCI_MAX_RINGS);
		break;
	default:
		break;
	}
	*size = kinds[kind].base + kinds[kind].elem * n;
	return 0;
}

/* [start, start + len) is non-empty and its last byte does not wrap. */
static bool range_ok(uint64_t start, uint64_t len)
{
	return len && len - 1 <= UINT64_MAX - start;
}

static int check_region(const struct ctx *c, unsigned i, uint64_t gpa,
			uint64_t size, uint64_t uaddr, uint64_t off)
{
	/* A zero-sized or wrapping region would defeat every bounds check
	 * done later with it, so refuse it at the door. */
	if (!size)
		return reject(c, -EINVAL, "region %u: size 0", i);
	if (!range_ok(gpa, size) || !range_ok(uaddr, size) ||
	    !range_ok(off, size))
		return reject(c, -EINVAL,
			      "region %u: range wraps (gpa 0x%" PRIx64 " uaddr 0x%"
			      PRIx64 " offset 0x%" PRIx64 " size 0x%" PRIx64 ")",
			      i, gpa, uaddr, off, size);
	return 0;
}

static int check_devinfo(const struct ctx *c, const struct vp_pci_devinfo *d)
{
	const uint32_t known = VP_PCI_RING_ENABLED | VP_PCI_RING_KICKFD |
			       VP_PCI_RING_CALLFD;

	if (d->config_len > VP_PCI_CONFIG_MAX)
		return reject(c, -EINVAL, "config_len %u > %d",
			      (unsigned)d->config_len, VP_PCI_CONFIG_MAX);
	for (unsigned i = 0; i < d->nrings; i++) {
		const struct vp_pci_ring *r = &d->rings[i];

		/* u16 caps a power of two at 32768, the virtio maximum. */
		if (!r->size || (r->size & (r->size - 1)))
			return reject(c, -EINVAL,
				      "ring %u: size %u not a power of two in 1..32768",
				      i, (unsigned)r->size);
		if (r->index > VP_VU_VRING_IDX_MASK)
			return reject(c, -EINVAL, "ring %u: index %" PRIu32 " > 255",
				      i, r->index);
		for (unsigned j = 0; j < i; j++)
			if (d->rings[j].index == r->index)
				return reject(c, -EINVAL,
					      "ring %u: index %" PRIu32 " repeated",
					      i, r->index);
		if (r->flags & ~known)
			return reject(c, -EINVAL, "ring %u: unknown flags 0x%" PRIx32,
				      i, r->flags);
		if (r->reserved)
			return reject(c, -EINVAL, "ring %u: reserved field set", i);
	}
	return 0;
}

/* Field rules of a payload whose size is already known to be right. */
static int check_payload(const struct ctx *c, enum vp_payload kind,
			 const struct vp_msg *m)
{
	int ret;

	switch (kind) {
	case VP_PL_VRING_FD:
		if (m->p.u64 & ~(uint64_t)(VP_VU_VRING_IDX_MASK | VP_VU_VRING_NOFD))
			return reject(c, -EINVAL, "reserved bits in 0x%" PRIx64,
				      m->p.u64);
		break;
	case VP_PL_MEM_TABLE:
		for (unsigned i = 0; i < m->p.mem.nregions; i++) {
			const struct vp_mem_region_wire *r = &m->p.mem.regions[i];

			ret = check_region(c, i, r->gpa, r->size, r->uaddr,
					   r->mmap_offset);
			if (ret)
				return ret;
		}
		break;
	case VP_PL_CONFIG:
		/* 64-bit sum: offset is a free 32-bit field. */
		if ((uint64_t)m->p.config.offset + m->p.config.size > VP_VU_CONFIG_MAX)
			return reject(c, -EINVAL,
				      "config offset %" PRIu32 " + size %" PRIu32 " > %d",
				      m->p.config.offset, m->p.config.size,
				      VP_VU_CONFIG_MAX);
		break;
	case VP_PL_MEM_REG: {
		const struct vp_mem_region_wire *r = &m->p.mem_reg.region;

		return check_region(c, 0, r->gpa, r->size, r->uaddr,
				    r->mmap_offset);
	}
	case VP_PL_HELLO:
		if (m->p.hello.magic != VP_PCI_MAGIC)
			return reject(c, -EINVAL, "bad magic 0x%08" PRIx32,
				      m->p.hello.magic);
		if (m->p.hello.major != VP_PCI_VERSION_MAJOR)
			return reject(c, -EINVAL, "major version %u, want %d",
				      (unsigned)m->p.hello.major,
				      VP_PCI_VERSION_MAJOR);
		if (m->p.hello.flags)
			return reject(c, -EINVAL, "reserved flags 0x%" PRIx64,
				      m->p.hello.flags);
		break;
	case VP_PL_MEMINFO:
		if (m->p.meminfo.padding)
			return reject(c, -EINVAL, "padding not zero");
		for (unsigned i = 0; i < m->p.meminfo.nregions; i++) {
			const struct vp_pci_region *r = &m->p.meminfo.regions[i];

			/* Write-only memory makes no sense to map. */
			if (r->prot != VP_MEM_READ && r->prot != VP_MEM_RW)
				return reject(c, -EINVAL, "region %u: prot 0x%" PRIx32,
					      i, r->prot);
			if (r->reserved)
				return reject(c, -EINVAL, "region %u: reserved set", i);
			ret = check_region(c, i, r->gpa, r->size, r->uaddr,
					   r->mmap_offset);
			if (ret)
				return ret;
		}
		break;
	case VP_PL_DEVINFO:
		return check_devinfo(c, &m->p.devinfo);
	case VP_PL_ERROR:
		if (m->p.error.code >= 0)
			return reject(c, -EINVAL, "error code %" PRId32 " not negative",
				      m->p.error.code);
		if (m->p.error.reserved)
			return reject(c, -EINVAL, "reserved field set");
		if (!memchr(m->p.error.reason, 0, sizeof(m->p.error.reason)))
			return reject(c, -EINVAL, "reason not NUL-terminated");
		break;
	default:
		break;
	}

	/* Rules of one message rather than of its payload kind. */
	if (!c->reply && m->request == VP_PCI_STOP &&
	    m->p.u64 != VP_PCI_STOP_RESET && m->p.u64 != VP_PCI_STOP_SHUTDOWN)
		return reject(c, -EINVAL, "stop reason %" PRIu64, m->p.u64);
	return 0;
}

/* How many fds msg must carry: [*min, *max]. */
static void fd_range(enum fd_rule rule, enum vp_payload kind,
		     const struct vp_msg *m, unsigned *min, unsigned *max)
{
	unsigned n = 0;

	switch (rule) {
	case FD_ZERO:
		*min = *max = 0;
		return;
	case FD_ONE:
		*min = *max = 1;
		return;
	case FD_OPTIONAL:
		*min = 0;
		*max = 1;
		return;
	case FD_WINDOW21:
		*min = *max = VP_PCI_PAIR21_NFDS;
		return;
	case FD_PAYLOAD:
		break;
	}
	switch (kind) {
	case VP_PL_MEM_TABLE:
		n = m->p.mem.nregions;
		break;
	case VP_PL_VRING_FD:
		n = (m->p.u64 & VP_VU_VRING_NOFD) ? 0 : 1;
		break;
	case VP_PL_MEMINFO:
		n = m->p.meminfo.nregions;
		break;
	case VP_PL_DEVINFO:
		for (unsigned i = 0; i < m->p.devinfo.nrings; i++)
			n += !!(m->p.devinfo.rings[i].flags & VP_PCI_RING_KICKFD) +
			     !!(m->p.devinfo.rings[i].flags & VP_PCI_RING_CALLFD);
		break;
	default:
		break;
	}
	*min = *max = n;
}

/* Field and fd rules both directions check once the size is known right. */
static int check_msg(const struct ctx *c, const struct vp_msg *m,
		     enum vp_payload kind, unsigned nfds)
{
	unsigned min, max;
	int ret;

	ret = check_payload(c, kind, m);
	if (ret)
		return ret;
	fd_range(c->reply ? c->row->reply_fds : c->row->req_fds, kind, m,
		 &min, &max);
	if (nfds < min || nfds > max) {
		if (min == max)
			return reject(c, -EBADF, "%u fds, want %u", nfds, min);
		return reject(c, -EBADF, "%u fds, want %u..%u", nfds, min, max);
	}
	return 0;
}

static int check_flags(const struct ctx *c, uint32_t flags, int err)
{
	if ((flags & VP_MSG_VERSION_MASK) != VP_MSG_VERSION)
		return reject(c, err, "version %" PRIu32 ", want %u",
			      flags & VP_MSG_VERSION_MASK, VP_MSG_VERSION);
	if (flags & ~(VP_MSG_VERSION_MASK | VP_MSG_REPLY | VP_MSG_NEED_REPLY))
		return reject(c, err, "unknown flags 0x%" PRIx32, flags);
	if ((flags & VP_MSG_REPLY) && (flags & VP_MSG_NEED_REPLY))
		return reject(c, err, "REPLY together with NEED_REPLY");
	return 0;
}

int vp_msg_check_hdr(const void *buf, size_t len, uint32_t *request,
		     uint32_t *flags, uint32_t *size)
{
	const struct ctx c = { .op = "header" };
	uint32_t h[3];

	if (!buf || len < VP_MSG_HDR_SIZE)
		return reject(&c, -EBADMSG, "%zu bytes, header needs %u", len,
			      VP_MSG_HDR_SIZE);
	memcpy(h, buf, sizeof(h));
	/* Filled even on error, so the caller can log what it got. */
	if (request)
		*request = h[0];
	if (flags)
		*flags = h[1];
	if (size)
		*size = h[2];
	if ((h[1] & VP_MSG_VERSION_MASK) != VP_MSG_VERSION)
		return reject(&c, -EPROTO, "request %" PRIu32 ": version %" PRIu32,
			      h[0], h[1] & VP_MSG_VERSION_MASK);
	if (h[1] & ~(VP_MSG_VERSION_MASK | VP_MSG_REPLY | VP_MSG_NEED_REPLY))
		return reject(&c, -EPROTO, "request %" PRIu32 ": unknown flags 0x%"
			      PRIx32, h[0], h[1]);
	/* Checked before the payload is read, so a peer cannot make us
	 * buffer more than VP_MSG_MAX_PAYLOAD. */
	if (h[2] > VP_MSG_MAX_PAYLOAD)
		return reject(&c, -EMSGSIZE, "request %" PRIu32 ": size %" PRIu32
			      " > %u", h[0], h[2], VP_MSG_MAX_PAYLOAD);
	return 0;
}

/* Close each distinct non-negative fd once. */
static void close_fds(const int *fds, unsigned nfds)
{
	if (!fds)
		return;
	for (unsigned i = 0; i < nfds; i++) {
		bool seen = false;

		if (fds[i] < 0)
			continue;
		for (unsigned j = 0; j < i && !seen; j++)
			seen = fds[j] == fds[i];
		if (!seen)
			close(fds[i]);
	}
}

static int decode(struct vp_msg *msg, const uint8_t *buf, size_t len,
		  const int *fds, unsigned nfds)
{
	struct ctx c = { .op = "decode" };
	uint32_t request, flags, size, want;
	enum vp_payload kind;
	int ret;

	if (!msg || (nfds && !fds))
		return reject(&c, -EINVAL, "NULL argument");
	/* More fds than any message takes is the peer's doing; negative or
	 * repeated numbers are transport bugs (recvmsg() never yields them),
	 * and a repeated fd would be closed twice. */
	if (nfds > VP_MSG_MAX_FDS)
		return reject(&c, -EBADF, "%u fds, at most %u", nfds,
			      VP_MSG_MAX_FDS);
	for (unsigned i = 0; i < nfds; i++) {
		if (fds[i] < 0)
			return reject(&c, -EBADF, "fd[%u] = %d", i, fds[i]);
		for (unsigned j = 0; j < i; j++)
			if (fds[j] == fds[i])
				return reject(&c, -EBADF, "fd %d passed twice",
					      fds[i]);
	}

	ret = vp_msg_check_hdr(buf, len, &request, &flags, &size);
	if (ret)
		return ret;
	if (len != VP_MSG_HDR_SIZE + (size_t)size)
		return reject(&c, -EBADMSG, "request %" PRIu32 ": %zu bytes, header "
			      "says %" PRIu32 " + %u", request, len, size,
			      VP_MSG_HDR_SIZE);
	if ((flags & VP_MSG_REPLY) && (flags & VP_MSG_NEED_REPLY))
		return reject(&c, -EPROTO, "request %" PRIu32 ": REPLY together "
			      "with NEED_REPLY", request);
	c.row = find_row(request);
	if (!c.row)
		return reject(&c, -EOPNOTSUPP, "unknown request %" PRIu32, request);
	c.reply = flags & VP_MSG_REPLY;
	kind = c.reply ? reply_kind(&c.row->spec) : c.row->spec.req;

	/* Copy first, then judge only the copy. The count field must be
	 * there; a size beyond the union is wrong whatever the count says and
	 * is caught by the exact comparison below. */
	if (size < kinds[kind].base)
		return reject(&c, -EBADMSG, "size %" PRIu32 " too short for %s "
			      "payload", size, kinds[kind].name);
	memcpy(&msg->p, buf + VP_MSG_HDR_SIZE,
	       size < sizeof(msg->p) ? size : sizeof(msg->p));
	msg->request = request;
	msg->flags = flags;

	ret = payload_size(&c, kind, msg, &want);
	if (ret)
		return ret;
	if (size != want)
		return reject(&c, -EBADMSG, "size %" PRIu32 ", %s payload needs %"
			      PRIu32, size, kinds[kind].name, want);
	ret = check_msg(&c, msg, kind, nfds);
	if (ret)
		return ret;

	msg->size = size;
	for (unsigned i = 0; i < nfds; i++)
		msg->fds[i] = fds[i];
	msg->nfds = nfds;
	return 0;
}

int vp_msg_decode(struct vp_msg *msg, const void *buf, size_t len,
		  const int *fds, unsigned nfds)
{
	int ret;

	/* Zeroed up front: on error msg holds no fds, so a caller that calls
	 * vp_msg_close_fds() anyway cannot double-close. */
	if (msg)
		memset(msg, 0, sizeof(*msg));
	ret = decode(msg, buf, len, fds, nfds);
	if (ret < 0) {
		close_fds(fds, nfds);
		if (msg)
			memset(msg, 0, sizeof(*msg));
	}
	return ret;
}

int vp_msg_encode(const struct vp_msg *msg, void *buf, size_t cap)
{
	struct ctx c = { .op = "encode" };
	uint32_t hdr[3], size;
	enum vp_payload kind;
	int ret;

	if (!msg)
		return reject(&c, -EINVAL, "NULL message");
	c.row = find_row(msg->request);
	if (!c.row)
		return reject(&c, -EOPNOTSUPP, "unknown request %" PRIu32,
			      msg->request);
	c.reply = msg->flags & VP_MSG_REPLY;
	ret = check_flags(&c, msg->flags, -EINVAL);
	if (ret)
		return ret;
	kind = c.reply ? reply_kind(&c.row->spec) : c.row->spec.req;

	/* Encode does not own the fds, but sending a bad one is still a bug;
	 * repeated fds are fine here (regions sharing one memfd). */
	if (msg->nfds > VP_MSG_MAX_FDS)
		return reject(&c, -EBADF, "%u fds, at most %u", msg->nfds,
			      VP_MSG_MAX_FDS);
	for (unsigned i = 0; i < msg->nfds; i++)
		if (msg->fds[i] < 0)
			return reject(&c, -EBADF, "fd[%u] = %d", i, msg->fds[i]);
	ret = payload_size(&c, kind, msg, &size);
	if (ret)
		return ret;
	ret = check_msg(&c, msg, kind, msg->nfds);
	if (ret)
		return ret;

	if (!buf || cap < VP_MSG_HDR_SIZE + (size_t)size)
		return reject(&c, -ENOSPC, "needs %u bytes, have %zu",
			      VP_MSG_HDR_SIZE + size, buf ? cap : 0);
	hdr[0] = msg->request;
	hdr[1] = msg->flags;
	hdr[2] = size;
	memcpy(buf, hdr, sizeof(hdr));
	memcpy((uint8_t *)buf + VP_MSG_HDR_SIZE, &msg->p, size);
	return (int)(VP_MSG_HDR_SIZE + size);
}

void vp_msg_init(struct vp_msg *msg, uint32_t request, uint32_t flags)
{
	if (!msg)
		return;
	memset(msg, 0, sizeof(*msg));
	msg->request = request;
	msg->flags = flags | VP_MSG_VERSION;
}

void vp_msg_close_fds(struct vp_msg *msg)
{
	if (!msg)
		return;
	for (unsigned i = 0; i < msg->nfds && i < VP_MSG_MAX_FDS; i++) {
		if (msg->fds[i] >= 0)
			close(msg->fds[i]);
		msg->fds[i] = -1;
	}
	msg->nfds = 0;
}
