/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The driver side of packed rings (vring_packed.c), behind the public
 * vp_vq_drv_* calls (vring.c) when struct vp_vq_drv_config's packed is set.
 * Each has the contract of the vp_vq_drv_* call of the same name. Private to
 * lib/.
 */
#ifndef VP_VRING_INTERNAL_H
#define VP_VRING_INTERNAL_H

#include "vhostpci/vring.h"

struct vp_vq_pdrv;

#ifndef __KERNEL__
int vp_pdrv_new(struct vp_vq_pdrv **out, const struct vp_vq_drv_config *cfg);
void vp_pdrv_free(struct vp_vq_pdrv *vq);
int vp_pdrv_add(struct vp_vq_pdrv *vq, const struct vp_buf *out, unsigned nout,
		const struct vp_buf *in, unsigned nin, void *token);
int vp_pdrv_add_burst(struct vp_vq_pdrv *vq, const struct vp_buf *bufs, unsigned n,
		      bool device_writable, void *const *tokens);
bool vp_pdrv_publish(struct vp_vq_pdrv *vq);
int vp_pdrv_get_used(struct vp_vq_pdrv *vq, void **tokens, uint32_t *lens, unsigned max);
unsigned vp_pdrv_used_pending(const struct vp_vq_pdrv *vq);
bool vp_pdrv_enable_cb(struct vp_vq_pdrv *vq);
void vp_pdrv_disable_cb(struct vp_vq_pdrv *vq);
unsigned vp_pdrv_num_free(const struct vp_vq_pdrv *vq);
bool vp_pdrv_broken(const struct vp_vq_pdrv *vq);
const char *vp_pdrv_broken_reason(const struct vp_vq_pdrv *vq);
#else
/*
 * The guest module (guest/linux/Kbuild) builds vring.c without
 * vring_packed.c: it drives no ring of its own, and a packed one cannot be
 * made, so the rest is never reached.
 */
static inline int vp_pdrv_new(struct vp_vq_pdrv **out, const struct vp_vq_drv_config *cfg)
{
	*out = NULL;
	return cfg ? -EOPNOTSUPP : -EINVAL;
}
static inline void vp_pdrv_free(struct vp_vq_pdrv *vq) { (void)vq; }
static inline int vp_pdrv_add(struct vp_vq_pdrv *vq, const struct vp_buf *out, unsigned nout,
			      const struct vp_buf *in, unsigned nin, void *token)
{ (void)vq; (void)out; (void)nout; (void)in; (void)nin; (void)token; return -EIO; }
static inline int vp_pdrv_add_burst(struct vp_vq_pdrv *vq, const struct vp_buf *bufs,
				    unsigned n, bool device_writable, void *const *tokens)
{ (void)vq; (void)bufs; (void)n; (void)device_writable; (void)tokens; return -EIO; }
static inline bool vp_pdrv_publish(struct vp_vq_pdrv *vq) { (void)vq; return false; }
static inline int vp_pdrv_get_used(struct vp_vq_pdrv *vq, void **tokens, uint32_t *lens,
				   unsigned max)
{ (void)vq; (void)tokens; (void)lens; (void)max; return -EIO; }
static inline unsigned vp_pdrv_used_pending(const struct vp_vq_pdrv *vq) { (void)vq; return 0; }
static inline bool vp_pdrv_enable_cb(struct vp_vq_pdrv *vq) { (void)vq; return false; }
static inline void vp_pdrv_disable_cb(struct vp_vq_pdrv *vq) { (void)vq; }
static inline unsigned vp_pdrv_num_free(const struct vp_vq_pdrv *vq) { (void)vq; return 0; }
static inline bool vp_pdrv_broken(const struct vp_vq_pdrv *vq) { (void)vq; return true; }
static inline const char *vp_pdrv_broken_reason(const struct vp_vq_pdrv *vq)
{ (void)vq; return "packed rings are not built in"; }
#endif

#endif
