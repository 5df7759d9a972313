/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The vhost-pci design's registry (struct vp_pci_info, server.h): a growable
 * array of entries behind accessors, so its layout and size are not part of
 * the ABI. Filled by vp_server_info() and vp_guest_registry().
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "vhostpci/server.h"
#include "internal.h"

struct vp_pci_info {
	unsigned count, cap;
	struct vp_pci_dev *dev;
};

struct vp_pci_info *vp_pci_info_new(void)
{
	return calloc(1, sizeof(struct vp_pci_info));
}

void vp_pci_info_free(struct vp_pci_info *info)
{
	if (!info)
		return;
	free(info->dev);
	free(info);
}

unsigned vp_pci_info_count(const struct vp_pci_info *info)
{
	return info->count;
}

const struct vp_pci_dev *vp_pci_info_get(const struct vp_pci_info *info, unsigned i)
{
	return i < info->count ? &info->dev[i] : NULL;
}

const struct vp_pci_dev *vp_pci_info_find(const struct vp_pci_info *info, const uint8_t uuid[16])
{
	for (unsigned i = 0; i < info->count; i++)
		if (!memcmp(info->dev[i].dev->uuid, uuid, 16))
			return &info->dev[i];
	return NULL;
}

void vp_pci_info_clear(struct vp_pci_info *info)
{
	info->count = 0;
}

int vp_pci_info_add(struct vp_pci_info *info, const struct vp_device *dev)
{
	if (info->count == info->cap) {
		unsigned cap = info->cap ? 2 * info->cap : 8;
		struct vp_pci_dev *n = reallocarray(info->dev, cap, sizeof(*n));

		if (!n) {
			info->count = 0;
			return -ENOMEM;
		}
		info->dev = n;
		info->cap = cap;
	}
	info->dev[info->count++] = (struct vp_pci_dev){
		.device_type = dev->type, .device_id = dev->id, .dev = dev,
	};
	return 0;
}
