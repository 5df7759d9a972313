/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * vhost-pcid under a service manager, without libsystemd: the log format
 * (journal / syslog / stderr), readiness notification (the NOTIFY_SOCKET
 * datagram protocol of sd_notify(3)) and socket activation (LISTEN_FDS,
 * LISTEN_PID, LISTEN_FDNAMES of sd_listen_fds(3)).
 */
#ifndef VPD_SERVICE_H
#define VPD_SERVICE_H

#include <stdbool.h>

enum vpd_log_target {
	VPD_LOG_AUTO,       /* journal if stderr is the stream JOURNAL_STREAM names */
	VPD_LOG_STDERR,     /* "TIME vhost-pcid[PID] LEVEL: msg" */
	VPD_LOG_JOURNAL,    /* "<N>msg" on stderr, N the syslog priority */
	VPD_LOG_SYSLOG,     /* syslog(3), facility daemon */
};

#include "vhostpci/log.h"

/* "err", "warn", "info" or "debug" (any case). 0 or -EINVAL. */
int vpd_log_level_parse(const char *s, enum vp_log_level *out);

/* "journal", "syslog", "stderr" or "auto". 0 or -EINVAL. */
int vpd_log_target_parse(const char *s, enum vpd_log_target *out);

/* Install the daemon's log handler for target (AUTO resolved here). */
void vpd_log_start(enum vpd_log_target target);

/*
 * Send state (e.g. "READY=1", "STOPPING=1") to the service manager if
 * NOTIFY_SOCKET is set ("@name": abstract socket). 0 when not under one,
 * 1 sent, -errno (the caller logs it; it is never fatal).
 */
int vpd_notify(const char *state);

/* One socket passed by the service manager. */
struct vpd_listen_fd {
	int fd;
	char *name;         /* from LISTEN_FDNAMES, or NULL */
};

/*
 * Collect the sockets passed by socket activation: fds 3.. when LISTEN_PID
 * is our pid. The variables are removed from the environment (children do
 * not see them) and the fds made close-on-exec. Returns the count (0: not
 * activated) with *out a malloc'd array, or -errno (-EINVAL for malformed
 * variables).
 */
int vpd_listen_fds(struct vpd_listen_fd **out);
void vpd_listen_fds_free(struct vpd_listen_fd *v, int n);

#endif
