/* SPDX-License-Identifier: BSD-3-Clause */
/* Names of virtio and vhost-user bits, for logs and the control protocol. */
#ifndef VPD_NAMES_H
#define VPD_NAMES_H

#include <stdint.h>

/* A virtio feature bit of a device of this type (device-specific bits are
 * known for net only), or NULL when we have no name for it. */
const char *vpd_feature_name(uint32_t device_type, unsigned bit);

/* A vhost-user protocol feature bit, or NULL. */
const char *vpd_protocol_feature_name(unsigned bit);

/* "net", "block", ... or "unknown". */
const char *vpd_virtio_type_name(uint32_t device_type);

/* Descriptor flag names joined by '|' into buf ("" when none). */
void vpd_desc_flags(uint16_t flags, char *buf, unsigned len);

#endif
