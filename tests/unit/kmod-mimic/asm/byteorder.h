/* SPDX-License-Identifier: BSD-3-Clause */
/* <asm/byteorder.h>, as much of it as guest/linux/compat/vp_kcompat.h uses, in userspace: see README. */
#ifndef VP_MIMIC_ASM_BYTEORDER_H
#define VP_MIMIC_ASM_BYTEORDER_H
#include_next <asm/byteorder.h>
#define le16_to_cpu __le16_to_cpu
#define le32_to_cpu __le32_to_cpu
#define le64_to_cpu __le64_to_cpu
#define cpu_to_le16 __cpu_to_le16
#define cpu_to_le32 __cpu_to_le32
#define cpu_to_le64 __cpu_to_le64
#endif
