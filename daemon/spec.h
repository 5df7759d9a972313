/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * vhost-pcid server specs: "path=/run/vhost-pci/net0.sock,id=net0,..." from
 * --server and from "server SPEC" lines of a config file.
 */
#ifndef VPD_SPEC_H
#define VPD_SPEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define VPD_ID_MAX 64

struct vpd_spec {
	char *path;
	char *id;
	unsigned connections;
	mode_t mode;
	bool have_uid;
	uid_t uid;
	bool have_uuid;
	uint8_t uuid[16];
	uint64_t features;      /* 0: the library's default */
	uint64_t offloads;      /* offloads=: VP_SERVER_OFFLOAD_* the backend honours,
				 * offered on top of the default; excludes features */
	unsigned queues;        /* queues=: virtio-net queue pairs offered (MQ); 0: 1 */
	char *backend;          /* backend VM socket to announce READY devices to, or NULL */
	char *backend_vm;       /* QMP socket of the backend VM to hot-plug READY
				 * devices into (bevm.c), or NULL; excludes backend */
	bool allow_unsealed;    /* accept frontend memory that can shrink (risky) */
	unsigned backend_grace_ms; /* READY but not attached this long: drop the
				    * frontend (its link goes down); 0: never */
	unsigned stop_timeout_ms;  /* GET_VRING_BASE waits this long at most for
				    * the backend's STOP ack */
	bool pair21;            /* design=2.1: a pair broker, not a server (pair21.c) */
	char *qemu[2];          /* design=2.1: qemu= (peer 0) and qemu1= (peer 1):
				 * that peer is a QEMU guest whose ivshmem-doorbell
				 * connects to this socket, or NULL */
	char *qmp[2];           /* qmp=, qmp1=: that guest's QMP socket: the daemon
				 * hot-plugs its slot while the other peer is there */
	unsigned unplug_timeout_ms; /* backend-vm=: a guest that has not released
				     * the functions this long after device_del is
				     * given up on (logged, counted) */
};

#define VPD_BACKEND_GRACE_MS 2000
#define VPD_STOP_TIMEOUT_MS 1000
#define VPD_STOP_TIMEOUT_MAX_MS 60000
/* How much later the library answers a held stop if the daemon has not. */
#define VPD_STOP_BACKSTOP_MS 1000
#define VPD_UNPLUG_TIMEOUT_MS 10000
#define VPD_UNPLUG_TIMEOUT_MAX_MS 600000

struct vpd_spec_list {
	struct vpd_spec *v;
	unsigned n, cap;
};

/*
 * Parse one SPEC: comma-separated key=value, ",," is a literal comma, a
 * first item without '=' is the path. Fills defaults (connections 32, mode
 * 0600, id = basename of path). 0, or -EINVAL / -ENOMEM with a message in err.
 */
/* The features offered to vhost-user frontends: features=, or the default
 * with offloads=. */
uint64_t vpd_spec_features(const struct vpd_spec *s);

int vpd_spec_parse(const char *text, struct vpd_spec *out, char *err, size_t errlen);
void vpd_spec_free(struct vpd_spec *s);

/* Append (taking ownership of *s on success); -EEXIST for a duplicate id or
 * path, with a message in err. */
int vpd_spec_list_add(struct vpd_spec_list *l, struct vpd_spec *s, char *err, size_t errlen);
void vpd_spec_list_free(struct vpd_spec_list *l);

/* Whether two specs describe the same server (every key equal): a reload
 * keeps such a server, and its devices, as they are. */
bool vpd_spec_equal(const struct vpd_spec *a, const struct vpd_spec *b);

/*
 * Read a config file: "server SPEC" lines, '#' comment lines, blank lines.
 * Errors are "FILE:LINE: reason" in err. 0, -EINVAL, -ENOMEM or the errno
 * of opening/reading the file.
 */
int vpd_config_load(const char *file, struct vpd_spec_list *l, char *err, size_t errlen);

#endif
