/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * A minimal test harness: TEST(name) { ... } cases, CHECK* assertions that
 * record a failure and go on, and a main() that runs every case and prints
 * TAP-like lines and a summary. A case passes only if all its checks pass.
 *
 * Usage: define TESTUTIL_MAIN in exactly one .c file before including it.
 */
#ifndef VP_TESTUTIL_H
#define VP_TESTUTIL_H

/* TU_ASAN: built with AddressSanitizer (gcc says so with a macro, clang
 * only through __has_feature). */
#if defined(__SANITIZE_ADDRESS__)
#define TU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TU_ASAN 1
#endif
#endif
#ifndef TU_ASAN
#define TU_ASAN 0
#endif

#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

struct tu_case {
	const char *name;
	void (*fn)(void);
};

#define TU_MAX_CASES 512
extern struct tu_case tu_cases[TU_MAX_CASES];
extern unsigned tu_ncases;
extern unsigned tu_failed_checks;

#define TEST(name)                                                        \
	static void test_##name(void);                                    \
	__attribute__((constructor)) static void tu_reg_##name(void)      \
	{                                                                 \
		if (tu_ncases < TU_MAX_CASES)                             \
			tu_cases[tu_ncases++] = (struct tu_case){ #name, test_##name }; \
	}                                                                 \
	static void test_##name(void)

#define CHECK(cond)                                                       \
	do {                                                              \
		if (!(cond)) {                                            \
			tu_failed_checks++;                               \
			fprintf(stderr, "  %s:%d: CHECK failed: %s\n",    \
				__FILE__, __LINE__, #cond);               \
		}                                                         \
	} while (0)

#define CHECK_EQ(a, b)                                                    \
	do {                                                              \
		long long tu_a = (long long)(a), tu_b = (long long)(b);   \
		if (tu_a != tu_b) {                                       \
			tu_failed_checks++;                               \
			fprintf(stderr, "  %s:%d: CHECK_EQ failed: %s == %s (%lld != %lld)\n", \
				__FILE__, __LINE__, #a, #b, tu_a, tu_b);  \
		}                                                         \
	} while (0)

#define CHECK_STR(a, b)                                                   \
	do {                                                              \
		const char *tu_sa = (a), *tu_sb = (b);                    \
		if (strcmp(tu_sa, tu_sb) != 0) {                          \
			tu_failed_checks++;                               \
			fprintf(stderr, "  %s:%d: CHECK_STR failed: %s == \"%s\" (got \"%s\")\n", \
				__FILE__, __LINE__, #a, tu_sb, tu_sa);    \
		}                                                         \
	} while (0)

/* Abort the current case (not the program) when a precondition fails. */
#define REQUIRE(cond)                                                     \
	do {                                                              \
		if (!(cond)) {                                            \
			tu_failed_checks++;                               \
			fprintf(stderr, "  %s:%d: REQUIRE failed: %s\n",  \
				__FILE__, __LINE__, #cond);               \
			return;                                           \
		}                                                         \
	} while (0)

/* Number of open fds of this process: compare before/after to catch leaks. */
/*
 * Guest RAM as a well-behaved frontend makes it: a memfd of size bytes that
 * can no longer shrink or grow (QEMU's memory-backend-memfd seals the same
 * way; the server refuses unsealed memory unless told otherwise). seal = 0
 * gives a hostile frontend's memfd, one it can still truncate. -1 on error.
 */
static inline int tu_memfd(const char *name, size_t size, int seal)
{
	int fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);

	if (fd < 0)
		return -1;
	if (ftruncate(fd, (off_t)size) < 0 ||
	    (seal && fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) < 0)) {
		close(fd);
		return -1;
	}
	return fd;
}

static inline int tu_count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	if (!d)
		return -1;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n - 1; /* the DIR's own fd */
}

#ifdef TESTUTIL_MAIN
struct tu_case tu_cases[TU_MAX_CASES];
unsigned tu_ncases;
unsigned tu_failed_checks;

int main(int argc, char **argv)
{
	unsigned pass = 0, fail = 0;

	for (unsigned i = 0; i < tu_ncases; i++) {
		unsigned before = tu_failed_checks;

		if (argc > 1 && !strstr(tu_cases[i].name, argv[1]))
			continue;
		tu_cases[i].fn();
		if (tu_failed_checks == before) {
			pass++;
			printf("ok %u - %s\n", pass + fail, tu_cases[i].name);
		} else {
			fail++;
			printf("not ok %u - %s\n", pass + fail, tu_cases[i].name);
		}
		fflush(stdout);
	}
	printf("# %u cases: %u passed, %u failed\n", pass + fail, pass, fail);
	return fail ? 1 : 0;
}
#endif
#endif
