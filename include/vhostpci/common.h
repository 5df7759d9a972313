/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Common definitions for the libvhostpci public API.
 *
 * Conventions used by every function in this library:
 *  - Errors are returned as negative errno values (-EINVAL, -EFAULT, ...);
 *    0 or a non-negative count means success.
 *  - The library never starts threads and never blocks unless a function says
 *    so. Objects are not internally locked: one object, one thread at a time,
 *    unless its header documents otherwise.
 *  - Everything that comes from a peer (ring contents, descriptor addresses and
 *    lengths, protocol messages, fds) is treated as hostile. Violations are
 *    reported with a negative errno and a logged reason, never with assert()
 *    or abort().
 */
#ifndef VHOSTPCI_COMMON_H
#define VHOSTPCI_COMMON_H

#if defined(VP_BUILDING_LIB)
#define VP_API __attribute__((visibility("default")))
#else
#define VP_API
#endif

#endif
