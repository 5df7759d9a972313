// SPDX-License-Identifier: GPL-2.0
/*
 * vhost-pci-net, 2.1 mode: a network interface (vp21_N) per 2.1 slot, one
 * of two symmetric peers over an intermediate window (docs/window21.md).
 *
 * A 2.1 slot is three ivshmem functions (1af4:1110, docs/device.md 9):
 *  .0 ivshmem-doorbell: BAR2 = our output section (read-write), IVPosition =
 *     our peer id, MSI-X 0 = the other peer published frames for us (our RX
 *     eventfd), 1 = it freed slots of ours (our TX eventfd); the doorbell
 *     (other << 16) | 0 or 1 rings its RX or TX eventfd;
 *  .1 ivshmem-plain, readonly=on: BAR2 = the window header;
 *  .2 ivshmem-plain, readonly=on: BAR2 = the other peer's section.
 * PCI ids cannot tell such a slot from any other ivshmem device, so probe
 * binds function .0 only when function .1 of the same slot carries the 2.1
 * header's magic and version, and leaves everything else to vpnet_main.c.
 *
 * Trust: the other's section is hostile (the header is the allocator's, and
 * checked all the same). Everything that reads either goes through
 * lib/net21.c, built in unchanged (vp_lib_net21.c): the header checks of
 * vp_net21_new_mapped(), and the one walker that copies each descriptor and
 * frame before checking it. A violation breaks the link: the carrier goes
 * down with the reason in the kernel log (and in sysfs vhost_pci_reason)
 * until the interface is set down and up again (a new epoch).
 *
 * Locking: lib/net21.c is one object, one thread, and both of its paths
 * touch the session state (a resync from either side resets both), so
 * every call into it is under vn->lock (a spinlock: NAPI poll, xmit and the
 * link work). The interrupt handlers only schedule NAPI or wake the queue.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/etherdevice.h>
#include <linux/ethtool.h>
#include <linux/interrupt.h>
#include <linux/io.h>
#include <linux/list.h>
#include <linux/mutex.h>
#include <linux/netdevice.h>
#include <linux/pci.h>
#include <linux/skbuff.h>
#include <linux/virtio_net.h>
#include <linux/workqueue.h>

#include "vhostpci/net21.h"
#include "vpnet.h"

#define VPNET21_BATCH 16
#define VPNET21_LINK_POLL (HZ)	/* a peer that dies without detaching kicks no one */

struct vpnet21_stats {		/* ethtool -S after the library's, in this order */
	u64 irqs_rx, irqs_tx, napi_polls;
	u64 rx_drop_bad;	/* shorter than an Ethernet header, or bad offload metadata */
	u64 rx_drop_nomem;
	u64 tx_drop_link_down;
	u64 tx_queue_stopped, tx_queue_woken;
	u64 resyncs, link_changes, broken;
};

struct vpnet21 {
	spinlock_t lock;		/* every call into net */
	struct vp_net21 *net;
	struct net_device *dev;
	struct napi_struct napi;
	struct pci_dev *pdev, *hdev, *odev;	/* functions .0, .1, .2 */
	void __iomem *regs;		/* .0 BAR0: IVPosition, doorbell */
	void *my, *hdr, *other;		/* BAR2 of .0 (rw), .1 and .2 (read-only) */
	u64 my_len, other_len;
	unsigned int me;
	struct delayed_work link_work;
	struct list_head node;
	bool broken_seen;		/* the reason was logged */
	bool dying;			/* remove: the link work must not run again */
	char reason[VPNET_WHY];
	struct vp_net_stats lib;	/* a copy under lock, for readers without it */
	struct vpnet21_stats st;
};

static DEFINE_MUTEX(vpnet21_lock);
static LIST_HEAD(vpnet21_devs);

/* lib/net21.c's notify hook: ring the other peer's RX (frames) or TX (slots). */
static void vpnet21_notify(void *opaque, bool tx)
{
	struct vpnet21 *v = opaque;

	writel(((u32)(1 - v->me) << 16) | (tx ? 1u : 0u), v->regs + VP_IVSHMEM_DOORBELL);
}

/* Have the link work look now (from any context). */
static void vpnet21_look(struct vpnet21 *v)
{
	if (!READ_ONCE(v->dying))
		mod_delayed_work(system_wq, &v->link_work, 0);
}

/* Under v->lock. */
static void vpnet21_snap_stats(struct vpnet21 *v)
{
	v->lib = *vp_net21_stats(v->net);
	v->st.resyncs = vp_net21_resyncs(v->net);
}

/*
 * Carrier follows the session (both epochs acknowledged, both attached):
 * the library's view, polled after every NAPI round that may have changed it
 * and once a second (a peer that dies without detaching kicks no one).
 */
static void vpnet21_link_work(struct work_struct *w)
{
	struct vpnet21 *v = container_of(to_delayed_work(w), struct vpnet21, link_work);
	bool up, newly = false;
	const char *why;

	if (READ_ONCE(v->dying))
		return;
	spin_lock_bh(&v->lock);
	up = vp_net21_up(v->net);
	why = vp_net21_broken(v->net);
	if (why && !v->broken_seen) {
		strscpy(v->reason, why, sizeof(v->reason));
		v->broken_seen = newly = true;
		v->st.broken++;
	}
	vpnet21_snap_stats(v);
	spin_unlock_bh(&v->lock);

	if (why) {
		if (newly)
			netdev_err(v->dev, "link down: the other peer broke the 2.1 rules: %s "
				   "(set the interface down and up to retry)\n", v->reason);
		if (netif_carrier_ok(v->dev)) {
			netif_carrier_off(v->dev);
			v->st.link_changes++;
		}
	} else if (up != netif_carrier_ok(v->dev)) {
		v->st.link_changes++;
		if (up) {
			netif_carrier_on(v->dev);
			netdev_info(v->dev, "link up (peer %u)\n", 1 - v->me);
			netif_wake_queue(v->dev);
			napi_schedule(&v->napi);	/* what it sent before we saw it */
		} else {
			netif_carrier_off(v->dev);
			netdev_info(v->dev, "link down: the other peer detached or is restarting\n");
		}
	} else if (up) {
		/* A look at its ring once a second: a doorbell it never rang (it
		 * may lie about wanting them, or die) costs latency, not frames.
		 * A no-op while the interface is down (NAPI disabled). */
		napi_schedule(&v->napi);
	}
	schedule_delayed_work(&v->link_work, VPNET21_LINK_POLL);
}

static irqreturn_t vpnet21_rx_irq(int irq, void *data)
{
	struct vpnet21 *v = data;

	v->st.irqs_rx++;
	napi_schedule(&v->napi);
	return IRQ_HANDLED;
}

static irqreturn_t vpnet21_tx_irq(int irq, void *data)
{
	struct vpnet21 *v = data;

	v->st.irqs_tx++;
	if (netif_queue_stopped(v->dev)) {
		v->st.tx_queue_woken++;
		netif_wake_queue(v->dev);
	}
	/* An attach or resync of the other kicks both vectors: look at the link. */
	vpnet21_look(v);
	return IRQ_HANDLED;
}

/* Deliver one received frame (the library copied it out and checked it). */
static void vpnet21_deliver(struct vpnet21 *v, struct sk_buff *skb, const struct vp_pkt *p)
{
	skb_put(skb, p->len);
	/* No offloads are offered: a GSO frame is the other's error. A partial
	 * checksum is fine (the kernel checks csum_start/offset against the
	 * frame). */
	if (p->len < ETH_HLEN || p->hdr.gso_type != VIRTIO_NET_HDR_GSO_NONE ||
	    virtio_net_hdr_to_skb(skb, (const struct virtio_net_hdr *)&p->hdr, true)) {
		v->st.rx_drop_bad++;
		v->dev->stats.rx_dropped++;
		dev_kfree_skb_any(skb);
		return;
	}
	skb->protocol = eth_type_trans(skb, v->dev);
	napi_gro_receive(&v->napi, skb);
}

static int vpnet21_poll(struct napi_struct *napi, int budget)
{
	struct vpnet21 *v = container_of(napi, struct vpnet21, napi);
	struct sk_buff *skbs[VPNET21_BATCH];
	struct vp_pkt pkts[VPNET21_BATCH];
	unsigned int cap = vp_net21_frame_max(v->net, true);
	bool broken = false, was_up, up;
	int done = 0;

	v->st.napi_polls++;
	was_up = netif_carrier_ok(v->dev);
	while (done < budget) {
		unsigned int want = min_t(unsigned int, VPNET21_BATCH, budget - done), k, i;
		int got;

		for (k = 0; k < want; k++) {
			skbs[k] = napi_alloc_skb(napi, cap);
			if (!skbs[k])
				break;
			pkts[k].data = skbs[k]->data;
			pkts[k].len = cap;
		}
		if (!k) {
			v->st.rx_drop_nomem++;
			break;	/* frames stay in the other's ring: the next poll takes them */
		}
		spin_lock(&v->lock);
		got = vp_net21_rx_burst(v->net, pkts, k);
		spin_unlock(&v->lock);
		for (i = 0; i < (got > 0 ? (unsigned int)got : 0); i++)
			vpnet21_deliver(v, skbs[i], &pkts[i]);
		for (; i < k; i++)
			dev_kfree_skb_any(skbs[i]);
		if (got < 0) {
			broken = true;
			break;
		}
		done += got;
		if ((unsigned int)got < k)
			break;
	}
	spin_lock(&v->lock);
	up = vp_net21_up(v->net);
	vpnet21_snap_stats(v);
	spin_unlock(&v->lock);
	if (broken || up != was_up)
		vpnet21_look(v);
	/* Broken: complete without arming; the link work takes the carrier down. */
	if (done < budget && napi_complete_done(napi, done) && !broken) {
		int r;

		/* Ask for a doorbell when its avail passes our consumed, then look
		 * again (the fence in vp_net21_arm() pairs with its publish()). */
		spin_lock(&v->lock);
		r = vp_net21_arm(v->net, true, false);
		spin_unlock(&v->lock);
		if (r > 0)
			napi_schedule(napi);
	}
	return done;
}

static netdev_tx_t vpnet21_xmit(struct sk_buff *skb, struct net_device *dev)
{
	struct vpnet21 *v = netdev_priv(dev);
	struct vp_pkt p;
	int r;

	/* No offloads are offered: a frame is linear and checksummed here. */
	if (skb_linearize(skb) ||
	    (skb->ip_summed == CHECKSUM_PARTIAL && skb_checksum_help(skb))) {
		dev->stats.tx_dropped++;
		dev_kfree_skb_any(skb);
		return NETDEV_TX_OK;
	}
	memset(&p.hdr, 0, sizeof(p.hdr));
	p.data = skb->data;
	p.len = skb->len;
	spin_lock(&v->lock);
	r = vp_net21_tx_burst(v->net, &p, 1, 0);
	vpnet21_snap_stats(v);
	if (r == 0 && vp_net21_up(v->net)) {
		/* Our ring is full: stop, ask for the TX doorbell, look again. */
		netif_stop_queue(dev);
		v->st.tx_queue_stopped++;
		if (vp_net21_arm(v->net, false, true) > 0) {
			netif_start_queue(dev);
			r = vp_net21_tx_burst(v->net, &p, 1, 0);
		}
	}
	spin_unlock(&v->lock);
	if (r == 0 && netif_queue_stopped(dev))
		return NETDEV_TX_BUSY;	/* requeued; the TX vector wakes the queue */
	if (r <= 0) {
		v->st.tx_drop_link_down++;
		dev->stats.tx_dropped++;
		if (r < 0)
			vpnet21_look(v);
	}
	dev_consume_skb_any(skb);
	return NETDEV_TX_OK;
}

static int vpnet21_open(struct net_device *dev)
{
	struct vpnet21 *v = netdev_priv(dev);

	spin_lock_bh(&v->lock);
	if (vp_net21_broken(v->net)) {
		/* A broken link is retried with a new epoch (docs/window21.md 4). */
		netdev_info(dev, "retrying the link after: %s\n", v->reason);
		vp_net21_reset(v->net);
		v->broken_seen = false;
	}
	spin_unlock_bh(&v->lock);
	napi_enable(&v->napi);
	netif_start_queue(dev);
	napi_schedule(&v->napi);
	vpnet21_look(v);
	return 0;
}

static int vpnet21_stop(struct net_device *dev)
{
	struct vpnet21 *v = netdev_priv(dev);

	netif_stop_queue(dev);
	napi_disable(&v->napi);
	return 0;
}

static void vpnet21_get_stats64(struct net_device *dev, struct rtnl_link_stats64 *s)
{
	struct vpnet21 *v = netdev_priv(dev);

	/* The snapshot the poll and the link work take under the lock. */
	s->rx_packets = READ_ONCE(v->lib.rx_packets);
	s->rx_bytes = READ_ONCE(v->lib.rx_bytes);
	s->tx_packets = READ_ONCE(v->lib.tx_packets);
	s->tx_bytes = READ_ONCE(v->lib.tx_bytes);
	s->rx_dropped = dev->stats.rx_dropped + READ_ONCE(v->lib.rx_drop_too_big);
	s->tx_dropped = dev->stats.tx_dropped + READ_ONCE(v->lib.tx_drop_too_big);
}

static const struct net_device_ops vpnet21_netdev_ops = {
	.ndo_open = vpnet21_open,
	.ndo_stop = vpnet21_stop,
	.ndo_start_xmit = vpnet21_xmit,
	.ndo_get_stats64 = vpnet21_get_stats64,
	.ndo_set_mac_address = eth_mac_addr,
	.ndo_validate_addr = eth_validate_addr,
};

/* ethtool -S: the library's counters (struct vp_net_stats order), then ours. */
static const char vpnet21_stat_names[][ETH_GSTRING_LEN] = {
	"tx_packets", "tx_bytes", "rx_packets", "rx_bytes", "tx_drop_no_buf",
	"tx_drop_too_big", "rx_drop_too_big", "rx_drop_lib", "rx_drop_offload",
	"doorbells", "doorbells_dropped", "wakeups",
	"irqs_rx", "irqs_tx", "napi_polls", "rx_drop_bad", "rx_drop_nomem",
	"tx_drop_link_down", "tx_queue_stopped", "tx_queue_woken", "resyncs",
	"link_changes", "broken",
};

static int vpnet21_get_sset_count(struct net_device *dev, int sset)
{
	return sset == ETH_SS_STATS ? ARRAY_SIZE(vpnet21_stat_names) : -EOPNOTSUPP;
}

static void vpnet21_get_strings(struct net_device *dev, u32 sset, u8 *data)
{
	if (sset == ETH_SS_STATS)
		memcpy(data, vpnet21_stat_names, sizeof(vpnet21_stat_names));
}

static void vpnet21_get_ethtool_stats(struct net_device *dev, struct ethtool_stats *es,
				      u64 *data)
{
	struct vpnet21 *v = netdev_priv(dev);

	BUILD_BUG_ON((sizeof(v->lib) + sizeof(v->st)) / sizeof(u64) !=
		     ARRAY_SIZE(vpnet21_stat_names));
	spin_lock_bh(&v->lock);
	vpnet21_snap_stats(v);
	memcpy(data, &v->lib, sizeof(v->lib));
	memcpy(data + sizeof(v->lib) / sizeof(u64), &v->st, sizeof(v->st));
	spin_unlock_bh(&v->lock);
}

static void vpnet21_get_drvinfo(struct net_device *dev, struct ethtool_drvinfo *di)
{
	struct vpnet21 *v = netdev_priv(dev);

	strscpy(di->driver, KBUILD_MODNAME, sizeof(di->driver));
	strscpy(di->bus_info, pci_name(v->pdev), sizeof(di->bus_info));
	snprintf(di->fw_version, sizeof(di->fw_version), "2.1 window, peer %u", v->me);
}

static const struct ethtool_ops vpnet21_ethtool_ops = {
	.get_drvinfo = vpnet21_get_drvinfo,
	.get_link = ethtool_op_get_link,
	.get_sset_count = vpnet21_get_sset_count,
	.get_strings = vpnet21_get_strings,
	.get_ethtool_stats = vpnet21_get_ethtool_stats,
};

/* sysfs: /sys/class/net/vp21_N/vhost_pci_reason (why the link broke, or empty) */
static ssize_t vhost_pci_reason_show(struct device *d, struct device_attribute *a, char *buf)
{
	struct vpnet21 *v = netdev_priv(to_net_dev(d));
	ssize_t n;

	spin_lock_bh(&v->lock);
	n = sysfs_emit(buf, "%s\n", v->broken_seen ? v->reason : "");
	spin_unlock_bh(&v->lock);
	return n;
}
static DEVICE_ATTR_RO(vhost_pci_reason);

static struct attribute *vpnet21_attrs[] = {
	&dev_attr_vhost_pci_reason.attr,
	NULL,
};

static const struct attribute_group vpnet21_attr_group = {
	.attrs = vpnet21_attrs,
};

/* ---- PCI ----------------------------------------------------------------- */

/* Function fn of pdev's slot if it is an ivshmem with a memory BAR2 of at least min. */
static struct pci_dev *vpnet21_sibling(struct pci_dev *pdev, unsigned int fn, u64 min)
{
	struct pci_dev *d = pci_get_slot(pdev->bus, PCI_DEVFN(PCI_SLOT(pdev->devfn), fn));

	if (!d)
		return NULL;
	if (d->vendor != PCI_VENDOR_ID_REDHAT_QUMRANET || d->device != 0x1110 ||
	    !(pci_resource_flags(d, 2) & IORESOURCE_MEM) || pci_resource_len(d, 2) < min) {
		pci_dev_put(d);
		return NULL;
	}
	return d;
}

/* Is function .1 of pdev's slot a 2.1 header? Maps it into v->hdr if so. */
static bool vpnet21_find_header(struct vpnet21 *v, struct pci_dev *pdev)
{
	const struct vp21_header *h;

	v->hdev = vpnet21_sibling(pdev, 1, VP21_HEADER_SIZE);
	if (!v->hdev)
		return false;
	if (pci_enable_device_mem(v->hdev))
		goto no;
	v->hdr = memremap(pci_resource_start(v->hdev, 2), VP21_HEADER_SIZE, MEMREMAP_WB);
	if (!v->hdr)
		goto no_disable;
	h = v->hdr;
	/* Only a marker here: lib/net21.c checks a copy of the whole header. */
	if (le32_to_cpu(READ_ONCE(h->magic)) == VP21_MAGIC &&
	    le16_to_cpu(READ_ONCE(h->version)) == VP21_VERSION)
		return true;
	memunmap(v->hdr);
	v->hdr = NULL;
no_disable:
	pci_disable_device(v->hdev);
no:
	pci_dev_put(v->hdev);
	v->hdev = NULL;
	return false;
}

static void vpnet21_unmap(struct vpnet21 *v)
{
	if (v->my)
		memunmap(v->my);
	if (v->other)
		memunmap(v->other);
	if (v->regs)
		pci_iounmap(v->pdev, v->regs);
	if (v->odev) {
		pci_disable_device(v->odev);
		pci_dev_put(v->odev);
	}
	if (v->hdr)
		memunmap(v->hdr);
	if (v->hdev) {
		pci_disable_device(v->hdev);
		pci_dev_put(v->hdev);
	}
}

static int vpnet21_map(struct vpnet21 *v)
{
	struct pci_dev *pdev = v->pdev;
	u32 iv;

	v->odev = vpnet21_sibling(pdev, 2, VP21_PAGE);
	if (!v->odev || pci_enable_device_mem(v->odev)) {
		dev_err(&pdev->dev, "2.1 slot: a header at .1 but no usable ivshmem at .2\n");
		if (v->odev)
			pci_dev_put(v->odev);
		v->odev = NULL;
		return -ENODEV;
	}
	if (!pdev->msix_cap || !(pci_resource_flags(pdev, 2) & IORESOURCE_MEM) ||
	    pci_resource_len(pdev, 2) < VP21_PAGE) {
		dev_err(&pdev->dev, "2.1 slot: .0 is not an ivshmem-doorbell with MSI-X and BAR2\n");
		return -ENODEV;
	}
	v->regs = pci_iomap(pdev, 0, 0);
	if (!v->regs)
		return -ENOMEM;
	/* Our id is the doorbell function's IVPosition: the daemon's ivshmem
	 * server sets it, the other peer cannot. */
	iv = readl(v->regs + VP_IVSHMEM_IVPOSITION);
	if (iv >= VP21_PEERS) {
		dev_err(&pdev->dev, "2.1 slot: IVPosition %u of .0 is not a peer id (0, 1)\n", iv);
		return -EINVAL;
	}
	v->me = iv;
	v->my_len = pci_resource_len(pdev, 2);
	v->my = memremap(pci_resource_start(pdev, 2), v->my_len, MEMREMAP_WB);
	v->other_len = pci_resource_len(v->odev, 2);
	v->other = memremap(pci_resource_start(v->odev, 2), v->other_len, MEMREMAP_WB);
	return v->my && v->other ? 0 : -ENOMEM;
}

static int vpnet21_irqs(struct vpnet21 *v)
{
	int r = pci_alloc_irq_vectors(v->pdev, 2, 2, PCI_IRQ_MSIX);

	if (r < 0) {
		dev_err(&v->pdev->dev, "2.1 slot: cannot enable 2 MSI-X vectors (%d)\n", r);
		return r;
	}
	r = request_irq(pci_irq_vector(v->pdev, 0), vpnet21_rx_irq, 0, "vp21-rx", v);
	if (r)
		goto fail;
	r = request_irq(pci_irq_vector(v->pdev, 1), vpnet21_tx_irq, 0, "vp21-tx", v);
	if (!r)
		return 0;
	free_irq(pci_irq_vector(v->pdev, 0), v);
fail:
	pci_free_irq_vectors(v->pdev);
	return r;
}

static void vpnet21_free_irqs(struct vpnet21 *v)
{
	free_irq(pci_irq_vector(v->pdev, 1), v);
	free_irq(pci_irq_vector(v->pdev, 0), v);
	pci_free_irq_vectors(v->pdev);
}

int vpnet21_probe(struct pci_dev *pdev)
{
	struct vp_net21_map m = { 0 };
	struct net_device *dev;
	struct vpnet21 *v;
	unsigned int mtu_max;
	int err;

	if (PCI_FUNC(pdev->devfn) != 0)
		return -ENODEV;
	dev = alloc_etherdev(sizeof(*v));
	if (!dev)
		return -ENOMEM;
	v = netdev_priv(dev);
	v->dev = dev;
	v->pdev = pdev;
	if (!vpnet21_find_header(v, pdev)) {
		free_netdev(dev);
		return -ENODEV;
	}
	/* From here on it is a 2.1 slot: every refusal says why. */
	spin_lock_init(&v->lock);
	INIT_DELAYED_WORK(&v->link_work, vpnet21_link_work);
	err = vpnet21_map(v);
	if (err)
		goto fail_unmap;
	pci_set_master(pdev);
	netif_napi_add(dev, &v->napi, vpnet21_poll);
	err = vpnet21_irqs(v);
	if (err)
		goto fail_napi;
	m.peer = v->me;
	m.header = v->hdr;
	m.header_len = VP21_HEADER_SIZE;
	m.my = v->my;
	m.my_len = v->my_len;
	m.other = v->other;
	m.other_len = v->other_len;
	m.notify = vpnet21_notify;
	m.opaque = v;
	/* The mode only matters to vp_net21_wait(); NAPI arms by itself. */
	err = vp_net21_new_mapped(&v->net, &m, VP_NET_POLL);
	if (err) {
		dev_err(&pdev->dev, "2.1 slot refused (%d): the reason is logged above\n", err);
		goto fail_irqs;
	}
	err = dev_alloc_name(dev, "vp21_%d");
	if (err < 0)
		goto fail_net;
	SET_NETDEV_DEV(dev, &pdev->dev);
	dev->netdev_ops = &vpnet21_netdev_ops;
	dev->ethtool_ops = &vpnet21_ethtool_ops;
	dev->sysfs_groups[0] = &vpnet21_attr_group;
	mtu_max = min(vp_net21_frame_max(v->net, true), vp_net21_frame_max(v->net, false));
	dev->min_mtu = ETH_MIN_MTU;
	dev->max_mtu = mtu_max > ETH_HLEN ? mtu_max - ETH_HLEN : ETH_MIN_MTU;
	dev->mtu = min_t(unsigned int, ETH_DATA_LEN, dev->max_mtu);
	eth_hw_addr_random(dev);
	netif_carrier_off(dev);
	err = register_netdev(dev);
	if (err)
		goto fail_net;
	pci_set_drvdata(pdev, v);
	mutex_lock(&vpnet21_lock);
	list_add_tail(&v->node, &vpnet21_devs);
	mutex_unlock(&vpnet21_lock);
	netdev_info(dev, "2.1 peer %u: slot %s, our section %llu KiB, the other's %llu KiB, "
		    "MTU up to %u\n", v->me, pci_name(pdev), v->my_len >> 10, v->other_len >> 10,
		    dev->max_mtu);
	schedule_delayed_work(&v->link_work, 0);
	return 0;

fail_net:
	vp_net21_free(v->net);
fail_irqs:
	vpnet21_free_irqs(v);
fail_napi:
	netif_napi_del(&v->napi);
fail_unmap:
	vpnet21_unmap(v);
	free_netdev(dev);
	return err;
}

bool vpnet21_remove(struct pci_dev *pdev)
{
	struct vpnet21 *v, *found = NULL;

	mutex_lock(&vpnet21_lock);
	list_for_each_entry(v, &vpnet21_devs, node)
		if (v->pdev == pdev) {
			found = v;
			list_del(&v->node);
			break;
		}
	mutex_unlock(&vpnet21_lock);
	if (!found)
		return false;
	v = found;
	/* No new look at the link (the vectors, the poll and the work itself
	 * queue one), then none running, then the interface goes. */
	WRITE_ONCE(v->dying, true);
	vpnet21_free_irqs(v);
	cancel_delayed_work_sync(&v->link_work);
	unregister_netdev(v->dev);
	cancel_delayed_work_sync(&v->link_work);
	netif_napi_del(&v->napi);
	vp_net21_free(v->net);	/* detach: state 0 in our section, the other is rung */
	vpnet21_unmap(v);
	pci_set_drvdata(pdev, NULL);
	free_netdev(v->dev);
	return true;
}
