/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The vhost-pci device's info window (docs/device.md, device ABI 1): the wire
 * layout only, shared by vhost-pcid, the guest userspace backend and a guest
 * kernel driver.
 *
 * Byte order: every multi-byte field is little-endian (__le16/__le32/__le64),
 * whatever the CPU. Code that reads or writes a field converts it
 * (le32_to_cpu() in a kernel, le32toh() in userspace); lib/devinfo.c does
 * this for the library.
 *
 * This header holds types and constants and nothing else: no functions, no
 * libc. It builds in C11, C++ (extern "C", static_assert) and the kernel
 * (<linux/types.h> is the UAPI one in userspace, the kernel's own in a module).
 * The offsets and sizes below are the ABI: each is pinned by a static assert
 * against the table in docs/device.md section 4.
 */
#ifndef VHOSTPCI_DEVICE_H
#define VHOSTPCI_DEVICE_H

#include <linux/types.h>
#include <linux/virtio_config.h>
#ifdef __KERNEL__
#include <linux/stddef.h>
#else
#include <stddef.h>
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ---- constants ---------------------------------------------------------- */

#define VP_INFO_MAGIC        0x49435054534f4856ull /* the bytes "VHOSTPCI" */
#define VP_INFO_ABI_VERSION  1u
#define VP_INFO_WINDOW_SIZE  8192u    /* BAR2 of the info function */
#define VP_INFO_PAGE_SIZE    4096u    /* the driver page starts here */
#define VP_INFO_DRIVER_OFFSET VP_INFO_PAGE_SIZE
#define VP_INFO_MAX_REGIONS  8u
#define VP_INFO_MAX_QUEUES   8u
#define VP_INFO_CONFIG_MAX   64u
#define VP_INFO_MAX_RING     32768u   /* largest split ring (a power of two) */
#define VP_INFO_REASON_LEN   124u     /* daemon page reason, NUL included */
#define VP_INFO_DRV_REASON_LEN 128u   /* driver page reason, NUL included */

/* status (daemon page) */
#define VP_INFO_ST_PRESENT   0x1u     /* a frontend is connected */
#define VP_INFO_ST_READY     0x2u     /* rings valid: the frontend's driver runs */
#define VP_INFO_ST_STOP      0x4u     /* stop the rings and report `stopped` */
#define VP_INFO_ST_GONE      0x8u     /* the frontend left; unplug follows */
#define VP_INFO_ST_ALL       0xfu

/* queue flags */
#define VP_INFO_Q_ENABLED    0x1u
#define VP_INFO_Q_STARTED    0x2u
#define VP_INFO_Q_ALL        0x3u

/* driver_status (driver page): the virtio status bits, from the UAPI header */
#define VP_INFO_DS_ACKNOWLEDGE VIRTIO_CONFIG_S_ACKNOWLEDGE
#define VP_INFO_DS_DRIVER      VIRTIO_CONFIG_S_DRIVER
#define VP_INFO_DS_DRIVER_OK   VIRTIO_CONFIG_S_DRIVER_OK
#define VP_INFO_DS_FAILED      VIRTIO_CONFIG_S_FAILED
#define VP_INFO_DS_ALL (VP_INFO_DS_ACKNOWLEDGE | VP_INFO_DS_DRIVER | VP_INFO_DS_DRIVER_OK | \
			VP_INFO_DS_FAILED)

/* stopped[q] (driver page): bits 0-15 the next avail index, bit 31 valid */
#define VP_INFO_STOPPED_IDX_MASK 0xffffu
#define VP_INFO_STOPPED_VALID    0x80000000u

/* Memory function vectors (MSI-X into the backend VM) and doorbells (out). */
#define VP_INFO_VEC_CONFIG       0u                   /* configuration change */
#define VP_INFO_VEC_KICK(q)      (1u + (q))           /* frontend kicked queue q */
#define VP_INFO_DB_CALL(q)       (q)                  /* interrupt the frontend */
#define VP_INFO_DB_DRIVER(nq)    (nq)                 /* driver page changed */

/* ivshmem BAR0 registers of the memory function */
#define VP_IVSHMEM_IVPOSITION    0x08u  /* this function's peer id (read) */
#define VP_IVSHMEM_DOORBELL      0x0cu  /* (peer << 16) | vector (write) */

/* ---- daemon page (0x000-0xfff): written by the daemon only -------------- */

/* One memory table entry: frontend [gpa, gpa + size) is BAR2 [offset, ...). */
struct vp_info_region {
	__le64 gpa;
	__le64 size;
	__le64 offset;
	__le64 flags;		/* 0 */
};

/* One queue table entry. Ring addresses are frontend guest-physical. */
struct vp_info_queue {
	__le16 num;		/* power of two <= 32768; 0 = queue absent */
	__le16 flags;		/* VP_INFO_Q_* */
	__le16 last_avail_idx;	/* where the device side resumes */
	__le16 reserved0;
	__le64 desc;
	__le64 avail;
	__le64 used;
	__le16 kick_vector;	/* VP_INFO_VEC_KICK(q) */
	__le16 call_doorbell;	/* VP_INFO_DB_CALL(q) */
	__u8 reserved1[12];
};

struct vp_info_daemon_page {
	__le64 magic;		/* VP_INFO_MAGIC */
	__le32 abi_version;	/* VP_INFO_ABI_VERSION */
	__le32 page_size;	/* VP_INFO_PAGE_SIZE */
	__le32 generation;	/* seqlock: odd while the daemon writes */
	__le32 status;		/* VP_INFO_ST_* */
	__le64 device_id;
	__u8 uuid[16];
	__le32 device_type;	/* virtio device id */
	__le16 num_queues;	/* <= VP_INFO_MAX_QUEUES */
	__le16 memory_peer;	/* IVPosition of the paired memory function */
	__le16 daemon_peer;	/* peer id the doorbells go to */
	__le16 nregions;	/* <= VP_INFO_MAX_REGIONS */
	__le32 reserved0;
	__le64 features;	/* the frontend driver's negotiated virtio features */
	__le64 bar2_size;	/* size of the memory function's BAR2 */
	__le32 config_len;	/* <= VP_INFO_CONFIG_MAX */
	__le32 reserved1;
	__u8 config[VP_INFO_CONFIG_MAX];
	__u8 reserved2[0x100 - 0x98];
	struct vp_info_region regions[VP_INFO_MAX_REGIONS];
	struct vp_info_queue queues[VP_INFO_MAX_QUEUES];
	__le32 reason_gen;
	char reason[VP_INFO_REASON_LEN];
	__u8 reserved3[VP_INFO_PAGE_SIZE - 0x400];
};

/* ---- driver page (0x1000-0x1fff): written by the driver only ------------ */

struct vp_info_driver_page {
	__le32 driver_gen;	/* written last, after the rest of the page */
	__le32 driver_status;	/* VP_INFO_DS_* */
	__le64 features_accepted; /* subset of features */
	__le32 acked_gen;	/* the daemon generation this page answers */
	__le32 reserved0;
	__le32 stopped[VP_INFO_MAX_QUEUES]; /* VP_INFO_STOPPED_* */
	__u8 reserved1[8];
	char reason[VP_INFO_DRV_REASON_LEN]; /* with FAILED: why */
	__u8 reserved2[VP_INFO_PAGE_SIZE - 0xc0];
};

/* The whole 8 KiB window, BAR2 of the info function. */
struct vp_info_window {
	struct vp_info_daemon_page daemon;
	struct vp_info_driver_page driver;
};

/* ---- the ABI, pinned (docs/device.md section 4) ------------------------- */

#ifdef __cplusplus
#define VP_INFO_ASSERT(c, m) static_assert(c, m)
#else
#define VP_INFO_ASSERT(c, m) _Static_assert(c, m)
#endif
#define VP_INFO_AT(type, field, off) \
	VP_INFO_ASSERT(offsetof(struct type, field) == (off), #type "." #field " at " #off)

VP_INFO_ASSERT(sizeof(struct vp_info_region) == 32, "region entry is 32 bytes");
VP_INFO_AT(vp_info_region, gpa, 0);
VP_INFO_AT(vp_info_region, size, 8);
VP_INFO_AT(vp_info_region, offset, 16);
VP_INFO_AT(vp_info_region, flags, 24);

VP_INFO_ASSERT(sizeof(struct vp_info_queue) == 48, "queue entry is 48 bytes");
VP_INFO_AT(vp_info_queue, num, 0);
VP_INFO_AT(vp_info_queue, flags, 2);
VP_INFO_AT(vp_info_queue, last_avail_idx, 4);
VP_INFO_AT(vp_info_queue, reserved0, 6);
VP_INFO_AT(vp_info_queue, desc, 8);
VP_INFO_AT(vp_info_queue, avail, 16);
VP_INFO_AT(vp_info_queue, used, 24);
VP_INFO_AT(vp_info_queue, kick_vector, 32);
VP_INFO_AT(vp_info_queue, call_doorbell, 34);
VP_INFO_AT(vp_info_queue, reserved1, 36);

VP_INFO_ASSERT(sizeof(struct vp_info_daemon_page) == VP_INFO_PAGE_SIZE, "daemon page is 4 KiB");
VP_INFO_AT(vp_info_daemon_page, magic, 0x000);
VP_INFO_AT(vp_info_daemon_page, abi_version, 0x008);
VP_INFO_AT(vp_info_daemon_page, page_size, 0x00c);
VP_INFO_AT(vp_info_daemon_page, generation, 0x010);
VP_INFO_AT(vp_info_daemon_page, status, 0x014);
VP_INFO_AT(vp_info_daemon_page, device_id, 0x018);
VP_INFO_AT(vp_info_daemon_page, uuid, 0x020);
VP_INFO_AT(vp_info_daemon_page, device_type, 0x030);
VP_INFO_AT(vp_info_daemon_page, num_queues, 0x034);
VP_INFO_AT(vp_info_daemon_page, memory_peer, 0x036);
VP_INFO_AT(vp_info_daemon_page, daemon_peer, 0x038);
VP_INFO_AT(vp_info_daemon_page, nregions, 0x03a);
VP_INFO_AT(vp_info_daemon_page, reserved0, 0x03c);
VP_INFO_AT(vp_info_daemon_page, features, 0x040);
VP_INFO_AT(vp_info_daemon_page, bar2_size, 0x048);
VP_INFO_AT(vp_info_daemon_page, config_len, 0x050);
VP_INFO_AT(vp_info_daemon_page, reserved1, 0x054);
VP_INFO_AT(vp_info_daemon_page, config, 0x058);
VP_INFO_AT(vp_info_daemon_page, regions, 0x100);
VP_INFO_AT(vp_info_daemon_page, queues, 0x200);
VP_INFO_AT(vp_info_daemon_page, reason_gen, 0x380);
VP_INFO_AT(vp_info_daemon_page, reason, 0x384);
VP_INFO_AT(vp_info_daemon_page, reserved3, 0x400);

VP_INFO_ASSERT(sizeof(struct vp_info_driver_page) == VP_INFO_PAGE_SIZE, "driver page is 4 KiB");
VP_INFO_AT(vp_info_driver_page, driver_gen, 0x000);
VP_INFO_AT(vp_info_driver_page, driver_status, 0x004);
VP_INFO_AT(vp_info_driver_page, features_accepted, 0x008);
VP_INFO_AT(vp_info_driver_page, acked_gen, 0x010);
VP_INFO_AT(vp_info_driver_page, reserved0, 0x014);
VP_INFO_AT(vp_info_driver_page, stopped, 0x018);
VP_INFO_AT(vp_info_driver_page, reserved1, 0x038);
VP_INFO_AT(vp_info_driver_page, reason, 0x040);
VP_INFO_AT(vp_info_driver_page, reserved2, 0x0c0);

VP_INFO_ASSERT(sizeof(struct vp_info_window) == VP_INFO_WINDOW_SIZE, "window is 8 KiB");
VP_INFO_AT(vp_info_window, daemon, 0x0000);
VP_INFO_AT(vp_info_window, driver, VP_INFO_DRIVER_OFFSET);

#undef VP_INFO_AT
#undef VP_INFO_ASSERT

#ifdef __cplusplus
}
#endif
#endif
