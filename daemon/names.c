/* SPDX-License-Identifier: BSD-3-Clause */
/* Bit numbers from the VIRTIO 1.2 specification and the vhost-user spec. */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "names.h"

#define N(bit, name) [bit] = name

/* Transport and ring bits, 24..41 (and the vhost-user bit 30). */
static const char *const common_names[64] = {
	N(24, "NOTIFY_ON_EMPTY"),
	N(27, "ANY_LAYOUT"),
	N(28, "INDIRECT_DESC"),
	N(29, "EVENT_IDX"),
	N(30, "PROTOCOL_FEATURES"),   /* VHOST_USER_F_PROTOCOL_FEATURES */
	N(32, "VERSION_1"),
	N(33, "ACCESS_PLATFORM"),
	N(34, "RING_PACKED"),
	N(35, "IN_ORDER"),
	N(36, "ORDER_PLATFORM"),
	N(37, "SR_IOV"),
	N(38, "NOTIFICATION_DATA"),
	N(39, "NOTIF_CONFIG_DATA"),
	N(40, "RING_RESET"),
	N(41, "ADMIN_VQ"),
};

static const char *const net_names[64] = {
	N(0, "CSUM"),
	N(1, "GUEST_CSUM"),
	N(2, "CTRL_GUEST_OFFLOADS"),
	N(3, "MTU"),
	N(5, "MAC"),
	N(6, "GSO"),
	N(7, "GUEST_TSO4"),
	N(8, "GUEST_TSO6"),
	N(9, "GUEST_ECN"),
	N(10, "GUEST_UFO"),
	N(11, "HOST_TSO4"),
	N(12, "HOST_TSO6"),
	N(13, "HOST_ECN"),
	N(14, "HOST_UFO"),
	N(15, "MRG_RXBUF"),
	N(16, "STATUS"),
	N(17, "CTRL_VQ"),
	N(18, "CTRL_RX"),
	N(19, "CTRL_VLAN"),
	N(20, "CTRL_RX_EXTRA"),
	N(21, "GUEST_ANNOUNCE"),
	N(22, "MQ"),
	N(23, "CTRL_MAC_ADDR"),
	N(52, "VQ_NOTF_COAL"),
	N(53, "NOTF_COAL"),
	N(54, "GUEST_USO4"),
	N(55, "GUEST_USO6"),
	N(56, "HOST_USO"),
	N(57, "HASH_REPORT"),
	N(59, "GUEST_HDRLEN"),
	N(60, "RSS"),
	N(61, "RSC_EXT"),
	N(62, "STANDBY"),
	N(63, "SPEED_DUPLEX"),
};

static const char *const protocol_names[64] = {
	N(0, "MQ"),
	N(1, "LOG_SHMFD"),
	N(2, "RARP"),
	N(3, "REPLY_ACK"),
	N(4, "NET_MTU"),
	N(5, "BACKEND_REQ"),
	N(6, "CROSS_ENDIAN"),
	N(7, "CRYPTO_SESSION"),
	N(8, "PAGEFAULT"),
	N(9, "CONFIG"),
	N(10, "BACKEND_SEND_FD"),
	N(11, "HOST_NOTIFIER"),
	N(12, "INFLIGHT_SHMFD"),
	N(13, "RESET_DEVICE"),
	N(14, "INBAND_NOTIFICATIONS"),
	N(15, "CONFIGURE_MEM_SLOTS"),
	N(16, "STATUS"),
	N(17, "XEN_MMAP"),
	N(18, "SHARED_OBJECT"),
	N(19, "DEVICE_STATE"),
};

#undef N

#define VIRTIO_ID_NET 1

const char *vpd_feature_name(uint32_t device_type, unsigned bit)
{
	if (bit >= 64)
		return NULL;
	/* Bits 0-23 and 50-63 belong to the device type. */
	if (bit < 24 || bit >= 50)
		return device_type == VIRTIO_ID_NET ? net_names[bit] : NULL;
	return common_names[bit];
}

const char *vpd_protocol_feature_name(unsigned bit)
{
	return bit < 64 ? protocol_names[bit] : NULL;
}

const char *vpd_virtio_type_name(uint32_t t)
{
	switch (t) {
	case 1: return "net";
	case 2: return "block";
	case 3: return "console";
	case 4: return "rng";
	case 5: return "balloon";
	case 8: return "scsi";
	case 9: return "9p";
	case 16: return "gpu";
	case 18: return "input";
	case 19: return "vsock";
	case 20: return "crypto";
	case 26: return "fs";
	default: return "unknown";
	}
}

void vpd_desc_flags(uint16_t flags, char *buf, unsigned len)
{
	static const char *const n[] = { "NEXT", "WRITE", "INDIRECT" };
	unsigned used = 0;

	if (!len)
		return;
	buf[0] = 0;
	for (unsigned i = 0; i < 16; i++) {
		char one[16];
		int w;

		if (!(flags & (1u << i)))
			continue;
		if (i < 3)
			snprintf(one, sizeof(one), "%s", n[i]);
		else
			snprintf(one, sizeof(one), "0x%x", 1u << i);
		w = snprintf(buf + used, len - used, "%s%s", used ? "|" : "", one);
		if (w < 0 || (unsigned)w >= len - used)
			return;
		used += (unsigned)w;
	}
}
