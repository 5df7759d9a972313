// SPDX-License-Identifier: GPL-2.0
/*
 * vp_log() for the library code built into the module (lib/vring.c,
 * lib/mem.c): its messages name the queue or region and the value the
 * frontend got wrong, and a hostile frontend can make one per descriptor,
 * so they go to the kernel log rate-limited.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/kernel.h>
#include <linux/printk.h>
#include <linux/ratelimit.h>

#include "vhostpci/log.h"

void vp_logv(enum vp_log_level level, const char *fmt, va_list ap)
{
	struct va_format vaf;
	va_list aq;

	/* ap is a parameter (a pointer on x86-64): %pV wants a va_list's address. */
	va_copy(aq, ap);
	vaf.fmt = fmt;
	vaf.va = &aq;
	switch (level) {
	case VP_LOG_ERR:
		pr_err_ratelimited("%pV\n", &vaf);
		break;
	case VP_LOG_WARN:
		pr_warn_ratelimited("%pV\n", &vaf);
		break;
	case VP_LOG_INFO:
		pr_info_ratelimited("%pV\n", &vaf);
		break;
	default:
		pr_debug("%pV\n", &vaf);
		break;
	}
	va_end(aq);
}

void vp_log(enum vp_log_level level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vp_logv(level, fmt, ap);
	va_end(ap);
}
