/* SPDX-License-Identifier: GPL-2.0 */
/*
 * vhost-pci-net: what the configuration side (vpnet_main.c) and the data path
 * (vpnet_data.c) share.
 */
#ifndef VPNET_H
#define VPNET_H

#include <linux/netdevice.h>
#include <linux/pci.h>
#include <linux/spinlock.h>
#include <linux/workqueue.h>

#include "vhostpci/device.h"
#include "vhostpci/devinfo.h"
#include "vhostpci/vring.h"

#define VPNET_WHY 160

/* An info function (ivshmem-plain whose BAR2 holds the magic). */
struct vp_infofn {
	struct pci_dev *pdev;
	void *win;		/* memremap() of BAR2, VP_INFO_WINDOW_SIZE bytes */
	struct list_head node;
	struct vpnet *vn;	/* paired device, or NULL */
};

/* A memory function candidate (ivshmem-doorbell: MSI-X, IVPosition). */
struct vp_memfn {
	struct pci_dev *pdev;
	void __iomem *regs;	/* BAR0 */
	u16 peer;		/* IVPosition */
	void *ram;		/* memremap() of BAR2: the frontend's RAM */
	u64 ram_len;
	struct list_head node;
	struct vpnet *vn;
};

/* The vhost-pci design's registry: one vhost_pci_dev per device. */
struct vhost_pci_dev {
	u32 device_type;	/* virtio device id */
	u64 device_id;		/* the daemon's id */
	u8 uuid[16];		/* the frontend VM's */
	struct net_device *dev;
	struct list_head node;
};

/*
 * ethtool -S, in this order (vpnet_stat_names[]). Configuration counters are
 * written under vn->lock, receive counters under rx.lock, transmit counters
 * under tx.lock; readers take none (u64 stores are single on 64-bit).
 */
struct vpnet_dp_stats {
	/* receive: the frontend's transmitq */
	u64 rx_packets, rx_bytes;
	u64 rx_drop_bad;	/* device-writable buffers, shorter than header + Ethernet header */
	u64 rx_drop_too_big;	/* over the MTU (not GSO) or over VP_NET_MAX_PKT */
	u64 rx_drop_offload;	/* csum/GSO flags the frontend did not negotiate, or inconsistent */
	u64 rx_drop_nomem;
	u64 rx_bad_desc;	/* the walker refused the transmitq: link down */
	u64 rx_csum_partial, rx_gso;
	u64 rx_gso_bytes;	/* bytes of the GSO frames above: frames larger than the MTU */
	/* transmit: into the frontend's receiveq */
	u64 tx_packets, tx_bytes;
	u64 tx_drop_too_big;	/* does not fit its buffers (no MRG_RXBUF) or our arrays */
	u64 tx_drop_link_down;	/* sent while the rings were not attached */
	u64 tx_drop_csum;	/* software checksum failed */
	u64 tx_bad_desc;	/* the walker refused the receiveq, or a buffer we cannot fill: link down */
	u64 tx_queue_stopped;	/* frontend had no receive buffer: queue stopped */
	u64 tx_queue_woken;	/* ... and woken by its receiveq kick */
	u64 tx_csum_partial;
	u64 tx_gso, tx_gso_bytes;	/* GSO frames sent whole (GUEST_TSO4/6) */
	/* notifications */
	u64 signals[2];		/* doorbells rung for the frontend's call, per queue */
	u64 napi_polls;
};

struct vpnet_stats {
	u64 config_irqs, snapshots, snapshot_retry, rejected, stops_answered;
	u64 kicks[VP_INFO_MAX_QUEUES];
	struct vpnet_dp_stats dp;
};

/* One direction of the data path: a queue of the frontend's, walked by us. */
struct vpnet_dq {
	spinlock_t lock;	/* the fields below and the ring behind vq */
	struct vp_vq_dev *vq;	/* == vn->vq[q] while the data path is on */
	struct vp_chain *chains;
	struct iovec *iov;
	struct vp_used *used;
	unsigned int chain_cap, iov_cap;
	unsigned int npend;	/* transmit: used entries written, not yet pushed */
	unsigned int pend_pkts, pend_bytes;
	unsigned int nheld;	/* transmit: buffers popped for a frame that did not fit yet */
	bool on;		/* rings attached and sane: the data path may walk them */
};

/* MSI-X vector 1 + q's dev_id: the handler learns its queue without mapping
 * irq numbers (pci_irq_vector() numbers need not be consecutive, and it may
 * sleep). */
struct vpnet_kickvec {
	struct vpnet *vn;
	unsigned int q;
};

struct vpnet {
	struct net_device *ndev;
	struct vp_infofn *info;
	struct vp_memfn *mem;
	struct vhost_pci_dev vpdev;
	struct mutex lock;	/* the configuration state below */
	struct work_struct cfg_work;
	int nvec;
	bool irqs_on;
	struct vpnet_kickvec kickvec[VP_INFO_MAX_QUEUES];
	bool broken;		/* a bad window or ring: link down until re-published */
	struct vp_devinfo cur;	/* last accepted snapshot */
	bool have_cur;
	u32 driver_gen;
	u32 answered_gen;	/* generation the driver page answers */
	/* Left by a previous load at rmmod (status 0): for generation resume_gen,
	 * queue q resumes at resume[q] (VP_INFO_STOPPED_*), not last_avail_idx. */
	u32 resume_gen;
	u32 resume[VP_INFO_MAX_QUEUES];
	struct vp_mem *vmem;	/* the snapshot's memory table over mem->ram */
	struct vp_vq_dev *vq[VP_INFO_MAX_QUEUES];
	char reason[VP_INFO_DRV_REASON_LEN];
	struct vpnet_stats st;

	/* Data path (vpnet_data.c). Set while both dq locks are held. */
	struct napi_struct napi;
	struct vpnet_dq rx;	/* queue 1, the frontend's transmitq */
	struct vpnet_dq tx;	/* queue 0, the frontend's receiveq */
	u64 features;		/* the frontend's negotiated features */
	/* The offload netdev features the negotiated set allows (vpnet_offloads());
	 * ndo_fix_features applies it, ndo_features_check enforces it per skb
	 * while a renegotiated set waits for netdev_update_features(). */
	netdev_features_t offloads;
	bool offloads_changed;	/* under vn->lock: update the features after it */
	u32 db_peer;		/* daemon_peer << 16 */
	/* A ring rule broken on the data path: the configuration work takes
	 * the link down with dp_reason (first failure wins, under dp_fail_lock). */
	spinlock_t dp_fail_lock;
	bool dp_failed;
	char dp_reason[VP_INFO_DRV_REASON_LEN];
};

/* vpnet_data.c */
netdev_features_t vpnet_offloads(u64 features);
netdev_features_t vpnet_features_check(struct sk_buff *skb, struct net_device *ndev,
				       netdev_features_t features);
netdev_features_t vpnet_fix_features(struct net_device *ndev, netdev_features_t features);
void vpnet_dp_init(struct vpnet *vn);
int vpnet_dp_attach(struct vpnet *vn, u64 features, u16 daemon_peer);
void vpnet_dp_detach(struct vpnet *vn);
bool vpnet_dp_take_failure(struct vpnet *vn, char *why, size_t len);
void vpnet_dp_kick(struct vpnet *vn, unsigned int q);
int vpnet_dp_open(struct net_device *ndev);
int vpnet_dp_stop(struct net_device *ndev);
netdev_tx_t vpnet_dp_xmit(struct sk_buff *skb, struct net_device *ndev);
void vpnet_dp_get_stats64(struct net_device *ndev, struct rtnl_link_stats64 *s);

/* The 2.1 mode (vpnet21.c): -ENODEV if pdev is not a 2.1 slot's .0; true if it was one. */
int vpnet21_probe(struct pci_dev *pdev);
bool vpnet21_remove(struct pci_dev *pdev);

#endif
