/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * What the record-format seed generators share (gen_session_seeds,
 * gen_pair21_seeds): a seed being built, and writing it into the corpus
 * directory. Each program includes it once.
 */
#ifndef FUZZ_SEEDS_H
#define FUZZ_SEEDS_H

#include <stdint.h>
#include <stdio.h>

struct seed {
	uint8_t buf[16384];
	size_t len;
};

static const char *seed_dir;  /* the corpus directory (argv[1]) */
static int seed_failed;       /* main()'s exit code */

static inline void write_seed(const struct seed *s, const char *name)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", seed_dir, name);
	f = fopen(path, "wb");
	if (!f || fwrite(s->buf, 1, s->len, f) != s->len) {
		perror(path);
		seed_failed = 1;
	}
	if (f)
		fclose(f);
}

#endif
