/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The input format of fuzz_session, shared with gen_session_seeds.
 *
 * Byte 0: options (FS_OPT_*). Then records, each
 *   [ctl] [len lo] [len hi] [len bytes sent in one sendmsg()]
 * ctl bits 0-2: kind of fd attached (FS_FD_*), bits 3-5: count - 1 (1..8 fds
 * of that kind), bit 6: release a held GET_VRING_BASE reply first, bit 7:
 * vp_server_drop() the device after the record. A record need not hold one
 * whole message: the server reads a byte stream. A short last record is
 * sent as far as the input goes.
 */
#ifndef FUZZ_SESSION_H
#define FUZZ_SESSION_H

#define FS_OPT_REFUSE    0x1u  /* the NEW callback refuses the device */
#define FS_OPT_UNSEALED  0x2u  /* allow_unsealed in the server config */
#define FS_OPT_HOLD      0x4u  /* STOPPED callbacks hold the GET_VRING_BASE reply */

enum {
	FS_FD_NONE,
	FS_FD_MEMFD,          /* sealed against shrinking, FS_MEM_SIZE bytes */
	FS_FD_EVENTFD,
	FS_FD_PIPE_READ,
	FS_FD_MEMFD_UNSEALED,
	FS_FD_PIPE_WRITE,
	FS_FD_DEVNULL,
	FS_FD_SOCKET,         /* one end of a fresh socketpair */
};

#define FS_CTL(kind, count) ((unsigned)(kind) | ((unsigned)((count) ? (count) - 1 : 0) << 3))
#define FS_CTL_RELEASE 0x40u
#define FS_CTL_DROP    0x80u

#define FS_MEM_SIZE 0x4000u   /* four pages */
#define FS_MAX_RECORD 4108u   /* a header and the largest payload */

#endif
