/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Region table and translation: every rejection with its exact errno,
 * offsets checked against a second, independent mapping of the same fd,
 * boundaries byte by byte, and read-only mappings proven read-only by a
 * child that dies writing to one.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "vhostpci/log.h"
#include "vhostpci/mem.h"
#include "../../lib/mem_internal.h"	/* the walker's cursor (internal) */

#define TESTUTIL_MAIN
#include "testutil.h"

#define PG 4096u

/* Counts warnings so each rejection can be shown to give a reason. */
static unsigned n_warn;
static char last_warn[512];

static void capture_log(enum vp_log_level level, const char *msg, void *opaque)
{
	(void)opaque;
	if (level != VP_LOG_WARN)
		return;
	n_warn++;
	snprintf(last_warn, sizeof(last_warn), "%s", msg);
}

__attribute__((constructor)) static void quiet_logs(void)
{
	vp_log_set_handler(capture_log, NULL);
}

/* A memfd of size bytes, filled with byte (i * 7 + 3) at offset i. */
static int make_fd(size_t size)
{
	int fd = memfd_create("test-mem", MFD_CLOEXEC);
	uint8_t *p;

	if (fd < 0 || ftruncate(fd, (off_t)size) < 0)
		return -1;
	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED) {
		close(fd);
		return -1;
	}
	for (size_t i = 0; i < size; i++)
		p[i] = (uint8_t)(i * 7 + 3);
	munmap(p, size);
	return fd;
}

static uint8_t pat(uint64_t off)
{
	return (uint8_t)(off * 7 + 3);
}

static struct vp_mem_region_desc rd(uint64_t gpa, uint64_t size,
				    uint64_t uaddr, uint64_t off, int fd,
				    uint32_t prot)
{
	return (struct vp_mem_region_desc){ .gpa = gpa, .size = size,
		.uaddr = uaddr, .fd_offset = off, .fd = fd, .prot = prot };
}

/* Add d, expect err, and expect exactly one warning for a rejection. */
static int add_expect(struct vp_mem *m, struct vp_mem_region_desc d, int err)
{
	unsigned before = n_warn, cnt = vp_mem_count(m);
	int ret = vp_mem_add_region(m, &d);

	if (ret != err) {
		fprintf(stderr, "  add gpa 0x%" PRIx64 ": got %d want %d\n",
			d.gpa, ret, err);
		return 0;
	}
	if (err < 0 && (n_warn != before + 1 || vp_mem_count(m) != cnt)) {
		fprintf(stderr, "  rejection not logged once or table changed\n");
		return 0;
	}
	return 1;
}

TEST(empty_table)
{
	struct vp_mem *m = vp_mem_new();
	struct vp_mem_region_info info;
	struct iovec iov[2];

	REQUIRE(m);
	CHECK_EQ(vp_mem_count(m), 0);
	CHECK(!vp_mem_gpa_ptr(m, 0, 1, VP_MEM_READ));
	CHECK(!vp_mem_uva_ptr(m, 0, 1, VP_MEM_READ));
	CHECK_EQ(vp_mem_check_gpa(m, 0, 1, VP_MEM_READ), -EFAULT);
	CHECK_EQ(vp_mem_gpa_iov(m, 0, 1, VP_MEM_READ, iov, 2), -EFAULT);
	CHECK_EQ(vp_mem_gpa_iov(m, 0, 0, VP_MEM_READ, iov, 2), 0);
	CHECK_EQ(vp_mem_get(m, 0, &info), -ENOENT);
	CHECK_EQ(vp_mem_remove(m, 0, 1), -ENOENT);
	vp_mem_free(m);
	vp_mem_free(NULL);
}

TEST(reject_bad_descs)
{
	struct vp_mem *m = vp_mem_new();
	int fd = make_fd(4 * PG);
	int closed = make_fd(PG);

	REQUIRE(m && fd >= 0 && closed >= 0);
	close(closed);
	/* zero size */
	CHECK(add_expect(m, rd(0, 0, 0, 0, fd, VP_MEM_RW), -EINVAL));
	/* bad prot: none, write only, unknown bit */
	CHECK(add_expect(m, rd(0, PG, 0, 0, fd, 0), -EINVAL));
	CHECK(add_expect(m, rd(0, PG, 0, 0, fd, VP_MEM_WRITE), -EINVAL));
	CHECK(add_expect(m, rd(0, PG, 0, 0, fd, VP_MEM_RW | 4), -EINVAL));
	/* fd -1, and a number that is no open fd */
	CHECK(add_expect(m, rd(0, PG, 0, 0, -1, VP_MEM_RW), -EINVAL));
	CHECK(add_expect(m, rd(0, PG, 0, 0, closed, VP_MEM_RW), -EBADF));
	/* gpa and uaddr wrap; ending exactly at 2^64 is not a wrap */
	CHECK(add_expect(m, rd(UINT64_MAX - 10, PG, 0, 0, fd, VP_MEM_RW),
			 -EINVAL));
	CHECK(add_expect(m, rd(0, PG, UINT64_MAX - PG + 2, 0, fd, VP_MEM_RW),
			 -EINVAL));
	CHECK(add_expect(m, rd(0, UINT64_MAX, 0, 0, fd, VP_MEM_RW), -ENXIO));
	/* region beyond the fd, offset + size wrapping, offset past the end */
	CHECK(add_expect(m, rd(0, 4 * PG + 1, 0, 0, fd, VP_MEM_RW), -ENXIO));
	CHECK(add_expect(m, rd(0, PG, 0, 3 * PG + 1, fd, VP_MEM_RW), -ENXIO));
	CHECK(add_expect(m, rd(0, 2 * PG, 0, UINT64_MAX - PG, fd, VP_MEM_RW),
			 -ENXIO));
	CHECK(add_expect(m, rd(0, 1, 0, 4 * PG, fd, VP_MEM_RW), -ENXIO));
	CHECK(add_expect(m, rd(0, 1, 0, UINT64_MAX, fd, VP_MEM_RW), -ENXIO));
	CHECK(strstr(last_warn, "beyond fd size") != NULL);
	/* exact fit at the end of the fd is fine */
	CHECK(add_expect(m, rd(0, PG, 0, 3 * PG, fd, VP_MEM_RW), 0));
	CHECK(add_expect(m, rd(UINT64_MAX - PG + 1, PG, UINT64_MAX - PG + 1,
			       0, fd, VP_MEM_READ), 1));
	CHECK_EQ(vp_mem_count(m), 2);
	vp_mem_free(m);
	close(fd);
}

TEST(reject_overlaps)
{
	struct vp_mem *m = vp_mem_new();
	int fd = make_fd(16 * PG);

	REQUIRE(m && fd >= 0);
	/* gpa [0x10000, 0x14000), uaddr [0x7f0000, 0x7f4000) */
	REQUIRE(add_expect(m, rd(0x10000, 4 * PG, 0x7f0000, 0, fd, VP_MEM_RW), 0));
	/* gpa: same, head, tail, inside, around */
	CHECK(add_expect(m, rd(0x10000, 4 * PG, 0, 0, fd, VP_MEM_RW), -EEXIST));
	CHECK(add_expect(m, rd(0xf000, 2 * PG, 0, 0, fd, VP_MEM_RW), -EEXIST));
	CHECK(add_expect(m, rd(0x13fff, 2, 0, 0, fd, VP_MEM_RW), -EEXIST));
	CHECK(add_expect(m, rd(0x11000, 1, 0, 0, fd, VP_MEM_RW), -EEXIST));
	CHECK(add_expect(m, rd(0x8000, 16 * PG, 0, 0, fd, VP_MEM_RW), -EEXIST));
	CHECK(strstr(last_warn, "gpa space") != NULL);
	/* uaddr: disjoint gpa but uaddr head, tail, inside, around */
	CHECK(add_expect(m, rd(0x20000, PG, 0x7ef001, 0, fd, VP_MEM_RW), -EEXIST));
	CHECK(add_expect(m, rd(0x20000, PG, 0x7f3fff, 0, fd, VP_MEM_RW), -EEXIST));
	CHECK(add_expect(m, rd(0x20000, 1, 0x7f1000, 0, fd, VP_MEM_RW), -EEXIST));
	CHECK(add_expect(m, rd(0x20000, 8 * PG, 0x7ee000, 0, fd, VP_MEM_RW),
			 -EEXIST));
	CHECK(strstr(last_warn, "uaddr space") != NULL);
	/* touching, not overlapping, in both spaces: fine */
	CHECK(add_expect(m, rd(0x14000, PG, 0x7f4000, 0, fd, VP_MEM_RW), 1));
	CHECK(add_expect(m, rd(0xf000, PG, 0x7ef000, 0, fd, VP_MEM_RW), 2));
	/* uaddr 0 means unknown: never overlaps another unknown */
	CHECK(add_expect(m, rd(0x30000, PG, 0, 0, fd, VP_MEM_RW), 3));
	CHECK(add_expect(m, rd(0x31000, PG, 0, 0, fd, VP_MEM_RW), 4));
	/* nor a known uaddr that [0, size) of an unknown one would cover */
	CHECK(add_expect(m, rd(0x32000, PG, 0x800, 0, fd, VP_MEM_RW), 5));
	CHECK_EQ(vp_mem_count(m), 6);
	vp_mem_free(m);
	close(fd);
}

TEST(too_many_regions)
{
	struct vp_mem *m = vp_mem_new();
	int fd = make_fd(PG);

	REQUIRE(m && fd >= 0);
	for (unsigned i = 0; i < VP_MEM_MAX_REGIONS; i++)
		CHECK_EQ(vp_mem_add_region(m, &(struct vp_mem_region_desc){
			.gpa = (uint64_t)i * PG, .size = PG, .fd = fd,
			.prot = VP_MEM_READ }), (int)i);
	CHECK(add_expect(m, rd(0x1000000, PG, 0, 0, fd, VP_MEM_READ), -ENOSPC));
	CHECK_EQ(vp_mem_count(m), VP_MEM_MAX_REGIONS);
	/* all 32 map the same page of the same fd */
	CHECK_EQ(*(uint8_t *)vp_mem_gpa_ptr(m, 31 * PG + 5, 1, VP_MEM_READ),
		 pat(5));
	vp_mem_free(m);
	close(fd);
}

TEST(mmap_failure_gives_errno)
{
	struct vp_mem *m = vp_mem_new();
	int fd = make_fd(PG), ro;
	char path[64];

	REQUIRE(m && fd >= 0);
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	ro = open(path, O_RDONLY | O_CLOEXEC);
	REQUIRE(ro >= 0);
	/* a shared writable mapping of a read-only fd is refused by mmap */
	CHECK(add_expect(m, rd(0, PG, 0, 0, ro, VP_MEM_RW), -EACCES));
	CHECK(add_expect(m, rd(0, PG, 0, 0, ro, VP_MEM_READ), 0));
	vp_mem_free(m);
	close(ro);
	close(fd);
}

/* Two regions of one fd, written through the table, read back directly. */
TEST(shared_fd_offsets)
{
	struct vp_mem *m = vp_mem_new();
	int fd = make_fd(8 * PG);
	uint8_t *a, *b, *direct;

	REQUIRE(m && fd >= 0);
	REQUIRE(add_expect(m, rd(0x100000, 2 * PG, 0, 5 * PG, fd, VP_MEM_RW), 0));
	REQUIRE(add_expect(m, rd(0x200000, 3 * PG, 0, PG, fd, VP_MEM_RW), 1));
	a = vp_mem_gpa_ptr(m, 0x100000, 2 * PG, VP_MEM_WRITE);
	b = vp_mem_gpa_ptr(m, 0x200000, 3 * PG, VP_MEM_WRITE);
	REQUIRE(a && b);
	CHECK_EQ(a[0], pat(5 * PG));
	CHECK_EQ(b[10], pat(PG + 10));
	memset(a + 100, 0xa5, 50);
	memset(b + 3 * PG - 1, 0x5a, 1);
	direct = mmap(NULL, 8 * PG, PROT_READ, MAP_SHARED, fd, 0);
	REQUIRE(direct != MAP_FAILED);
	CHECK_EQ(direct[5 * PG + 99], pat(5 * PG + 99));
	CHECK_EQ(direct[5 * PG + 100], 0xa5);
	CHECK_EQ(direct[5 * PG + 149], 0xa5);
	CHECK_EQ(direct[5 * PG + 150], pat(5 * PG + 150));
	CHECK_EQ(direct[4 * PG - 1], 0x5a);
	CHECK_EQ(direct[4 * PG], pat(4 * PG));
	munmap(direct, 8 * PG);
	vp_mem_free(m);
	close(fd);
}

TEST(unaligned_fd_offset)
{
	struct vp_mem *m = vp_mem_new();
	struct vp_mem_region_info info;
	int fd = make_fd(4 * PG);
	const uint64_t off = PG + 123, size = 2 * PG + 7;
	uint8_t *p;

	REQUIRE(m && fd >= 0);
	REQUIRE(add_expect(m, rd(0x5000, size, 0, off, fd, VP_MEM_READ), 0));
	p = vp_mem_gpa_ptr(m, 0x5000, size, VP_MEM_READ);
	REQUIRE(p);
	for (uint64_t i = 0; i < size; i++)
		if (p[i] != pat(off + i)) {
			CHECK_EQ(p[i], pat(off + i));
			break;
		}
	CHECK(!vp_mem_gpa_ptr(m, 0x5000, size + 1, VP_MEM_READ));
	CHECK_EQ(vp_mem_get(m, 0, &info), 0);
	CHECK_EQ(info.fd_offset, off);
	CHECK(info.host == p);
	/* the last byte of the fd, at an odd offset */
	CHECK(add_expect(m, rd(0x9000, 1, 0, 4 * PG - 1, fd, VP_MEM_READ), 1));
	CHECK_EQ(*(uint8_t *)vp_mem_gpa_ptr(m, 0x9000, 0, VP_MEM_READ),
		 pat(4 * PG - 1));
	vp_mem_free(m);
	close(fd);
}

TEST(gpa_boundaries)
{
	struct vp_mem *m = vp_mem_new();
	int fd = make_fd(4 * PG);
	const uint64_t g = 0x40000, sz = 4 * PG;
	uint8_t *base;

	REQUIRE(m && fd >= 0);
	REQUIRE(add_expect(m, rd(g, sz, 0, 0, fd, VP_MEM_RW), 0));
	base = vp_mem_gpa_ptr(m, g, sz, VP_MEM_RW);
	REQUIRE(base);
	/* last byte in, one past out, one before out */
	CHECK(vp_mem_gpa_ptr(m, g + sz - 1, 1, VP_MEM_RW) == base + sz - 1);
	CHECK(!vp_mem_gpa_ptr(m, g + sz, 1, VP_MEM_READ));
	CHECK(!vp_mem_gpa_ptr(m, g - 1, 1, VP_MEM_READ));
	CHECK_EQ(vp_mem_check_gpa(m, g + sz, 1, VP_MEM_READ), -EFAULT);
	CHECK_EQ(vp_mem_check_gpa(m, g - 1, 2, VP_MEM_READ), -EFAULT);
	/* len 0 is len 1 */
	CHECK(vp_mem_gpa_ptr(m, g + sz - 1, 0, VP_MEM_READ) == base + sz - 1);
	CHECK(!vp_mem_gpa_ptr(m, g + sz, 0, VP_MEM_READ));
	CHECK_EQ(vp_mem_check_gpa(m, g + sz - 1, 0, VP_MEM_READ), 0);
	/* len crossing the end by one byte */
	CHECK(vp_mem_gpa_ptr(m, g + 16, sz - 16, VP_MEM_READ) == base + 16);
	CHECK(!vp_mem_gpa_ptr(m, g + 16, sz - 15, VP_MEM_READ));
	CHECK_EQ(vp_mem_check_gpa(m, g + 16, sz - 15, VP_MEM_READ), -EFAULT);
	/* huge lengths: wrapping, and just not wrapping */
	CHECK(!vp_mem_gpa_ptr(m, g + 1, UINT64_MAX, VP_MEM_READ));
	CHECK(!vp_mem_gpa_ptr(m, g, UINT64_MAX - g + 2, VP_MEM_READ));
	CHECK(!vp_mem_gpa_ptr(m, g, UINT64_MAX - g + 1, VP_MEM_READ));
	CHECK_EQ(vp_mem_check_gpa(m, g + 1, UINT64_MAX, VP_MEM_READ), -EOVERFLOW);
	CHECK_EQ(vp_mem_check_gpa(m, g, UINT64_MAX - g + 2, VP_MEM_READ),
		 -EOVERFLOW);
	CHECK_EQ(vp_mem_check_gpa(m, g, UINT64_MAX - g + 1, VP_MEM_READ), -EFAULT);
	CHECK_EQ(vp_mem_check_gpa(m, UINT64_MAX, 2, VP_MEM_READ), -EOVERFLOW);
	CHECK_EQ(vp_mem_check_gpa(m, UINT64_MAX, 1, VP_MEM_READ), -EFAULT);
	/* access bits: only what the region allows */
	CHECK_EQ(vp_mem_check_gpa(m, g, sz, VP_MEM_RW), 0);
	CHECK_EQ(vp_mem_check_gpa(m, g, sz, 8), -EACCES);
	vp_mem_free(m);
	close(fd);
}

/* The ring walker's inline cursor: same bounds as vp_mem_gpa_ptr(). */
TEST(cursor_hits_misses_and_edges)
{
	static uint8_t a[0x1000], b[0x1000], top[64];
	struct vp_mem *m = vp_mem_new();
	struct vp_mem_region_desc ra = rd(0x1000, sizeof(a), 0, 0, -1, VP_MEM_RW);
	struct vp_mem_region_desc rb = rd(0x3000, sizeof(b), 0, 0, -1, VP_MEM_READ);
	struct vp_mem_region_desc rt = rd(UINT64_MAX - sizeof(top) + 1, sizeof(top), 0, 0, -1,
					  VP_MEM_READ);
	struct vp_mem_cursor c;

	REQUIRE(m && vp_mem_add_local(m, &ra, a) == 0 && vp_mem_add_local(m, &rb, b) == 1 &&
		vp_mem_add_local(m, &rt, top) == 2);
	vp_mem_cursor_load(&c, m, 0);
	CHECK(vp_mem_cursor_hit(&c, 0x1000, sizeof(a), VP_MEM_RW) == a);
	CHECK(vp_mem_cursor_hit(&c, 0x1fff, 1, VP_MEM_WRITE) == a + 0xfff);
	CHECK(vp_mem_cursor_hit(&c, 0x1fff, 0, VP_MEM_READ) == a + 0xfff);
	CHECK(!vp_mem_cursor_hit(&c, 0x1fff, 2, VP_MEM_READ));
	CHECK(!vp_mem_cursor_hit(&c, 0x2000, 1, VP_MEM_READ));
	CHECK(!vp_mem_cursor_hit(&c, 0xfff, 2, VP_MEM_READ));
	CHECK(!vp_mem_cursor_hit(&c, 0x1001, UINT64_MAX, VP_MEM_READ));
	/* A miss moves the cursor; a read-only region refuses writes. */
	CHECK(vp_mem_cursor_ptr(&c, 0x3008, 8, VP_MEM_READ) == b + 8);
	CHECK_EQ(c.idx, 1);
	CHECK(!vp_mem_cursor_hit(&c, 0x3000, 1, VP_MEM_WRITE));
	CHECK(!vp_mem_cursor_ptr(&c, 0x3000, 1, VP_MEM_WRITE));
	/* A gap: NULL, and the cursor matches nothing until moved again. */
	CHECK(!vp_mem_cursor_ptr(&c, 0x2000, 1, VP_MEM_READ));
	CHECK(!vp_mem_cursor_hit(&c, 0x3000, 1, VP_MEM_READ));
	CHECK(!vp_mem_cursor_hit(&c, 0, 1, VP_MEM_READ));
	/* The last byte of the address space, and a length that would wrap. */
	CHECK(vp_mem_cursor_ptr(&c, UINT64_MAX, 1, VP_MEM_READ) == top + sizeof(top) - 1);
	CHECK(!vp_mem_cursor_hit(&c, UINT64_MAX, 2, VP_MEM_READ));
	CHECK(!vp_mem_cursor_ptr(&c, UINT64_MAX - 1, UINT64_MAX, VP_MEM_READ));
	/* An index past the table loads an empty cursor. */
	vp_mem_cursor_load(&c, m, 99);
	CHECK(!vp_mem_cursor_hit(&c, 0x1000, 1, VP_MEM_READ));
	vp_mem_free(m);
}

/* A region that ends exactly at 2^64 (local memory, no fd needed). */
TEST(region_at_top_of_space)
{
	static uint8_t buf[64];
	struct vp_mem *m = vp_mem_new();
	const uint64_t g = UINT64_MAX - sizeof(buf) + 1;
	struct iovec iov[2];

	REQUIRE(m);
	CHECK_EQ(vp_mem_add_local(m, &(struct vp_mem_region_desc){ .gpa = g,
		.size = sizeof(buf), .prot = VP_MEM_RW }, buf), 0);
	CHECK(vp_mem_gpa_ptr(m, UINT64_MAX, 1, VP_MEM_RW) == buf + 63);
	CHECK(vp_mem_gpa_ptr(m, g, sizeof(buf), VP_MEM_RW) == buf);
	CHECK(!vp_mem_gpa_ptr(m, UINT64_MAX, 2, VP_MEM_RW));
	CHECK_EQ(vp_mem_check_gpa(m, UINT64_MAX, 2, VP_MEM_RW), -EOVERFLOW);
	CHECK_EQ(vp_mem_gpa_iov(m, g, sizeof(buf), VP_MEM_RW, iov, 2), 1);
	CHECK_EQ(vp_mem_gpa_iov(m, g, sizeof(buf) + 1, VP_MEM_RW, iov, 2),
		 -EOVERFLOW);
	vp_mem_free(m);
}

TEST(iov_split_and_gaps)
{
	struct vp_mem *m = vp_mem_new();
	int fd = make_fd(8 * PG);
	struct iovec iov[4];
	uint8_t *a, *b;

	REQUIRE(m && fd >= 0);
	/* [0x10000, +2PG) rw, adjacent [0x12000, +PG) ro, gap, [0x20000, +PG) */
	REQUIRE(add_expect(m, rd(0x10000, 2 * PG, 0, 0, fd, VP_MEM_RW), 0));
	REQUIRE(add_expect(m, rd(0x12000, PG, 0, 4 * PG, fd, VP_MEM_READ), 1));
	REQUIRE(add_expect(m, rd(0x20000, PG, 0, 6 * PG, fd, VP_MEM_RW), 2));
	a = vp_mem_gpa_ptr(m, 0x10000, 1, VP_MEM_READ);
	b = vp_mem_gpa_ptr(m, 0x12000, 1, VP_MEM_READ);
	REQUIRE(a && b);
	/* crossing the boundary: two pieces, the first ends at the region end */
	CHECK_EQ(vp_mem_gpa_iov(m, 0x11f00, 0x200, VP_MEM_READ, iov, 4), 2);
	CHECK(iov[0].iov_base == a + 0x1f00);
	CHECK_EQ(iov[0].iov_len, 0x100);
	CHECK(iov[1].iov_base == b);
	CHECK_EQ(iov[1].iov_len, 0x100);
	CHECK_EQ(((uint8_t *)iov[1].iov_base)[0], pat(4 * PG));
	/* one pointer cannot span them */
	CHECK(!vp_mem_gpa_ptr(m, 0x11f00, 0x200, VP_MEM_READ));
	CHECK_EQ(vp_mem_check_gpa(m, 0x11f00, 0x200, VP_MEM_READ), -EFAULT);
	/* inside one region: one piece */
	CHECK_EQ(vp_mem_gpa_iov(m, 0x10010, 0x20, VP_MEM_RW, iov, 4), 1);
	CHECK(iov[0].iov_base == a + 0x10);
	CHECK_EQ(iov[0].iov_len, 0x20);
	/* too few iovecs, but every byte valid */
	CHECK_EQ(vp_mem_gpa_iov(m, 0x11f00, 0x200, VP_MEM_READ, iov, 1), -ENOBUFS);
	CHECK_EQ(vp_mem_gpa_iov(m, 0x11f00, 0x200, VP_MEM_READ, NULL, 0),
		 -ENOBUFS);
	/* running into the gap, even with too few iovecs, is -EFAULT */
	CHECK_EQ(vp_mem_gpa_iov(m, 0x11f00, PG + 0x101, VP_MEM_READ, iov, 4),
		 -EFAULT);
	CHECK_EQ(vp_mem_gpa_iov(m, 0x11f00, PG + 0x101, VP_MEM_READ, iov, 1),
		 -EFAULT);
	CHECK_EQ(vp_mem_gpa_iov(m, 0x13000, 1, VP_MEM_READ, iov, 4), -EFAULT);
	/* writing into the read-only half */
	CHECK_EQ(vp_mem_gpa_iov(m, 0x11f00, 0x200, VP_MEM_WRITE, iov, 4), -EACCES);
	CHECK_EQ(vp_mem_gpa_iov(m, 0x11f00, 0x100, VP_MEM_WRITE, iov, 4), 1);
	/* wrap, len 0 */
	CHECK_EQ(vp_mem_gpa_iov(m, 0x10000, UINT64_MAX, VP_MEM_READ, iov, 4),
		 -EOVERFLOW);
	CHECK_EQ(vp_mem_gpa_iov(m, 0x50000, 0, VP_MEM_READ, iov, 4), 0);
	vp_mem_free(m);
	close(fd);
}

/*
 * Run body in a child, without core dumps (faults are expected; the SIGBUS
 * guard is process-wide and installed once: each case gets a process of
 * its own). Exit 1 if a check failed. Returns the wait status, or -1.
 */
static int in_child(void (*body)(void))
{
	int status;
	pid_t pid = fork();

	if (pid < 0)
		return -1;
	if (pid == 0) {
		struct rlimit no_core = { 0, 0 };

		setrlimit(RLIMIT_CORE, &no_core);
		tu_failed_checks = 0;
		body();
		_exit(tu_failed_checks ? 1 : 0);
	}
	return waitpid(pid, &status, 0) == pid ? status : -1;
}

static volatile uint8_t *write_target;

static void write_body(void)
{
	/* sanitizers catch SEGV themselves: get the kernel's default */
	signal(SIGSEGV, SIG_DFL);
	*write_target = 1;
}

/* Child writes to p; 1 if it died of SIGSEGV, 0 if it survived, -1 error. */
static int child_write_segv(volatile uint8_t *p)
{
	int st;

	write_target = p;
	st = in_child(write_body);
	return st < 0 ? -1 : WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV;
}

TEST(read_only_is_enforced)
{
	struct vp_mem *m = vp_mem_new();
	int fd = make_fd(2 * PG);
	uint8_t *ro, *rw;

	REQUIRE(m && fd >= 0);
	REQUIRE(add_expect(m, rd(0, PG, 0, 0, fd, VP_MEM_READ), 0));
	REQUIRE(add_expect(m, rd(PG, PG, 0, PG, fd, VP_MEM_RW), 1));
	CHECK(!vp_mem_gpa_ptr(m, 0, 1, VP_MEM_WRITE));
	CHECK(!vp_mem_gpa_ptr(m, 0, 1, VP_MEM_RW));
	CHECK_EQ(vp_mem_check_gpa(m, 0, 1, VP_MEM_WRITE), -EACCES);
	CHECK_EQ(vp_mem_check_gpa(m, PG - 1, 2, VP_MEM_READ), -EFAULT);
	ro = vp_mem_gpa_ptr(m, 0, PG, VP_MEM_READ);
	rw = vp_mem_gpa_ptr(m, PG, PG, VP_MEM_RW);
	REQUIRE(ro && rw);
	/* the mapping itself has no PROT_WRITE; the rw one has */
	CHECK_EQ(child_write_segv(ro + 10), 1);
	CHECK_EQ(child_write_segv(rw + 10), 0);
	CHECK_EQ(ro[10], pat(10));
	vp_mem_free(m);
	close(fd);
}

TEST(uva_translation)
{
	struct vp_mem *m = vp_mem_new();
	int fd = make_fd(4 * PG);
	const uint64_t u = 0x7f0000001000ull;
	uint64_t gpa = 0;
	uint8_t *p;

	REQUIRE(m && fd >= 0);
	REQUIRE(add_expect(m, rd(0x100000, 2 * PG, u, 0, fd, VP_MEM_RW), 0));
	REQUIRE(add_expect(m, rd(0x200000, 2 * PG, 0, 2 * PG, fd, VP_MEM_RW), 1));
	p = vp_mem_gpa_ptr(m, 0x100000, 1, VP_MEM_READ);
	REQUIRE(p);
	CHECK(vp_mem_uva_ptr(m, u, 2 * PG, VP_MEM_RW) == p);
	CHECK(vp_mem_uva_ptr(m, u + 2 * PG - 1, 1, VP_MEM_RW) == p + 2 * PG - 1);
	CHECK(vp_mem_uva_ptr(m, u + 2 * PG - 1, 0, VP_MEM_RW) == p + 2 * PG - 1);
	CHECK(!vp_mem_uva_ptr(m, u + 2 * PG, 1, VP_MEM_READ));
	CHECK(!vp_mem_uva_ptr(m, u - 1, 1, VP_MEM_READ));
	CHECK(!vp_mem_uva_ptr(m, u + 1, 2 * PG, VP_MEM_READ));
	CHECK(!vp_mem_uva_ptr(m, u + 1, UINT64_MAX, VP_MEM_READ));
	CHECK(!vp_mem_uva_ptr(m, u, 1, 8));
	/* the region with uaddr 0 is not reachable by uva, not even at 0 */
	CHECK(!vp_mem_uva_ptr(m, 0, 1, VP_MEM_READ));
	CHECK(!vp_mem_uva_ptr(m, 10, 1, VP_MEM_READ));
	CHECK_EQ(vp_mem_uva_to_gpa(m, 10, 1, &gpa), -EFAULT);
	CHECK_EQ(vp_mem_uva_to_gpa(m, u + 0x123, 0x10, &gpa), 0);
	CHECK_EQ(gpa, 0x100123);
	CHECK_EQ(vp_mem_uva_to_gpa(m, u + 2 * PG - 1, 1, &gpa), 0);
	CHECK_EQ(gpa, 0x100000 + 2 * PG - 1);
	CHECK_EQ(vp_mem_uva_to_gpa(m, u + 2 * PG - 1, 2, &gpa), -EFAULT);
	CHECK_EQ(vp_mem_uva_to_gpa(m, u + 2 * PG, 1, &gpa), -EFAULT);
	CHECK_EQ(vp_mem_uva_to_gpa(m, u, UINT64_MAX, &gpa), -EOVERFLOW);
	vp_mem_free(m);
	close(fd);
}

static int is_mapped(void *p)
{
	return msync((void *)((uintptr_t)p & ~(uintptr_t)(PG - 1)), PG,
		     MS_ASYNC) == 0;
}

TEST(remove_and_clear)
{
	struct vp_mem *m = vp_mem_new();
	struct vp_mem_region_info info;
	int fd = make_fd(4 * PG);
	uint8_t *p0, *p1;

	REQUIRE(m && fd >= 0);
	REQUIRE(add_expect(m, rd(0, PG, 0, 0, fd, VP_MEM_RW), 0));
	REQUIRE(add_expect(m, rd(PG, PG, 0, PG, fd, VP_MEM_RW), 1));
	REQUIRE(add_expect(m, rd(2 * PG, PG, 0, 2 * PG, fd, VP_MEM_RW), 2));
	p0 = vp_mem_gpa_ptr(m, 0, 1, VP_MEM_READ);
	p1 = vp_mem_gpa_ptr(m, PG, 1, VP_MEM_READ);
	REQUIRE(p0 && p1);
	CHECK_EQ(vp_mem_remove(m, PG, 2 * PG), -ENOENT);
	CHECK_EQ(vp_mem_remove(m, PG + 1, PG), -ENOENT);
	CHECK_EQ(vp_mem_remove(m, PG, PG), 0);
	CHECK(!is_mapped(p1));
	CHECK_EQ(vp_mem_remove(m, PG, PG), -ENOENT);
	CHECK_EQ(vp_mem_count(m), 2);
	CHECK(!vp_mem_gpa_ptr(m, PG, 1, VP_MEM_READ));
	CHECK_EQ(vp_mem_check_gpa(m, PG, 1, VP_MEM_READ), -EFAULT);
	/* later regions move down, in order */
	CHECK_EQ(vp_mem_get(m, 1, &info), 0);
	CHECK_EQ(info.gpa, 2 * PG);
	CHECK_EQ(vp_mem_get(m, 2, &info), -ENOENT);
	/* the hole can be filled again */
	CHECK(add_expect(m, rd(PG, PG, 0, 3 * PG, fd, VP_MEM_RW), 2));
	CHECK_EQ(*(uint8_t *)vp_mem_gpa_ptr(m, PG, 1, VP_MEM_READ), pat(3 * PG));
	vp_mem_clear(m);
	CHECK_EQ(vp_mem_count(m), 0);
	CHECK(!is_mapped(p0));
	CHECK(!vp_mem_gpa_ptr(m, 0, 1, VP_MEM_READ));
	CHECK(add_expect(m, rd(0, PG, 0, 0, fd, VP_MEM_RW), 0));
	vp_mem_free(m);
	close(fd);
}

TEST(local_regions)
{
	struct vp_mem *m = vp_mem_new();
	struct vp_mem_region_info info;
	uint8_t *buf = malloc(3 * PG);
	int fd = make_fd(PG);

	REQUIRE(m && buf && fd >= 0);
	/* fd and fd_offset are ignored for local memory */
	CHECK_EQ(vp_mem_add_local(m, &(struct vp_mem_region_desc){ .gpa = 0x1000,
		.size = 3 * PG, .uaddr = 0x9000, .fd = -1, .fd_offset = 77,
		.prot = VP_MEM_RW }, buf), 0);
	CHECK_EQ(vp_mem_add_local(m, &(struct vp_mem_region_desc){ .gpa = 0x2000,
		.size = 1, .prot = VP_MEM_RW }, buf), -EEXIST);
	CHECK_EQ(vp_mem_add_local(m, &(struct vp_mem_region_desc){ .gpa = 0x9000,
		.size = 0, .prot = VP_MEM_RW }, buf), -EINVAL);
	CHECK_EQ(vp_mem_add_local(m, &(struct vp_mem_region_desc){ .gpa = 0x9000,
		.size = 1, .prot = VP_MEM_RW }, NULL), -EINVAL);
	CHECK_EQ(vp_mem_add_local(m, &(struct vp_mem_region_desc){ .gpa = 0x9000,
		.size = 16, .prot = VP_MEM_RW }, (void *)(UINTPTR_MAX - 7)),
		 -EINVAL);
	CHECK_EQ(vp_mem_add_region(m, &(struct vp_mem_region_desc){ .gpa = 0x9000,
		.size = PG, .uaddr = 0xa000, .fd = fd, .prot = VP_MEM_RW }), -EEXIST);
	CHECK(vp_mem_gpa_ptr(m, 0x1000 + 5, 10, VP_MEM_WRITE) == buf + 5);
	CHECK(vp_mem_uva_ptr(m, 0x9000 + 5, 10, VP_MEM_WRITE) == buf + 5);
	CHECK_EQ(vp_mem_get(m, 0, &info), 0);
	CHECK(!info.mapped_by_table);
	CHECK_EQ(info.fd_offset, 0);
	CHECK(info.host == buf);
	vp_mem_free(m);
	/* still ours, still mapped */
	memset(buf, 1, 3 * PG);
	free(buf);
	close(fd);
}

TEST(get_info)
{
	struct vp_mem *m = vp_mem_new();
	struct vp_mem_region_info info;
	int fd = make_fd(4 * PG);

	REQUIRE(m && fd >= 0);
	REQUIRE(add_expect(m, rd(0x3000, 2 * PG, 0x7000, PG + 1, fd,
				 VP_MEM_READ), 0));
	CHECK_EQ(vp_mem_get(m, 0, &info), 0);
	CHECK_EQ(info.gpa, 0x3000);
	CHECK_EQ(info.size, 2 * PG);
	CHECK_EQ(info.uaddr, 0x7000);
	CHECK_EQ(info.fd_offset, PG + 1);
	CHECK_EQ(info.prot, VP_MEM_READ);
	CHECK(info.mapped_by_table);
	CHECK(info.host == vp_mem_gpa_ptr(m, 0x3000, 1, VP_MEM_READ));
	CHECK_EQ(*(uint8_t *)info.host, pat(PG + 1));
	CHECK_EQ(vp_mem_get(m, 1, &info), -ENOENT);
	CHECK_EQ(vp_mem_get(m, UINT32_MAX, &info), -ENOENT);
	vp_mem_free(m);
	close(fd);
}

/* The table keeps no fd: the caller's close is the last one. */
TEST(fd_not_kept_no_leak)
{
	int before = tu_count_fds();
	struct vp_mem *m = vp_mem_new();
	int fd = make_fd(4 * PG);
	uint8_t *p;

	REQUIRE(m && fd >= 0);
	CHECK(add_expect(m, rd(0, 2 * PG, 0, 0, fd, VP_MEM_RW), 0));
	CHECK(add_expect(m, rd(2 * PG, 2 * PG, 0, 2 * PG, fd, VP_MEM_RW), 1));
	CHECK(add_expect(m, rd(0, PG, 0, 0, fd, VP_MEM_RW), -EEXIST));
	CHECK(add_expect(m, rd(8 * PG, 8 * PG, 0, 0, fd, VP_MEM_RW), -ENXIO));
	close(fd);
	CHECK_EQ(tu_count_fds(), before);
	/* the mapping outlives the fd */
	p = vp_mem_gpa_ptr(m, 3 * PG, 1, VP_MEM_RW);
	REQUIRE(p);
	CHECK_EQ(*p, pat(3 * PG));
	*p = 0;
	CHECK_EQ(vp_mem_remove(m, 0, 2 * PG), 0);
	vp_mem_free(m);
	CHECK_EQ(tu_count_fds(), before);
}

TEST(null_args)
{
	struct vp_mem_region_desc d = rd(0, PG, 0, 0, 0, VP_MEM_READ);
	struct vp_mem *m = vp_mem_new();
	uint64_t gpa;

	REQUIRE(m);
	CHECK_EQ(vp_mem_add_region(NULL, &d), -EINVAL);
	CHECK_EQ(vp_mem_add_region(m, NULL), -EINVAL);
	CHECK_EQ(vp_mem_count(NULL), 0);
	CHECK(!vp_mem_gpa_ptr(NULL, 0, 1, VP_MEM_READ));
	CHECK_EQ(vp_mem_check_gpa(NULL, 0, 1, VP_MEM_READ), -EINVAL);
	CHECK_EQ(vp_mem_uva_to_gpa(m, 0, 1, NULL), -EINVAL);
	CHECK_EQ(vp_mem_uva_to_gpa(NULL, 0, 1, &gpa), -EINVAL);
	CHECK_EQ(vp_mem_gpa_iov(m, 0, 1, VP_MEM_READ, NULL, 1), -EINVAL);
	CHECK_EQ(vp_mem_get(m, 0, NULL), -EINVAL);
	vp_mem_clear(NULL);
	vp_mem_free(m);
}

/* A peer truncates its memfd under us: a plain load would be SIGBUS. */
TEST(read_safe_survives_truncation)
{
	struct vp_mem *m = vp_mem_new();
	int fd = memfd_create("shrink", MFD_CLOEXEC);
	struct vp_mem_region_desc d = { .gpa = 0x10000, .size = 1 << 20, .fd = fd,
					.prot = VP_MEM_RW };
	uint8_t *p;
	uint64_t v = 0;

	REQUIRE(m && fd >= 0 && ftruncate(fd, 1 << 20) == 0);
	REQUIRE(vp_mem_add_region(m, &d) >= 0);
	p = vp_mem_gpa_ptr(m, 0x10000 + 0x8000, 8, VP_MEM_WRITE);
	REQUIRE(p);
	memcpy(p, "\x11\x22\x33\x44\x55\x66\x77\x88", 8);
	CHECK_EQ(vp_mem_read_safe(m, 0x18000, &v, 8), 0);
	CHECK_EQ(v, 0x8877665544332211ull);
	CHECK_EQ(vp_mem_read_safe(m, 0x18000, &v, 0), 0);
	/* outside the table, wrapping, across the end */
	CHECK_EQ(vp_mem_read_safe(m, 0x0, &v, 8), -EFAULT);
	CHECK_EQ(vp_mem_read_safe(m, UINT64_MAX - 2, &v, 8), -EOVERFLOW);
	CHECK_EQ(vp_mem_read_safe(m, 0x10000 + (1 << 20) - 4, &v, 8), -EFAULT);
	/* The first page stays, the rest of the file is gone. */
	REQUIRE(ftruncate(fd, 4096) == 0);
	CHECK_EQ(vp_mem_read_safe(m, 0x10000, &v, 8), 0);
	CHECK_EQ(vp_mem_read_safe(m, 0x18000, &v, 8), -EFAULT);
	vp_mem_free(m);
	close(fd);
}

/* An unsealed memfd of 1 MiB holding pat(), as region gpa 0x10000, RW. */
static int shrinkable(struct vp_mem *m)
{
	int fd = make_fd(1 << 20);
	struct vp_mem_region_desc d = rd(0x10000, 1 << 20, 0, 0, fd, VP_MEM_RW);

	if (fd < 0 || vp_mem_add_region(m, &d) < 0)
		return -1;
	return fd;
}

static void guard_repairs_body(void)
{
	struct vp_mem *m = vp_mem_new(), *sealed = vp_mem_new();
	int sfd = tu_memfd("sealed", 1 << 20, 1), fd;
	struct vp_mem_region_desc sd = rd(0, 1 << 20, 0, 0, sfd, VP_MEM_RW);
	volatile uint8_t *p, *s;
	uint8_t b = 0;
	uint64_t v;

	REQUIRE(m && sealed && sfd >= 0);
	CHECK_EQ(vp_mem_sigbus_guard(), 0);
	CHECK_EQ(vp_mem_sigbus_guard(), 0);	/* again: nothing happens */
	fd = shrinkable(m);
	REQUIRE(fd >= 0 && vp_mem_add_region(sealed, &sd) == 0);
	p = vp_mem_gpa_ptr(m, 0x10000, 1 << 20, VP_MEM_RW);
	s = vp_mem_gpa_ptr(sealed, 0, 1 << 20, VP_MEM_RW);
	REQUIRE(p && s);
	CHECK_EQ(p[0x8000], pat(0x8000));
	CHECK(!vp_mem_shrunk(m));

	/* The peer cuts the file to one page; we load past it. */
	REQUIRE(ftruncate(fd, 4096) == 0);
	CHECK_EQ(p[0x8000], 0);
	CHECK(vp_mem_shrunk(m));
	CHECK(!vp_mem_shrunk(sealed));
	s[5] = 7;	/* the other table is untouched */
	CHECK_EQ(s[5], 7);
	/* The whole mapping was replaced: the page still in the file reads 0. */
	CHECK_EQ(p[0x100], 0);
	/* A store lands in our private zero page, never in the peer's file. */
	p[0x100] = 0xab;
	CHECK_EQ(pread(fd, &b, 1, 0x100), 1);
	CHECK_EQ(b, pat(0x100));
	/* The peer re-extends and writes: we cannot see its new pages. */
	REQUIRE(ftruncate(fd, 1 << 20) == 0);
	b = 0x5a;
	CHECK_EQ(pwrite(fd, &b, 1, 0x8000), 1);
	CHECK_EQ(p[0x8000], 0);
	/* Nor does the control plane's copy trust what it reads there now. */
	CHECK_EQ(vp_mem_read_safe(m, 0x10000, &v, 8), -EFAULT);
	CHECK_EQ(vp_mem_read_safe(sealed, 0, &v, 8), 0);
	vp_mem_free(m);
	vp_mem_free(sealed);
	close(fd);
	close(sfd);
}

/* Truncated under us, guard armed: the faulting access completes. */
TEST(sigbus_guard_repairs_shrunk_memory)
{
	int st = in_child(guard_repairs_body);

	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

static void guard_slots_body(void)
{
	int fds = tu_count_fds();

	REQUIRE(vp_mem_sigbus_guard() == 0);
	/* More tables than guard slots, one after the other: slots come back. */
	for (unsigned i = 0; i < 600; i++) {
		struct vp_mem *m = vp_mem_new();
		int fd = m ? shrinkable(m) : -1;

		CHECK(fd >= 0);
		vp_mem_free(m);
		if (fd >= 0)
			close(fd);
		if (tu_failed_checks)
			return;
	}
	CHECK_EQ(tu_count_fds(), fds);
}

TEST(sigbus_guard_slots_are_released)
{
	int st = in_child(guard_slots_body);

	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

/* A mapping the guard does not know: truncated under a plain mmap(). */
static volatile uint8_t *foreign_truncated(void)
{
	int fd = make_fd(1 << 20);
	uint8_t *p = fd < 0 ? MAP_FAILED :
		mmap(NULL, 1 << 20, PROT_READ, MAP_SHARED, fd, 0);

	if (p == MAP_FAILED || ftruncate(fd, 0) < 0)
		return NULL;
	return p;
}

static void foreign_handler(int sig)
{
	(void)sig;
	_exit(42);
}

/* What SIGBUS did before the guard, in the child that touches the mapping. */
static void (*foreign_prev)(int);

static void foreign_body(void)
{
	volatile uint8_t *p;

	/* sanitizers catch SIGBUS themselves: start from what the case says */
	signal(SIGBUS, foreign_prev);
	REQUIRE(vp_mem_sigbus_guard() == 0);
	p = foreign_truncated();
	REQUIRE(p);
	(void)p[0x1000];
	_exit(3);	/* survived: the guard swallowed a fault not its own */
}

/* Faults outside guarded memory go where they went before the guard. */
TEST(sigbus_guard_chains_foreign_faults)
{
	int st;

	foreign_prev = SIG_DFL;
	st = in_child(foreign_body);
	CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGBUS);
	foreign_prev = foreign_handler;
	st = in_child(foreign_body);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 42);
}
