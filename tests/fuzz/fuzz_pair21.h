/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The input format of fuzz_pair21 (both sides of VHOST_PCI_PAIR21_JOIN),
 * shared with gen_pair21_seeds.
 *
 * Byte 0: options (FP_OPT_*). With FP_OPT_JOINER, FP_HDR_FUZZ bytes follow:
 * XOR'ed onto a copy of the real window header, that copy is fd kind
 * FP_K_FUZZ_HEADER. Then records, each
 *   [ctl] [len lo] [len hi] [len bytes sent in one sendmsg()]
 * (a short last record is sent as far as the input goes).
 *
 * Broker side (FP_OPT_JOINER clear): up to 8 client connections to a fresh
 * vp_pair21. ctl bits 0-2: the connection (connected on first use and again
 * after it was closed), bits 3-5: kind of fd attached (FS_FD_* of
 * fuzz_session.h, 0 none),
 * bit 6: close this connection after the record, bit 7: 7 fds instead of 1.
 *
 * Joiner side (FP_OPT_JOINER set): a hostile broker answers one
 * vp_pair21_join(); the records are what it sends, then it closes. ctl bits
 * 0-2: the fd set (FP_SET_*); with FP_SET_CUSTOM the record's first 4 bytes
 * name the kind (FP_K_*) of each of up to 7 fds, one nibble each, and are
 * not sent. A join that succeeds is attached with vp_net21_new().
 */
#ifndef FUZZ_PAIR21_H
#define FUZZ_PAIR21_H

#define FP_OPT_JOINER 0x1u

#define FP_CONNS 8u
#define FP_CTL_CLOSE 0x40u
#define FP_CTL_SEVEN 0x80u
#define FP_MAX_RECORD 4108u

/* Joiner side: the fd sets a hostile broker sends with a record. */
enum {
	FP_SET_NONE,
	FP_SET_PEER0,        /* exactly what a broker gives peer 0 */
	FP_SET_PEER1,        /* ... and peer 1 */
	FP_SET_FUZZ_HEADER,  /* peer 0's, with the fuzzed header copy */
	FP_SET_PEER_RW,      /* peer 0's, the other's section writable */
	FP_SET_SWAPPED,      /* peer 0's, the two sections swapped */
	FP_SET_CUSTOM,
	FP_SET_DEVNULL,      /* seven /dev/null */
};

/* Joiner side, FP_SET_CUSTOM: one kind per fd. */
enum {
	FP_K_HEADER,         /* the window's header, read-only */
	FP_K_FUZZ_HEADER,
	FP_K_SEC0_RW, FP_K_SEC0_RO, FP_K_SEC1_RW, FP_K_SEC1_RO,
	FP_K_RX0, FP_K_TX0, FP_K_RX1, FP_K_TX1,
	FP_K_MEMFD, FP_K_MEMFD_UNSEALED, FP_K_DEVNULL, FP_K_PIPE, FP_K_SOCKET,
	FP_K_SKIP,           /* no fd in this place: fewer travel */
};

#define FP_HDR_FUZZ 96u      /* header bytes the input may change */
#define FP_RING_NUM 4u       /* the fuzzed windows' geometry: small and quick */
#define FP_SLOT_SIZE 128u

#endif
