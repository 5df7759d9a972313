/* SPDX-License-Identifier: BSD-3-Clause */
/* Internal entry points the tests reach (not installed, not exported). */
#ifndef VP_LIB_INTERNAL_H
#define VP_LIB_INTERNAL_H

#include <stdint.h>

/* Every row of the server's dispatch table agrees with the codec's table
 * about fds (a row that takes none: the codec allows none) and appears once.
 * 0, or -EINVAL with the row logged. */
int vp_server_check_dispatch_table(void);

/* sock.c: a blocking connect to a Unix stream socket: the fd, or -errno. */
int vp_unix_connect(const char *path);
struct vp_rx;
struct vp_msg;
/* sock.c: receive one whole message before deadline_ms (CLOCK_MONOTONIC,
 * milliseconds) on a non-blocking socket: 1, -ETIMEDOUT or an error of
 * vp_sock_recv(). */
int vp_sock_recv_until(int sock, struct vp_rx *rx, struct vp_msg *m, int64_t deadline_ms);

struct vp_pci_info;
struct vp_device;
/* registry.c: empty the registry (its storage is kept). */
void vp_pci_info_clear(struct vp_pci_info *info);
/* registry.c: append dev; 0, or -ENOMEM with the registry emptied. */
int vp_pci_info_add(struct vp_pci_info *info, const struct vp_device *dev);
/* netfe.c: the test facility behind vp_port_test_post_bad() (kind: an enum
 * vp_port_test_bad), for a netfe that is started. 0 or -errno. */
struct vp_netfe;
enum vp_port_test_bad;
int vp_netfe_test_post_bad(struct vp_netfe *fe, enum vp_port_test_bad kind);

#endif
