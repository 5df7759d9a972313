/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * unit-proto: the protocol codec (lib/proto.c).
 *
 * Every message type round-trips (encode -> decode -> encode gives the same
 * bytes and fields, with real fds); a few messages are checked against
 * golden bytes written out by hand from the spec, so encoder and decoder
 * cannot agree on a wrong layout; and every rejection is checked for its
 * exact errno, a logged reason, and that EVERY fd handed to decode was
 * closed. Each case also checks that it leaked no fd.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "vhostpci/vhostpci.h"
#define TESTUTIL_MAIN
#include "testutil.h"

/* Each case also fails if it leaves an fd open. */
#define PTEST(name)                                                       \
	static void body_##name(void);                                    \
	TEST(name)                                                        \
	{                                                                 \
		int fds_before = tu_count_fds();                          \
		body_##name();                                            \
		CHECK_EQ(tu_count_fds(), fds_before);                     \
	}                                                                 \
	static void body_##name(void)

#define HDR VP_MSG_HDR_SIZE
#define BUF_MAX (HDR + VP_MSG_MAX_PAYLOAD + 64)

static unsigned n_warn;
static char last_warn[512];
static int fd_baseline;

static void count_log(enum vp_log_level level, const char *msg, void *opaque)
{
	(void)opaque;
	if (level == VP_LOG_WARN) {
		n_warn++;
		snprintf(last_warn, sizeof(last_warn), "%s", msg);
	}
}

/* Runs before the cases: quiet, counted logging and the fd baseline. */
__attribute__((constructor)) static void setup(void)
{
	vp_log_set_handler(count_log, NULL);
	vp_log_set_level(VP_LOG_INFO);
	fd_baseline = tu_count_fds();
}

/* Every request number we know, as QEMU numbers them, plus the native ones. */
static const uint32_t all_requests[] = {
	1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20,
	21, 24, 25, 34, 36, 37, 38, 39, 40,
	0x101, 0x102, 0x103, 0x104, 0x105, 0x106, 0x107, 0x108, 0x109, 0x10a, 0x10b,
};
#define N_REQUESTS (sizeof(all_requests) / sizeof(all_requests[0]))

/* Alternate eventfds and dup'd /dev/null, so both kinds are exercised. */
static int new_fd(unsigned i)
{
	if (i % 2)
		return open("/dev/null", O_RDONLY | O_CLOEXEC);
	return eventfd(0, EFD_CLOEXEC);
}

static bool new_fds(int *fds, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		fds[i] = new_fd(i);
		if (fds[i] < 0)
			return false;
	}
	return true;
}

static bool fd_closed(int fd)
{
	errno = 0;
	return fcntl(fd, F_GETFD) == -1 && errno == EBADF;
}

static bool all_closed(const int *fds, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		if (!fd_closed(fds[i]))
			return false;
	return true;
}

static void put16(uint8_t *b, size_t off, uint16_t v) { memcpy(b + off, &v, 2); }
static void put32(uint8_t *b, size_t off, uint32_t v) { memcpy(b + off, &v, 4); }
static void put64(uint8_t *b, size_t off, uint64_t v) { memcpy(b + off, &v, 8); }

static void put_hdr(uint8_t *b, uint32_t req, uint32_t flags, uint32_t size)
{
	put32(b, 0, req);
	put32(b, 4, flags);
	put32(b, 8, size);
}

/* A raw message: header + payload bytes (zeros if pl is NULL); returns its
 * length. */
static size_t raw(uint8_t *b, uint32_t req, uint32_t flags, const void *pl,
		  uint32_t size)
{
	put_hdr(b, req, flags, size);
	if (pl)
		memcpy(b + HDR, pl, size);
	else
		memset(b + HDR, 0, size);
	return HDR + size;
}

static enum vp_payload kind_of(uint32_t req, bool reply)
{
	const struct vp_msg_spec *s = vp_msg_spec(req);

	if (!reply)
		return s->req;
	return s->reply == VP_PL_NONE ? VP_PL_U64 : s->reply;
}

/* The fd count the spec demands, computed independently of lib/proto.c. */
static unsigned expected_fds(const struct vp_msg *m, bool reply)
{
	unsigned n = 0;

	if (reply) {
		if (m->request == VP_PCI_GET_MEMORY_INFO)
			return m->p.meminfo.nregions;
		if (m->request == VP_PCI_GET_DEVICE_INFO) {
			for (unsigned i = 0; i < m->p.devinfo.nrings; i++)
				n += !!(m->p.devinfo.rings[i].flags & VP_PCI_RING_KICKFD) +
				     !!(m->p.devinfo.rings[i].flags & VP_PCI_RING_CALLFD);
			return n;
		}
		if (m->request == VP_PCI_PAIR21_JOIN)
			return 7;  /* docs/protocol.md: the window's fds */
		return 0;
	}
	switch (m->request) {
	case VP_VU_SET_MEM_TABLE:
		return m->p.mem.nregions;
	case VP_VU_SET_LOG_BASE:
	case VP_VU_SET_LOG_FD:
	case VP_VU_SET_BACKEND_REQ_FD:
	case VP_VU_ADD_MEM_REG:
	case VP_VU_REM_MEM_REG:
		return 1;
	case VP_VU_SET_VRING_KICK:
	case VP_VU_SET_VRING_CALL:
	case VP_VU_SET_VRING_ERR:
		return (m->p.u64 & VP_VU_VRING_NOFD) ? 0 : 1;
	default:
		return 0;
	}
}

static const uint8_t mac[6] = { 0x52, 0x54, 0x00, 0x12, 0x34, 0x56 };

/* A valid message of every kind; fds are NOT filled in (nfds stays 0). */
static void fill(struct vp_msg *m, uint32_t req, uint32_t flags)
{
	bool reply = flags & VP_MSG_REPLY;

	vp_msg_init(m, req, flags);
	switch (kind_of(req, reply)) {
	case VP_PL_NONE:
		break;
	case VP_PL_U64:
		m->p.u64 = (req == VP_PCI_STOP && !reply) ? VP_PCI_STOP_SHUTDOWN
							  : 0x0123456789abcdefull;
		break;
	case VP_PL_VRING_STATE:
		m->p.state = (struct vp_vring_state){ 1, 256 };
		break;
	case VP_PL_VRING_ADDR:
		m->p.addr = (struct vp_vring_addr){ 1, 0, 0x7f0000010000,
			0x7f0000013000, 0x7f0000012000, 0 };
		break;
	case VP_PL_VRING_FD:
		m->p.u64 = 1;
		break;
	case VP_PL_MEM_TABLE:
		m->p.mem.nregions = 2;
		m->p.mem.regions[0] = (struct vp_mem_region_wire){ 0, 0xa0000,
			0x7f0000000000, 0 };
		m->p.mem.regions[1] = (struct vp_mem_region_wire){ 0xc0000,
			0x7f40000, 0x7f00000c0000, 0xc0000 };
		break;
	case VP_PL_LOG:
		m->p.log = (struct vp_log_base){ 0x2000, 0x100 };
		break;
	case VP_PL_CONFIG:
		m->p.config.offset = 0;
		m->p.config.size = 6;
		memcpy(m->p.config.region, mac, 6);
		break;
	case VP_PL_MEM_REG:
		m->p.mem_reg.region = (struct vp_mem_region_wire){ 0x100000000,
			0x40000000, 0x7f1000000000, 0 };
		break;
	case VP_PL_HELLO:
		m->p.hello = (struct vp_pci_hello){ VP_PCI_MAGIC,
			VP_PCI_VERSION_MAJOR, VP_PCI_VERSION_MINOR, 0 };
		break;
	case VP_PL_UUID:
		for (int i = 0; i < 16; i++)
			m->p.uuid[i] = (uint8_t)(i * 17);
		break;
	case VP_PL_MEMINFO:
		m->p.meminfo.nregions = 2;
		m->p.meminfo.regions[0] = (struct vp_pci_region){ 0, 0xa0000,
			0x7f0000000000, 0, VP_MEM_RW, 0 };
		m->p.meminfo.regions[1] = (struct vp_pci_region){ 0x100000,
			0x1000000, 0, 0x100000, VP_MEM_READ, 0 };
		break;
	case VP_PL_DEVINFO: {
		const uint32_t f = VP_PCI_RING_ENABLED | VP_PCI_RING_KICKFD |
				   VP_PCI_RING_CALLFD;

		m->p.devinfo.device_type = 1;
		m->p.devinfo.nrings = 2;
		m->p.devinfo.config_len = 6;
		memcpy(m->p.devinfo.config, mac, 6);
		m->p.devinfo.rings[0] = (struct vp_pci_ring){ 0, 256, 0,
			0x10000, 0x11000, 0x12000, f, 0 };
		m->p.devinfo.rings[1] = (struct vp_pci_ring){ 1, 256, 5,
			0x20000, 0x21000, 0x22000, f, 0 };
		break;
	}
	case VP_PL_FEATURES:
		m->p.features = (struct vp_pci_features){ 0x140000000ull,
							  0x100000000ull };
		break;
	case VP_PL_ERROR:
		m->p.error.code = -EPROTO;
		snprintf(m->p.error.reason, sizeof(m->p.error.reason), "%s",
			 "ring 1 outside memory");
		break;
	}
}

/* Encode a valid message with placeholder fd numbers (encode never touches
 * them); m is left filled for the caller to tweak offsets from. */
static size_t encode_valid(uint8_t *buf, uint32_t req, uint32_t flags,
			   struct vp_msg *m, unsigned *nfds)
{
	int n;

	fill(m, req, flags);
	m->nfds = expected_fds(m, flags & VP_MSG_REPLY);
	for (unsigned i = 0; i < m->nfds; i++)
		m->fds[i] = 1000 + (int)i;
	n = vp_msg_encode(m, buf, BUF_MAX);
	if (nfds)
		*nfds = m->nfds;
	return n > 0 ? (size_t)n : 0;
}

/*
 * Decode buf with nfds fresh fds and expect err, a warning, an empty msg,
 * and every fd closed. Reports details on stderr, returns success.
 */
static bool rejects(const void *buf, size_t len, unsigned nfds, int err)
{
	int fds[16] = { [0 ... 15] = -1 };
	struct vp_msg m;
	unsigned warns = n_warn;
	int ret;
	bool ok = true;

	if (nfds > 16 || !new_fds(fds, nfds))
		return false;
	memset(&m, 0xa5, sizeof(m));
	ret = vp_msg_decode(&m, buf, len, fds, nfds);
	if (ret != err) {
		fprintf(stderr, "  decode returned %d, want %d\n", ret, err);
		ok = false;
	}
	if (!all_closed(fds, nfds)) {
		fprintf(stderr, "  decode error left fds open\n");
		ok = false;
		for (unsigned i = 0; i < nfds; i++)
			if (!fd_closed(fds[i]))
				close(fds[i]);
	}
	if (n_warn == warns) {
		fprintf(stderr, "  rejection was not logged\n");
		ok = false;
	}
	if (m.nfds || m.request || m.flags || m.size || m.p.u64) {
		fprintf(stderr, "  msg not cleared on error\n");
		ok = false;
	}
	return ok;
}

/* Decode buf with nfds fresh fds, expect success, then close them. */
static bool accepts(const void *buf, size_t len, unsigned nfds)
{
	int fds[16] = { [0 ... 15] = -1 };
	struct vp_msg m;
	int ret;

	if (nfds > 16 || !new_fds(fds, nfds))
		return false;
	ret = vp_msg_decode(&m, buf, len, fds, nfds);
	if (ret) {
		fprintf(stderr, "  decode returned %d (%s)\n", ret, last_warn);
		return false;
	}
	vp_msg_close_fds(&m);
	return all_closed(fds, nfds);
}

static bool same_msg(const struct vp_msg *a, const struct vp_msg *b)
{
	return a->request == b->request && a->flags == b->flags &&
	       a->size == b->size && a->nfds == b->nfds &&
	       !memcmp(&a->p, &b->p, sizeof(a->p)) &&
	       !memcmp(a->fds, b->fds, a->nfds * sizeof(a->fds[0]));
}

/* --- the table --------------------------------------------------------- */

PTEST(table_matches_spec)
{
	static const struct {
		uint32_t req;
		enum vp_msg_dir dir;
		enum vp_payload rq, rp;
		bool has_reply;
	} want[] = {
		{ 1, VP_DIR_FRONT_TO_BACK, VP_PL_NONE, VP_PL_U64, true },
		{ 2, VP_DIR_FRONT_TO_BACK, VP_PL_U64, VP_PL_NONE, false },
		{ 3, VP_DIR_FRONT_TO_BACK, VP_PL_NONE, VP_PL_NONE, false },
		{ 4, VP_DIR_FRONT_TO_BACK, VP_PL_NONE, VP_PL_NONE, false },
		{ 5, VP_DIR_FRONT_TO_BACK, VP_PL_MEM_TABLE, VP_PL_NONE, false },
		{ 6, VP_DIR_FRONT_TO_BACK, VP_PL_LOG, VP_PL_NONE, false },
		{ 7, VP_DIR_FRONT_TO_BACK, VP_PL_NONE, VP_PL_NONE, false },
		{ 8, VP_DIR_FRONT_TO_BACK, VP_PL_VRING_STATE, VP_PL_NONE, false },
		{ 9, VP_DIR_FRONT_TO_BACK, VP_PL_VRING_ADDR, VP_PL_NONE, false },
		{ 10, VP_DIR_FRONT_TO_BACK, VP_PL_VRING_STATE, VP_PL_NONE, false },
		{ 11, VP_DIR_FRONT_TO_BACK, VP_PL_VRING_STATE, VP_PL_VRING_STATE, true },
		{ 12, VP_DIR_FRONT_TO_BACK, VP_PL_VRING_FD, VP_PL_NONE, false },
		{ 13, VP_DIR_FRONT_TO_BACK, VP_PL_VRING_FD, VP_PL_NONE, false },
		{ 14, VP_DIR_FRONT_TO_BACK, VP_PL_VRING_FD, VP_PL_NONE, false },
		{ 15, VP_DIR_FRONT_TO_BACK, VP_PL_NONE, VP_PL_U64, true },
		{ 16, VP_DIR_FRONT_TO_BACK, VP_PL_U64, VP_PL_NONE, false },
		{ 17, VP_DIR_FRONT_TO_BACK, VP_PL_NONE, VP_PL_U64, true },
		{ 18, VP_DIR_FRONT_TO_BACK, VP_PL_VRING_STATE, VP_PL_NONE, false },
		{ 19, VP_DIR_FRONT_TO_BACK, VP_PL_U64, VP_PL_NONE, false },
		{ 20, VP_DIR_FRONT_TO_BACK, VP_PL_U64, VP_PL_NONE, false },
		{ 21, VP_DIR_FRONT_TO_BACK, VP_PL_NONE, VP_PL_NONE, false },
		{ 24, VP_DIR_FRONT_TO_BACK, VP_PL_CONFIG, VP_PL_CONFIG, true },
		{ 25, VP_DIR_FRONT_TO_BACK, VP_PL_CONFIG, VP_PL_NONE, false },
		{ 34, VP_DIR_FRONT_TO_BACK, VP_PL_NONE, VP_PL_NONE, false },
		{ 36, VP_DIR_FRONT_TO_BACK, VP_PL_NONE, VP_PL_U64, true },
		{ 37, VP_DIR_FRONT_TO_BACK, VP_PL_MEM_REG, VP_PL_NONE, false },
		{ 38, VP_DIR_FRONT_TO_BACK, VP_PL_MEM_REG, VP_PL_NONE, false },
		{ 39, VP_DIR_FRONT_TO_BACK, VP_PL_U64, VP_PL_NONE, false },
		{ 40, VP_DIR_FRONT_TO_BACK, VP_PL_NONE, VP_PL_U64, true },
		{ 0x101, VP_DIR_FRONT_TO_BACK, VP_PL_HELLO, VP_PL_HELLO, true },
		{ 0x102, VP_DIR_BACK_TO_FRONT, VP_PL_NONE, VP_PL_UUID, true },
		{ 0x103, VP_DIR_BACK_TO_FRONT, VP_PL_NONE, VP_PL_MEMINFO, true },
		{ 0x104, VP_DIR_BACK_TO_FRONT, VP_PL_NONE, VP_PL_DEVINFO, true },
		{ 0x105, VP_DIR_BACK_TO_FRONT, VP_PL_NONE, VP_PL_FEATURES, true },
		{ 0x106, VP_DIR_BACK_TO_FRONT, VP_PL_U64, VP_PL_U64, true },
		{ 0x107, VP_DIR_BACK_TO_FRONT, VP_PL_U64, VP_PL_NONE, false },
		{ 0x108, VP_DIR_FRONT_TO_BACK, VP_PL_U64, VP_PL_NONE, false },
		{ 0x109, VP_DIR_BOTH, VP_PL_ERROR, VP_PL_NONE, false },
		{ 0x10a, VP_DIR_FRONT_TO_BACK, VP_PL_HELLO, VP_PL_U64, true },
		{ 0x10b, VP_DIR_BACK_TO_FRONT, VP_PL_VRING_STATE, VP_PL_NONE, false },
	};
	CHECK_EQ(sizeof(want) / sizeof(want[0]), N_REQUESTS);
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		const struct vp_msg_spec *s = vp_msg_spec(want[i].req);

		REQUIRE(s);
		CHECK_EQ(s->request, want[i].req);
		CHECK_EQ(s->dir, want[i].dir);
		CHECK_EQ(s->req, want[i].rq);
		CHECK_EQ(s->reply, want[i].rp);
		CHECK_EQ(s->has_reply, want[i].has_reply);
		CHECK(strcmp(vp_msg_name(want[i].req), "UNKNOWN"));
		/* Names are unique. */
		for (size_t j = 0; j < i; j++)
			CHECK(strcmp(vp_msg_name(want[i].req),
				     vp_msg_name(want[j].req)));
	}
	/* Nothing else is known. */
	for (uint32_t r = 0; r < 0x200; r++) {
		bool known = false;

		for (size_t i = 0; i < N_REQUESTS; i++)
			known |= all_requests[i] == r;
		CHECK_EQ(vp_msg_spec(r) != NULL, known);
	}
	CHECK(!vp_msg_spec(0xffffffffu));
}

PTEST(names)
{
	CHECK(!strcmp(vp_msg_name(VP_VU_GET_FEATURES), "GET_FEATURES"));
	CHECK(!strcmp(vp_msg_name(VP_VU_SET_VRING_ADDR), "SET_VRING_ADDR"));
	CHECK(!strcmp(vp_msg_name(VP_VU_SET_BACKEND_REQ_FD), "SET_BACKEND_REQ_FD"));
	CHECK(!strcmp(vp_msg_name(VP_PCI_GET_UUID), "VHOST_PCI_GET_UUID"));
	CHECK(!strcmp(vp_msg_name(VP_PCI_ERROR), "VHOST_PCI_ERROR"));
	CHECK(!strcmp(vp_msg_name(22), "UNKNOWN"));
	CHECK(!strcmp(vp_msg_name(0), "UNKNOWN"));
}

/* --- round trips ------------------------------------------------------- */

static void round_trip(uint32_t req, uint32_t flags)
{
	uint8_t buf[BUF_MAX], again[BUF_MAX];
	struct vp_msg m, out;
	int n, n2, ret;

	fill(&m, req, flags);
	m.nfds = expected_fds(&m, flags & VP_MSG_REPLY);
	REQUIRE(new_fds(m.fds, m.nfds));
	n = vp_msg_encode(&m, buf, sizeof(buf));
	if (n < 0)
		fprintf(stderr, "  encode %s flags %#x: %d (%s)\n",
			vp_msg_name(req), flags, n, last_warn);
	REQUIRE(n >= (int)HDR);
	m.size = (uint32_t)n - HDR;

	/* Encode does not own the fds. */
	for (unsigned i = 0; i < m.nfds; i++)
		CHECK(!fd_closed(m.fds[i]));

	ret = vp_msg_decode(&out, buf, (size_t)n, m.fds, m.nfds);
	if (ret)
		fprintf(stderr, "  decode %s flags %#x: %d (%s)\n",
			vp_msg_name(req), flags, ret, last_warn);
	CHECK_EQ(ret, 0);
	if (ret) {
		/* decode closed them */
		CHECK(all_closed(m.fds, m.nfds));
		return;
	}
	CHECK(same_msg(&m, &out));
	n2 = vp_msg_encode(&out, again, sizeof(again));
	CHECK_EQ(n2, n);
	CHECK(n2 == n && !memcmp(buf, again, (size_t)n));
	vp_msg_close_fds(&out);
	CHECK_EQ(out.nfds, 0);
	CHECK(all_closed(m.fds, m.nfds));
}

PTEST(round_trip_every_message)
{
	for (size_t i = 0; i < N_REQUESTS; i++) {
		round_trip(all_requests[i], 0);
		round_trip(all_requests[i], VP_MSG_NEED_REPLY);
		/* Every request has a reply form: its payload or a REPLY_ACK. */
		round_trip(all_requests[i], VP_MSG_REPLY);
	}
}

PTEST(round_trip_variants)
{
	uint8_t buf[BUF_MAX];
	struct vp_msg m, out;
	int n;

	/* SET_VRING_CALL without an fd (polling). */
	fill(&m, VP_VU_SET_VRING_CALL, 0);
	m.p.u64 = 3 | VP_VU_VRING_NOFD;
	n = vp_msg_encode(&m, buf, sizeof(buf));
	CHECK_EQ(n, HDR + 8);
	CHECK_EQ(vp_msg_decode(&out, buf, (size_t)n, NULL, 0), 0);
	CHECK_EQ(out.p.u64, 3 | VP_VU_VRING_NOFD);
	CHECK_EQ(out.nfds, 0);

	/* REM_MEM_REG with no fd (rust-vmm style) as well as with one. */
	n = (int)encode_valid(buf, VP_VU_REM_MEM_REG, 0, &m, NULL);
	CHECK(accepts(buf, (size_t)n, 0));
	CHECK(accepts(buf, (size_t)n, 1));

	/* Full-size tables: 8 regions, 4 rings, 256 config bytes. */
	fill(&m, VP_VU_SET_MEM_TABLE, 0);
	m.p.mem.nregions = 8;
	for (unsigned i = 0; i < 8; i++)
		m.p.mem.regions[i] = (struct vp_mem_region_wire){ i * 0x10000ull,
			0x10000, 0x7f0000000000 + i * 0x10000ull, 0 };
	m.nfds = 8;
	for (unsigned i = 0; i < 8; i++)
		m.fds[i] = 7; /* one memfd behind all regions is fine to send */
	n = vp_msg_encode(&m, buf, sizeof(buf));
	CHECK_EQ(n, HDR + 8 + 32 * 8);
	CHECK(accepts(buf, (size_t)n, 8));

	fill(&m, VP_PCI_GET_DEVICE_INFO, VP_MSG_REPLY);
	m.p.devinfo.nrings = 4;
	for (unsigned i = 0; i < 4; i++)
		m.p.devinfo.rings[i] = (struct vp_pci_ring){ 3 - i, 32768, 0,
			0x1000, 0x2000, 0x3000,
			i == 0 ? VP_PCI_RING_KICKFD : i == 1 ? VP_PCI_RING_CALLFD : 0, 0 };
	m.nfds = 2;
	n = vp_msg_encode(&m, buf, sizeof(buf));
	CHECK_EQ(n, HDR + 72 + 40 * 4);
	CHECK(accepts(buf, (size_t)n, 2));

	fill(&m, VP_VU_SET_CONFIG, 0);
	m.p.config.offset = 0;
	m.p.config.size = 256;
	n = vp_msg_encode(&m, buf, sizeof(buf));
	CHECK_EQ(n, HDR + 12 + 256);
	CHECK(accepts(buf, (size_t)n, 0));
	m.p.config.offset = 250;
	m.p.config.size = 6;
	n = vp_msg_encode(&m, buf, sizeof(buf));
	CHECK_EQ(n, HDR + 12 + 6);
	CHECK(accepts(buf, (size_t)n, 0));

	/* A region ending exactly at the top of the address space. */
	fill(&m, VP_VU_ADD_MEM_REG, 0);
	m.p.mem_reg.region.gpa = 0xfffffffffffff000ull;
	m.p.mem_reg.region.size = 0x1000;
	m.nfds = 1;
	m.fds[0] = 0;
	n = vp_msg_encode(&m, buf, sizeof(buf));
	CHECK_EQ(n, HDR + 40);
	CHECK(accepts(buf, (size_t)n, 1));

	/* Payload in a misaligned buffer (UBSan watches the reads). */
	{
		uint8_t store[BUF_MAX + 1];

		n = (int)encode_valid(store + 1, VP_PCI_GET_MEMORY_INFO,
				      VP_MSG_REPLY, &m, NULL);
		CHECK(accepts(store + 1, (size_t)n, 2));
	}
}

/* --- golden bytes ------------------------------------------------------ */

static bool golden(const struct vp_msg *m, const uint8_t *want, size_t len)
{
	uint8_t buf[BUF_MAX];
	struct vp_msg out;
	int n = vp_msg_encode(m, buf, sizeof(buf));
	bool ok;

	if (n != (int)len || memcmp(buf, want, len)) {
		fprintf(stderr, "  encode: %d bytes:", n);
		for (int i = 0; i < n; i++)
			fprintf(stderr, " %02x", buf[i]);
		fprintf(stderr, "\n");
		return false;
	}
	/* And the other way; fds are checked by the caller. */
	if (m->nfds)
		return true;
	if (vp_msg_decode(&out, want, len, NULL, 0))
		return false;
	ok = out.request == m->request && out.flags == m->flags &&
	     !memcmp(&out.p, &m->p, sizeof(out.p));
	return ok;
}

PTEST(golden_get_features_reply)
{
	static const uint8_t want[] = {
		0x01, 0x00, 0x00, 0x00,  /* request 1 */
		0x05, 0x00, 0x00, 0x00,  /* version 1 | REPLY */
		0x08, 0x00, 0x00, 0x00,  /* size 8 */
		0x00, 0x00, 0x00, 0x40, 0x01, 0x00, 0x00, 0x00, /* bits 30, 32 */
	};
	struct vp_msg m;

	vp_msg_init(&m, VP_VU_GET_FEATURES, VP_MSG_REPLY);
	m.p.u64 = (1ull << VIRTIO_F_VERSION_1) | (1ull << VP_VU_F_PROTOCOL_FEATURES);
	CHECK(golden(&m, want, sizeof(want)));
}

PTEST(golden_get_features_request)
{
	static const uint8_t want[] = { 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0 };
	struct vp_msg m;

	vp_msg_init(&m, VP_VU_GET_FEATURES, 0);
	CHECK(golden(&m, want, sizeof(want)));
}

PTEST(golden_set_vring_addr_used_before_avail)
{
	static const uint8_t want[] = {
		0x09, 0, 0, 0, 0x01, 0, 0, 0, 0x28, 0, 0, 0,
		0x01, 0, 0, 0,                  /* index 1 */
		0x00, 0, 0, 0,                  /* flags */
		0x00, 0x10, 0, 0, 0, 0, 0, 0,   /* desc  0x1000 */
		0x00, 0x30, 0, 0, 0, 0, 0, 0,   /* used  0x3000: before avail */
		0x00, 0x20, 0, 0, 0, 0, 0, 0,   /* avail 0x2000 */
		0x00, 0, 0, 0, 0, 0, 0, 0,      /* log */
	};
	struct vp_msg m;

	vp_msg_init(&m, VP_VU_SET_VRING_ADDR, 0);
	m.p.addr.index = 1;
	m.p.addr.desc = 0x1000;
	m.p.addr.avail = 0x2000;
	m.p.addr.used = 0x3000;
	CHECK(golden(&m, want, sizeof(want)));
}

PTEST(golden_set_mem_table_two_regions)
{
	static const uint8_t want[] = {
		0x05, 0, 0, 0, 0x01, 0, 0, 0, 0x48, 0, 0, 0, /* size 8 + 2*32 */
		0x02, 0, 0, 0, 0, 0, 0, 0,                   /* nregions, padding */
		/* region 0: gpa 0, size 0xa0000, uaddr 0x7f0000000000, offset 0 */
		0, 0, 0, 0, 0, 0, 0, 0,
		0x00, 0x00, 0x0a, 0, 0, 0, 0, 0,
		0, 0, 0, 0, 0, 0x7f, 0, 0,
		0, 0, 0, 0, 0, 0, 0, 0,
		/* region 1: gpa 0xc0000, size 0x7f40000, uaddr +0xc0000, offset 0xc0000 */
		0x00, 0x00, 0x0c, 0, 0, 0, 0, 0,
		0x00, 0x00, 0xf4, 0x07, 0, 0, 0, 0,
		0x00, 0x00, 0x0c, 0, 0, 0x7f, 0, 0,
		0x00, 0x00, 0x0c, 0, 0, 0, 0, 0,
	};
	struct vp_msg m, out;
	int fds[2];

	fill(&m, VP_VU_SET_MEM_TABLE, 0);
	REQUIRE(new_fds(fds, 2));
	m.nfds = 2;
	memcpy(m.fds, fds, sizeof(fds));
	CHECK(golden(&m, want, sizeof(want)));
	CHECK_EQ(vp_msg_decode(&out, want, sizeof(want), fds, 2), 0);
	CHECK_EQ(out.p.mem.nregions, 2);
	CHECK_EQ(out.p.mem.regions[1].gpa, 0xc0000);
	CHECK_EQ(out.p.mem.regions[1].size, 0x7f40000);
	CHECK_EQ(out.p.mem.regions[1].uaddr, 0x7f00000c0000);
	CHECK_EQ(out.p.mem.regions[1].mmap_offset, 0xc0000);
	CHECK_EQ(out.nfds, 2);
	CHECK_EQ(out.fds[0], fds[0]);
	CHECK_EQ(out.fds[1], fds[1]);
	vp_msg_close_fds(&out);
	CHECK(all_closed(fds, 2));
}

PTEST(golden_hello)
{
	static const uint8_t want[] = {
		0x01, 0x01, 0, 0, 0x09, 0, 0, 0, 0x10, 0, 0, 0, /* NEED_REPLY */
		'V', 'P', 'C', 'I', 0x01, 0x00, 0x01, 0x00,     /* magic, 1.1 */
		0, 0, 0, 0, 0, 0, 0, 0,
	};
	struct vp_msg m;

	fill(&m, VP_PCI_HELLO, VP_MSG_NEED_REPLY);
	CHECK(golden(&m, want, sizeof(want)));
}

/* --- header ------------------------------------------------------------ */

PTEST(check_hdr)
{
	uint8_t b[HDR];
	uint32_t r, f, s;

	put_hdr(b, 9, 1, 40);
	CHECK_EQ(vp_msg_check_hdr(b, HDR, &r, &f, &s), 0);
	CHECK_EQ(r, 9);
	CHECK_EQ(f, 1);
	CHECK_EQ(s, 40);
	CHECK_EQ(vp_msg_check_hdr(b, HDR, NULL, NULL, NULL), 0);
	/* Unknown requests are the transport's business, not an error here. */
	put_hdr(b, 12345, 1, 0);
	CHECK_EQ(vp_msg_check_hdr(b, HDR, &r, &f, &s), 0);

	CHECK_EQ(vp_msg_check_hdr(b, HDR - 1, &r, &f, &s), -EBADMSG);
	CHECK_EQ(vp_msg_check_hdr(b, 0, &r, &f, &s), -EBADMSG);
	CHECK_EQ(vp_msg_check_hdr(NULL, HDR, &r, &f, &s), -EBADMSG);
	for (uint32_t v = 0; v < 4; v++) {
		put_hdr(b, 1, v, 0);
		CHECK_EQ(vp_msg_check_hdr(b, HDR, &r, &f, &s), v == 1 ? 0 : -EPROTO);
	}
	put_hdr(b, 1, 0x11, 0);
	CHECK_EQ(vp_msg_check_hdr(b, HDR, &r, &f, &s), -EPROTO);
	put_hdr(b, 1, 0x80000001u, 0);
	CHECK_EQ(vp_msg_check_hdr(b, HDR, &r, &f, &s), -EPROTO);
	put_hdr(b, 1, 1, VP_MSG_MAX_PAYLOAD);
	CHECK_EQ(vp_msg_check_hdr(b, HDR, &r, &f, &s), 0);
	put_hdr(b, 1, 1, VP_MSG_MAX_PAYLOAD + 1);
	CHECK_EQ(vp_msg_check_hdr(b, HDR, &r, &f, &s), -EMSGSIZE);
	CHECK_EQ(s, VP_MSG_MAX_PAYLOAD + 1);
	put_hdr(b, 1, 1, 0xffffffffu);
	CHECK_EQ(vp_msg_check_hdr(b, HDR, &r, &f, &s), -EMSGSIZE);
}

/* --- rejections: framing ----------------------------------------------- */

PTEST(reject_short_header)
{
	uint8_t b[BUF_MAX] = { 0 };

	raw(b, 1, 1, NULL, 0);
	CHECK(rejects(b, HDR - 1, 0, -EBADMSG));
	CHECK(rejects(b, 0, 2, -EBADMSG));
	CHECK(rejects(NULL, 0, 3, -EBADMSG));
}

PTEST(reject_len_vs_header_size)
{
	uint8_t b[BUF_MAX] = { 0 };
	uint64_t v = 1;
	size_t n = raw(b, VP_VU_SET_FEATURES, 1, &v, 8);

	CHECK(accepts(b, n, 0));
	CHECK(rejects(b, n - 1, 0, -EBADMSG));   /* truncated */
	CHECK(rejects(b, n + 1, 1, -EBADMSG));   /* trailing bytes */
	CHECK(rejects(b, HDR, 2, -EBADMSG));     /* payload missing */
}

PTEST(reject_payload_size_for_type)
{
	uint8_t b[BUF_MAX] = { 0 }, pl[64] = { 0 };
	struct vp_msg m;
	size_t n;

	/* Fixed kinds: exactly their size, neither less nor more. */
	CHECK(rejects(b, raw(b, VP_VU_SET_FEATURES, 1, pl, 4), 0, -EBADMSG));
	CHECK(rejects(b, raw(b, VP_VU_SET_FEATURES, 1, pl, 16), 0, -EBADMSG));
	CHECK(rejects(b, raw(b, VP_VU_GET_FEATURES, 1, pl, 8), 0, -EBADMSG));
	CHECK(rejects(b, raw(b, VP_VU_GET_FEATURES, 5, pl, 0), 0, -EBADMSG));
	CHECK(rejects(b, raw(b, VP_VU_GET_VRING_BASE, 1, pl, 0), 0, -EBADMSG));
	CHECK(rejects(b, raw(b, VP_VU_SET_VRING_ADDR, 1, pl, 32), 0, -EBADMSG));
	CHECK(rejects(b, raw(b, VP_PCI_GET_UUID, 5, pl, 15), 0, -EBADMSG));
	CHECK(rejects(b, raw(b, VP_PCI_GET_UUID, 5, pl, 17), 0, -EBADMSG));

	/* Variable kinds: the count field must be there, then size = formula. */
	CHECK(rejects(b, raw(b, VP_VU_SET_MEM_TABLE, 1, pl, 4), 1, -EBADMSG));
	n = encode_valid(b, VP_VU_SET_MEM_TABLE, 0, &m, NULL);
	put32(b, 8, 8 + 32);     /* says 2 regions, carries 1 */
	CHECK(rejects(b, HDR + 8 + 32, 2, -EBADMSG));
	put32(b, 8, 8 + 32 * 3); /* says 2 regions, carries 3 */
	CHECK(rejects(b, n + 32, 2, -EBADMSG));

	CHECK(rejects(b, raw(b, VP_VU_SET_CONFIG, 1, pl, 8), 0, -EBADMSG));
	n = encode_valid(b, VP_VU_SET_CONFIG, 0, &m, NULL);
	put32(b, 8, 12 + 7);
	CHECK(rejects(b, n + 1, 0, -EBADMSG));

	n = encode_valid(b, VP_PCI_GET_MEMORY_INFO, VP_MSG_REPLY, &m, NULL);
	put32(b, 8, 8 + 40);
	CHECK(rejects(b, HDR + 8 + 40, 2, -EBADMSG));
	CHECK(rejects(b, raw(b, VP_PCI_GET_DEVICE_INFO, 5, pl, 60), 0, -EBADMSG));

	/* A REPLY_ACK is a u64, nothing else. */
	CHECK(rejects(b, raw(b, VP_VU_SET_MEM_TABLE, 5, pl, 0), 0, -EBADMSG));
	CHECK(accepts(b, raw(b, VP_VU_SET_MEM_TABLE, 5, pl, 8), 0));
}

PTEST(reject_size_over_max)
{
	static uint8_t b[HDR + VP_MSG_MAX_PAYLOAD + 1];

	raw(b, VP_VU_SET_MEM_TABLE, 1, NULL, 0);
	put32(b, 8, VP_MSG_MAX_PAYLOAD + 1);
	CHECK(rejects(b, sizeof(b), 2, -EMSGSIZE));
	/* At the limit the size is merely wrong for the type. */
	put32(b, 8, VP_MSG_MAX_PAYLOAD);
	put32(b, HDR, 2);             /* nregions */
	CHECK(rejects(b, sizeof(b) - 1, 2, -EBADMSG));
	put32(b, 0, VP_VU_SET_FEATURES);
	CHECK(rejects(b, sizeof(b) - 1, 0, -EBADMSG));
}

PTEST(reject_bad_flags)
{
	uint8_t b[BUF_MAX] = { 0 };
	uint64_t v = 0;

	CHECK(rejects(b, raw(b, VP_VU_SET_FEATURES, 0, &v, 8), 1, -EPROTO));
	CHECK(rejects(b, raw(b, VP_VU_SET_FEATURES, 2, &v, 8), 1, -EPROTO));
	CHECK(rejects(b, raw(b, VP_VU_SET_FEATURES, 3, &v, 8), 1, -EPROTO));
	CHECK(rejects(b, raw(b, VP_VU_SET_FEATURES, 0x11, &v, 8), 1, -EPROTO));
	CHECK(rejects(b, raw(b, VP_VU_SET_FEATURES, 0x80000001u, &v, 8), 1,
		      -EPROTO));
	CHECK(rejects(b, raw(b, VP_VU_SET_FEATURES, 1 | VP_MSG_REPLY |
			     VP_MSG_NEED_REPLY, &v, 8), 0, -EPROTO));
	CHECK(accepts(b, raw(b, VP_VU_SET_FEATURES, 1 | VP_MSG_NEED_REPLY, &v, 8), 0));
	CHECK(accepts(b, raw(b, VP_VU_SET_FEATURES, 1 | VP_MSG_REPLY, &v, 8), 0));
}

PTEST(reject_unknown_request)
{
	static const uint32_t unknown[] = { 0, 22, 23, 26, 33, 35, 41, 0x100,
					    0x10c, 0xffffffffu };
	uint8_t b[BUF_MAX] = { 0 };

	for (size_t i = 0; i < sizeof(unknown) / sizeof(unknown[0]); i++)
		CHECK(rejects(b, raw(b, unknown[i], 1, NULL, 0), 1, -EOPNOTSUPP));
	CHECK(strstr(last_warn, "unknown request"));
}

/* --- rejections: fds --------------------------------------------------- */

PTEST(reject_fds_on_message_without_fds)
{
	uint8_t b[BUF_MAX] = { 0 };
	uint64_t v = 0;
	struct vp_msg m;
	size_t n;

	CHECK(rejects(b, raw(b, VP_VU_SET_FEATURES, 1, &v, 8), 1, -EBADF));
	CHECK(strstr(last_warn, "SET_FEATURES"));
	CHECK(rejects(b, raw(b, VP_VU_GET_FEATURES, 1, NULL, 0), 3, -EBADF));
	CHECK(rejects(b, raw(b, VP_VU_GET_FEATURES, 5, &v, 8), 1, -EBADF));
	CHECK(rejects(b, raw(b, VP_VU_SET_OWNER, 1, NULL, 0), 8, -EBADF));
	n = encode_valid(b, VP_PCI_HELLO, 0, &m, NULL);
	CHECK(rejects(b, n, 1, -EBADF));
	/* A REPLY_ACK to a message that had fds carries none itself. */
	CHECK(rejects(b, raw(b, VP_VU_SET_MEM_TABLE, 5, &v, 8), 1, -EBADF));
}

PTEST(reject_fd_counts)
{
	uint8_t b[BUF_MAX] = { 0 };
	struct vp_msg m;
	size_t n;

	n = encode_valid(b, VP_VU_SET_MEM_TABLE, 0, &m, NULL);
	CHECK(accepts(b, n, 2));
	CHECK(rejects(b, n, 0, -EBADF));
	CHECK(rejects(b, n, 1, -EBADF));
	CHECK(rejects(b, n, 3, -EBADF));

	CHECK(rejects(b, raw(b, VP_VU_SET_LOG_FD, 1, NULL, 0), 0, -EBADF));
	CHECK(accepts(b, raw(b, VP_VU_SET_LOG_FD, 1, NULL, 0), 1));
	CHECK(rejects(b, raw(b, VP_VU_SET_LOG_FD, 1, NULL, 0), 2, -EBADF));
	CHECK(rejects(b, raw(b, VP_VU_SET_BACKEND_REQ_FD, 1, NULL, 0), 0, -EBADF));
	CHECK(accepts(b, raw(b, VP_VU_SET_BACKEND_REQ_FD, 1, NULL, 0), 1));

	n = encode_valid(b, VP_VU_SET_LOG_BASE, 0, &m, NULL);
	CHECK(accepts(b, n, 1));
	CHECK(rejects(b, n, 0, -EBADF));
	CHECK(rejects(b, n, 2, -EBADF));

	n = encode_valid(b, VP_VU_ADD_MEM_REG, 0, &m, NULL);
	CHECK(rejects(b, n, 0, -EBADF));
	CHECK(rejects(b, n, 2, -EBADF));
	n = encode_valid(b, VP_VU_REM_MEM_REG, 0, &m, NULL);
	CHECK(rejects(b, n, 2, -EBADF));
}

PTEST(reject_vring_fd)
{
	uint8_t b[BUF_MAX] = { 0 };
	uint64_t v;

	v = 1;            /* ring 1, fd expected */
	CHECK(accepts(b, raw(b, VP_VU_SET_VRING_KICK, 1, &v, 8), 1));
	CHECK(rejects(b, raw(b, VP_VU_SET_VRING_KICK, 1, &v, 8), 0, -EBADF));
	CHECK(rejects(b, raw(b, VP_VU_SET_VRING_CALL, 1, &v, 8), 2, -EBADF));
	v = 1 | VP_VU_VRING_NOFD;
	CHECK(accepts(b, raw(b, VP_VU_SET_VRING_CALL, 1, &v, 8), 0));
	CHECK(rejects(b, raw(b, VP_VU_SET_VRING_CALL, 1, &v, 8), 1, -EBADF));
	CHECK(rejects(b, raw(b, VP_VU_SET_VRING_ERR, 1, &v, 8), 1, -EBADF));
	/* Bits above 8 are reserved. */
	v = 0x200;
	CHECK(rejects(b, raw(b, VP_VU_SET_VRING_KICK, 1, &v, 8), 1, -EINVAL));
	v = 1ull << 63 | VP_VU_VRING_NOFD;
	CHECK(rejects(b, raw(b, VP_VU_SET_VRING_KICK, 1, &v, 8), 0, -EINVAL));
	v = 0xff;
	CHECK(accepts(b, raw(b, VP_VU_SET_VRING_ERR, 1, &v, 8), 1));
}

PTEST(reject_bad_fd_arguments)
{
	uint8_t b[BUF_MAX] = { 0 };
	struct vp_msg m;
	int fds[VP_MSG_MAX_FDS + 1];
	size_t n = encode_valid(b, VP_VU_SET_MEM_TABLE, 0, &m, NULL);

	/* A negative fd: the others are closed, -1 is not touched. */
	REQUIRE(new_fds(fds, 1));
	fds[1] = -1;
	CHECK_EQ(vp_msg_decode(&m, b, n, fds, 2), -EBADF);
	CHECK(fd_closed(fds[0]));

	/* More than the maximum: all closed. */
	REQUIRE(new_fds(fds, VP_MSG_MAX_FDS + 1));
	CHECK_EQ(vp_msg_decode(&m, b, n, fds, VP_MSG_MAX_FDS + 1), -EBADF);
	CHECK(all_closed(fds, VP_MSG_MAX_FDS + 1));

	/* The same fd twice would be closed twice: refused, closed once. */
	REQUIRE(new_fds(fds, 1));
	fds[1] = fds[0];
	CHECK_EQ(vp_msg_decode(&m, b, n, fds, 2), -EBADF);
	CHECK(fd_closed(fds[0]));

	/* No msg to decode into: still closes. */
	REQUIRE(new_fds(fds, 2));
	CHECK_EQ(vp_msg_decode(NULL, b, n, fds, 2), -EINVAL);
	CHECK(all_closed(fds, 2));
	CHECK_EQ(vp_msg_decode(&m, b, n, NULL, 2), -EINVAL);
}

/* --- rejections: payload fields ---------------------------------------- */

#define MT(field) (HDR + offsetof(struct vp_mem_table, field))

PTEST(reject_mem_table)
{
	uint8_t b[BUF_MAX] = { 0 };
	struct vp_msg m;
	size_t n;

	n = encode_valid(b, VP_VU_SET_MEM_TABLE, 0, &m, NULL);
	put32(b, MT(nregions), 0);
	put32(b, 8, 8);
	CHECK(rejects(b, HDR + 8, 0, -EINVAL));
	CHECK(strstr(last_warn, "SET_MEM_TABLE"));

	n = encode_valid(b, VP_VU_SET_MEM_TABLE, 0, &m, NULL);
	put32(b, MT(nregions), 9);
	put32(b, 8, 8 + 32 * 9);
	CHECK(rejects(b, HDR + 8 + 32 * 9, 8, -EINVAL));
	put32(b, MT(nregions), 0xffffffffu);
	CHECK(rejects(b, HDR + 8 + 32 * 9, 8, -EINVAL));

	n = encode_valid(b, VP_VU_SET_MEM_TABLE, 0, &m, NULL);
	put64(b, MT(regions[1].size), 0);
	CHECK(rejects(b, n, 2, -EINVAL));
	n = encode_valid(b, VP_VU_SET_MEM_TABLE, 0, &m, NULL);
	put64(b, MT(regions[0].uaddr), 0xfffffffffffff000ull);
	CHECK(rejects(b, n, 2, -EINVAL));
	n = encode_valid(b, VP_VU_SET_MEM_TABLE, 0, &m, NULL);
	put64(b, MT(regions[1].mmap_offset), ~0ull);
	CHECK(rejects(b, n, 2, -EINVAL));

	n = encode_valid(b, VP_VU_ADD_MEM_REG, 0, &m, NULL);
	put64(b, HDR + offsetof(struct vp_mem_reg, region.gpa), ~0ull - 10);
	CHECK(rejects(b, n, 1, -EINVAL));
}

PTEST(reject_config)
{
	uint8_t b[BUF_MAX] = { 0 };
	struct vp_msg m;
	size_t n;

	n = encode_valid(b, VP_VU_SET_CONFIG, 0, &m, NULL);
	(void)n;
	put32(b, HDR + 4, 257);       /* config size */
	put32(b, 8, 12 + 257);
	CHECK(rejects(b, HDR + 12 + 257, 0, -EINVAL));

	n = encode_valid(b, VP_VU_GET_CONFIG, VP_MSG_REPLY, &m, NULL);
	put32(b, HDR + 0, 251);       /* offset 251 + size 6 > 256 */
	CHECK(rejects(b, n, 0, -EINVAL));
	put32(b, HDR + 0, 0xfffffffeu); /* would wrap in 32 bits */
	CHECK(rejects(b, n, 0, -EINVAL));
}

PTEST(reject_hello)
{
	uint8_t b[BUF_MAX] = { 0 };
	struct vp_msg m;
	size_t n;

	n = encode_valid(b, VP_PCI_HELLO, 0, &m, NULL);
	put32(b, HDR + 0, 0x49435057u);
	CHECK(rejects(b, n, 0, -EINVAL));
	CHECK(strstr(last_warn, "magic"));

	n = encode_valid(b, VP_PCI_HELLO, VP_MSG_REPLY, &m, NULL);
	put16(b, HDR + 4, VP_PCI_VERSION_MAJOR + 1);
	CHECK(rejects(b, n, 0, -EINVAL));
	put16(b, HDR + 4, 0);
	CHECK(rejects(b, n, 0, -EINVAL));

	n = encode_valid(b, VP_PCI_HELLO, 0, &m, NULL);
	put16(b, HDR + 6, 77);        /* any minor is fine */
	CHECK(accepts(b, n, 0));
	put64(b, HDR + 8, 1);
	CHECK(rejects(b, n, 0, -EINVAL));
}

PTEST(reject_error_msg)
{
	uint8_t b[BUF_MAX] = { 0 };
	struct vp_msg m;
	size_t n;

	n = encode_valid(b, VP_PCI_ERROR, 0, &m, NULL);
	memset(b + HDR + 8, 'x', VP_PCI_REASON_MAX);
	CHECK(rejects(b, n, 0, -EINVAL));
	CHECK(strstr(last_warn, "NUL"));
	b[HDR + 8 + VP_PCI_REASON_MAX - 1] = 0;  /* terminated in the last byte */
	CHECK(accepts(b, n, 0));

	n = encode_valid(b, VP_PCI_ERROR, 0, &m, NULL);
	put32(b, HDR + 0, 0);
	CHECK(rejects(b, n, 0, -EINVAL));
	put32(b, HDR + 0, 5);
	CHECK(rejects(b, n, 0, -EINVAL));
	put32(b, HDR + 0, (uint32_t)-EIO);
	CHECK(accepts(b, n, 0));
	put32(b, HDR + 4, 1);         /* reserved */
	CHECK(rejects(b, n, 0, -EINVAL));
}

PTEST(reject_stop_reason)
{
	uint8_t b[BUF_MAX] = { 0 };
	uint64_t v;

	v = VP_PCI_STOP_RESET;
	CHECK(accepts(b, raw(b, VP_PCI_STOP, 1, &v, 8), 0));
	v = VP_PCI_STOP_SHUTDOWN;
	CHECK(accepts(b, raw(b, VP_PCI_STOP, 1, &v, 8), 0));
	v = 2;
	CHECK(rejects(b, raw(b, VP_PCI_STOP, 1, &v, 8), 0, -EINVAL));
	v = 1ull << 32;
	CHECK(rejects(b, raw(b, VP_PCI_STOP, 1, &v, 8), 0, -EINVAL));
	/* The ack of a STOP is a plain REPLY_ACK. */
	v = 2;
	CHECK(accepts(b, raw(b, VP_PCI_STOP, 5, &v, 8), 0));
}

#define DI(field) (HDR + offsetof(struct vp_pci_devinfo, field))

PTEST(reject_devinfo)
{
	const uint32_t reply = VP_MSG_REPLY;
	uint8_t b[BUF_MAX] = { 0 };
	struct vp_msg m;
	size_t n;

	n = encode_valid(b, VP_PCI_GET_DEVICE_INFO, reply, &m, NULL);
	CHECK(accepts(b, n, 4));
	put16(b, DI(rings[1].size), 3);
	CHECK(rejects(b, n, 4, -EINVAL));
	CHECK(strstr(last_warn, "power of two"));
	put16(b, DI(rings[1].size), 0);
	CHECK(rejects(b, n, 4, -EINVAL));
	put16(b, DI(rings[1].size), 0xffff);
	CHECK(rejects(b, n, 4, -EINVAL));
	put16(b, DI(rings[1].size), 1);
	CHECK(accepts(b, n, 4));

	n = encode_valid(b, VP_PCI_GET_DEVICE_INFO, reply, &m, NULL);
	put32(b, DI(rings[1].index), 0);      /* same as ring 0 */
	CHECK(rejects(b, n, 4, -EINVAL));
	CHECK(strstr(last_warn, "repeated"));
	put32(b, DI(rings[1].index), 256);
	CHECK(rejects(b, n, 4, -EINVAL));
	put32(b, DI(rings[1].index), 255);
	CHECK(accepts(b, n, 4));

	n = encode_valid(b, VP_PCI_GET_DEVICE_INFO, reply, &m, NULL);
	put32(b, DI(rings[0].flags), VP_PCI_RING_KICKFD | VP_PCI_RING_CALLFD | 8);
	CHECK(rejects(b, n, 4, -EINVAL));
	n = encode_valid(b, VP_PCI_GET_DEVICE_INFO, reply, &m, NULL);
	put32(b, DI(rings[0].reserved), 1);
	CHECK(rejects(b, n, 4, -EINVAL));
	n = encode_valid(b, VP_PCI_GET_DEVICE_INFO, reply, &m, NULL);
	put16(b, DI(config_len), VP_PCI_CONFIG_MAX + 1);
	CHECK(rejects(b, n, 4, -EINVAL));
	put16(b, DI(config_len), VP_PCI_CONFIG_MAX);
	CHECK(accepts(b, n, 4));

	/* nrings out of range */
	n = encode_valid(b, VP_PCI_GET_DEVICE_INFO, reply, &m, NULL);
	put16(b, DI(nrings), 0);
	put32(b, 8, 72);
	CHECK(rejects(b, HDR + 72, 0, -EINVAL));
	put16(b, DI(nrings), 5);
	put32(b, 8, 72 + 40 * 5);
	CHECK(rejects(b, HDR + 72 + 40 * 5, 4, -EINVAL));

	/* fd count follows the KICKFD/CALLFD flags. */
	n = encode_valid(b, VP_PCI_GET_DEVICE_INFO, reply, &m, NULL);
	CHECK(rejects(b, n, 3, -EBADF));
	CHECK(rejects(b, n, 5, -EBADF));
	CHECK(rejects(b, n, 0, -EBADF));
	put32(b, DI(rings[1].flags), VP_PCI_RING_ENABLED | VP_PCI_RING_CALLFD);
	CHECK(accepts(b, n, 3));
	CHECK(rejects(b, n, 4, -EBADF));
}

#define MI(field) (HDR + offsetof(struct vp_pci_meminfo, field))

PTEST(reject_meminfo)
{
	const uint32_t reply = VP_MSG_REPLY;
	static const uint32_t bad_prot[] = { 0, VP_MEM_WRITE, 4, 5, 7, 0xffffffffu };
	uint8_t b[BUF_MAX] = { 0 };
	struct vp_msg m;
	size_t n;

	for (size_t i = 0; i < sizeof(bad_prot) / sizeof(bad_prot[0]); i++) {
		n = encode_valid(b, VP_PCI_GET_MEMORY_INFO, reply, &m, NULL);
		put32(b, MI(regions[1].prot), bad_prot[i]);
		CHECK(rejects(b, n, 2, -EINVAL));
	}
	CHECK(strstr(last_warn, "prot"));

	n = encode_valid(b, VP_PCI_GET_MEMORY_INFO, reply, &m, NULL);
	put64(b, MI(regions[0].gpa), 0xfffffffffffff000ull);
	put64(b, MI(regions[0].size), 0x2000);   /* wraps */
	CHECK(rejects(b, n, 2, -EINVAL));
	CHECK(strstr(last_warn, "wraps"));
	put64(b, MI(regions[0].size), 0x1000);   /* ends at the very top: fine */
	CHECK(accepts(b, n, 2));

	n = encode_valid(b, VP_PCI_GET_MEMORY_INFO, reply, &m, NULL);
	put64(b, MI(regions[1].uaddr), ~0ull);
	CHECK(rejects(b, n, 2, -EINVAL));
	n = encode_valid(b, VP_PCI_GET_MEMORY_INFO, reply, &m, NULL);
	put64(b, MI(regions[1].size), 0);
	CHECK(rejects(b, n, 2, -EINVAL));
	n = encode_valid(b, VP_PCI_GET_MEMORY_INFO, reply, &m, NULL);
	put32(b, MI(regions[0].reserved), 1);
	CHECK(rejects(b, n, 2, -EINVAL));
	n = encode_valid(b, VP_PCI_GET_MEMORY_INFO, reply, &m, NULL);
	put32(b, MI(padding), 1);
	CHECK(rejects(b, n, 2, -EINVAL));

	n = encode_valid(b, VP_PCI_GET_MEMORY_INFO, reply, &m, NULL);
	CHECK(rejects(b, n, 1, -EBADF));
	CHECK(rejects(b, n, 3, -EBADF));
	put32(b, MI(nregions), 9);
	put32(b, 8, 8 + 40 * 9);
	CHECK(rejects(b, HDR + 8 + 40 * 9, 8, -EINVAL));
	put32(b, MI(nregions), 0);
	put32(b, 8, 8);
	CHECK(rejects(b, HDR + 8, 0, -EINVAL));
}

/* --- encode ------------------------------------------------------------ */

PTEST(encode_rejections)
{
	uint8_t b[BUF_MAX] = { 0 };
	struct vp_msg m;
	int fd = eventfd(0, EFD_CLOEXEC);
	int n;

	REQUIRE(fd >= 0);
	vp_msg_init(&m, 22, 0);
	CHECK_EQ(vp_msg_encode(&m, b, sizeof(b)), -EOPNOTSUPP);
	CHECK_EQ(vp_msg_encode(NULL, b, sizeof(b)), -EINVAL);

	fill(&m, VP_VU_SET_FEATURES, 0);
	m.flags = 0;                                  /* no version */
	CHECK_EQ(vp_msg_encode(&m, b, sizeof(b)), -EINVAL);
	m.flags = 1 | VP_MSG_REPLY | VP_MSG_NEED_REPLY;
	CHECK_EQ(vp_msg_encode(&m, b, sizeof(b)), -EINVAL);
	m.flags = 1 | 0x10;
	CHECK_EQ(vp_msg_encode(&m, b, sizeof(b)), -EINVAL);
	m.flags = 1;
	m.nfds = 1;
	m.fds[0] = fd;
	CHECK_EQ(vp_msg_encode(&m, b, sizeof(b)), -EBADF);
	CHECK(!fd_closed(fd));                        /* encode never closes */

	fill(&m, VP_VU_SET_MEM_TABLE, 0);
	m.nfds = 2;
	m.fds[0] = m.fds[1] = fd;
	CHECK_EQ(vp_msg_encode(&m, b, sizeof(b)), HDR + 8 + 64);
	CHECK_EQ(vp_msg_encode(&m, b, HDR + 8 + 63), -ENOSPC);
	CHECK_EQ(vp_msg_encode(&m, NULL, 0), -ENOSPC);
	m.fds[1] = -1;
	CHECK_EQ(vp_msg_encode(&m, b, sizeof(b)), -EBADF);
	m.fds[1] = fd;
	m.nfds = 3;
	CHECK_EQ(vp_msg_encode(&m, b, sizeof(b)), -EBADF);
	m.nfds = VP_MSG_MAX_FDS + 1;
	CHECK_EQ(vp_msg_encode(&m, b, sizeof(b)), -EBADF);
	m.nfds = 2;
	m.p.mem.nregions = 0;
	CHECK_EQ(vp_msg_encode(&m, b, sizeof(b)), -EINVAL);
	m.p.mem.nregions = 9;
	CHECK_EQ(vp_msg_encode(&m, b, sizeof(b)), -EINVAL);

	fill(&m, VP_PCI_GET_DEVICE_INFO, VP_MSG_REPLY);
	m.nfds = 4;
	m.fds[0] = m.fds[1] = m.fds[2] = m.fds[3] = fd;
	CHECK_EQ(vp_msg_encode(&m, b, sizeof(b)), HDR + 72 + 80);
	m.p.devinfo.rings[0].size = 100;
	CHECK_EQ(vp_msg_encode(&m, b, sizeof(b)), -EINVAL);

	fill(&m, VP_PCI_ERROR, 0);
	m.p.error.code = 1;
	CHECK_EQ(vp_msg_encode(&m, b, sizeof(b)), -EINVAL);

	/* The size field of msg is an output of decode, not an input here. */
	fill(&m, VP_VU_GET_FEATURES, VP_MSG_REPLY);
	m.size = 1000;
	n = vp_msg_encode(&m, b, sizeof(b));
	CHECK_EQ(n, HDR + 8);
	CHECK(!fd_closed(fd));
	close(fd);
}

PTEST(init_and_close_fds)
{
	struct vp_msg m;
	int fds[2];

	vp_msg_init(&m, VP_VU_GET_FEATURES, VP_MSG_NEED_REPLY);
	CHECK_EQ(m.request, VP_VU_GET_FEATURES);
	CHECK_EQ(m.flags, VP_MSG_VERSION | VP_MSG_NEED_REPLY);
	CHECK_EQ(m.nfds, 0);
	CHECK_EQ(m.p.u64, 0);
	vp_msg_init(&m, VP_VU_GET_FEATURES, VP_MSG_REPLY | VP_MSG_VERSION);
	CHECK_EQ(m.flags, VP_MSG_VERSION | VP_MSG_REPLY);

	REQUIRE(new_fds(fds, 2));
	m.nfds = 2;
	memcpy(m.fds, fds, sizeof(fds));
	vp_msg_close_fds(&m);
	CHECK_EQ(m.nfds, 0);
	CHECK(all_closed(fds, 2));
	vp_msg_close_fds(&m);       /* idempotent */
	vp_msg_close_fds(NULL);
	vp_msg_init(NULL, 1, 0);
}

/* Registered last: the whole suite leaked nothing. */
TEST(zz_no_fd_leak_in_suite)
{
	CHECK_EQ(tu_count_fds(), fd_baseline);
}
