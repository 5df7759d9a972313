// SPDX-License-Identifier: GPL-2.0
/*
 * lib/net21.c, built into the module as it is (compat/vp_kcompat.h maps its
 * libc facilities to the kernel's): the 2.1 data path and every check of the
 * other peer's section, one copy for userspace and the kernel (vpnet21.c).
 */
#include "net21.c"
