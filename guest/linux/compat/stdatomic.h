/* SPDX-License-Identifier: GPL-2.0 */
/* <stdatomic.h> for the lib/ sources in the kernel build: see vp_kcompat.h. */
#include "vp_kcompat.h"
