/* SPDX-License-Identifier: BSD-3-Clause */
/* Bit numbers from the VIRTIO 1.2 specification and the vhost-user spec. */
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <linux/virtio_config.h>
#include <linux/virtio_ids.h>
#include <linux/virtio_net.h>
#include <linux/virtio_ring.h>

#include "names.h"

/* U(): bits the kernel's UAPI headers define (the number comes from there);
 * N(): bits newer than Debian 12's headers (6.1), numbered from the spec. */
#define U(sym, name) [sym] = name
#define N(bit, name) [bit] = name

/* Transport and ring bits, 24..41 (and the vhost-user bit 30). */
static const char *const common_names[64] = {
	U(VIRTIO_F_NOTIFY_ON_EMPTY, "NOTIFY_ON_EMPTY"),
	U(VIRTIO_F_ANY_LAYOUT, "ANY_LAYOUT"),
	U(VIRTIO_RING_F_INDIRECT_DESC, "INDIRECT_DESC"),
	U(VIRTIO_RING_F_EVENT_IDX, "EVENT_IDX"),
	N(30, "PROTOCOL_FEATURES"),   /* VHOST_USER_F_PROTOCOL_FEATURES */
	U(VIRTIO_F_VERSION_1, "VERSION_1"),
	U(VIRTIO_F_ACCESS_PLATFORM, "ACCESS_PLATFORM"),
	U(VIRTIO_F_RING_PACKED, "RING_PACKED"),
	U(VIRTIO_F_IN_ORDER, "IN_ORDER"),
	U(VIRTIO_F_ORDER_PLATFORM, "ORDER_PLATFORM"),
	U(VIRTIO_F_SR_IOV, "SR_IOV"),
	N(38, "NOTIFICATION_DATA"),
	N(39, "NOTIF_CONFIG_DATA"),
	U(VIRTIO_F_RING_RESET, "RING_RESET"),
	N(41, "ADMIN_VQ"),
};

static const char *const net_names[64] = {
	U(VIRTIO_NET_F_CSUM, "CSUM"),
	U(VIRTIO_NET_F_GUEST_CSUM, "GUEST_CSUM"),
	U(VIRTIO_NET_F_CTRL_GUEST_OFFLOADS, "CTRL_GUEST_OFFLOADS"),
	U(VIRTIO_NET_F_MTU, "MTU"),
	U(VIRTIO_NET_F_MAC, "MAC"),
	U(VIRTIO_NET_F_GSO, "GSO"),
	U(VIRTIO_NET_F_GUEST_TSO4, "GUEST_TSO4"),
	U(VIRTIO_NET_F_GUEST_TSO6, "GUEST_TSO6"),
	U(VIRTIO_NET_F_GUEST_ECN, "GUEST_ECN"),
	U(VIRTIO_NET_F_GUEST_UFO, "GUEST_UFO"),
	U(VIRTIO_NET_F_HOST_TSO4, "HOST_TSO4"),
	U(VIRTIO_NET_F_HOST_TSO6, "HOST_TSO6"),
	U(VIRTIO_NET_F_HOST_ECN, "HOST_ECN"),
	U(VIRTIO_NET_F_HOST_UFO, "HOST_UFO"),
	U(VIRTIO_NET_F_MRG_RXBUF, "MRG_RXBUF"),
	U(VIRTIO_NET_F_STATUS, "STATUS"),
	U(VIRTIO_NET_F_CTRL_VQ, "CTRL_VQ"),
	U(VIRTIO_NET_F_CTRL_RX, "CTRL_RX"),
	U(VIRTIO_NET_F_CTRL_VLAN, "CTRL_VLAN"),
	U(VIRTIO_NET_F_CTRL_RX_EXTRA, "CTRL_RX_EXTRA"),
	U(VIRTIO_NET_F_GUEST_ANNOUNCE, "GUEST_ANNOUNCE"),
	U(VIRTIO_NET_F_MQ, "MQ"),
	U(VIRTIO_NET_F_CTRL_MAC_ADDR, "CTRL_MAC_ADDR"),
	N(52, "VQ_NOTF_COAL"),
	U(VIRTIO_NET_F_NOTF_COAL, "NOTF_COAL"),
	N(54, "GUEST_USO4"),
	N(55, "GUEST_USO6"),
	N(56, "HOST_USO"),
	U(VIRTIO_NET_F_HASH_REPORT, "HASH_REPORT"),
	N(59, "GUEST_HDRLEN"),
	U(VIRTIO_NET_F_RSS, "RSS"),
	U(VIRTIO_NET_F_RSC_EXT, "RSC_EXT"),
	U(VIRTIO_NET_F_STANDBY, "STANDBY"),
	U(VIRTIO_NET_F_SPEED_DUPLEX, "SPEED_DUPLEX"),
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
#undef U


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
