/* SPDX-License-Identifier: BSD-3-Clause */
/* devinfo.c's test seam (internal, not installed). */
#ifndef VP_LIB_DEVINFO_INTERNAL_H
#define VP_LIB_DEVINFO_INTERNAL_H

#include "vhostpci/devinfo.h"

/*
 * vp_devinfo_snapshot() with between(arg) called in each try after the page
 * was copied and before generation is read again: where a daemon's write
 * would have to land to tear a snapshot, so tests can put one there on
 * purpose instead of hoping a racing process does.
 */
int vp_devinfo_snapshot_seam(const volatile void *window, struct vp_devinfo *out, char *why,
			     size_t whylen, void (*between)(void *arg), void *arg);

#endif
