/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Writes the seed corpus of fuzz_session: whole sessions of both dialects,
 * produced by the encoder, so the fuzzer starts from READY devices and
 * mutates from there. vhost-user in QEMU's order (init: GET_FEATURES,
 * protocol features, SET_OWNER, call fds; device start:
 * SET_FEATURES, SET_MEM_TABLE with a memfd, SET_VRING_* per ring, ENABLE),
 * then stops and resets; native HELLO ... START, STOP, again, shutdown.
 *
 *   ninja -C /tmp/fz tests/fuzz/gen-session-seeds
 *   /tmp/fz/tests/fuzz/gen-session-seeds tests/fuzz/corpus/session
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "fuzz_session.h"
#include "vhostpci/mem.h"
#include "seeds.h"
#include "vhostpci/proto.h"

#define UVA 0x7f0000000000ull  /* where the frontend "mapped" its memory */
#define RING_NUM 256
#define F_VERSION_1 (1ull << 32)
#define F_PROTOCOL (1ull << 30)
#define F_MRG_RXBUF (1ull << 15)

/* Ring i in FS_MEM_SIZE bytes: desc, avail, used. */
static const uint64_t ring_desc[2] = { 0x0000, 0x2000 };
static const uint64_t ring_avail[2] = { 0x1000, 0x3000 };
static const uint64_t ring_used[2] = { 0x1400, 0x3400 };

static void begin(struct seed *s, unsigned opts)
{
	s->buf[0] = (uint8_t)opts;
	s->len = 1;
}

/* Append m as one record; its fds are made by the harness, of this kind. */
static void add(struct seed *s, struct vp_msg *m, unsigned kind, unsigned ctl_extra)
{
	int fake[VP_MSG_MAX_FDS];
	int n;

	/* The encoder checks the fd count; the numbers themselves do not travel. */
	for (unsigned i = 0; i < m->nfds; i++)
		fake[i] = (int)i;
	memcpy(m->fds, fake, sizeof(int) * m->nfds);
	n = vp_msg_encode(m, s->buf + s->len + 3, sizeof(s->buf) - s->len - 3);
	if (n < 0) {
		fprintf(stderr, "encode %s: %s\n", vp_msg_name(m->request), strerror(-n));
		seed_failed = 1;
		return;
	}
	s->buf[s->len] = (uint8_t)((m->nfds ? FS_CTL(kind, m->nfds) : 0) | ctl_extra);
	s->buf[s->len + 1] = (uint8_t)n;
	s->buf[s->len + 2] = (uint8_t)(n >> 8);
	s->len += 3 + (size_t)n;
}

static void u64(struct seed *s, uint32_t req, uint32_t flags, uint64_t v)
{
	struct vp_msg m;

	vp_msg_init(&m, req, flags);
	m.p.u64 = v;
	add(s, &m, FS_FD_NONE, 0);
}

static void none(struct seed *s, uint32_t req)
{
	struct vp_msg m;

	vp_msg_init(&m, req, 0);
	add(s, &m, FS_FD_NONE, 0);
}

static void state(struct seed *s, uint32_t req, uint32_t idx, uint32_t num, unsigned ctl)
{
	struct vp_msg m;

	vp_msg_init(&m, req, 0);
	m.p.state.index = idx;
	m.p.state.num = num;
	add(s, &m, FS_FD_NONE, ctl);
}

static void vring_fd(struct seed *s, uint32_t req, uint32_t idx, unsigned kind)
{
	struct vp_msg m;

	vp_msg_init(&m, req, 0);
	m.p.u64 = idx;
	m.nfds = 1;
	add(s, &m, kind, 0);
}

/* QEMU's vhost-net init, up to where it waits for the guest driver. */
static void vu_init(struct seed *s, bool reply_ack)
{
	none(s, VP_VU_GET_FEATURES);
	none(s, VP_VU_GET_PROTOCOL_FEATURES);
	u64(s, VP_VU_SET_PROTOCOL_FEATURES, 0,
	    reply_ack ? 1ull << VP_VU_PROTOCOL_F_REPLY_ACK : 0);
	/* No GET_QUEUE_NUM: QEMU asks only with protocol feature MQ, which a
	 * one-pair server does not offer (and refuses the question without). */
	none(s, VP_VU_SET_OWNER);
	for (uint32_t i = 0; i < 2; i++)
		vring_fd(s, VP_VU_SET_VRING_CALL, i, FS_FD_EVENTFD);
}

/* DRIVER_OK: QEMU starts the device. */
static void vu_start(struct seed *s, unsigned mem_kind, unsigned kick_kind, bool reply_ack)
{
	uint32_t nr = reply_ack ? VP_MSG_NEED_REPLY : 0;
	struct vp_msg m;

	u64(s, VP_VU_SET_FEATURES, nr, F_VERSION_1 | F_PROTOCOL | F_MRG_RXBUF);
	vp_msg_init(&m, VP_VU_SET_MEM_TABLE, nr);
	m.p.mem.nregions = 1;
	m.p.mem.regions[0] = (struct vp_mem_region_wire){ 0, FS_MEM_SIZE, UVA, 0 };
	m.nfds = 1;
	add(s, &m, mem_kind, 0);
	for (uint32_t i = 0; i < 2; i++) {
		state(s, VP_VU_SET_VRING_NUM, i, RING_NUM, 0);
		state(s, VP_VU_SET_VRING_BASE, i, 0, 0);
		vp_msg_init(&m, VP_VU_SET_VRING_ADDR, 0);
		m.p.addr.index = i;
		m.p.addr.desc = UVA + ring_desc[i];
		m.p.addr.avail = UVA + ring_avail[i];
		m.p.addr.used = UVA + ring_used[i];
		add(s, &m, FS_FD_NONE, 0);
		vring_fd(s, VP_VU_SET_VRING_KICK, i, kick_kind);
		vring_fd(s, VP_VU_SET_VRING_CALL, i, FS_FD_EVENTFD);
	}
	for (uint32_t i = 0; i < 2; i++)
		state(s, VP_VU_SET_VRING_ENABLE, i, 1, 0);
}

static void vhost_user_seeds(void)
{
	struct seed s;

	begin(&s, 0);
	vu_init(&s, true);
	vu_start(&s, FS_FD_MEMFD, FS_FD_EVENTFD, true);
	write_seed(&s, "vu_qemu_start");

	/* Guest reboot with the backend holding the stop: the second
	 * GET_VRING_BASE waits for the release its record asks for. */
	begin(&s, FS_OPT_HOLD);
	vu_init(&s, true);
	vu_start(&s, FS_FD_MEMFD, FS_FD_EVENTFD, true);
	state(&s, VP_VU_GET_VRING_BASE, 0, 0, 0);
	state(&s, VP_VU_GET_VRING_BASE, 1, 0, FS_CTL_RELEASE);
	none(&s, VP_VU_RESET_OWNER);
	vu_start(&s, FS_FD_MEMFD, FS_FD_EVENTFD, false);
	none(&s, VP_VU_RESET_DEVICE);
	write_seed(&s, "vu_qemu_stop_held_restart");

	/* No REPLY_ACK, then memory replaced while READY. */
	begin(&s, 0);
	vu_init(&s, false);
	vu_start(&s, FS_FD_MEMFD, FS_FD_EVENTFD, false);
	vu_start(&s, FS_FD_MEMFD, FS_FD_EVENTFD, false);
	write_seed(&s, "vu_memory_replaced");

	/* Fds of the wrong kind: unsealed memory, a pipe as kick fd. */
	begin(&s, 0);
	vu_init(&s, true);
	vu_start(&s, FS_FD_MEMFD_UNSEALED, FS_FD_EVENTFD, true);
	write_seed(&s, "vu_unsealed_memory");
	begin(&s, FS_OPT_UNSEALED);
	vu_init(&s, true);
	vu_start(&s, FS_FD_MEMFD_UNSEALED, FS_FD_PIPE_READ, true);
	write_seed(&s, "vu_pipe_kick");

	/* Requests without a row, and fds the server drops. */
	begin(&s, 0);
	vu_init(&s, true);
	vring_fd(&s, VP_VU_SET_VRING_ERR, 0, FS_FD_EVENTFD);
	{
		struct vp_msg m;

		vp_msg_init(&m, VP_VU_SET_LOG_FD, VP_MSG_NEED_REPLY);
		m.nfds = 1;
		add(&s, &m, FS_FD_DEVNULL, 0);
	}
	u64(&s, VP_VU_SET_STATUS, VP_MSG_NEED_REPLY, 0xf);
	write_seed(&s, "vu_dropped_fds_unsupported");
}

static void hello(struct seed *s)
{
	struct vp_msg m;

	vp_msg_init(&m, VP_PCI_HELLO, 0);
	m.p.hello.magic = VP_PCI_MAGIC;
	m.p.hello.major = VP_PCI_VERSION_MAJOR;
	m.p.hello.minor = VP_PCI_VERSION_MINOR;
	add(s, &m, FS_FD_NONE, 0);
}

/* The frontend's side of a native handshake, HELLO to START. */
static void native_handshake(struct seed *s, unsigned mem_kind)
{
	struct vp_msg m;

	hello(s);
	vp_msg_init(&m, VP_PCI_GET_UUID, VP_MSG_REPLY);
	for (int i = 0; i < 16; i++)
		m.p.uuid[i] = (uint8_t)(0xa0 + i);
	add(s, &m, FS_FD_NONE, 0);

	vp_msg_init(&m, VP_PCI_GET_MEMORY_INFO, VP_MSG_REPLY);
	m.p.meminfo.nregions = 1;
	m.p.meminfo.regions[0] = (struct vp_pci_region){ 0, FS_MEM_SIZE, UVA, 0, VP_MEM_RW, 0 };
	m.nfds = 1;
	add(s, &m, mem_kind, 0);

	vp_msg_init(&m, VP_PCI_GET_DEVICE_INFO, VP_MSG_REPLY);
	m.p.devinfo.device_type = 1;
	m.p.devinfo.nrings = 2;
	m.p.devinfo.config_len = 6;
	memcpy(m.p.devinfo.config, "\x52\x54\x00\x12\x34\x56", 6);
	for (uint32_t i = 0; i < 2; i++)
		m.p.devinfo.rings[i] = (struct vp_pci_ring){
			.index = i, .size = RING_NUM, .desc = ring_desc[i],
			.avail = ring_avail[i], .used = ring_used[i],
			.flags = VP_PCI_RING_ENABLED | VP_PCI_RING_KICKFD | VP_PCI_RING_CALLFD,
		};
	m.nfds = 4;
	add(s, &m, FS_FD_EVENTFD, 0);

	vp_msg_init(&m, VP_PCI_GET_FEATURE_BITS, VP_MSG_REPLY);
	m.p.features.device_features = F_VERSION_1 | F_MRG_RXBUF;
	m.p.features.driver_features = F_VERSION_1 | F_MRG_RXBUF;
	add(s, &m, FS_FD_NONE, 0);

	u64(s, VP_PCI_SET_FEATURE_BITS, VP_MSG_REPLY, 0);
}

static void native_seeds(void)
{
	struct seed s;

	begin(&s, 0);
	native_handshake(&s, FS_FD_MEMFD);
	write_seed(&s, "native_start");

	begin(&s, 0);
	native_handshake(&s, FS_FD_MEMFD);
	u64(&s, VP_PCI_STOP, VP_MSG_NEED_REPLY, VP_PCI_STOP_RESET);
	native_handshake(&s, FS_FD_MEMFD);
	u64(&s, VP_PCI_STOP, 0, VP_PCI_STOP_SHUTDOWN);
	write_seed(&s, "native_stop_restart_shutdown");

	begin(&s, 0);
	native_handshake(&s, FS_FD_MEMFD_UNSEALED);
	write_seed(&s, "native_unsealed_memory");

	/* Out of order: STOP mid-handshake, then HELLO where a reply belongs. */
	begin(&s, 0);
	hello(&s);
	u64(&s, VP_PCI_STOP, 0, VP_PCI_STOP_RESET);
	hello(&s);
	hello(&s);
	write_seed(&s, "native_out_of_order");

	begin(&s, FS_OPT_REFUSE);
	hello(&s);
	write_seed(&s, "native_refused");

	begin(&s, 0);
	native_handshake(&s, FS_FD_MEMFD);
	{
		struct vp_msg m;

		vp_msg_init(&m, VP_PCI_ERROR, 0);
		m.p.error.code = -EIO;
		snprintf(m.p.error.reason, sizeof(m.p.error.reason), "frontend gives up");
		add(&s, &m, FS_FD_NONE, 0);
	}
	write_seed(&s, "native_error");
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s DIR\n", argv[0]);
		return 2;
	}
	seed_dir = argv[1];
	vhost_user_seeds();
	native_seeds();
	return seed_failed;
}
