/* SPDX-License-Identifier: BSD-3-Clause */
/* Internal entry points the tests reach (not installed, not exported). */
#ifndef VP_LIB_INTERNAL_H
#define VP_LIB_INTERNAL_H

/* Every row of the server's dispatch table agrees with the codec's table
 * about fds (a row that takes none: the codec allows none) and appears once.
 * 0, or -EINVAL with the row logged. */
int vp_server_check_dispatch_table(void);

#endif
