// SPDX-License-Identifier: GPL-2.0
/*
 * lib/devinfo.c, built into the module as it is (compat/vp_kcompat.h maps its
 * libc facilities to the kernel's): one copy of its rules for both worlds.
 */
#include "devinfo.c"
