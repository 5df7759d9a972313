/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * A fake sysfs PCI tree for the guest side of a vhost-pci device (no QEMU):
 * functions are directories of files, BARs are files (or, for the memory
 * function's BAR2, a symlink to a frontend's RAM memfd), and a frontend
 * described as vhost-pcid's server would hold it. Used by
 * tests/functional/test_guestdev.c and tests/peers/guestbe_host.c.
 */
#ifndef VP_TESTS_FAKEPCI_H
#define VP_TESTS_FAKEPCI_H

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vhostpci/client.h"
#include "vhostpci/device.h"
#include "vhostpci/server.h"

/* A word of a mapping (page-aligned; offsets are multiples of the size). */
static inline volatile uint32_t *fp_u32(volatile void *base, size_t off)
{
	return (volatile uint32_t *)(volatile void *)((volatile uint8_t *)base + off);
}

static inline int fp_put_file(const char *dir, const char *name, const char *text)
{
	char p[512];
	FILE *f;

	snprintf(p, sizeof(p), "%s/%s", dir, name);
	f = fopen(p, "w");
	if (!f)
		return -1;
	fputs(text, f);
	return fclose(f);
}

/* A zero file dir/name of size bytes, mapped shared; NULL on error. */
static inline void *fp_put_bin(const char *dir, const char *name, size_t size)
{
	char p[512];
	void *m;
	int fd;

	snprintf(p, sizeof(p), "%s/%s", dir, name);
	fd = open(p, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return NULL;
	if (ftruncate(fd, (off_t)size) < 0) {
		close(fd);
		return NULL;
	}
	m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	return m == MAP_FAILED ? NULL : m;
}

/* An ivshmem function directory (1af4:1110). */
static inline int fp_function(const char *dir)
{
	if (mkdir(dir, 0700) < 0)
		return -1;
	return fp_put_file(dir, "vendor", "0x1af4\n") | fp_put_file(dir, "device", "0x1110\n");
}

/*
 * The memory function in dir: resource0 (256 bytes, IVPosition ivpos; its
 * mapping is returned, the doorbell is read there), resource2 a symlink to
 * /proc/PID/fd/RAMFD. NULL on error.
 */
static inline volatile uint8_t *fp_memory_function(const char *dir, uint16_t ivpos, int ramfd)
{
	char link[64], p[512];
	volatile uint8_t *regs;

	if (fp_function(dir) < 0 || !(regs = fp_put_bin(dir, "resource0", 256)))
		return NULL;
	*fp_u32(regs, VP_IVSHMEM_IVPOSITION) = ivpos;
	snprintf(link, sizeof(link), "/proc/%d/fd/%d", (int)getpid(), ramfd);
	snprintf(p, sizeof(p), "%s/resource2", dir);
	if (symlink(link, p) < 0) {
		munmap((void *)regs, 256);
		return NULL;
	}
	return regs;
}

/* The info function in dir: its 8 KiB window, mapped (NULL on error). */
static inline void *fp_info_function(const char *dir)
{
	return fp_function(dir) < 0 ? NULL : fp_put_bin(dir, "resource2", VP_INFO_WINDOW_SIZE);
}

/* A struct vp_device and the arrays its regions and rings point at. */
struct fp_device {
	struct vp_device dev;
	struct vp_dev_region regions[VP_PCI_MAX_REGIONS];
	struct vp_dev_ring rings[2];
};

/* A started vp_netfe as vhost-pcid's server would hold it: READY, rings
 * started. Returns &f->dev. */
static inline struct vp_device *fp_device(const struct vp_frontend_info *info, uint64_t id,
					  struct fp_device *f)
{
	struct vp_device *dev = &f->dev;

	memset(f, 0, sizeof(*f));
	dev->regions = f->regions;
	dev->rings = f->rings;
	dev->id = id;
	dev->type = VP_VIRTIO_ID_NET;
	memcpy(dev->uuid, info->uuid, 16);
	dev->state = VP_DEV_READY;
	dev->driver_features = info->driver_features;
	dev->nregions = info->nregions;
	memcpy(f->regions, info->regions, sizeof(info->regions));
	dev->nrings = 2;
	for (unsigned q = 0; q < 2; q++)
		f->rings[q] = (struct vp_dev_ring){ .num = info->rings[q].num,
			.last_avail_idx = info->rings[q].last_avail_idx, .desc = info->rings[q].desc,
			.avail = info->rings[q].avail, .used = info->rings[q].used, .addr_set = true,
			.enabled = true, .started = true, .kick_fd = -1, .call_fd = -1 };
	return dev;
}

#endif
