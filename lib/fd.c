/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Telling a peer's fds apart (see include/vhostpci/fd.h).
 *
 * The kernel names an anonymous inode ("anon_inode:[eventfd]") in
 * /proc/self/fd; nothing a peer does can change that name, so it is the
 * test for eventfds. Memory is judged by its seals: only F_SEAL_SHRINK
 * promises that a mapping of it stays backed.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vhostpci/fd.h"

/* The /proc/self/fd link of fd into buf; 0, or -ENOTSUP without /proc. */
static int fd_link(int fd, char *buf, size_t len)
{
	char path[40];
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	n = readlink(path, buf, len - 1);
	if (n < 0)
		return errno == ENOENT && access("/proc/self/fd", F_OK) < 0 ? -ENOTSUP : -errno;
	buf[n] = '\0';
	return 0;
}

int vp_fd_check_eventfd(int fd)
{
	char link[64];
	struct stat st;
	int e;

	if (fd < 0 || fstat(fd, &st) < 0)
		return -EBADF;
	if ((st.st_mode & S_IFMT) != 0)  /* anonymous inodes have no file type */
		return -EINVAL;
	e = fd_link(fd, link, sizeof(link));
	if (e < 0)
		return e == -ENOTSUP ? e : -EINVAL;
	return strcmp(link, "anon_inode:[eventfd]") == 0 ? 0 : -EINVAL;
}

int vp_fd_check_memory(int fd)
{
	struct stat st;
	int seals;

	if (fd < 0 || fstat(fd, &st) < 0)
		return -EBADF;
	if (!S_ISREG(st.st_mode))
		return -EINVAL;
	/* Files that are not memfds give EINVAL, or F_SEAL_SEAL alone (tmpfs). */
	seals = fcntl(fd, F_GET_SEALS);
	if (seals < 0 || !(seals & F_SEAL_SHRINK))
		return -EPERM;
	return 0;
}

const char *vp_fd_kind(int fd, char *buf, size_t len)
{
	char link[96];
	struct stat st;

	if (!buf || !len)
		return "";
	if (fd < 0 || fstat(fd, &st) < 0) {
		snprintf(buf, len, "closed fd");
		return buf;
	}
	if (fd_link(fd, link, sizeof(link)) < 0)
		link[0] = '\0';
	if (strncmp(link, "anon_inode:[", 12) == 0) {
		size_t n = strlen(link);

		if (strcmp(link, "anon_inode:[eventfd]") == 0)
			snprintf(buf, len, "eventfd");
		else
			snprintf(buf, len, "anon inode %.*s", (int)(n > 13 ? n - 13 : 0), link + 12);
	} else if (strncmp(link, "anon_inode:", 11) == 0) {
		snprintf(buf, len, "anon inode %s", link + 11);
	} else if (S_ISFIFO(st.st_mode)) {
		snprintf(buf, len, "pipe");
	} else if (S_ISSOCK(st.st_mode)) {
		snprintf(buf, len, "socket");
	} else if (S_ISREG(st.st_mode)) {
		int seals = fcntl(fd, F_GET_SEALS);

		if (strncmp(link, "/memfd:", 7) == 0)
			snprintf(buf, len, "%s memfd",
				 seals >= 0 && (seals & F_SEAL_SHRINK) ? "sealed" : "unsealed");
		else
			snprintf(buf, len, "regular file");
	} else if (S_ISDIR(st.st_mode)) {
		snprintf(buf, len, "directory");
	} else if (S_ISCHR(st.st_mode)) {
		snprintf(buf, len, "character device");
	} else if (S_ISBLK(st.st_mode)) {
		snprintf(buf, len, "block device");
	} else {
		snprintf(buf, len, "unknown kind");
	}
	return buf;
}
