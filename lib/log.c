/* SPDX-License-Identifier: BSD-3-Clause */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "vhostpci/log.h"

static vp_log_fn log_fn;
static void *log_opaque;
static int log_level = -1; /* -1: not yet read from the environment */

static const char *const level_names[] = { "err", "warn", "info", "debug" };

static int env_level(void)
{
	const char *s = getenv("VHOSTPCI_LOG");

	if (s) {
		for (int i = 0; i <= VP_LOG_DEBUG; i++)
			if (!strcasecmp(s, level_names[i]))
				return i;
	}
	return VP_LOG_INFO;
}

void vp_log_set_handler(vp_log_fn fn, void *opaque)
{
	log_fn = fn;
	log_opaque = opaque;
}

void vp_log_set_level(enum vp_log_level level)
{
	log_level = level;
}

enum vp_log_level vp_log_get_level(void)
{
	if (log_level < 0)
		log_level = env_level();
	return (enum vp_log_level)log_level;
}

void vp_logv(enum vp_log_level level, const char *fmt, va_list ap)
{
	char buf[512];

	if ((int)level > (int)vp_log_get_level())
		return;
	vsnprintf(buf, sizeof(buf), fmt, ap);
	if (log_fn) {
		log_fn(level, buf, log_opaque);
		return;
	}
	/* One fprintf per line so concurrent processes do not interleave. */
	fprintf(stderr, "vhostpci %s: %s\n",
		(unsigned)level <= VP_LOG_DEBUG ? level_names[level] : "?", buf);
}

void vp_log(enum vp_log_level level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vp_logv(level, fmt, ap);
	va_end(ap);
}
