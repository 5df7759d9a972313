/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Writes the seed corpus of fuzz_proto: one valid message per request and
 * per reply form, produced by the encoder itself, plus a few variants that
 * reach other branches (no-fd vring, full tables). Each file is
 * fuzz_proto's input format: one byte with the fd count, then the message.
 *
 *   cc -Iinclude lib/log.c lib/proto.c tests/fuzz/gen_proto_seeds.c \
 *       -o /tmp/gen_proto_seeds && /tmp/gen_proto_seeds tests/fuzz/corpus/proto
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "vhostpci/mem.h"
#include "vhostpci/proto.h"

static const uint32_t requests[] = {
	1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20,
	21, 24, 25, 34, 36, 37, 38, 39, 40,
	0x101, 0x102, 0x103, 0x104, 0x105, 0x106, 0x107, 0x108, 0x109,
};

static const char *dir;
static int written;

/* The fd count a valid message of this shape carries. */
static unsigned fds_for(const struct vp_msg *m)
{
	unsigned n = 0;

	if (m->flags & VP_MSG_REPLY) {
		if (m->request == VP_PCI_GET_MEMORY_INFO)
			return m->p.meminfo.nregions;
		if (m->request == VP_PCI_GET_DEVICE_INFO)
			for (unsigned i = 0; i < m->p.devinfo.nrings; i++)
				n += !!(m->p.devinfo.rings[i].flags & VP_PCI_RING_KICKFD) +
				     !!(m->p.devinfo.rings[i].flags & VP_PCI_RING_CALLFD);
		return n;
	}
	switch (m->request) {
	case VP_VU_SET_MEM_TABLE:
		return m->p.mem.nregions;
	case VP_VU_SET_LOG_BASE: case VP_VU_SET_LOG_FD:
	case VP_VU_SET_BACKEND_REQ_FD: case VP_VU_ADD_MEM_REG:
	case VP_VU_REM_MEM_REG:
		return 1;
	case VP_VU_SET_VRING_KICK: case VP_VU_SET_VRING_CALL:
	case VP_VU_SET_VRING_ERR:
		return (m->p.u64 & VP_VU_VRING_NOFD) ? 0 : 1;
	default:
		return 0;
	}
}

static void fill(struct vp_msg *m, uint32_t req, uint32_t flags)
{
	const struct vp_msg_spec *s = vp_msg_spec(req);
	enum vp_payload kind = s->req;

	if (flags & VP_MSG_REPLY)
		kind = s->reply == VP_PL_NONE ? VP_PL_U64 : s->reply;
	vp_msg_init(m, req, flags);
	switch (kind) {
	case VP_PL_U64:
		m->p.u64 = req == VP_PCI_STOP ? VP_PCI_STOP_RESET :
			   (flags & VP_MSG_REPLY) ? 0x140000000ull : 1;
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
			0xff40000, 0x7f00000c0000, 0xc0000 };
		break;
	case VP_PL_LOG:
		m->p.log = (struct vp_log_base){ 0x2000, 0 };
		break;
	case VP_PL_CONFIG:
		m->p.config.size = 6;
		memcpy(m->p.config.region, "\x52\x54\x00\x12\x34\x56", 6);
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
		memcpy(m->p.uuid, "\x6b\x8f\x2a\x10\x51\x3c\x4e\x0d"
				  "\x9a\x77\x01\xe2\x5c\x48\x93\xaf", 16);
		break;
	case VP_PL_MEMINFO:
		m->p.meminfo.nregions = 2;
		m->p.meminfo.regions[0] = (struct vp_pci_region){ 0, 0xa0000,
			0x7f0000000000, 0, VP_MEM_RW, 0 };
		m->p.meminfo.regions[1] = (struct vp_pci_region){ 0x100000,
			0x1000000, 0x7f0000100000, 0x100000, VP_MEM_READ, 0 };
		break;
	case VP_PL_DEVINFO: {
		const uint32_t f = VP_PCI_RING_ENABLED | VP_PCI_RING_KICKFD |
				   VP_PCI_RING_CALLFD;

		m->p.devinfo.device_type = 1;
		m->p.devinfo.nrings = 2;
		m->p.devinfo.config_len = 6;
		memcpy(m->p.devinfo.config, "\x52\x54\x00\x12\x34\x56", 6);
		m->p.devinfo.rings[0] = (struct vp_pci_ring){ 0, 256, 0,
			0x10000, 0x11000, 0x12000, f, 0 };
		m->p.devinfo.rings[1] = (struct vp_pci_ring){ 1, 256, 0,
			0x20000, 0x21000, 0x22000, f, 0 };
		break;
	}
	case VP_PL_FEATURES:
		m->p.features = (struct vp_pci_features){ 0x140000000ull,
							  0x100000000ull };
		break;
	case VP_PL_ERROR:
		m->p.error.code = -EPROTO;
		snprintf(m->p.error.reason, sizeof(m->p.error.reason),
			 "unexpected message");
		break;
	default:
		break;
	}
}

static int emit_fds(struct vp_msg *m, const char *suffix, unsigned nfds)
{
	uint8_t buf[1 + VP_MSG_HDR_SIZE + VP_MSG_MAX_PAYLOAD];
	char path[512], name[64];
	const char *s = vp_msg_name(m->request);
	size_t i;
	FILE *f;
	int n;

	m->nfds = nfds;
	for (unsigned k = 0; k < m->nfds; k++)
		m->fds[k] = 100 + (int)k; /* never touched by encode */
	n = vp_msg_encode(m, buf + 1, sizeof(buf) - 1);
	if (n < 0) {
		fprintf(stderr, "encode %s_%s: %d\n", s, suffix, n);
		return -1;
	}
	buf[0] = (uint8_t)m->nfds;
	for (i = 0; s[i] && i < sizeof(name) - 1; i++)
		name[i] = (char)tolower((unsigned char)s[i]);
	name[i] = 0;
	snprintf(path, sizeof(path), "%s/%s_%s", dir, name, suffix);
	f = fopen(path, "wb");
	if (!f || fwrite(buf, 1, (size_t)n + 1, f) != (size_t)n + 1) {
		perror(path);
		if (f)
			fclose(f);
		return -1;
	}
	fclose(f);
	written++;
	return 0;
}

static int emit(struct vp_msg *m, const char *suffix)
{
	return emit_fds(m, suffix, fds_for(m));
}

int main(int argc, char **argv)
{
	struct vp_msg m;
	int err = 0;

	if (argc != 2) {
		fprintf(stderr, "usage: %s DIR\n", argv[0]);
		return 2;
	}
	dir = argv[1];
	for (size_t i = 0; i < sizeof(requests) / sizeof(requests[0]); i++) {
		const struct vp_msg_spec *s = vp_msg_spec(requests[i]);

		fill(&m, requests[i], s->has_reply ? VP_MSG_NEED_REPLY : 0);
		err |= emit(&m, "req");
		if (s->reply != VP_PL_NONE) {
			fill(&m, requests[i], VP_MSG_REPLY);
			err |= emit(&m, "reply");
		}
	}

	/* A REPLY_ACK, and variants that reach other branches. */
	fill(&m, VP_VU_SET_MEM_TABLE, VP_MSG_REPLY);
	m.p.u64 = 0;
	err |= emit(&m, "ack");
	fill(&m, VP_VU_SET_VRING_CALL, 0);
	m.p.u64 = 1 | VP_VU_VRING_NOFD;
	err |= emit(&m, "nofd");
	fill(&m, VP_VU_SET_MEM_TABLE, VP_MSG_NEED_REPLY);
	m.p.mem.nregions = 8;
	for (unsigned i = 0; i < 8; i++)
		m.p.mem.regions[i] = (struct vp_mem_region_wire){
			i * 0x1000000ull, 0x1000000, 0x7f0000000000 + i * 0x1000000ull,
			i * 0x1000000ull };
	err |= emit(&m, "8regions");
	fill(&m, VP_PCI_GET_DEVICE_INFO, VP_MSG_REPLY);
	m.p.devinfo.nrings = 4;
	for (unsigned i = 2; i < 4; i++)
		m.p.devinfo.rings[i] = (struct vp_pci_ring){ i, 1024, 7,
			0x30000 + i * 0x10000, 0x34000 + i * 0x10000,
			0x38000 + i * 0x10000, VP_PCI_RING_KICKFD, 0 };
	err |= emit(&m, "4rings");
	/* Longest reason: one byte flip away from an unterminated one. */
	fill(&m, VP_PCI_ERROR, 0);
	memset(m.p.error.reason, 'r', VP_PCI_REASON_MAX - 1);
	err |= emit(&m, "longreason");
	fill(&m, VP_VU_REM_MEM_REG, 0);
	err |= emit_fds(&m, "nofd", 0);   /* rust-vmm sends no fd */

	printf("wrote %d seeds to %s\n", written, dir);
	return err ? 1 : 0;
}
