/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The 2.1 window: wire layout only (docs/window21.md). Types, constants and
 * a static assert per offset; no functions, so a guest kernel module or C++
 * can include it. All integers are little-endian.
 *
 *   header   (read-only for both peers; written once by the allocator)
 *   section 0 (written by peer 0 only, read-only for peer 1)
 *   section 1 (written by peer 1 only, read-only for peer 0)
 *
 * Offsets inside a section (ring_off, buf_off, descriptor offsets) are from
 * the start of that section, never from the window: a section means the
 * same wherever it is mapped.
 */
#ifndef VHOSTPCI_WINDOW21_H
#define VHOSTPCI_WINDOW21_H

#ifdef __KERNEL__
#include <linux/types.h>
#else
#include <stdint.h>
#endif

#define VP21_MAGIC 0x31325056u       /* "VP21" */
#define VP21_VERSION 1u
#define VP21_PEERS 2u
#define VP21_PAGE 4096u              /* every section offset and size is a multiple */
#define VP21_HEADER_SIZE VP21_PAGE
#define VP21_CTRL_SIZE 256u          /* the control block at section offset 0 */
#define VP21_RING_MAX 32768u         /* ring_num: power of two, 2..VP21_RING_MAX */
#define VP21_SLOT_MIN 64u
#define VP21_SLOT_MAX 65536u
#define VP21_HDR_LEN 12u             /* a virtio_net_hdr_v1 before each frame */

/* One row of the section table. Fixed by the allocator, read-only for both. */
struct vp21_section {
	uint64_t offset;     /* in the window; page aligned */
	uint64_t size;       /* page multiple */
	uint16_t owner;      /* the peer that writes it (= its row number) */
	uint16_t ring_num;   /* descriptors in its TX ring */
	uint32_t slot_size;  /* bytes per packet buffer, header included */
	uint32_t ring_off;   /* from the section start; >= VP21_CTRL_SIZE, 8-aligned */
	uint32_t buf_off;    /* first packet buffer; >= ring_off + 8 * ring_num */
};

struct vp21_header {
	uint32_t magic;
	uint16_t version;
	uint16_t num_peers;      /* VP21_PEERS */
	uint32_t header_size;    /* VP21_HEADER_SIZE */
	uint32_t flags;          /* 0 */
	uint64_t window_size;    /* header + sections, laid out contiguously */
	uint64_t reserved;
	struct vp21_section sect[VP21_PEERS];
};

/* A TX descriptor: a frame (net header + packet) in the producer's section. */
struct vp21_desc {
	uint32_t off;  /* from the producer's section start */
	uint32_t len;  /* VP21_HDR_LEN + packet bytes */
};

/*
 * The control block at offset 0 of each section: everything its owner
 * publishes. Three cache lines, each with one purpose, so a reader polling
 * one index does not bounce the line the owner writes the other in.
 */
struct vp21_ctrl {
	/* link: who I am in this session */
	uint32_t epoch;       /* bumped at every attach, never 0 once attached */
	uint32_t peer_epoch;  /* the peer's epoch my indexes below refer to */
	uint32_t state;       /* VP21_STATE_* */
	uint32_t pad0[13];
	/* producer: my TX ring */
	uint16_t avail;       /* descriptors published (free running) */
	uint16_t pad1[31];
	/* consumer: the peer's TX ring, and when to wake me */
	uint16_t consumed;    /* the peer's descriptors I copied out (free running) */
	uint16_t rx_want;     /* 1: kick my RX eventfd once your avail passes rx_event */
	uint16_t rx_event;
	uint16_t tx_want;     /* 1: kick my TX eventfd once your consumed passes tx_event */
	uint16_t tx_event;
	uint16_t pad2[27];
	uint8_t pad3[VP21_CTRL_SIZE - 192];
};

#define VP21_STATE_DETACHED 0u
#define VP21_STATE_ATTACHED 1u

#ifdef __cplusplus
#define VP21_ASSERT(c, m) static_assert(c, m)
#else
#define VP21_ASSERT(c, m) _Static_assert(c, m)
#endif
VP21_ASSERT(sizeof(struct vp21_section) == 32, "section row");
VP21_ASSERT(sizeof(struct vp21_header) == 32 + 32 * VP21_PEERS, "header");
VP21_ASSERT(__builtin_offsetof(struct vp21_header, sect) == 32, "section table");
VP21_ASSERT(sizeof(struct vp21_desc) == 8, "descriptor");
VP21_ASSERT(__builtin_offsetof(struct vp21_ctrl, avail) == 64, "avail line");
VP21_ASSERT(__builtin_offsetof(struct vp21_ctrl, consumed) == 128, "consumer line");
VP21_ASSERT(__builtin_offsetof(struct vp21_ctrl, tx_event) == 136, "tx_event");
VP21_ASSERT(sizeof(struct vp21_ctrl) == VP21_CTRL_SIZE, "control block");

#endif
