// SPDX-License-Identifier: GPL-2.0
/*
 * vhost-pci-net: a network interface in a backend VM for each vhost-pci
 * device (docs/device.md, device ABI 1).
 *
 * A device is two ivshmem functions (1af4:1110): the memory function
 * (ivshmem-doorbell: BAR2 = the frontend's RAM, MSI-X 0 = configuration
 * change, 1 + q = the frontend kicked queue q; doorbell (daemon_peer << 16) |
 * q rings its call) and the info function (ivshmem-plain: BAR2 = the 8 KiB
 * info window). PCI ids cannot tell them from other ivshmem devices, so probe
 * keeps an info function only if its window carries the magic, keeps a
 * function with MSI-X (a memory function candidate) until an info window
 * names its IVPosition as memory_peer, and leaves everything else alone.
 *
 * Trust: the window and the frontend's RAM are hostile. The window is read
 * through lib/devinfo.c's seqlock snapshot and checks, the rings through
 * lib/vring.c's walker (both built in unchanged, see Kbuild); anything they
 * refuse takes this interface's link down with the reason in the kernel log
 * and in the driver page, never more.
 *
 * Locking: vp_lock (a mutex) guards the lists of functions, the pairing and
 * the registry; each device's state is changed by its configuration work
 * only (process context), under vn->lock, which teardown also takes.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/etherdevice.h>
#include <linux/if_vlan.h>
#include <linux/ethtool.h>
#include <linux/interrupt.h>
#include <linux/ip.h>
#include <linux/io.h>
#include <linux/list.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/netdevice.h>
#include <linux/pci.h>
#include <linux/rtnetlink.h>
#include <linux/workqueue.h>
#include <uapi/linux/virtio_ids.h>
#include <uapi/linux/virtio_net.h>
#include <uapi/linux/virtio_ring.h>

#include "vhostpci/net.h"
#include "mem_internal.h"
#include "vpnet.h"

#define VPNET_DRV_NAME "vhost_pci_net"
#define VPNET_MAX_VEC (1 + VP_INFO_MAX_QUEUES)

/* Features this driver can drive; features_accepted is their intersection
 * with what the frontend negotiated. Offloads: we take partial checksums and
 * TSO frames from the frontend (CSUM, HOST_TSO*, HOST_ECN) and hand it
 * partial checksums and whole TSO frames (GUEST_CSUM, GUEST_TSO*, GUEST_ECN);
 * the interface's features follow what was negotiated (vpnet_offloads()).
 * vhost-pcid offers a frontend these only when told the backend honours
 * them (offloads=tso, docs/vhost-pcid.md). */
#define VPNET_FEATURES (BIT_ULL(VIRTIO_F_VERSION_1) | BIT_ULL(VIRTIO_NET_F_MAC) | \
			BIT_ULL(VIRTIO_NET_F_MTU) | BIT_ULL(VIRTIO_NET_F_STATUS) | \
			BIT_ULL(VIRTIO_NET_F_MRG_RXBUF) | BIT_ULL(VIRTIO_RING_F_EVENT_IDX) | \
			BIT_ULL(VIRTIO_RING_F_INDIRECT_DESC) | BIT_ULL(VIRTIO_NET_F_CSUM) | \
			BIT_ULL(VIRTIO_NET_F_GUEST_CSUM) | BIT_ULL(VIRTIO_NET_F_HOST_TSO4) | \
			BIT_ULL(VIRTIO_NET_F_HOST_TSO6) | BIT_ULL(VIRTIO_NET_F_HOST_ECN) | \
			BIT_ULL(VIRTIO_NET_F_GUEST_TSO4) | BIT_ULL(VIRTIO_NET_F_GUEST_TSO6) | \
			BIT_ULL(VIRTIO_NET_F_GUEST_ECN))

struct vhost_pci_info {
	struct list_head devs;
	unsigned int ndevs;
};

static DEFINE_MUTEX(vp_lock);
static LIST_HEAD(vp_infofns);
static LIST_HEAD(vp_memfns);
static struct vhost_pci_info vhost_pci_info = {
	.devs = LIST_HEAD_INIT(vhost_pci_info.devs),
};

/* ---- window and rings --------------------------------------------------- */

static void vpnet_doorbell(struct vpnet *vn, u16 vector)
{
	writel(((u32)vn->cur.daemon_peer << 16) | vector, vn->mem->regs + VP_IVSHMEM_DOORBELL);
}

static void vpnet_drop_rings(struct vpnet *vn)
{
	unsigned int q;

	vpnet_dp_detach(vn);
	for (q = 0; q < VP_INFO_MAX_QUEUES; q++) {
		vp_vq_dev_free(vn->vq[q]);
		vn->vq[q] = NULL;
	}
	vp_mem_free(vn->vmem);
	vn->vmem = NULL;
}

/*
 * Where queue q resumes: the window's last_avail_idx, unless a previous load
 * of this driver answered this very generation and left stopped indexes at
 * rmmod (status 0): the rings ran on since the window was written.
 */
static u16 vpnet_resume_idx(const struct vpnet *vn, const struct vp_devinfo *in, unsigned int q)
{
	if (vn->resume_gen == in->generation && (vn->resume[q] & VP_INFO_STOPPED_VALID))
		return vn->resume[q] & VP_INFO_STOPPED_IDX_MASK;
	return in->queues[q].last_avail_idx;
}

/* Attach the walker to every present queue of a READY snapshot. */
static int vpnet_attach_rings(struct vpnet *vn, const struct vp_devinfo *in, char *why,
			      size_t whylen)
{
	bool ev = in->features & BIT_ULL(VIRTIO_RING_F_EVENT_IDX);
	bool ind = in->features & BIT_ULL(VIRTIO_RING_F_INDIRECT_DESC);
	unsigned int q;
	int err;

	vn->vmem = vp_mem_new();
	if (!vn->vmem)
		return -ENOMEM;
	err = vp_devinfo_mem_add(vn->vmem, in, VP_MEM_RW, vn->mem->ram, vn->mem->ram_len);
	if (err) {
		snprintf(why, whylen, "memory table does not fit the %llu-byte BAR2 (%d)",
			 vn->mem->ram_len, err);
		return err;
	}
	for (q = 0; q < in->num_queues; q++) {
		const struct vp_devinfo_queue *iq = &in->queues[q];
		struct vp_vq_dev_config cfg = {
			.num = iq->num, .desc = iq->desc, .avail = iq->avail, .used = iq->used,
			.ring_space = VP_ADDR_GPA, .last_avail_idx = vpnet_resume_idx(vn, in, q),
			.last_used_idx = vpnet_resume_idx(vn, in, q), .event_idx = ev,
			.indirect = ind,
			.name = q == 0 ? "fe-rx" : q == 1 ? "fe-tx" : "fe-q",
		};

		if (!iq->num)
			continue;
		err = vp_vq_dev_new(&vn->vq[q], vn->vmem, &cfg);
		if (err) {
			snprintf(why, whylen, "queue %u: the ring walker refused it (%d)", q, err);
			return err;
		}
	}
	return 0;
}

static void vpnet_write_driver(struct vpnet *vn, const struct vp_devinfo *in, u32 status,
			       const u32 *stopped)
{
	struct vp_devinfo_driver d = {
		.driver_gen = ++vn->driver_gen,
		.driver_status = status,
		.features_accepted = in->features & VPNET_FEATURES,
		.acked_gen = in->generation,
	};

	if (stopped)
		memcpy(d.stopped, stopped, sizeof(d.stopped));
	if (status & VP_INFO_DS_FAILED)
		strscpy(d.reason, vn->reason, sizeof(d.reason));
	vp_devinfo_write_driver(vn->info->win, &d);
	vn->answered_gen = in->generation;
	vpnet_doorbell(vn, VP_INFO_DB_DRIVER(in->num_queues));
}

/* Take the link down for a reason; the driver page says FAILED with it. */
static void vpnet_break(struct vpnet *vn, const struct vp_devinfo *in, const char *why)
{
	char esc[VP_INFO_DRV_REASON_LEN * 4];

	netif_carrier_off(vn->ndev);
	vpnet_drop_rings(vn);
	vn->broken = true;
	vn->st.rejected++;
	strscpy(vn->reason, why, sizeof(vn->reason));
	netdev_warn(vn->ndev, "link down: %s\n",
		    vp_devinfo_escape(why, VPNET_WHY, esc, sizeof(esc)));
	if (in && in->num_queues <= VP_INFO_MAX_QUEUES)
		vpnet_write_driver(vn, in, VP_INFO_DS_ACKNOWLEDGE | VP_INFO_DS_FAILED, NULL);
}

/*
 * Stop walking and say where each queue would resume: the walker's next
 * avail index (every chain popped is pushed by then, so used == avail).
 */
static void vpnet_stop_rings(struct vpnet *vn, const struct vp_devinfo *in, u32 *stopped)
{
	unsigned int q;

	vpnet_dp_detach(vn);	/* frames written are published first */
	for (q = 0; q < in->num_queues; q++) {
		u16 idx;

		if (!in->queues[q].num)
			continue;
		idx = vn->vq[q] ? vp_vq_dev_last_avail(vn->vq[q]) : vpnet_resume_idx(vn, in, q);
		stopped[q] = VP_INFO_STOPPED_VALID | idx;
	}
	vpnet_drop_rings(vn);
}

/* Answer STOP. */
static void vpnet_answer_stop(struct vpnet *vn, const struct vp_devinfo *in)
{
	u32 stopped[VP_INFO_MAX_QUEUES] = { 0 };

	vpnet_stop_rings(vn, in, stopped);
	vpnet_write_driver(vn, in, VP_INFO_DS_ACKNOWLEDGE | VP_INFO_DS_DRIVER, stopped);
	vn->st.stops_answered++;
}

/* Re-read the window (MSI-X vector 0, and once at pairing). */
static void vpnet_reconfigure(struct vpnet *vn)
{
	struct vp_devinfo *in;
	char why[VPNET_WHY];
	int err;

	in = kmalloc(sizeof(*in), GFP_KERNEL);
	if (!in)
		return;
	why[0] = 0;
	vn->st.snapshots++;
	err = vp_devinfo_snapshot(vn->info->win, in, why, sizeof(why));
	if (err == -EAGAIN) {
		/* The daemon was mid-write: its next interrupt brings us back. */
		vn->st.snapshot_retry++;
		goto out;
	}
	if (err) {
		vpnet_break(vn, NULL, why);
		goto out;
	}
	if (in->generation == vn->answered_gen && vn->have_cur)
		goto out;
	if (in->memory_peer != vn->mem->peer || in->device_type != VIRTIO_ID_NET ||
	    in->bar2_size > vn->mem->ram_len || in->num_queues > vn->nvec - 1) {
		snprintf(why, sizeof(why), "window no longer fits its functions: peer %u/%u, "
			 "type %u, bar2 0x%llx/0x%llx, %u queues for %d vectors",
			 in->memory_peer, vn->mem->peer, in->device_type, in->bar2_size,
			 vn->mem->ram_len, in->num_queues, vn->nvec);
		vpnet_break(vn, in, why);
		goto out;
	}
	vn->cur = *in;
	vn->have_cur = true;
	vn->broken = false;
	if (in->status & (VP_INFO_ST_GONE | VP_INFO_ST_STOP) ||
	    !(in->status & VP_INFO_ST_READY)) {
		netif_carrier_off(vn->ndev);
		if (in->status & VP_INFO_ST_STOP)
			vpnet_answer_stop(vn, in);
		else
			vpnet_drop_rings(vn);
		goto out;
	}
	vpnet_drop_rings(vn);
	if (vpnet_offloads(in->features & VPNET_FEATURES) != vn->offloads) {
		/* Renegotiated: the interface's features follow (after vn->lock). */
		WRITE_ONCE(vn->offloads, vpnet_offloads(in->features & VPNET_FEATURES));
		vn->offloads_changed = true;
	}
	err = vpnet_attach_rings(vn, in, why, sizeof(why));
	if (!err) {
		err = vpnet_dp_attach(vn, in->features & VPNET_FEATURES, in->daemon_peer);
		if (err)
			snprintf(why, sizeof(why), "the data path needs queues 0 and 1 (%d)", err);
	}
	if (err) {
		vpnet_break(vn, in, why);
		goto out;
	}
	vpnet_write_driver(vn, in, VP_INFO_DS_ACKNOWLEDGE | VP_INFO_DS_DRIVER |
			   VP_INFO_DS_DRIVER_OK, NULL);
	netif_carrier_on(vn->ndev);
	netdev_info(vn->ndev, "frontend %pUb device %llu ready, generation %u, %u queues\n",
		    in->uuid, in->device_id, in->generation, in->num_queues);
out:
	kfree(in);
}

static void vpnet_cfg_work(struct work_struct *w)
{
	struct vpnet *vn = container_of(w, struct vpnet, cfg_work);

	char why[VP_INFO_DRV_REASON_LEN];
	bool update;

	mutex_lock(&vn->lock);
	/* A ring rule broken on the data path: the link stays down until the
	 * frontend's device is published again (a new generation). */
	if (vpnet_dp_take_failure(vn, why, sizeof(why)) && !vn->broken)
		vpnet_break(vn, vn->have_cur ? &vn->cur : NULL, why);
	vpnet_reconfigure(vn);
	update = vn->offloads_changed;
	vn->offloads_changed = false;
	mutex_unlock(&vn->lock);
	/* Not under vn->lock: rtnl holders (unregister) never wait for it, but
	 * remove cancels this work before it unregisters. */
	if (update) {
		rtnl_lock();
		netdev_update_features(vn->ndev);
		rtnl_unlock();
	}
}

static irqreturn_t vpnet_config_irq(int irq, void *data)
{
	struct vpnet *vn = data;

	vn->st.config_irqs++;
	schedule_work(&vn->cfg_work);
	return IRQ_HANDLED;
}

static irqreturn_t vpnet_kick_irq(int irq, void *data)
{
	const struct vpnet_kickvec *kv = data;

	kv->vn->st.kicks[kv->q]++;
	vpnet_dp_kick(kv->vn, kv->q);
	return IRQ_HANDLED;
}

/* Vector v's dev_id: the device for 0, its queue's vpnet_kickvec for 1 + q. */
static void *vpnet_vec_data(struct vpnet *vn, int v)
{
	return v ? (void *)&vn->kickvec[v - 1] : (void *)vn;
}

/* ---- net_device ---------------------------------------------------------- */

static const struct net_device_ops vpnet_netdev_ops = {
	.ndo_open = vpnet_dp_open,
	.ndo_stop = vpnet_dp_stop,
	.ndo_start_xmit = vpnet_dp_xmit,
	.ndo_get_stats64 = vpnet_dp_get_stats64,
	.ndo_set_mac_address = eth_mac_addr,
	.ndo_validate_addr = eth_validate_addr,
	.ndo_fix_features = vpnet_fix_features,
	.ndo_features_check = vpnet_features_check,
};

static void vpnet_get_drvinfo(struct net_device *ndev, struct ethtool_drvinfo *di)
{
	struct vpnet *vn = netdev_priv(ndev);

	strscpy(di->driver, VPNET_DRV_NAME, sizeof(di->driver));
	strscpy(di->bus_info, pci_name(vn->info->pdev), sizeof(di->bus_info));
	snprintf(di->fw_version, sizeof(di->fw_version), "vhost-pci device %llu",
		 vn->vpdev.device_id);
}

static const char vpnet_stat_names[][ETH_GSTRING_LEN] = {
	"config_irqs", "snapshots", "snapshot_retry", "rejected", "stops_answered",
	"kicks_q0", "kicks_q1", "kicks_q2", "kicks_q3",
	"kicks_q4", "kicks_q5", "kicks_q6", "kicks_q7",
	"rx_packets", "rx_bytes", "rx_drop_bad", "rx_drop_too_big", "rx_drop_offload",
	"rx_drop_nomem", "rx_bad_desc", "rx_csum_partial", "rx_gso", "rx_gso_bytes",
	"tx_packets", "tx_bytes", "tx_drop_too_big", "tx_drop_link_down", "tx_drop_csum",
	"tx_bad_desc", "tx_queue_stopped", "tx_queue_woken", "tx_csum_partial", "tx_gso",
	"tx_gso_bytes",
	"signals_q0", "signals_q1", "napi_polls",
};

static int vpnet_get_sset_count(struct net_device *ndev, int sset)
{
	return sset == ETH_SS_STATS ? ARRAY_SIZE(vpnet_stat_names) : -EOPNOTSUPP;
}

static void vpnet_get_strings(struct net_device *ndev, u32 sset, u8 *data)
{
	if (sset == ETH_SS_STATS)
		memcpy(data, vpnet_stat_names, sizeof(vpnet_stat_names));
}

static void vpnet_get_ethtool_stats(struct net_device *ndev, struct ethtool_stats *es,
				    u64 *data)
{
	struct vpnet *vn = netdev_priv(ndev);
	const struct vpnet_stats *s = &vn->st;
	unsigned int i = 0, q;

	data[i++] = s->config_irqs;
	data[i++] = s->snapshots;
	data[i++] = s->snapshot_retry;
	data[i++] = s->rejected;
	data[i++] = s->stops_answered;
	for (q = 0; q < VP_INFO_MAX_QUEUES; q++)
		data[i++] = s->kicks[q];
	/* The data path's counters, in struct order (vpnet.h). */
	memcpy(&data[i], &s->dp, sizeof(s->dp));
	BUILD_BUG_ON(5 + VP_INFO_MAX_QUEUES + sizeof(s->dp) / sizeof(u64) !=
		     ARRAY_SIZE(vpnet_stat_names));
}

static const struct ethtool_ops vpnet_ethtool_ops = {
	.get_drvinfo = vpnet_get_drvinfo,
	.get_link = ethtool_op_get_link,
	.get_sset_count = vpnet_get_sset_count,
	.get_strings = vpnet_get_strings,
	.get_ethtool_stats = vpnet_get_ethtool_stats,
};

/* sysfs: /sys/class/net/vpnetN/vhost_pci_{uuid,device_id,reason} */
static ssize_t vhost_pci_uuid_show(struct device *d, struct device_attribute *a, char *buf)
{
	struct vpnet *vn = netdev_priv(to_net_dev(d));

	return sysfs_emit(buf, "%pUb\n", vn->vpdev.uuid);
}

static ssize_t vhost_pci_device_id_show(struct device *d, struct device_attribute *a, char *buf)
{
	struct vpnet *vn = netdev_priv(to_net_dev(d));

	return sysfs_emit(buf, "%llu\n", vn->vpdev.device_id);
}

static ssize_t vhost_pci_reason_show(struct device *d, struct device_attribute *a, char *buf)
{
	struct vpnet *vn = netdev_priv(to_net_dev(d));
	char esc[VP_INFO_DRV_REASON_LEN * 4];
	ssize_t n;

	mutex_lock(&vn->lock);
	n = sysfs_emit(buf, "%s\n", vn->broken ?
		       vp_devinfo_escape(vn->reason, sizeof(vn->reason), esc, sizeof(esc)) : "");
	mutex_unlock(&vn->lock);
	return n;
}

static DEVICE_ATTR_RO(vhost_pci_uuid);
static DEVICE_ATTR_RO(vhost_pci_device_id);
static DEVICE_ATTR_RO(vhost_pci_reason);

static struct attribute *vpnet_attrs[] = {
	&dev_attr_vhost_pci_uuid.attr,
	&dev_attr_vhost_pci_device_id.attr,
	&dev_attr_vhost_pci_reason.attr,
	NULL,
};

static const struct attribute_group vpnet_attr_group = {
	.attrs = vpnet_attrs,
};

/* ---- pairing ------------------------------------------------------------- */

static void vpnet_free_irqs(struct vpnet *vn)
{
	int v;

	if (!vn->irqs_on)
		return;
	for (v = 0; v < vn->nvec; v++)
		free_irq(pci_irq_vector(vn->mem->pdev, v), vpnet_vec_data(vn, v));
	pci_free_irq_vectors(vn->mem->pdev);
	vn->irqs_on = false;
}

static int vpnet_request_irqs(struct vpnet *vn)
{
	struct pci_dev *pdev = vn->mem->pdev;
	int n, v, err;

	n = pci_msix_vec_count(pdev);
	if (n < 1)
		return n < 0 ? n : -ENODEV;
	n = min(n, (int)VPNET_MAX_VEC);
	n = pci_alloc_irq_vectors(pdev, n, n, PCI_IRQ_MSIX);
	if (n < 0)
		return n;
	for (v = 0; v < n; v++) {
		if (v)
			vn->kickvec[v - 1] = (struct vpnet_kickvec){ vn, v - 1 };
		err = request_irq(pci_irq_vector(pdev, v), v ? vpnet_kick_irq : vpnet_config_irq,
				  0, VPNET_DRV_NAME, vpnet_vec_data(vn, v));
		if (err) {
			while (v--)
				free_irq(pci_irq_vector(pdev, v), vpnet_vec_data(vn, v));
			pci_free_irq_vectors(pdev);
			return err;
		}
	}
	vn->nvec = n;
	vn->irqs_on = true;
	return 0;
}

/* Tear a device down; its two functions stay bound and unpaired. vp_lock held. */
static void vpnet_destroy(struct vpnet *vn)
{
	vpnet_free_irqs(vn);
	cancel_work_sync(&vn->cfg_work);
	unregister_netdev(vn->ndev);
	list_del(&vn->vpdev.node);
	vhost_pci_info.ndevs--;
	mutex_lock(&vn->lock);
	if (vn->have_cur && !(vn->cur.status & VP_INFO_ST_GONE)) {
		u32 stopped[VP_INFO_MAX_QUEUES] = { 0 };
		bool live = vn->vq[0] || vn->vq[1];

		/* Status 0: driver gone; with rings that ran, stopped says where
		 * the next load resumes (docs/device.md, life cycle). */
		if (live)
			vpnet_stop_rings(vn, &vn->cur, stopped);
		vpnet_write_driver(vn, &vn->cur, 0, live ? stopped : NULL);
	}
	vpnet_drop_rings(vn);
	mutex_unlock(&vn->lock);
	/* Publishing the last frames may have found a broken ring and queued
	 * the work again. */
	cancel_work_sync(&vn->cfg_work);
	vn->info->vn = NULL;
	vn->mem->vn = NULL;
	free_netdev(vn->ndev);
}

/*
 * The largest MTU the frontend's receive buffers allow: IP's 65535 with
 * MRG_RXBUF (spread over several buffers), else 1500 (a
 * frame must fit one buffer, whose size we learn only when we pop it:
 * larger frames are counted in tx_drop_too_big). The frontend's own MTU
 * (VIRTIO_NET_F_MTU, config bytes 10-11) caps it.
 */
static unsigned int vpnet_max_mtu(const struct vp_devinfo *in)
{
	unsigned int mtu = ETH_DATA_LEN;

	if (in->features & BIT_ULL(VIRTIO_NET_F_MRG_RXBUF))
		mtu = IP_MAX_MTU;	/* a frame of it, tagged, is within VP_NET_MAX_PKT */
	if ((in->features & BIT_ULL(VIRTIO_NET_F_MTU)) && in->config_len >= 12) {
		unsigned int cm = in->config[10] | (in->config[11] << 8);

		if (cm >= ETH_MIN_MTU && cm < mtu)
			mtu = cm;
	}
	return mtu;
}

/* Pair info with a memory function if the window names one. vp_lock held. */
static void vp_try_pair(struct vp_infofn *info)
{
	struct vp_devinfo *in;
	struct net_device *ndev;
	struct vp_memfn *mem, *found = NULL;
	struct vpnet *vn;
	char why[VPNET_WHY];
	int err;

	in = kmalloc(sizeof(*in), GFP_KERNEL);
	if (!in)
		return;
	err = vp_devinfo_snapshot(info->win, in, why, sizeof(why));
	if (err) {
		dev_warn(&info->pdev->dev, "info window refused: %s\n", why);
		goto out;
	}
	list_for_each_entry(mem, &vp_memfns, node)
		if (!mem->vn && mem->peer == in->memory_peer)
			found = mem;
	if (!found)
		goto out;	/* its memory function has not probed yet */
	if (in->device_type != VIRTIO_ID_NET) {
		dev_warn(&info->pdev->dev, "device type %u: this driver drives net (1)\n",
			 in->device_type);
		goto out;
	}
	ndev = alloc_etherdev(sizeof(*vn));
	if (!ndev)
		goto out;
	err = dev_alloc_name(ndev, "vpnet%d");
	if (err < 0) {
		free_netdev(ndev);
		goto out;
	}
	vn = netdev_priv(ndev);
	vn->ndev = ndev;
	vn->info = info;
	vn->mem = found;
	mutex_init(&vn->lock);
	INIT_WORK(&vn->cfg_work, vpnet_cfg_work);
	/* Carry on from the page a previous load of the driver left. */
	{
		const struct vp_info_driver_page *pg = &((struct vp_info_window *)info->win)->driver;
		unsigned int q;

		vn->driver_gen = le32_to_cpu(READ_ONCE(pg->driver_gen));
		if (!le32_to_cpu(READ_ONCE(pg->driver_status))) {
			vn->resume_gen = le32_to_cpu(READ_ONCE(pg->acked_gen));
			for (q = 0; q < VP_INFO_MAX_QUEUES; q++)
				vn->resume[q] = le32_to_cpu(READ_ONCE(pg->stopped[q]));
		}
	}
	vn->vpdev = (struct vhost_pci_dev){
		.device_type = in->device_type, .device_id = in->device_id, .dev = ndev,
	};
	memcpy(vn->vpdev.uuid, in->uuid, sizeof(vn->vpdev.uuid));
	ndev->netdev_ops = &vpnet_netdev_ops;
	ndev->ethtool_ops = &vpnet_ethtool_ops;
	ndev->sysfs_groups[0] = &vpnet_attr_group;
	SET_NETDEV_DEV(ndev, &info->pdev->dev);
	vpnet_dp_init(vn);
	ndev->min_mtu = ETH_MIN_MTU;
	ndev->max_mtu = vpnet_max_mtu(in);
	/* Every offload the driver can do; ndo_fix_features keeps those the
	 * frontend negotiated (ethtool -k shows the rest off). */
	vn->offloads = vpnet_offloads(in->features & VPNET_FEATURES);
	ndev->hw_features = vpnet_offloads(VPNET_FEATURES);
	ndev->features = ndev->hw_features & vn->offloads;
	/* The frontend device's config space holds its MAC whether or not its
	 * driver negotiated VIRTIO_NET_F_MAC (a driver with a MAC of its own
	 * need not). */
	if (in->config_len >= ETH_ALEN && is_valid_ether_addr(in->config))
		eth_hw_addr_set(ndev, in->config);
	else
		eth_hw_addr_random(ndev);
	netif_carrier_off(ndev);
	err = vpnet_request_irqs(vn);
	if (err) {
		dev_warn(&found->pdev->dev, "MSI-X vectors: %d\n", err);
		free_netdev(ndev);
		goto out;
	}
	err = register_netdev(ndev);
	if (err) {
		vpnet_free_irqs(vn);
		free_netdev(ndev);
		goto out;
	}
	info->vn = vn;
	found->vn = vn;
	list_add_tail(&vn->vpdev.node, &vhost_pci_info.devs);
	vhost_pci_info.ndevs++;
	netdev_info(ndev, "vhost-pci device %llu: info %s, memory %s (peer %u), frontend %pUb\n",
		    in->device_id, pci_name(info->pdev), pci_name(found->pdev), found->peer,
		    in->uuid);
	schedule_work(&vn->cfg_work);
out:
	kfree(in);
}

/* ---- PCI ----------------------------------------------------------------- */

static int vp_probe_info(struct pci_dev *pdev)
{
	struct vp_infofn *info;
	void *win;
	u64 magic;

	if (pci_resource_len(pdev, 2) < VP_INFO_WINDOW_SIZE ||
	    !(pci_resource_flags(pdev, 2) & IORESOURCE_MEM))
		return -ENODEV;
	win = memremap(pci_resource_start(pdev, 2), VP_INFO_WINDOW_SIZE, MEMREMAP_WB);
	if (!win)
		return -ENODEV;
	magic = le64_to_cpu(READ_ONCE(*(__le64 *)win));
	if (magic != VP_INFO_MAGIC) {
		memunmap(win);
		return -ENODEV;
	}
	info = kzalloc(sizeof(*info), GFP_KERNEL);
	if (!info) {
		memunmap(win);
		return -ENOMEM;
	}
	info->pdev = pdev;
	info->win = win;
	pci_set_drvdata(pdev, info);
	mutex_lock(&vp_lock);
	list_add_tail(&info->node, &vp_infofns);
	vp_try_pair(info);
	mutex_unlock(&vp_lock);
	dev_info(&pdev->dev, "vhost-pci info function\n");
	return 0;
}

static int vp_probe_mem(struct pci_dev *pdev)
{
	struct vp_infofn *info;
	struct vp_memfn *mem;
	int err;

	if (!pdev->msix_cap || !pci_resource_len(pdev, 2) ||
	    !(pci_resource_flags(pdev, 2) & IORESOURCE_MEM))
		return -ENODEV;
	mem = kzalloc(sizeof(*mem), GFP_KERNEL);
	if (!mem)
		return -ENOMEM;
	mem->pdev = pdev;
	mem->regs = pci_iomap(pdev, 0, 0);
	if (!mem->regs) {
		err = -ENOMEM;
		goto fail;
	}
	mem->peer = (u16)readl(mem->regs + VP_IVSHMEM_IVPOSITION);
	mem->ram_len = pci_resource_len(pdev, 2);
	mem->ram = memremap(pci_resource_start(pdev, 2), mem->ram_len, MEMREMAP_WB);
	if (!mem->ram) {
		err = -ENOMEM;
		goto fail_unmap;
	}
	pci_set_master(pdev);
	pci_set_drvdata(pdev, mem);
	mutex_lock(&vp_lock);
	list_add_tail(&mem->node, &vp_memfns);
	list_for_each_entry(info, &vp_infofns, node)
		if (!info->vn)
			vp_try_pair(info);
	mutex_unlock(&vp_lock);
	dev_info(&pdev->dev, "vhost-pci memory function candidate, peer %u, BAR2 %llu MiB\n",
		 mem->peer, mem->ram_len >> 20);
	return 0;

fail_unmap:
	pci_iounmap(pdev, mem->regs);
fail:
	kfree(mem);
	return err;
}

static int vp_probe(struct pci_dev *pdev, const struct pci_device_id *id)
{
	int err;

	err = pcim_enable_device(pdev);
	if (err)
		return err;
	err = vpnet21_probe(pdev);	/* a 2.1 slot's .0 (vpnet21.c) */
	if (err != -ENODEV)
		return err;
	err = vp_probe_info(pdev);
	if (err != -ENODEV)
		return err;
	return vp_probe_mem(pdev);
}

static bool vp_is_info(struct pci_dev *pdev)
{
	struct vp_infofn *info;

	list_for_each_entry(info, &vp_infofns, node)
		if (info->pdev == pdev)
			return true;
	return false;
}

static void vp_remove(struct pci_dev *pdev)
{
	if (vpnet21_remove(pdev))
		return;
	mutex_lock(&vp_lock);
	if (vp_is_info(pdev)) {
		struct vp_infofn *info = pci_get_drvdata(pdev);

		if (info->vn)
			vpnet_destroy(info->vn);
		list_del(&info->node);
		memunmap(info->win);
		kfree(info);
	} else {
		struct vp_memfn *mem = pci_get_drvdata(pdev);

		if (mem->vn)
			vpnet_destroy(mem->vn);
		list_del(&mem->node);
		memunmap(mem->ram);
		pci_iounmap(pdev, mem->regs);
		kfree(mem);
	}
	mutex_unlock(&vp_lock);
}

static const struct pci_device_id vp_ids[] = {
	{ PCI_DEVICE(PCI_VENDOR_ID_REDHAT_QUMRANET, 0x1110) },	/* ivshmem */
	{ }
};
MODULE_DEVICE_TABLE(pci, vp_ids);

static struct pci_driver vp_driver = {
	.name = VPNET_DRV_NAME,
	.id_table = vp_ids,
	.probe = vp_probe,
	.remove = vp_remove,
};
module_pci_driver(vp_driver);

MODULE_DESCRIPTION("vhost-pci-net: a network interface per vhost-pci device");
MODULE_LICENSE("GPL");
