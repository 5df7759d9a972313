/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Logging. The library reports every rejected peer input with a reason
 * through one process-wide handler (stderr by default).
 */
#ifndef VHOSTPCI_LOG_H
#define VHOSTPCI_LOG_H

#include <stdarg.h>
#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

enum vp_log_level {
	VP_LOG_ERR = 0,
	VP_LOG_WARN = 1,
	VP_LOG_INFO = 2,
	VP_LOG_DEBUG = 3,
};

/* msg has no trailing newline. Called on the thread that hit the event. */
typedef void (*vp_log_fn)(enum vp_log_level level, const char *msg, void *opaque);

/* Replace the handler; NULL restores the default (stderr). Not thread-safe:
 * set it once at start-up. */
VP_API void vp_log_set_handler(vp_log_fn fn, void *opaque);

/* Messages above this level are dropped. Default VP_LOG_INFO, or the value of
 * the environment variable VHOSTPCI_LOG (err|warn|info|debug) if set. */
VP_API void vp_log_set_level(enum vp_log_level level);
VP_API enum vp_log_level vp_log_get_level(void);

/* Emit a message (used by the library and by the tools built on it). */
VP_API void vp_log(enum vp_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
VP_API void vp_logv(enum vp_log_level level, const char *fmt, va_list ap)
	__attribute__((format(printf, 2, 0)));

#ifdef __cplusplus
}
#endif
#endif
