/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * vp-vm: a userspace "VM" for vhost-pci.
 *
 * A process whose RAM is a memfd (guest-physical address = offset in it)
 * with one or two network ports and an application:
 *
 *   frontend port: our virtio-net driver (vp_netfe) in the VM's RAM,
 *                  announced to a vhost-pci server (native) or to a stock
 *                  vhost-user backend (--vhost-user); reconnects when the
 *                  link is lost, like a guest whose NIC was reset.
 *   backend port:  a vhost-pci server (vp_server, native dialect, stock
 *                  vhost-user frontends accepted too); each READY device gets
 *                  a vhost-pci-net driver (vp_net) that drives the frontend
 *                  VM's rings in the frontend VM's mapped memory.
 *
 *   guest-pci:     a backend port inside a backend VM: the vhost-pci devices
 *                  of the guest's own PCI tree (lib/guestdev.c), one link each.
 *
 *   apps: gen, sink, echo, ping, fwd (two ports), tap (a Linux TAP device
 *   per link).
 *
 * `vp-vm chain N` starts N of them as a chain (gen -> fwd ... -> sink), each
 * hop a vhost-pci link, and reports delivered packets per CPU-second.
 *
 * One thread, one loop; the library is driven from here (no hidden threads).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <net/if.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <linux/if_tun.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "vhostpci/log.h"
#include "vhostpci/mem.h"
#include "vmlib.h"
#include "vp-version.h"

static const char usage_text[] =
"Usage: vp-vm [OPTIONS] --frontend --connect SOCK [--vhost-user] --app APP\n"
"       vp-vm [OPTIONS] --backend --listen SOCK --app APP\n"
"       vp-vm [OPTIONS] --backend --guest-pci[=UUID] --app APP   (inside a backend VM)\n"
"       vp-vm [OPTIONS] --pair21 SOCK | --pair21-serve SOCK --app APP   (2.1 peers)\n"
"       vp-vm [OPTIONS] --pair21-guest --app APP   (2.1 peer in a QEMU guest)\n"
"       vp-vm chain N [OPTIONS]\n"
"\n"
"A userspace VM: RAM is a memfd, guest-physical address = offset in it.\n"
"\n"
"Port (the VM's NIC):\n"
"  --frontend             our virtio-net driver in this VM's RAM, announced to\n"
"  --connect SOCK           a vhost-pci server (native dialect; a backend VM or\n"
"                           vhost-pcid), or with --vhost-user to a stock\n"
"                           vhost-user backend (DPDK vhost PMD, OVS, vp-vswitch)\n"
"  --vhost-user\n"
"  --backend              a vhost-pci server on SOCK; every READY frontend device\n"
"  --listen SOCK            gets a vhost-pci-net driver (vhost-user frontends\n"
"                           are accepted too)\n"
"  --guest-pci[=UUID]     inside a backend VM: the vhost-pci devices of this\n"
"                           guest's PCI tree (sysfs), one link each, or only\n"
"                           the frontend UUID's; --mode poll or adaptive\n"
"  --sysfs-root DIR       --guest-pci: the PCI tree to search (default\n"
"                           /sys/bus/pci/devices; tests use a fake one)\n"
"  --pair21 SOCK          a symmetric 2.1 peer (docs/window21.md): join the pair\n"
"                           broker at SOCK; each peer writes only its own half\n"
"  --pair21-serve SOCK    the same, serving the pair broker at SOCK ourselves\n"
"                           (and taking one half; the other peer joins)\n"
"  --pair21-guest         a 2.1 peer inside a QEMU guest: the half the daemon\n"
"                           gave this guest as a PCI slot (docs/device.md 8);\n"
"                           --mode poll; --sysfs-root applies\n"
"  --port2 SPEC           second port, for --app fwd:\n"
"                           frontend,connect=SOCK[,vhost-user] | backend,listen=SOCK\n"
"                           | backend,guest-pci | pair21=SOCK | pair21-serve=SOCK\n"
"                           | pair21-guest\n"
"  --connect-timeout SEC  keep retrying the first connection; a backend gen/ping\n"
"                         waits this long for a frontend (default 10)\n"
"\n"
"Application (--app, default sink):\n"
"  gen    send test frames (sequence number, timestamp, checksum); also\n"
"         verifies what comes back\n"
"  sink   receive and verify: order, loss, corruption; one-way latency\n"
"  echo   send every frame back where it came from\n"
"  ping   ping-pong round-trip latency (p50/p99/p99.9); peer runs echo\n"
"  fwd    L2 forwarder between port 1 and port 2 (--port2), both ways\n"
"  tap    bridge the port to a Linux TAP device (IFF_TAP, IFF_NO_PI, vnet header)\n"
"\n"
"Traffic:\n"
"  --size N|MIN-MAX       frame size in bytes, fixed or random (default 64; %u..%u)\n"
"  --rate PPS             packets per second, 0 = unlimited (default 0)\n"
"  --count N              gen/ping: frames to send; sink: exit after N verified\n"
"  --seconds SEC          gen/ping: traffic time after link-up (gen default 5);\n"
"                         others: exit after SEC (default: run until a signal)\n"
"  --ends N               sink: exit after END frames of N generators (default 0)\n"
"  --burst N              frames per burst, 1..%u (default 32; a fwd hop takes\n"
"                         up to 8x that when so many are waiting)\n"
"  --verify full|header   full: gen fills and sink checks every payload byte;\n"
"                         header: neither touches the payload (default full)\n"
"  --copy                 use the copying burst calls only; by default gen builds\n"
"                         frames in the ring's buffers (our TX slots, or the\n"
"                         frontend's RX buffers on a backend), a frontend sink\n"
"                         checks them in place, and a backend echo or fwd\n"
"                         receives straight into the buffers it sends from\n"
"  --interval USEC        ping: pause between pings (default 0)\n"
"  --tx-first N           echo: send N test frames at link-up, then reflect all\n"
"                         (two echo VMs, one or both with --tx-first: a loop\n"
"                         like testpmd's 'start tx_first'; default 0)\n"
"  --tap NAME             tap: interface name (default vpvm%%d); a backend's\n"
"                           link N > 0 gets NAME followed by N\n"
"  --tap-addr A.B.C.D/N   tap: IPv4 address of link 0's (default none)\n"
"\n"
"Machine:\n"
"  --ram SIZE             RAM, power of two >= 1M (default 64M)\n"
"  --ring N               virtqueue size of a frontend port, power of two (default 256)\n"
"  --queues N             virtio-net queue pairs (multiqueue): a backend port offers\n"
"                           N (1..8), a frontend port has N (1..2) and uses them\n"
"                           if the peer takes MQ; echo, sink and tap then walk\n"
"                           every pair (echo answers on the pair a frame came\n"
"                           on) and report frames per pair (default 1)\n"
"  --features LIST|HEX    virtio-net features: a backend port accepts these from\n"
"                         frontends (default: csum to indirect_desc below; the\n"
"                         tap app all), a frontend port offers and wants them\n"
"                         (default: mrg_rxbuf, event_idx, indirect_desc). Names\n"
"                         out of csum, guest_csum, mrg_rxbuf, event_idx,\n"
"                         indirect_desc, ring_packed (frontend, --vhost-user),\n"
"                         host_tso4, host_tso6, host_ecn,\n"
"                         guest_tso4, guest_tso6, guest_ecn (version_1 is\n"
"                         implied), or a hex mask\n"
"  --max-links N          backend ports: frontend devices driven at once, 1..%u\n"
"                         (default %u); one more is refused with the reason, and\n"
"                         its sender may offer it again when a link frees\n"
"  --allow-unsealed       backend ports: accept frontend memory that can shrink\n"
"                         (an unsealed memfd or a file; refused by default). A\n"
"                         frontend truncating it then loses only its own link\n"
"  --mode poll|irq|adaptive  wait strategy (default adaptive)\n"
"  --coalesce FRAMES,USECS  interrupt moderation on every link: a busy ring\n"
"                         asks its peer to kick after up to FRAMES buffers\n"
"                         (adapting, 1..1024) and sleeps at most USECS\n"
"                         (1..1000000) for a partial batch (default off)\n"
"  --cpu N                pin to CPU N\n"
"  --mac XX:XX:XX:XX:XX:XX  frontend MAC / gen source MAC\n"
"  --dst-mac MAC          gen destination (default ff:ff:ff:ff:ff:ff)\n"
"  --uuid UUID            frontend VM UUID (default random)\n"
"  --name NAME            name in logs and the report (default the app)\n"
"\n"
"Output:\n"
"  --json                 final report as one JSON line on stdout\n"
"  --quiet                no progress line (every second on stderr)\n"
"  --log-level LEVEL      err, warn, info (default) or debug\n"
"  -h, --help             this help\n"
"  -V, --version          show the version and exit\n"
"\n"
"chain N: VM1 (gen) -> VM2 (fwd) -> ... -> VMn (sink), each hop a vhost-pci\n"
"link (VMi+1 is the backend of VMi's frontend port). Options: --seconds,\n"
"--size, --rate, --count, --burst, --mode (default irq), --coalesce, --verify,\n"
"--json, --quiet, --cpu-list A,B,..(pin VM i to the i-th CPU, cycling),\n"
"--log-level.\n"
"\n"
"SIGINT/SIGTERM: report and exit. Exit status: 0 ok, 1 verification failed or\n"
"runtime error, 2 usage error.\n";

enum app { APP_GEN, APP_SINK, APP_ECHO, APP_PING, APP_FWD, APP_TAP };
static const char *const app_names[] = { "gen", "sink", "echo", "ping", "fwd", "tap" };

struct port_spec {
	enum vp_port_side kind;
	const char *path;
	bool vhost_user;
	bool guest_pci;          /* backend inside a backend VM (--guest-pci) */
	bool pair21_serve;       /* 2.1 peer serving the pair broker itself */
	bool guest_uuid_set;
	uint8_t guest_uuid[16];
};

struct opts {
	struct port_spec port[2];
	unsigned nports;
	enum app app;
	bool app_set;
	uint64_t size_lo, size_hi;
	uint64_t rate;
	uint64_t count;
	double seconds;
	bool seconds_set;
	uint64_t ends;
	unsigned burst;
	bool verify_full;
	bool copy;
	uint64_t tx_first;
	uint64_t interval_us;
	const char *tap_name;
	const char *tap_addr;
	uint64_t ram;
	unsigned ring;
	unsigned queues;       /* --queues: virtio-net queue pairs per port (MQ) */
	enum vp_net_mode mode;
	struct vp_net_coalesce coalesce;
	const char *coalesce_arg;  /* as given, for chain's VMs */
	int cpu;
	uint8_t mac[6], dst_mac[6];
	bool mac_set;
	uint8_t uuid[16];
	const char *name;
	bool json, quiet;
	double connect_timeout;
	enum vp_log_level log_level;
	uint64_t features;       /* backend ports: accepted features; 0 = all supported */
	unsigned max_links;      /* backend ports: devices at once; 0 = server limit */
	bool allow_unsealed;     /* backend ports: accept memory that can shrink */
	uint64_t truncate_after; /* test hook: frames before a frontend cuts its RAM */
	enum vp_port_test_bad bad_kind; /* test hook: a bad TX chain to post; 0 = none */
	uint64_t bad_after;      /* ... after this many frames */
	const char *sysfs_root;  /* --guest-pci: PCI tree to search (tests: a fake one) */
};

/* ------------------------------------------------------------------------ */
/* logging: "vp-vm[name]: level: msg" */

static const char *g_name = "vp-vm";

/* "frontend,connect=SOCK[,vhost-user]" | "backend,listen=SOCK" | "connect=.." */
static int parse_port_spec(char *s, struct port_spec *ps)
{
	char *save = NULL;

	memset(ps, 0, sizeof(*ps));
	for (char *t = strtok_r(s, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		if (!strcmp(t, "frontend"))
			ps->kind = VP_PORT_FRONTEND;
		else if (!strcmp(t, "backend"))
			ps->kind = VP_PORT_BACKEND;
		else if (!strcmp(t, "vhost-user"))
			ps->vhost_user = true;
		else if (!strcmp(t, "guest-pci")) {
			ps->guest_pci = true;
			if (!ps->kind)
				ps->kind = VP_PORT_BACKEND;
		}
		else if (!strncmp(t, "connect=", 8) && t[8]) {
			ps->path = t + 8;
			if (!ps->kind)
				ps->kind = VP_PORT_FRONTEND;
		} else if (!strncmp(t, "pair21=", 7) && t[7]) {
			ps->path = t + 7;
			ps->kind = VP_PORT_PEER21;
		} else if (!strcmp(t, "pair21-guest")) {
			ps->kind = VP_PORT_PEER21;
			ps->guest_pci = true;
		} else if (!strncmp(t, "pair21-serve=", 13) && t[13]) {
			ps->path = t + 13;
			ps->kind = VP_PORT_PEER21;
			ps->pair21_serve = true;
		} else if (!strncmp(t, "listen=", 7) && t[7]) {
			ps->path = t + 7;
			if (!ps->kind)
				ps->kind = VP_PORT_BACKEND;
		} else
			return -EINVAL;
	}
	return 0;
}

static int check_port(const struct port_spec *ps, const char *what, enum vp_net_mode mode)
{
	if (ps->guest_pci && ps->kind == VP_PORT_PEER21) {
		if (ps->path || ps->vhost_user || ps->pair21_serve)
			return vm_usage_error("%s: --pair21-guest takes no socket", what);
		(void)mode;  /* irq needs VFIO in the guest; adaptive polls without it */
		return 0;
	}
	if (ps->guest_pci) {
		if (ps->kind == VP_PORT_FRONTEND || ps->path || ps->vhost_user)
			return vm_usage_error("%s: --guest-pci is a backend port of its own "
					   "(no --frontend, --connect, --listen or --vhost-user)", what);
		if (mode == VP_NET_IRQ)
			return vm_usage_error("%s: --guest-pci runs in --mode poll or adaptive: the "
					   "frontend's kicks are MSI-X interrupts that userspace in a "
					   "guest cannot receive (no VFIO no-IOMMU)", what);
		return 0;
	}
	if (!ps->kind)
		return vm_usage_error("%s: say --frontend --connect SOCK or --backend --listen SOCK",
				   what);
	if (ps->kind == VP_PORT_PEER21)
		return ps->vhost_user ? vm_usage_error("%s: --vhost-user is for a frontend port",
						       what) : 0;
	if (!ps->path)
		return vm_usage_error("%s: %s needs a socket path (%s)", what,
				   ps->kind == VP_PORT_FRONTEND ? "a frontend" : "a backend",
				   ps->kind == VP_PORT_FRONTEND ? "--connect SOCK" : "--listen SOCK");
	if (ps->vhost_user && ps->kind != VP_PORT_FRONTEND)
		return vm_usage_error("%s: --vhost-user is for a frontend port (a backend port "
				   "accepts vhost-user frontends anyway)", what);
	return 0;
}

enum {
	O_FRONTEND = 256, O_BACKEND, O_CONNECT, O_LISTEN, O_VU, O_PORT2, O_CTIMEOUT, O_APP,
	O_SIZE, O_RATE, O_COUNT, O_SECONDS, O_ENDS, O_BURST, O_VERIFY, O_INTERVAL, O_TAP,
	O_TAPADDR, O_RAM, O_RING, O_MODE, O_COALESCE, O_CPU, O_MAC, O_DSTMAC, O_UUID, O_NAME, O_JSON,
	O_QUIET, O_LOGLEVEL, O_CPULIST, O_COPY, O_TXFIRST, O_FEATURES, O_MAXLINKS,
	O_UNSEALED, O_TRUNCATE, O_BADDESC, O_GUESTPCI, O_SYSFS, O_PAIR21, O_PAIR21_SERVE, O_PAIR21_GUEST,
	O_QUEUES,
};

static const struct option lopts[] = {
	{ "frontend", no_argument, NULL, O_FRONTEND },
	{ "backend", no_argument, NULL, O_BACKEND },
	{ "connect", required_argument, NULL, O_CONNECT },
	{ "listen", required_argument, NULL, O_LISTEN },
	{ "vhost-user", no_argument, NULL, O_VU },
	{ "guest-pci", optional_argument, NULL, O_GUESTPCI },
	{ "sysfs-root", required_argument, NULL, O_SYSFS },
	{ "pair21", required_argument, NULL, O_PAIR21 },
	{ "pair21-serve", required_argument, NULL, O_PAIR21_SERVE },
	{ "pair21-guest", no_argument, NULL, O_PAIR21_GUEST },
	{ "port2", required_argument, NULL, O_PORT2 },
	{ "connect-timeout", required_argument, NULL, O_CTIMEOUT },
	{ "app", required_argument, NULL, O_APP },
	{ "size", required_argument, NULL, O_SIZE },
	{ "rate", required_argument, NULL, O_RATE },
	{ "count", required_argument, NULL, O_COUNT },
	{ "seconds", required_argument, NULL, O_SECONDS },
	{ "ends", required_argument, NULL, O_ENDS },
	{ "burst", required_argument, NULL, O_BURST },
	{ "verify", required_argument, NULL, O_VERIFY },
	{ "copy", no_argument, NULL, O_COPY },
	{ "tx-first", required_argument, NULL, O_TXFIRST },
	{ "interval", required_argument, NULL, O_INTERVAL },
	{ "tap", required_argument, NULL, O_TAP },
	{ "tap-addr", required_argument, NULL, O_TAPADDR },
	{ "ram", required_argument, NULL, O_RAM },
	{ "ring", required_argument, NULL, O_RING },
	{ "queues", required_argument, NULL, O_QUEUES },
	{ "features", required_argument, NULL, O_FEATURES },
	{ "max-links", required_argument, NULL, O_MAXLINKS },
	{ "allow-unsealed", no_argument, NULL, O_UNSEALED },
	/* Test hook, not in --help (docs/vp-vm.md): see truncate_own_ram(). */
	{ "test-truncate-ram-after", required_argument, NULL, O_TRUNCATE },
	{ "test-bad-desc", required_argument, NULL, O_BADDESC },
	{ "mode", required_argument, NULL, O_MODE },
	{ "coalesce", required_argument, NULL, O_COALESCE },
	{ "cpu", required_argument, NULL, O_CPU },
	{ "cpu-list", required_argument, NULL, O_CPULIST },
	{ "mac", required_argument, NULL, O_MAC },
	{ "dst-mac", required_argument, NULL, O_DSTMAC },
	{ "uuid", required_argument, NULL, O_UUID },
	{ "name", required_argument, NULL, O_NAME },
	{ "json", no_argument, NULL, O_JSON },
	{ "quiet", no_argument, NULL, O_QUIET },
	{ "log-level", required_argument, NULL, O_LOGLEVEL },
	{ "help", no_argument, NULL, 'h' },
	{ "version", no_argument, NULL, 'V' },
	{ NULL, 0, NULL, 0 },
};

static const char *cpu_list; /* chain only */
static bool chain_log_set;

/* Parse argv into o. Returns -1 to go on, or an exit status. */
/* Test hook: "range|loop|len[@N]" (N frames first, default 64). */
static int parse_bad_desc(const char *arg, struct opts *o)
{
	static const char *const kinds[] = { "range", "loop", "len", "hdr" };
	const char *at = strchr(arg, '@');
	size_t n = at ? (size_t)(at - arg) : strlen(arg);

	o->bad_kind = 0;
	for (unsigned k = 0; k < 4; k++)
		if (strlen(kinds[k]) == n && !strncmp(arg, kinds[k], n))
			o->bad_kind = (enum vp_port_test_bad)(VP_PORT_TEST_BAD_RANGE + k);
	o->bad_after = 64;
	if (!o->bad_kind || (at && vm_parse_u64(at + 1, &o->bad_after) < 0))
		return -1;
	return 0;
}

static int parse_opts(int argc, char **argv, struct opts *o, bool chain)
{
	uint64_t v;
	int c;

	memset(o, 0, sizeof(*o));
	o->app = APP_SINK;
	o->size_lo = o->size_hi = 64;
	o->burst = 32;
	o->verify_full = true;
	o->ram = 64ull << 20;
	o->ring = 256;
	o->mode = chain ? VP_NET_IRQ : VP_NET_ADAPTIVE;
	o->cpu = -1;
	o->connect_timeout = 10;
	o->log_level = vp_log_get_level();
	memset(o->dst_mac, 0xff, 6);
	o->nports = 1;
	opterr = 0;
	optind = chain ? 3 : 1;  /* after "chain N" */
	while ((c = getopt_long(argc, argv, ":hV", lopts, NULL)) != -1) {
		switch (c) {
		case O_FRONTEND:
		case O_BACKEND: {
			enum vp_port_side k = c == O_FRONTEND ? VP_PORT_FRONTEND : VP_PORT_BACKEND;

			if (o->port[0].kind && o->port[0].kind != k)
				return vm_usage_error("--frontend and --backend are exclusive (use "
						   "--port2 for a second port)");
			o->port[0].kind = k;
			break;
		}
		case O_CONNECT:
			if (o->port[0].kind == VP_PORT_BACKEND)
				return vm_usage_error("--connect is for a frontend; a backend uses --listen");
			o->port[0].kind = VP_PORT_FRONTEND;
			o->port[0].path = optarg;
			break;
		case O_LISTEN:
			if (o->port[0].kind == VP_PORT_FRONTEND)
				return vm_usage_error("--listen is for a backend; a frontend uses --connect");
			o->port[0].kind = VP_PORT_BACKEND;
			o->port[0].path = optarg;
			break;
		case O_GUESTPCI:
			o->port[0].guest_pci = true;
			if (!o->port[0].kind)
				o->port[0].kind = VP_PORT_BACKEND;
			if (optarg) {
				if (vp_uuid_parse(optarg, o->port[0].guest_uuid) < 0)
					return vm_usage_error("bad --guest-pci UUID '%s'", optarg);
				o->port[0].guest_uuid_set = true;
			}
			break;
		case O_SYSFS:
			o->sysfs_root = optarg;
			break;
		case O_PAIR21:
		case O_PAIR21_SERVE:
			if (o->port[0].kind)
				return vm_usage_error("--pair21 is a port of its own (no --frontend, "
						   "--backend, --connect or --listen)");
			o->port[0].kind = VP_PORT_PEER21;
			o->port[0].path = optarg;
			o->port[0].pair21_serve = c == O_PAIR21_SERVE;
			break;
		case O_PAIR21_GUEST:
			if (o->port[0].kind)
				return vm_usage_error("--pair21-guest is a port of its own (no "
						   "--frontend, --backend, --guest-pci or --pair21)");
			o->port[0].kind = VP_PORT_PEER21;
			o->port[0].guest_pci = true;
			break;
		case O_VU:
			o->port[0].vhost_user = true;
			break;
		case O_PORT2:
			if (parse_port_spec(optarg, &o->port[1]) < 0)
				return vm_usage_error("bad --port2 '%s': want frontend,connect=SOCK"
						   "[,vhost-user] or backend,listen=SOCK", optarg);
			o->nports = 2;
			break;
		case O_CTIMEOUT:
			if (vm_parse_seconds(optarg, &o->connect_timeout) < 0)
				return vm_usage_error("bad --connect-timeout '%s'", optarg);
			break;
		case O_APP: {
			unsigned i;

			for (i = 0; i < sizeof(app_names) / sizeof(app_names[0]); i++)
				if (!strcmp(optarg, app_names[i]))
					break;
			if (i == sizeof(app_names) / sizeof(app_names[0]))
				return vm_usage_error("unknown --app '%s' (gen, sink, echo, ping, fwd, tap)",
						   optarg);
			o->app = (enum app)i;
			o->app_set = true;
			break;
		}
		case O_SIZE:
			if (vm_parse_range(optarg, &o->size_lo, &o->size_hi) < 0)
				return vm_usage_error("bad --size '%s': want N or MIN-MAX", optarg);
			if (o->size_lo < VM_PKT_MIN || o->size_hi > VM_PKT_MAX)
				return vm_usage_error("--size %s: frames are %u..%u bytes", optarg,
						   VM_PKT_MIN, VM_PKT_MAX);
			break;
		case O_RATE:
			if (vm_parse_u64(optarg, &o->rate) < 0)
				return vm_usage_error("bad --rate '%s': packets per second, e.g. 100k",
						   optarg);
			break;
		case O_COUNT:
			if (vm_parse_u64(optarg, &o->count) < 0)
				return vm_usage_error("bad --count '%s'", optarg);
			break;
		case O_SECONDS:
			if (vm_parse_seconds(optarg, &o->seconds) < 0)
				return vm_usage_error("bad --seconds '%s'", optarg);
			o->seconds_set = true;
			break;
		case O_ENDS:
			if (vm_parse_u64(optarg, &o->ends) < 0 || o->ends > VM_MAX_STREAMS)
				return vm_usage_error("bad --ends '%s' (0..%u)", optarg, VM_MAX_STREAMS);
			break;
		case O_BURST:
			if (vm_parse_u64(optarg, &v) < 0 || v < 1 || v > VP_NET_MAX_BURST)
				return vm_usage_error("bad --burst '%s' (1..%u)", optarg, VP_NET_MAX_BURST);
			o->burst = (unsigned)v;
			break;
		case O_VERIFY:
			if (!strcmp(optarg, "full"))
				o->verify_full = true;
			else if (!strcmp(optarg, "header"))
				o->verify_full = false;
			else
				return vm_usage_error("bad --verify '%s' (full or header)", optarg);
			break;
		case O_COPY:
			o->copy = true;
			break;
		case O_TXFIRST:
			if (vm_parse_u64(optarg, &o->tx_first) < 0 || o->tx_first > 1000000)
				return vm_usage_error("bad --tx-first '%s' (0..1000000 frames)", optarg);
			break;
		case O_INTERVAL:
			if (vm_parse_u64(optarg, &o->interval_us) < 0)
				return vm_usage_error("bad --interval '%s' (microseconds)", optarg);
			break;
		case O_TAP:
			if (!*optarg || strlen(optarg) >= IFNAMSIZ)
				return vm_usage_error("bad --tap '%s' (1..%d characters)", optarg,
						   IFNAMSIZ - 1);
			o->tap_name = optarg;
			break;
		case O_TAPADDR:
			o->tap_addr = optarg;
			break;
		case O_RAM:
			if (vm_parse_bytes(optarg, &o->ram) < 0 || o->ram < (1u << 20) ||
			    (o->ram & (o->ram - 1)) || o->ram > (1ull << 40))
				return vm_usage_error("bad --ram '%s': a power of two, 1M..1T", optarg);
			break;
		case O_RING:
			if (vm_parse_u64(optarg, &v) < 0 || v < 2 || v > 32768 || (v & (v - 1)))
				return vm_usage_error("bad --ring '%s': a power of two, 2..32768", optarg);
			o->ring = (unsigned)v;
			break;
		case O_QUEUES:
			if (vm_parse_u64(optarg, &v) < 0 || v < 1 || v > VP_DEV_MAX_QUEUE_PAIRS)
				return vm_usage_error("bad --queues '%s': 1..%d queue pairs", optarg,
						      VP_DEV_MAX_QUEUE_PAIRS);
			o->queues = (unsigned)v;
			break;
		case O_FEATURES:
			if (vm_parse_features(optarg, &o->features) < 0)
				return vm_usage_error("bad --features '%s': a hex mask or names joined "
						   "by ',' out of csum, guest_csum, mrg_rxbuf, "
						   "event_idx, indirect_desc, version_1", optarg);
			break;
		case O_UNSEALED:
			o->allow_unsealed = true;
			break;
		case O_TRUNCATE:
			if (vm_parse_u64(optarg, &o->truncate_after) < 0 || !o->truncate_after)
				return vm_usage_error("bad --test-truncate-ram-after '%s'", optarg);
			break;
		case O_BADDESC:
			if (parse_bad_desc(optarg, o) < 0)
				return vm_usage_error("bad --test-bad-desc '%s': range, loop, len or hdr, "
						   "optionally @FRAMES", optarg);
			break;
		case O_MAXLINKS:
			if (vm_parse_u64(optarg, &v) < 0 || v < 1 || v > VP_PORT_MAX_LINKS)
				return vm_usage_error("bad --max-links '%s' (1..%u)", optarg,
						   (unsigned)VP_PORT_MAX_LINKS);
			o->max_links = (unsigned)v;
			break;
		case O_MODE:
			if (vm_parse_mode(optarg, &o->mode) < 0)
				return vm_usage_error("bad --mode '%s' (poll, irq or adaptive)", optarg);
			break;
		case O_COALESCE: {
			unsigned f, us;
			char end;

			if (sscanf(optarg, "%u,%u%c", &f, &us, &end) != 2 || f < 1 ||
			    f > VP_NET_COALESCE_MAX_FRAMES || us < 1 || us > VP_NET_COALESCE_MAX_USECS)
				return vm_usage_error("bad --coalesce '%s' (FRAMES,USECS: 1..%u,1..%u)",
						   optarg, VP_NET_COALESCE_MAX_FRAMES,
						   VP_NET_COALESCE_MAX_USECS);
			o->coalesce = (struct vp_net_coalesce){ f, us };
			o->coalesce_arg = optarg;
			break;
		}
		case O_CPU:
			if (vm_parse_u64(optarg, &v) < 0 || v >= CPU_SETSIZE)
				return vm_usage_error("bad --cpu '%s'", optarg);
			o->cpu = (int)v;
			break;
		case O_CPULIST:
			if (!chain)
				return vm_usage_error("--cpu-list is for 'vp-vm chain'; use --cpu");
			cpu_list = optarg;
			break;
		case O_MAC:
			if (vm_parse_mac(optarg, o->mac) < 0)
				return vm_usage_error("bad --mac '%s'", optarg);
			o->mac_set = true;
			break;
		case O_DSTMAC:
			if (vm_parse_mac(optarg, o->dst_mac) < 0)
				return vm_usage_error("bad --dst-mac '%s'", optarg);
			break;
		case O_UUID:
			if (vp_uuid_parse(optarg, o->uuid) < 0)
				return vm_usage_error("bad --uuid '%s'", optarg);
			break;
		case O_NAME:
			o->name = optarg;
			break;
		case O_JSON:
			o->json = true;
			break;
		case O_QUIET:
			o->quiet = true;
			break;
		case O_LOGLEVEL:
			if (vm_parse_log_level(optarg, &o->log_level) < 0)
				return vm_usage_error("bad --log-level '%s' (err, warn, info, debug)",
						   optarg);
			chain_log_set = true;
			break;
		case 'h':
			printf(usage_text, VM_PKT_MIN, VM_PKT_MAX, VP_NET_MAX_BURST, (unsigned)VP_PORT_MAX_LINKS,
		       (unsigned)VP_PORT_MAX_LINKS);
			return VM_EXIT_OK;
		case 'V':
			printf("vp-vm %s\n", VP_VERSION);
			return VM_EXIT_OK;
		case ':':
			return vm_usage_error("option '%s' needs a value", argv[optind - 1]);
		default:
			return vm_usage_error("unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind < argc)
		return vm_usage_error("unexpected argument '%s'", argv[optind]);
	if (chain)
		return -1;
	if (o->sysfs_root && !o->port[0].guest_pci && !o->port[1].guest_pci)
		return vm_usage_error("--sysfs-root is for --guest-pci");
	if (!o->port[0].kind && !o->port[0].path)
		return vm_usage_error("no port: say --frontend --connect SOCK or --backend --listen SOCK");
	c = check_port(&o->port[0], "port 1", o->mode);
	if (c)
		return c;
	if (o->nports == 2) {
		c = check_port(&o->port[1], "--port2", o->mode);
		if (c)
			return c;
		if (o->port[0].path && o->port[1].path && !strcmp(o->port[0].path, o->port[1].path))
			return vm_usage_error("port 1 and --port2 use the same socket %s",
					   o->port[0].path);
	}
	if (o->app == APP_FWD && o->nports != 2)
		return vm_usage_error("--app fwd needs a second port (--port2 SPEC)");
	if (o->app != APP_FWD && o->nports == 2)
		return vm_usage_error("--port2 is only used by --app fwd");
	if (o->app == APP_PING && o->size_lo != o->size_hi)
		return vm_usage_error("--app ping takes a fixed --size");
	if ((o->tap_name || o->tap_addr) && o->app != APP_TAP)
		return vm_usage_error("--tap/--tap-addr are for --app tap");
	if (o->ends && o->app != APP_SINK)
		return vm_usage_error("--ends is for --app sink");
	if (o->tx_first && o->app != APP_ECHO)
		return vm_usage_error("--tx-first is for --app echo");
	if (o->truncate_after && (o->port[0].kind != VP_PORT_FRONTEND || o->nports != 1))
		return vm_usage_error("--test-truncate-ram-after is for a single frontend port");
	if (o->bad_kind && (o->port[0].kind != VP_PORT_FRONTEND || o->nports != 1 ||
			    o->truncate_after))
		return vm_usage_error("--test-bad-desc is for a single frontend port, alone");
	if (o->app == APP_GEN && !o->seconds_set && !o->count) {
		o->seconds = 5;
		o->seconds_set = true;
	}
	return -1;
}

/* ------------------------------------------------------------------------ */
/* the VM */

struct txq {          /* frames waiting to be sent, in order */
	struct vp_pkt *pk;  /* burst slots; pk[0..n) pending */
	unsigned n;
	int link;
};

#define MQ_FLOWS_PER_PAIR 4
#define MQ_MAX_FLOWS (MQ_FLOWS_PER_PAIR * VP_DEV_MAX_QUEUE_PAIRS)

/* The queue pair of a flow (a test stream), RSS-style: a hash of its id. */
static unsigned flow_pair(uint32_t stream, unsigned npairs)
{
	return ((stream * 0x9e3779b1u) >> 16) % npairs;
}

struct vm {
	struct opts o;
	struct vm_ram ram;
	struct vp_port *port[2];
	unsigned nports;
	struct vp_waitset *ws;
	int ws_port[2];           /* wait set member ids */
	int64_t t0, t_up, deadline;
	bool has_deadline;

	/* buffers: rx[p] for receiving on port p, tx for sending */
	uint8_t *mem;
	size_t mem_size;
	struct vp_pkt *rx[2];
	struct vp_pkt *zc;   /* burst: buffers lent by the driver (zero copy) */
	uint64_t inject_left;     /* echo --tx-first: frames still to inject */
	unsigned zc_rr;           /* relay_zc: the link to look at first */
	bool inject_turn;
	struct vm_pkt_tmpl tmpl;  /* gen, header-only frames */
	struct txq txq[2];   /* gen: txq[0]; echo: txq[0]; fwd: txq[d] = to port d */
	uint32_t buf_cap;

	struct vm_verify ver;
	struct vm_hist *lat;
	uint32_t stream;
	uint64_t rng;

	/* counters */
	uint64_t tx_pkts, tx_bytes, rx_pkts, rx_bytes;
	int64_t tx_first, tx_last, rx_first, rx_last;
	int64_t ram_cut_at;    /* test hook: when our RAM was truncated; 0 = not */
	bool bad_posted;       /* test hook: the bad TX chain is out */
	uint64_t fwd_pkts[2];
	uint64_t tap_drops;
	uint64_t echo_drops;   /* echo --tx-first: reflected frames the ring had no room for */
	uint64_t qrx[VP_DEV_MAX_QUEUE_PAIRS], qtx[VP_DEV_MAX_QUEUE_PAIRS]; /* --queues: per pair */
	unsigned qrr;          /* --queues: the link * pairs slot the next receive starts at */
	/* --queues gen: flows (a stream each), spread over the pairs by a hash
	 * of the flow's stream id, as RSS would; fixed when the link first comes up. */
	unsigned nflows;
	uint32_t fstream[MQ_MAX_FLOWS];
	uint8_t fpair[MQ_MAX_FLOWS];
	uint64_t fseq[MQ_MAX_FLOWS];    /* frames the flow sent: its next sequence */
	bool fend[MQ_MAX_FLOWS];        /* its END marker went */
	unsigned frr[VP_DEV_MAX_QUEUE_PAIRS]; /* the flow of a pair's next frame */
	uint64_t wrong_queue;  /* --queues: test frames on a pair their flow does not hash to */

	/* gen */
	uint64_t gen_seq;
	bool gen_done, end_sent, end_back;
	int64_t gen_done_at;
	int64_t end_sent_at;
	bool saw_own;
	uint64_t rate_base_seq;
	int64_t rate_base_ns;

	/* ping */
	bool ping_out;
	uint64_t ping_seq, ping_sent, ping_ok, ping_lost, ping_stale;
	int64_t ping_at, ping_next;

	/* tap */
	struct vm_tap {           /* one TAP per link of port 1, opened when it first comes up */
		int fd;
		bool failed;      /* could not be opened: not tried again */
		uint64_t offload;
		char ifname[IFNAMSIZ];
	} tap[VP_PORT_MAX_LINKS];
	unsigned tap_rr;          /* tap -> port: the TAP to read first */

	bool failed;
	char fail_reason[200];
	/* progress */
	int64_t prog_at;
	uint64_t prog_tx, prog_rx;
};

static uint64_t rng_next(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	*s = x;
	return x;
}

static uint32_t next_size(struct vm *vm)
{
	if (vm->o.size_lo == vm->o.size_hi)
		return (uint32_t)vm->o.size_lo;
	return (uint32_t)(vm->o.size_lo + rng_next(&vm->rng) % (vm->o.size_hi - vm->o.size_lo + 1));
}

static void note_tx(struct vm *vm, const struct vp_pkt *pk, int n, int64_t now)
{
	for (int i = 0; i < n; i++)
		vm->tx_bytes += pk[i].len;
	vm->tx_pkts += (uint64_t)n;
	if (!vm->tx_first)
		vm->tx_first = now;
	vm->tx_last = now;
}

static void note_rx(struct vm *vm, const struct vp_pkt *pk, int n, int64_t now)
{
	for (int i = 0; i < n; i++)
		vm->rx_bytes += pk[i].len;
	vm->rx_pkts += (uint64_t)n;
	if (!vm->rx_first)
		vm->rx_first = now;
	vm->rx_last = now;
}

static void reset_caps(struct vm *vm, struct vp_pkt *pk, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		pk[i].len = vm->buf_cap;
		memset(&pk[i].hdr, 0, sizeof(pk[i].hdr));
	}
}

/* Send what is queued; keep the rest (in order) for later. Returns the
 * number sent, or -1 if the queue is still full (blocked). */
static int txq_flush(struct vm *vm, struct vp_port *p, struct txq *q, int64_t now)
{
	struct vp_pkt done[VP_NET_MAX_BURST];
	int r;

	if (!q->n)
		return 0;
	r = vp_port_tx(p, q->link, q->pk, q->n, 0);
	if (r <= 0)
		return r < 0 ? 0 : -1;
	note_tx(vm, q->pk, r, now);
	/* Rotate: sent slots go to the end, so their buffers are reused. */
	memcpy(done, q->pk, (size_t)r * sizeof(done[0]));
	memmove(q->pk, q->pk + r, (size_t)(q->n - (unsigned)r) * sizeof(q->pk[0]));
	memcpy(q->pk + (q->n - (unsigned)r), done, (size_t)r * sizeof(done[0]));
	q->n -= (unsigned)r;
	return r;
}

static void verify_burst(struct vm *vm, struct vp_pkt *pk, int n, int64_t now);

/*
 * --queues: receive from the next link and queue pair with frames, round
 * robin over all of them, counting per pair. Returns the count (0: none).
 */
static int mq_rx(struct vm *vm, struct vp_port *p, struct vp_pkt *pk, int *link, unsigned *pair)
{
	unsigned nl = vp_port_max_links(p), slots = nl * VP_DEV_MAX_QUEUE_PAIRS;

	for (unsigned k = 0; k < slots; k++) {
		unsigned s = (vm->qrr + k) % slots, l = s / VP_DEV_MAX_QUEUE_PAIRS,
			 q = s % VP_DEV_MAX_QUEUE_PAIRS;
		int n;

		if (q >= vp_port_queue_pairs(p, (int)l))
			continue;
		n = vp_port_rx_queue(p, (int)l, q, pk, vm->o.burst);
		if (n > 0) {
			vm->qrr = (s + 1) % slots;
			vm->qrx[q] += (uint64_t)n;
			*link = (int)l;
			*pair = q;
			return n;
		}
	}
	return 0;
}

/* --queues echo: each frame goes back on the pair it came on; what does not
 * fit is dropped (as testpmd's forwarding does) and counted. */
static bool mq_echo(struct vm *vm, int64_t now, bool *want_rx, bool *want_tx)
{
	struct vp_pkt *pk = vm->rx[0];
	unsigned pair;
	int link, n, r;

	*want_rx = true;
	*want_tx = false;
	reset_caps(vm, pk, vm->o.burst);
	n = mq_rx(vm, vm->port[0], pk, &link, &pair);
	if (n <= 0)
		return false;
	note_rx(vm, pk, n, vm_now_ns());
	r = vp_port_tx_queue(vm->port[0], link, pair, pk, (unsigned)n, VP_NET_TX_DROP);
	if (r > 0) {
		note_tx(vm, pk, r, now);
		vm->qtx[pair] += (uint64_t)r;
	}
	if (r < n)
		vm->echo_drops += (uint64_t)(n - (r > 0 ? r : 0));
	return true;
}

/* Receive and verify a burst on port pi; returns the count. A frontend
 * port lends its receive buffers (checked in place) unless --copy. */
static int rx_verify(struct vm *vm, unsigned pi, int64_t now)
{
	struct vp_port *p = vm->port[pi];
	struct vp_pkt *pk = vm->rx[pi];
	int link, n;
	unsigned pair;

	if (vm->o.queues > 1) {
		reset_caps(vm, pk, vm->o.burst);
		n = mq_rx(vm, p, pk, &link, &pair);
		if (n <= 0)
			return 0;
		verify_burst(vm, pk, n, now);
		/* Each test frame must come on the pair its flow hashes to. */
		for (int i = 0; i < n; i++) {
			struct vm_pkt_info info;

			if (vm_pkt_check(pk[i].data, pk[i].len, &info) == VM_PKT_OK &&
			    flow_pair(info.stream, vp_port_queue_pairs(p, link)) != pair)
				vm->wrong_queue++;
		}
		return n;
	}
	if (!vm->o.copy && vp_port_side(p) == VP_PORT_FRONTEND) {
		n = vp_port_rx_borrow(p, vm->zc, vm->o.burst);
		if (n <= 0)
			return 0;
		verify_burst(vm, vm->zc, n, now);
		vp_port_rx_release(p);
		return n;
	}
	reset_caps(vm, pk, vm->o.burst);
	n = vp_port_rx(p, pk, vm->o.burst, &link);
	if (n <= 0)
		return 0;
	verify_burst(vm, pk, n, now);
	return n;
}

static void verify_burst(struct vm *vm, struct vp_pkt *pk, int n, int64_t now)
{
	struct vm_burst_seen seen;

	note_rx(vm, pk, n, now);
	/* Own frames came back (round trip); others: one-way. */
	vm_verify_burst(&vm->ver, pk, (unsigned)n, now, vm->lat, vm->stream, &seen);
	if (seen.data_from && vm->o.app == APP_GEN)
		vm->saw_own = true;
	/* END markers are not traffic. */
	vm->rx_pkts -= seen.ends;
	vm->rx_bytes -= seen.end_bytes;
	if (seen.end_from)
		vm->end_back = true;
}

/* ---- gen ---- */

static unsigned gen_allowance(struct vm *vm, int64_t now, int64_t *wait_ns)
{
	uint64_t sent = vm->gen_seq - vm->rate_base_seq, allowed;

	if (!vm->o.rate)
		return UINT_MAX;
	allowed = (uint64_t)((double)(now - vm->rate_base_ns) * (double)vm->o.rate / 1e9);
	if (allowed > sent)
		return allowed - sent > UINT_MAX ? UINT_MAX : (unsigned)(allowed - sent);
	*wait_ns = (int64_t)(1e9 / (double)vm->o.rate);
	return 0;
}

static void gen_push_end(struct vm *vm)
{
	struct txq *q = &vm->txq[0];
	struct vm_pkt_info in = { .type = VM_PKT_END, .stream = vm->stream, .seq = vm->gen_seq,
				  .stamp_ns = vm_now_ns() };
	struct vp_pkt *pk = &q->pk[q->n++];

	pk->len = VM_PKT_MIN + 10;  /* 64 */
	memset(&pk->hdr, 0, sizeof(pk->hdr));
	vm_pkt_build(pk->data, pk->len, vm->o.dst_mac, vm->o.mac, &in, true);
	vm->end_sent = true;
}

/* One DATA frame of len bytes into pk (whose data is set). */
static inline void gen_build(struct vm *vm, struct vp_pkt *pk, uint32_t len, int64_t now)
{
	pk->len = len;
	memset(&pk->hdr, 0, sizeof(pk->hdr));
	if (vm->o.verify_full) {
		struct vm_pkt_info in = { .type = VM_PKT_DATA, .stream = vm->stream,
					  .seq = vm->gen_seq, .stamp_ns = now };

		vm_pkt_build(pk->data, len, vm->o.dst_mac, vm->o.mac, &in, true);
	} else {
		vm_pkt_build_tmpl(pk->data, len, &vm->tmpl, vm->gen_seq, now);
	}
	vm->gen_seq++;
}

/* The run starts at the first link up (rate and --seconds from there) and is
 * done at --count frames or the deadline. */
static void gen_clock(struct vm *vm, int64_t now)
{
	if (!vm->t_up) {
		vm->t_up = now;
		vm->rate_base_ns = now;
		if (vm->o.seconds_set) {
			vm->deadline = now + (int64_t)(vm->o.seconds * 1e9);
			vm->has_deadline = true;
		}
	}
	if (!vm->gen_done && ((vm->o.count && vm->gen_seq >= vm->o.count) ||
			      (vm->has_deadline && now >= vm->deadline)))
		vm->gen_done = true;
	if (vm->gen_done && !vm->gen_done_at)
		vm->gen_done_at = now;
}

static bool gen_step(struct vm *vm, int64_t now, bool *want_tx, int64_t *wait_ns)
{
	struct txq *q = &vm->txq[0];
	struct vp_port *p = vm->port[0];
	bool did = false;
	int r;

	*want_tx = false;
	if (rx_verify(vm, 0, now) > 0)
		did = true;
	if (!vp_port_up(p))
		return did;
	gen_clock(vm, now);
	if (!vm->gen_done && q->n < vm->o.burst) {
		unsigned room = vm->o.burst - q->n, allow = gen_allowance(vm, now, wait_ns);

		if (vm->o.count && vm->o.count - vm->gen_seq < room)
			room = (unsigned)(vm->o.count - vm->gen_seq);
		if (allow < room)
			room = allow;
		/* Zero copy: build in the buffers the driver lends, while
		 * nothing waits in the copy queue (frames stay in order). */
		if (!vm->o.copy && !q->n && room) {
			int got = vp_port_tx_reserve(p, -1, vm->zc, room);
			unsigned built = 0;

			if (got > 0) {
				for (; built < (unsigned)got; built++) {
					struct vp_pkt *pk = &vm->zc[built];
					uint32_t len = next_size(vm);

					if (len > pk->len) {
						/* Too big for the lent buffer: the copy
						 * path takes it, after these. */
						gen_build(vm, &q->pk[q->n++], len, now);
						break;
					}
					gen_build(vm, pk, len, now);
				}
				r = vp_port_tx_commit(p, vm->zc, built);
				if (r > 0) {
					note_tx(vm, vm->zc, r, now);
					did = true;
				}
			}
			/* Nothing lent: the ring is full; wait for room rather
			 * than build a burst for the copying path. */
			if (!got && vp_port_up(p))
				*want_tx = true;
			if (got >= 0)
				room = 0;
		}
		for (unsigned i = 0; i < room; i++)
			gen_build(vm, &q->pk[q->n++], next_size(vm), now);
	}
	if (vm->gen_done && !vm->end_sent && q->n < vm->o.burst)
		gen_push_end(vm);
	r = txq_flush(vm, p, q, now);
	if (r > 0) {
		did = true;
		if (vm->end_sent && !q->n) {
			/* The END frame is not data: keep the counters honest. */
			vm->tx_pkts--;
			vm->tx_bytes -= VM_PKT_MIN + 10;
			if (!vm->end_sent_at)
				vm->end_sent_at = now;
		}
	} else if (r < 0) {
		*want_tx = true;
	}
	return did;
}

/* --queues gen: give the flows their streams, as many per pair, each on the
 * pair its stream hashes to (a receiver checks that with flow_pair()). */
static void mq_flows(struct vm *vm, unsigned np)
{
	unsigned per[VP_DEV_MAX_QUEUE_PAIRS] = { 0 };

	for (uint32_t i = 0; vm->nflows < np * MQ_FLOWS_PER_PAIR && i < 100000; i++) {
		uint32_t s = vm->stream + i;
		unsigned q = flow_pair(s, np);

		if (per[q] == MQ_FLOWS_PER_PAIR)
			continue;
		per[q]++;
		vm->fstream[vm->nflows] = s;
		vm->fpair[vm->nflows++] = (uint8_t)q;
	}
}

static unsigned mq_nflows(const struct vm *vm, unsigned q)
{
	unsigned nf = 0;

	for (unsigned f = 0; f < vm->nflows; f++)
		nf += vm->fpair[f] == q;
	return nf;
}

/* The flow of pair q's k-th next frame (round robin from frr), or -1 if the
 * pair has none. */
static int mq_flow_of(const struct vm *vm, unsigned q, unsigned k)
{
	unsigned n = 0, nf = mq_nflows(vm, q), want;

	if (!nf)
		return -1;
	want = (vm->frr[q] + k) % nf;
	for (unsigned f = 0; f < vm->nflows; f++)
		if (vm->fpair[f] == q && n++ == want)
			return (int)f;
	return -1;
}

/*
 * gen with --queues: frames of several flows (a stream each) go out on the
 * pair each flow hashes to, every flow in order on its own pair, so the
 * receiver verifies each flow and that it came on its pair. Copying path;
 * END markers go per flow once the run is over.
 */
static bool gen_step_mq(struct vm *vm, int64_t now, bool *want_tx, int64_t *wait_ns)
{
	struct vp_port *p = vm->port[0];
	struct vp_pkt *pk = vm->txq[0].pk;
	bool did = rx_verify(vm, 0, now) > 0;
	unsigned np, allow;
	int link = 0, r;

	*want_tx = false;
	if (!vp_port_up(p))
		return did;
	while (link < (int)vp_port_max_links(p) && !vp_port_link_up(p, link))
		link++;
	np = vp_port_queue_pairs(p, link);
	if (!np)
		return did;
	if (!vm->nflows)
		mq_flows(vm, np);
	gen_clock(vm, now);
	allow = vm->gen_done ? 0 : gen_allowance(vm, now, wait_ns);
	for (unsigned q = 0; q < np && allow; q++) {
		unsigned k = 0, nf = mq_nflows(vm, q);

		for (; k < vm->o.burst && k < allow; k++) {
			int f = mq_flow_of(vm, q, k);

			if (f < 0 || (vm->o.count && vm->gen_seq + k >= vm->o.count))
				break;
			/* Round robin: a flow's j-th frame of this burst is k / nf. */
			struct vm_pkt_info in = { .type = VM_PKT_DATA, .stream = vm->fstream[f],
						  .seq = vm->fseq[f] + k / nf, .stamp_ns = now };

			pk[k].len = next_size(vm);
			memset(&pk[k].hdr, 0, sizeof(pk[k].hdr));
			vm_pkt_build(pk[k].data, pk[k].len, vm->o.dst_mac, vm->o.mac, &in,
				     vm->o.verify_full);
		}
		if (!k)
			continue;
		r = vp_port_tx_queue(p, link, q, pk, k, 0);
		if (r <= 0) {
			*want_tx = r == 0;
			continue;
		}
		for (int i = 0; i < r; i++)
			vm->fseq[mq_flow_of(vm, q, (unsigned)i)]++;
		vm->frr[q] = (vm->frr[q] + (unsigned)r) % nf;
		note_tx(vm, pk, r, now);
		vm->qtx[q] += (uint64_t)r;
		vm->gen_seq += (uint64_t)r;
		allow -= (unsigned)r < allow ? (unsigned)r : allow;
		did = true;
		if ((unsigned)r < k)
			*want_tx = true;
	}
	if (vm->gen_done && !vm->end_sent) {
		bool all = true;

		for (unsigned f = 0; f < vm->nflows; f++) {
			struct vm_pkt_info in = { .type = VM_PKT_END, .stream = vm->fstream[f],
						  .seq = vm->fseq[f], .stamp_ns = vm_now_ns() };

			if (vm->fend[f])
				continue;
			pk[0].len = VM_PKT_MIN + 10;
			memset(&pk[0].hdr, 0, sizeof(pk[0].hdr));
			vm_pkt_build(pk[0].data, pk[0].len, vm->o.dst_mac, vm->o.mac, &in, true);
			vm->fend[f] = vp_port_tx_queue(p, link, vm->fpair[f], pk, 1, 0) == 1;
			all = all && vm->fend[f];
		}
		if (all) {
			vm->end_sent = true;
			vm->end_sent_at = now;
		} else {
			*want_tx = true;
		}
	}
	return did;
}

static bool gen_finished(struct vm *vm, int64_t now)
{
	/* A peer that stopped taking frames must not keep us here: give it
	 * 2 s to take the rest and the END marker, then report without. */
	if (vm->gen_done_at && vm->txq[0].n && now - vm->gen_done_at > 2000000000ll) {
		unsigned left = vm->txq[0].n - (vm->end_sent ? 1 : 0);

		vp_log(VP_LOG_WARN, "2 s after the end the peer has not taken %u frame%s and the END "
		       "marker; reporting without them", left, left == 1 ? "" : "s");
		vm->gen_seq -= left;
		vm->txq[0].n = 0;
		return true;
	}
	if (!vm->end_sent || vm->txq[0].n || !vm->end_sent_at)
		return false;
	/* If our frames come back (an echo peer), wait for our END too. */
	if (vm->saw_own && !vm->end_back && now - vm->end_sent_at < 1000000000ll)
		return false;
	return true;
}

/* ---- echo / fwd ---- */

/* Move a received burst into the queue towards port `to`. */
static bool relay_step(struct vm *vm, unsigned from, unsigned to, int64_t now, bool *want_rx,
		       bool *want_tx)
{
	struct txq *q = &vm->txq[to];
	bool did = false;
	int r, link;

	*want_rx = *want_tx = false;
	if (!q->n) {
		reset_caps(vm, q->pk, vm->o.burst);
		r = vp_port_rx(vm->port[from], q->pk, vm->o.burst, &link);
		if (r > 0) {
			note_rx(vm, q->pk, r, now);
			q->n = (unsigned)r;
			q->link = from == to ? link : -1;
			did = true;
		} else {
			*want_rx = true;
			return did;
		}
	}
	uint64_t before = vm->tx_pkts;

	r = txq_flush(vm, vm->port[to], q, now);
	if (r > 0) {
		vm->fwd_pkts[to] += vm->tx_pkts - before;
		did = true;
	}
	if (q->n) {
		/* The link we answer on went away: those frames have nowhere to go. */
		if (from == to && !vp_port_nlinks_up(vm->port[to])) {
			q->n = 0;
		} else
			*want_tx = true;
	}
	return did;
}

#define RELAY_GROW 8u

static unsigned relay_cap(const struct vm *vm)
{
	unsigned c = vm->o.burst * RELAY_GROW;

	return c > VP_NET_MAX_BURST ? VP_NET_MAX_BURST : c;
}

/*
 * Zero copy relay from a backend port: the hop's one copy lands where the
 * frame is sent from. The buffers come from the sending side (echo: the
 * same link's frontend RX buffers; fwd: our TX slots on the frontend port
 * `to`) and vp_net_rx_into() copies the upstream frontend's frames into
 * them. A frame larger than a lent buffer goes through the copy queue.
 */
static bool relay_zc(struct vm *vm, unsigned from, unsigned to, int64_t now, bool *want_rx,
		     bool *want_tx)
{
	struct vp_port *fp = vm->port[from], *tp = vm->port[to];
	struct txq *q = &vm->txq[to];
	bool blocked = false;
	/* A fwd's burst grows with what is waiting, up to RELAY_GROW x --burst:
	 * the per-burst costs (the link scan, publishing, the signal checks)
	 * then spread over more frames under load, and at low load a burst is
	 * still only what is there. An echo keeps --burst (its ping-pong and
	 * loop measure that). */
	unsigned cap = from == to ? vm->o.burst : relay_cap(vm);

	*want_rx = *want_tx = false;
	for (unsigned k = 0; k < VP_PORT_MAX_LINKS; k++) {
		unsigned i = (vm->zc_rr + k) % VP_PORT_MAX_LINKS;
		int n, r, c;

		unsigned want;

		if (!vp_port_link_up(fp, (int)i))
			continue;
		/* Lend no more than can be filled: what is given back would
		 * be walked and checked again on the next pass. */
		want = vp_port_rx_pending(fp, (int)i);
		if (!want)
			continue;
		if (want > cap)
			want = cap;
		n = vp_port_tx_reserve(tp, from == to ? (int)i : -1, vm->zc, want);
		if (n <= 0) {
			blocked |= n == 0;
			continue;
		}
		r = vp_port_rx_into(fp, (int)i, vm->zc, (unsigned)n);
		if (r <= 0) {
			vp_port_tx_commit(tp, vm->zc, 0);
			if (r != -EMSGSIZE)
				continue;
			/* One big frame through the copy queue, in order. */
			reset_caps(vm, q->pk, 1);
			r = vp_port_rx_link(fp, (int)i, q->pk, 1);
			if (r <= 0)
				continue;
			note_rx(vm, q->pk, r, now);
			q->n = 1;
			q->link = from == to ? (int)i : -1;
			uint64_t before = vm->tx_pkts;

			if (txq_flush(vm, tp, q, now) > 0)
				vm->fwd_pkts[to] += vm->tx_pkts - before;
			*want_tx = q->n > 0;
			vm->zc_rr = i + 1;
			return true;
		}
		note_rx(vm, vm->zc, r, now);
		c = vp_port_tx_commit(tp, vm->zc, (unsigned)r);
		if (c > 0) {
			note_tx(vm, vm->zc, c, now);
			vm->fwd_pkts[to] += (uint64_t)c;
		}
		vm->zc_rr = i + 1;
		return true;
	}
	/* Nothing moved: wait for frames, or (no buffers lent) for room. A
	 * fwd that has frames but no room waits for room only: the frames
	 * waiting would end the sleep at once, and it would spin (irq mode)
	 * until its downstream neighbour got the core. */
	*want_rx = !blocked || from == to;
	*want_tx = blocked;
	return false;
}

/*
 * Zero copy echo on a frontend port: borrow the received frames and send
 * them back from their receive buffers (vp_port_tx_forward(): the backend's
 * copy into our RX buffer is the crossing's one copy). What cannot go so
 * (a frame that spans buffers, no free slot) is copied once into TX slots;
 * what still does not fit waits in the copy queue.
 */
static bool relay_fwd(struct vm *vm, int64_t now, bool *want_rx, bool *want_tx)
{
	struct vp_port *p = vm->port[0];
	struct txq *q = &vm->txq[0];
	int n, f, c;

	*want_rx = *want_tx = false;
	n = vp_port_rx_borrow(p, vm->zc, vm->o.burst);
	if (n <= 0) {
		*want_rx = true;
		return false;
	}
	note_rx(vm, vm->zc, n, now);
	f = vp_port_tx_forward(p, vm->zc, (unsigned)n);
	if (f < 0)
		f = 0;
	if (f > 0)
		note_tx(vm, vm->zc, f, now);
	c = f < n ? vp_port_tx(p, 0, vm->zc + f, (unsigned)(n - f), 0) : 0;
	if (c > 0) {
		note_tx(vm, vm->zc + f, c, now);
		f += c;
	}
	for (int i = f; i < n && q->n < vm->o.burst; i++) {
		struct vp_pkt *d = &q->pk[q->n];

		if (vm->zc[i].len > vm->buf_cap)
			continue;
		memcpy(d->data, vm->zc[i].data, vm->zc[i].len);
		d->len = vm->zc[i].len;
		d->hdr = vm->zc[i].hdr;
		q->n++;
	}
	q->link = 0;
	vp_port_rx_release(p);
	*want_tx = q->n > 0;
	return true;
}

/* ---- echo ---- */

static bool echo_step(struct vm *vm, int64_t now, bool *want_rx, bool *want_tx)
{
	struct txq *q = &vm->txq[0];

	/* --tx-first: one burst of new frames every other step, so that two
	 * echo VMs injecting at once keep reflecting each other's frames. */
	if (vm->inject_left && !q->n && vp_port_up(vm->port[0]) &&
	    (vm->inject_turn ^= 1)) {
		unsigned k = vm->inject_left < vm->o.burst ? (unsigned)vm->inject_left : vm->o.burst;

		for (unsigned i = 0; i < k; i++)
			gen_build(vm, &q->pk[q->n++], next_size(vm), now);
		q->link = -1;
		vm->inject_left -= k;
		txq_flush(vm, vm->port[0], q, now);
		*want_rx = false;
		*want_tx = q->n > 0;
		return true;
	}
	if (vm->o.queues > 1)
		return mq_echo(vm, now, want_rx, want_tx);
	/* A backend echo receives straight into the frontend's RX buffers;
	 * a frontend echo sends each frame back from its receive buffer. */
	bool zc = !vm->o.copy && !q->n;
	bool did = zc && vp_port_side(vm->port[0]) == VP_PORT_BACKEND
			   ? relay_zc(vm, 0, 0, now, want_rx, want_tx)
		   : zc && vp_port_side(vm->port[0]) == VP_PORT_FRONTEND
			   ? relay_fwd(vm, now, want_rx, want_tx)
			   : relay_step(vm, 0, 0, now, want_rx, want_tx);

	/*
	 * In a loop (--tx-first), what does not fit is dropped, as testpmd's
	 * forwarding does: two echo VMs that each wait for room before
	 * receiving again deadlock once the frames in flight fill both rings.
	 */
	if (vm->o.tx_first && q->n && vp_port_up(vm->port[0])) {
		vm->echo_drops += q->n;
		q->n = 0;
		*want_tx = false;
		*want_rx = true;
	}
	return did;
}

/* ---- ping ---- */

static bool ping_step(struct vm *vm, int64_t now, int64_t *wait_ns)
{
	struct vp_port *p = vm->port[0];
	struct vp_pkt *pk = vm->rx[0];
	struct vm_pkt_info info;
	bool did = false;
	int n, link;

	if (!vp_port_up(p))
		return false;
	if (!vm->t_up) {
		vm->t_up = now;
		if (vm->o.seconds_set) {
			vm->deadline = now + (int64_t)(vm->o.seconds * 1e9);
			vm->has_deadline = true;
		}
	}
	reset_caps(vm, pk, vm->o.burst);
	n = vp_port_rx(p, pk, vm->o.burst, &link);
	if (n > 0) {
		did = true;
		note_rx(vm, pk, n, now);
		for (int i = 0; i < n; i++) {
			if (vm_verify_pkt(&vm->ver, pk[i].data, pk[i].len, &info) != VM_PKT_OK)
				continue;
			if (info.type == VM_PKT_PING && info.stream == vm->stream && vm->ping_out &&
			    info.seq == vm->ping_seq) {
				vm_hist_add(vm->lat, (uint64_t)(now - info.stamp_ns));
				vm->ping_out = false;
				vm->ping_ok++;
				vm->ping_next = now + (int64_t)vm->o.interval_us * 1000;
			} else {
				vm->ping_stale++;
			}
		}
	}
	if (vm->ping_out && now - vm->ping_at > 1000000000ll) {
		vm->ping_lost++;
		vm->ping_out = false;
		vp_log(VP_LOG_WARN, "ping %" PRIu64 " got no answer within 1 s", vm->ping_seq);
	}
	if (!vm->ping_out && (!vm->o.count || vm->ping_sent < vm->o.count) &&
	    !(vm->has_deadline && now >= vm->deadline)) {
		if (now < vm->ping_next) {
			*wait_ns = vm->ping_next - now;
			return did;
		}
		struct vp_pkt tx = { .data = vm->txq[0].pk[0].data, .len = (uint32_t)vm->o.size_lo };
		struct vm_pkt_info in = { .type = VM_PKT_PING, .stream = vm->stream,
					  .seq = vm->ping_seq + 1, .stamp_ns = vm_now_ns() };

		vm_pkt_build(tx.data, tx.len, vm->o.dst_mac, vm->o.mac, &in, vm->o.verify_full);
		if (vp_port_tx(p, -1, &tx, 1, 0) == 1) {
			vm->ping_seq++;
			vm->ping_sent++;
			vm->ping_out = true;
			vm->ping_at = in.stamp_ns;
			note_tx(vm, &tx, 1, now);
			did = true;
		}
	}
	return did;
}

static bool ping_finished(struct vm *vm, int64_t now)
{
	if (vm->ping_out)
		return false;
	if (vm->o.count && vm->ping_sent >= vm->o.count)
		return true;
	return vm->has_deadline && now >= vm->deadline;
}

/* ---- tap ---- */

/*
 * The TAP of link `link`: --tap NAME for link 0, NAME followed by the link
 * number for the others (a NAME with %d lets the kernel number them all);
 * --tap-addr goes to link 0's. Returns its fd (also in vm->tap[link]), -1.
 */
static int tap_open(struct vm *vm, unsigned link)
{
	const char *base = vm->o.tap_name ? vm->o.tap_name : "vpvm%d";
	struct vm_tap *t = &vm->tap[link];
	const char *addr = link == 0 ? vm->o.tap_addr : NULL;
	struct ifreq ifr;
	int fd, s, hs = VP_NET_HDR_LEN;

	fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0) {
		vp_log(VP_LOG_ERR, "tap: cannot open /dev/net/tun: %s (needs the tun module "
		       "and CAP_NET_ADMIN)", strerror(errno));
		return -1;
	}
	memset(&ifr, 0, sizeof(ifr));
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
	/* Length checked at parse time (< IFNAMSIZ); a link number may cut the base. */
	if (link == 0 || strchr(base, '%')) {
		snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", base);
	} else {
		char num[12];
		int room = (int)sizeof(ifr.ifr_name) - 1 - snprintf(num, sizeof(num), "%u", link);

		snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%.*s%s", room, base, num);
	}
	if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
		vp_log(VP_LOG_ERR, "tap: TUNSETIFF %s: %s", ifr.ifr_name, strerror(errno));
		close(fd);
		return -1;
	}
	snprintf(t->ifname, sizeof(t->ifname), "%s", ifr.ifr_name);
	/* The 12-byte virtio_net_hdr_v1, the same header the rings carry. */
	if (ioctl(fd, TUNSETVNETHDRSZ, &hs) < 0 || ioctl(fd, TUNSETOFFLOAD, 0) < 0) {
		vp_log(VP_LOG_ERR, "tap: setting the vnet header on %s: %s", ifr.ifr_name,
		       strerror(errno));
		close(fd);
		return -1;
	}
	s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s < 0) {
		vp_log(VP_LOG_ERR, "tap: socket: %s", strerror(errno));
		close(fd);
		return -1;
	}
	if (addr) {
		char a[64], *slash;
		unsigned long pfx = 24;
		struct sockaddr_in *sin = (struct sockaddr_in *)&ifr.ifr_addr;

		snprintf(a, sizeof(a), "%s", addr);
		slash = strchr(a, '/');
		if (slash) {
			char *end;

			*slash = 0;
			pfx = strtoul(slash + 1, &end, 10);
			if (*end || !slash[1] || pfx > 32)
				pfx = 99;
		}
		memset(&ifr.ifr_addr, 0, sizeof(ifr.ifr_addr));
		sin->sin_family = AF_INET;
		if (pfx > 32 || inet_pton(AF_INET, a, &sin->sin_addr) != 1) {
			vp_log(VP_LOG_ERR, "tap: bad --tap-addr '%s' (want A.B.C.D/N)", addr);
			goto fail;
		}
		if (ioctl(s, SIOCSIFADDR, &ifr) < 0) {
			vp_log(VP_LOG_ERR, "tap: setting the address of %s: %s", t->ifname,
			       strerror(errno));
			goto fail;
		}
		sin->sin_addr.s_addr = pfx ? htonl(0xffffffffu << (32 - pfx)) : 0;
		if (ioctl(s, SIOCSIFNETMASK, &ifr) < 0) {
			vp_log(VP_LOG_ERR, "tap: setting the netmask of %s: %s", t->ifname,
			       strerror(errno));
			goto fail;
		}
	}
	if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0 ||
	    (ifr.ifr_flags |= IFF_UP, ioctl(s, SIOCSIFFLAGS, &ifr) < 0)) {
		vp_log(VP_LOG_ERR, "tap: bringing %s up: %s", t->ifname, strerror(errno));
		goto fail;
	}
	close(s);
	vp_log(VP_LOG_INFO, "tap: %s is up (link %u)%s%s", t->ifname, link, addr ? ", address " : "",
	       addr ? addr : "");
	t->fd = fd;
	t->offload = 0;
	return fd;
fail:
	close(s);
	close(fd);
	return -1;
}

/* Offloads the kernel may hand us on link's TAP: only what that link's peer accepts. */
static void tap_offloads(struct vm *vm, unsigned link)
{
	struct vm_tap *t = &vm->tap[link];
	uint64_t f = vp_port_link_features(vm->port[0], (int)link), want = 0;
	bool fe = vp_port_side(vm->port[0]) == VP_PORT_FRONTEND;

	/* We transmit what the tap gives us: partial checksums are fine if the
	 * peer takes them: the device's CSUM (we are the driver) or the
	 * driver's GUEST_CSUM (we are the device). */
	if (f & (1ull << (fe ? VIRTIO_NET_F_CSUM : VIRTIO_NET_F_GUEST_CSUM)))
		want = TUN_F_CSUM;
	/* Whole TCP frames likewise (the kernel wants TUN_F_CSUM with them). */
	if (want && (f & (1ull << (fe ? VIRTIO_NET_F_HOST_TSO4 : VIRTIO_NET_F_GUEST_TSO4))))
		want |= TUN_F_TSO4;
	if (want && (f & (1ull << (fe ? VIRTIO_NET_F_HOST_TSO6 : VIRTIO_NET_F_GUEST_TSO6))))
		want |= TUN_F_TSO6;
	if ((want & (TUN_F_TSO4 | TUN_F_TSO6)) &&
	    (f & (1ull << (fe ? VIRTIO_NET_F_HOST_ECN : VIRTIO_NET_F_GUEST_ECN))))
		want |= TUN_F_TSO_ECN;
	if (want == t->offload)
		return;
	if (ioctl(t->fd, TUNSETOFFLOAD, (unsigned long)want) < 0)
		vp_log(VP_LOG_WARN, "tap: %s: TUNSETOFFLOAD: %s", t->ifname, strerror(errno));
	else
		t->offload = want;
}

/* Up to max frames from link's TAP into pk[]; returns how many. */
static unsigned tap_read(struct vm *vm, unsigned link, struct vp_pkt *pk, unsigned max)
{
	unsigned n = 0;

	while (n < max) {
		struct vp_pkt *t = &pk[n];
		struct iovec iov[2] = { { &t->hdr, VP_NET_HDR_LEN }, { t->data, vm->buf_cap } };
		ssize_t r = readv(vm->tap[link].fd, iov, 2);

		if (r < (ssize_t)VP_NET_HDR_LEN)
			break;
		t->len = (uint32_t)(r - VP_NET_HDR_LEN);
		n++;
	}
	return n;
}

/*
 * A backend port: every link gets its own TAP the first time it comes up
 * (link 0's exists from the start), kept until we exit; a frame from a TAP
 * goes to its link only, a frame from a link to its TAP only.
 */
static void tap_new_links(struct vm *vm)
{
	struct vp_port *p = vm->port[0];

	for (unsigned i = 1; i < vp_port_max_links(p); i++) {
		struct vm_tap *t = &vm->tap[i];

		if (t->fd >= 0 || t->failed || !vp_port_link_up(p, (int)i))
			continue;
		if (tap_open(vm, i) < 0 || vp_waitset_add_fd(vm->ws, t->fd, POLLIN) < 0) {
			vp_log(VP_LOG_ERR, "tap: link %u has no TAP: its frames are dropped", i);
			t->failed = true;
		}
	}
}

static bool tap_step(struct vm *vm, int64_t now, bool *want_rx, bool *want_tx)
{
	struct vp_port *p = vm->port[0];
	struct txq *q = &vm->txq[0];
	struct vp_pkt *pk = vm->rx[0];
	unsigned max = vp_port_max_links(p);
	bool did = false;
	unsigned pair;
	int n, link;

	*want_rx = true;
	*want_tx = false;
	if (vp_port_side(p) == VP_PORT_BACKEND)
		tap_new_links(vm);
	/* tap -> port */
	if (vp_port_side(p) == VP_PORT_FRONTEND) {
		/* One link: frames wait (in order) while the ring is full. */
		if (!vp_port_up(p))
			return false;
		tap_offloads(vm, 0);
		q->link = 0;
		q->n += tap_read(vm, 0, q->pk + q->n, vm->o.burst - q->n);
		if (q->n) {
			n = txq_flush(vm, p, q, now);
			if (n > 0) {
				did = true;
				vm->qtx[0] += (uint64_t)n;  /* vp_port_tx() sends on pair 0 */
			} else {
				*want_tx = true;
			}
		}
	} else {
		/*
		 * Several links: a frame that finds no receive buffer is dropped
		 * and counted (drops.tx_no_buf), as a NIC drops, so that one slow
		 * frontend never holds up another's TAP. A TAP whose link is
		 * down is emptied, or its frames would wake every sleep.
		 */
		for (unsigned k = 0; k < max; k++) {
			unsigned i = (vm->tap_rr + k) % max;
			unsigned got;

			if (vm->tap[i].fd < 0)
				continue;
			if (vp_port_link_up(p, (int)i))
				tap_offloads(vm, i);
			got = tap_read(vm, i, q->pk, vm->o.burst);
			if (!got)
				continue;
			did = true;
			n = vp_port_link_up(p, (int)i) ? vp_port_tx(p, (int)i, q->pk, got, VP_NET_TX_DROP)
						     : 0;
			if (n > 0) {
				note_tx(vm, q->pk, n, now);
				vm->qtx[0] += (uint64_t)n;
			}
		}
		vm->tap_rr = (vm->tap_rr + 1) % max;
		if (!vp_port_up(p))
			return did;
	}
	/* port -> tap: each link to its own TAP; with --queues, from every pair, counted per
	 * pair (the frontend picks the pair a frame goes on) */
	reset_caps(vm, pk, vm->o.burst);
	n = vm->o.queues > 1 ? mq_rx(vm, p, pk, &link, &pair)
			     : vp_port_rx(p, pk, vm->o.burst, &link);
	if (n > 0) {
		int fd = link >= 0 && link < VP_PORT_MAX_LINKS ? vm->tap[link].fd : -1;

		did = true;
		note_rx(vm, pk, n, now);
		for (int i = 0; i < n; i++) {
			struct iovec iov[2] = { { &pk[i].hdr, VP_NET_HDR_LEN }, { pk[i].data, pk[i].len } };

			if (fd < 0 || writev(fd, iov, 2) < 0)
				vm->tap_drops++;
		}
	}
	return did;
}

/* ------------------------------------------------------------------------ */
/* progress and report */

static const char *role_name(const struct vp_port *p)
{
	switch (vp_port_side(p)) {
	case VP_PORT_FRONTEND:
		return "frontend";
	case VP_PORT_PEER21:
		return "peer21";
	default:
		return "backend";
	}
}

static void progress(struct vm *vm, int64_t now)
{
	double dt = (double)(now - vm->prog_at) / 1e9;
	char links[64];

	if (vm->nports == 2)
		snprintf(links, sizeof(links), "links %s/%s", vp_port_up(vm->port[0]) ? "up" : "down",
			 vp_port_up(vm->port[1]) ? "up" : "down");
	else if (vp_port_side(vm->port[0]) == VP_PORT_BACKEND)
		snprintf(links, sizeof(links), "%u link%s up", vp_port_nlinks_up(vm->port[0]),
			 vp_port_nlinks_up(vm->port[0]) == 1 ? "" : "s");
	else
		snprintf(links, sizeof(links), "link %s", vp_port_up(vm->port[0]) ? "up" : "down");
	fprintf(stderr,
		"vp-vm[%s]: %5.1fs  tx %7.3f Mpps  rx %7.3f Mpps  ok %" PRIu64 " lost %" PRIu64
		" bad %" PRIu64 "  %s\n",
		g_name, (double)(now - vm->t0) / 1e9,
		dt > 0 ? (double)(vm->tx_pkts - vm->prog_tx) / dt / 1e6 : 0.0,
		dt > 0 ? (double)(vm->rx_pkts - vm->prog_rx) / dt / 1e6 : 0.0, vm->ver.ok,
		vm_verify_lost(&vm->ver), vm->ver.corrupt + vm->ver.badlen, links);
	vm->prog_at = now;
	vm->prog_tx = vm->tx_pkts;
	vm->prog_rx = vm->rx_pkts;
}

static bool verdict(struct vm *vm)
{
	bool ok = !vm->failed && vm_verify_clean(&vm->ver) && !vm->wrong_queue;

	switch (vm->o.app) {
	case APP_SINK:
		if (vm->o.count && vm_verify_received(&vm->ver) < vm->o.count)
			ok = false;
		if (vm->o.ends && vm->ver.ended < vm->o.ends)
			ok = false;
		break;
	case APP_GEN:
		if (!vm->end_sent_at)
			ok = false;
		break;
	case APP_PING:
		if (vm->ping_lost || !vm->ping_ok)
			ok = false;
		break;
	default:
		break;
	}
	return ok;
}

static void report(struct vm *vm, int64_t now)
{
	struct vp_net_stats st = { 0 }, s2;
	int64_t tx_ns = vm->tx_last - vm->tx_first, rx_ns = vm->rx_last - vm->rx_first;
	double cpu = (double)vm_cpu_ns() / 1e9;
	uint64_t moved = vm->tx_pkts > vm->rx_pkts ? vm->tx_pkts : vm->rx_pkts;
	bool ok = verdict(vm);
	uint64_t lost = vm_verify_lost(&vm->ver) + vm->ping_lost;
	uint64_t links_up = 0, links_down = 0;
	struct vp_port_counters cnt;

	for (unsigned i = 0; i < vm->nports; i++) {
		vp_port_stats(vm->port[i], &s2);
		st.tx_drop_no_buf += s2.tx_drop_no_buf;
		st.tx_drop_too_big += s2.tx_drop_too_big;
		st.rx_drop_too_big += s2.rx_drop_too_big;
		st.rx_drop_bad += s2.rx_drop_bad;
		st.rx_drop_offload += s2.rx_drop_offload;
		st.signals += s2.signals;
		st.wakeups += s2.wakeups;
		vp_port_counters(vm->port[i], &cnt);
		links_up += cnt.link_ups;
		links_down += cnt.link_downs;
	}
	/* A window too short to time (one burst) reports no rate. */
	if (vm->o.json) {
		struct vm_json j;

		vm_json_begin(&j);
		vm_json_str(&j, "name", g_name);
		vm_json_str(&j, "app", app_names[vm->o.app]);
		vm_json_str(&j, "role", role_name(vm->port[0]));
		vm_json_str(&j, "mode", vm_mode_name(vm->o.mode));
		vm_json_dbl(&j, "seconds", (double)(now - vm->t0) / 1e9);
		vm_json_u64(&j, "tx_packets", vm->tx_pkts);
		vm_json_u64(&j, "tx_bytes", vm->tx_bytes);
		vm_json_dbl(&j, "tx_mpps", vm_mpps(vm->tx_pkts, tx_ns));
		vm_json_dbl(&j, "tx_gbps", vm_gbps(vm->tx_bytes, tx_ns));
		vm_json_u64(&j, "rx_packets", vm->rx_pkts);
		vm_json_u64(&j, "rx_bytes", vm->rx_bytes);
		vm_json_dbl(&j, "rx_mpps", vm_mpps(vm->rx_pkts, rx_ns));
		vm_json_dbl(&j, "rx_gbps", vm_gbps(vm->rx_bytes, rx_ns));
		vm_json_u64(&j, "verified", vm->ver.ok);
		vm_json_u64(&j, "received", vm_verify_received(&vm->ver));
		vm_json_u64(&j, "lost", lost);
		vm_json_u64(&j, "corrupt", vm->ver.corrupt + vm->ver.badlen);
		vm_json_u64(&j, "reordered", vm_verify_reordered(&vm->ver));
		vm_json_u64(&j, "duplicate", vm_verify_dup(&vm->ver));
		vm_json_u64(&j, "foreign", vm->ver.foreign);
		vm_json_u64(&j, "ends", vm->ver.ended);
		if (vm->o.app == APP_FWD) {
			vm_json_u64(&j, "fwd_1to2", vm->fwd_pkts[1]);
			vm_json_u64(&j, "fwd_2to1", vm->fwd_pkts[0]);
		}
		if (vm->o.app == APP_PING) {
			vm_json_u64(&j, "pings", vm->ping_sent);
			vm_json_u64(&j, "pongs", vm->ping_ok);
		}
		vm_json_obj(&j, "drops");
		vm_json_u64(&j, "tx_no_buf", st.tx_drop_no_buf);
		vm_json_u64(&j, "tx_too_big", st.tx_drop_too_big);
		vm_json_u64(&j, "rx_too_big", st.rx_drop_too_big);
		vm_json_u64(&j, "rx_bad", st.rx_drop_bad);
		vm_json_u64(&j, "rx_offload", st.rx_drop_offload);
		vm_json_u64(&j, "tap_write", vm->tap_drops);
		vm_json_u64(&j, "echo_full", vm->echo_drops);
		vm_json_end_obj(&j);
		vm_json_u64(&j, "signals", st.signals);
		vm_json_u64(&j, "wakeups", st.wakeups);
		vm_json_obj(&j, "lat_ns");
		vm_json_u64(&j, "samples", vm->lat->count);
		vm_json_u64(&j, "min", vm->lat->min);
		vm_json_u64(&j, "p50", vm_hist_pct(vm->lat, 50));
		vm_json_u64(&j, "p99", vm_hist_pct(vm->lat, 99));
		vm_json_u64(&j, "p999", vm_hist_pct(vm->lat, 99.9));
		vm_json_u64(&j, "max", vm->lat->max);
		vm_json_end_obj(&j);
		vm_json_dbl(&j, "cpu_s", cpu);
		vm_json_dbl(&j, "pkts_per_cpu_s", cpu > 0 ? (double)moved / cpu : 0);
		if (vm->o.queues > 1) {
			vm_json_u64(&j, "wrong_queue", vm->wrong_queue);
			vm_json_obj(&j, "queue_pairs");  /* rxN, txN: frames per pair */
			for (unsigned q = 0; q < vm->o.queues; q++) {
				char k[16];

				snprintf(k, sizeof(k), "rx%u", q);
				vm_json_u64(&j, k, vm->qrx[q]);
				snprintf(k, sizeof(k), "tx%u", q);
				vm_json_u64(&j, k, vm->qtx[q]);
			}
			vm_json_end_obj(&j);
		}
		vm_json_u64(&j, "link_ups", links_up);
		vm_json_u64(&j, "link_downs", links_down);
		vm_json_bool(&j, "ok", ok);
		if (vm->fail_reason[0])
			vm_json_str(&j, "error", vm->fail_reason);
		printf("%s\n", vm_json_finish(&j));
	} else {
		printf("vp-vm[%s] %s (%s, %s): %.2f s\n", g_name, app_names[vm->o.app],
		       role_name(vm->port[0]),
		       vm_mode_name(vm->o.mode), (double)(now - vm->t0) / 1e9);
		printf("  tx %" PRIu64 " packets, %" PRIu64 " bytes: %.3f Mpps, %.3f Gbit/s\n",
		       vm->tx_pkts, vm->tx_bytes, vm_mpps(vm->tx_pkts, tx_ns),
		       vm_gbps(vm->tx_bytes, tx_ns));
		printf("  rx %" PRIu64 " packets, %" PRIu64 " bytes: %.3f Mpps, %.3f Gbit/s\n",
		       vm->rx_pkts, vm->rx_bytes, vm_mpps(vm->rx_pkts, rx_ns),
		       vm_gbps(vm->rx_bytes, rx_ns));
		if (vm->o.app != APP_FWD && vm->o.app != APP_ECHO && vm->o.app != APP_TAP)
			printf("  verified %" PRIu64 ", lost %" PRIu64 ", corrupt %" PRIu64
			       ", reordered %" PRIu64 ", duplicate %" PRIu64 ", foreign %" PRIu64 "\n",
			       vm->ver.ok, lost, vm->ver.corrupt + vm->ver.badlen,
			       vm_verify_reordered(&vm->ver), vm_verify_dup(&vm->ver), vm->ver.foreign);
		if (vm->o.app == APP_FWD)
			printf("  forwarded 1->2 %" PRIu64 ", 2->1 %" PRIu64 "\n", vm->fwd_pkts[1],
			       vm->fwd_pkts[0]);
		printf("  drops: no RX buffer %" PRIu64 ", too big %" PRIu64 "/%" PRIu64
		       ", bad chain %" PRIu64 ", bad offload header %" PRIu64 "%s\n",
		       st.tx_drop_no_buf, st.tx_drop_too_big, st.rx_drop_too_big, st.rx_drop_bad,
		       st.rx_drop_offload,
		       vm->tap_drops ? " (+ tap write failures)" : "");
		if (vm->echo_drops)
			printf("  echo: %" PRIu64 " frames found the peer's ring full (dropped)\n",
			       vm->echo_drops);
		for (unsigned q = 0; vm->o.queues > 1 && q < vm->o.queues; q++)
			printf("  queue pair %u: rx %" PRIu64 " tx %" PRIu64 "\n", q, vm->qrx[q],
			       vm->qtx[q]);
		if (vm->wrong_queue)
			printf("  %" PRIu64 " test frames came on a queue pair their flow does not "
			       "hash to\n", vm->wrong_queue);
		if (vm->lat->count)
			printf("  latency (%s): p50 %" PRIu64 " ns, p99 %" PRIu64 " ns, p99.9 %" PRIu64
			       " ns, max %" PRIu64 " ns (%" PRIu64 " samples)\n",
			       vm->o.app == APP_PING || vm->saw_own ? "round trip" : "one way",
			       vm_hist_pct(vm->lat, 50), vm_hist_pct(vm->lat, 99),
			       vm_hist_pct(vm->lat, 99.9), vm->lat->max, vm->lat->count);
		printf("  cpu %.3f s (%.3f M packets per CPU-second), signals %" PRIu64
		       ", wakeups %" PRIu64 ", link up/down %" PRIu64 "/%" PRIu64 "\n",
		       cpu, cpu > 0 ? (double)moved / cpu / 1e6 : 0.0, st.signals, st.wakeups,
		       links_up, links_down);
		if (vm->fail_reason[0])
			printf("  error: %s\n", vm->fail_reason);
		printf("  result: %s\n", ok ? "OK" : "FAILED");
	}
	fflush(stdout);
}

/* ------------------------------------------------------------------------ */
/* main loop */

static void fail(struct vm *vm, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void fail(struct vm *vm, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(vm->fail_reason, sizeof(vm->fail_reason), fmt, ap);
	va_end(ap);
	vm->failed = true;
	vp_log(VP_LOG_ERR, "%s", vm->fail_reason);
}

static int alloc_buffers(struct vm *vm)
{
	unsigned b = vm->o.burst, nbufs = 4 * b;
	size_t cap = vm->o.app == APP_TAP || vm->o.app == APP_FWD || vm->o.app == APP_ECHO ||
			     vm->o.app == APP_SINK
		     ? VP_NET_MAX_PKT
		     : VM_PKT_MAX;

	cap = (cap + 63) & ~(size_t)63;
	vm->buf_cap = (uint32_t)cap;
	vm->mem_size = cap * nbufs;
	vm->mem = aligned_alloc(64, vm->mem_size);
	for (unsigned i = 0; i < 2; i++) {
		vm->rx[i] = calloc(b, sizeof(struct vp_pkt));
		vm->txq[i].pk = calloc(b, sizeof(struct vp_pkt));
	}
	vm->zc = calloc(VP_NET_MAX_BURST, sizeof(struct vp_pkt));  /* relay_cap() */
	vm->lat = calloc(1, sizeof(*vm->lat));
	if (!vm->mem || !vm->rx[0] || !vm->rx[1] || !vm->txq[0].pk || !vm->txq[1].pk || !vm->lat ||
	    !vm->zc)
		return -ENOMEM;
	for (unsigned i = 0; i < b; i++) {
		vm->rx[0][i].data = vm->mem + cap * i;
		vm->rx[1][i].data = vm->mem + cap * (b + i);
		vm->txq[0].pk[i].data = vm->mem + cap * (2 * b + i);
		vm->txq[1].pk[i].data = vm->mem + cap * (3 * b + i);
	}
	vm->ver.lat = vm->lat;
	return 0;
}

/*
 * A frontend's receive buffers (and transmit slots, as big): 2048 bytes, or
 * one frame of --size when it needs more (as a NIC's buffers follow its
 * MTU), so a jumbo frame is built and read in place instead of copied over
 * five 2 KiB buffers. Mergeable buffers still take anything bigger.
 */
static uint32_t rx_buf_for(const struct opts *o)
{
	uint64_t need = (o->size_hi + VP_NET_HDR_LEN + 1023) & ~1023ull;

	/* Up to a jumbo frame, and only where both pools, with 1 MiB for the
	 * rings and indirect tables, fit in a port's half of the RAM. */
	if (need <= 2048 || need > 10240 || 2 * o->ring * need + (1u << 20) > o->ram / 2)
		return 0;
	return (uint32_t)need;
}

static void free_vm(struct vm *vm)
{
	vp_waitset_free(vm->ws);
	for (unsigned i = 0; i < vm->nports; i++)
		vp_port_free(vm->port[i]);
	for (unsigned i = 0; i < VP_PORT_MAX_LINKS; i++)
		if (vm->tap[i].fd >= 0)
			close(vm->tap[i].fd);
	vm_ram_free(&vm->ram);
	free(vm->mem);
	for (unsigned i = 0; i < 2; i++) {
		free(vm->rx[i]);
		free(vm->txq[i].pk);
	}
	free(vm->lat);
	free(vm->zc);
}

/*
 * Test hook (--test-truncate-ram-after N, docs/vp-vm.md): behave as a hostile
 * frontend that shrinks the memory it shared. Our own view of the RAM turns
 * into private zero pages first (our next touch would fault otherwise), then
 * the memfd (left unsealed for this) is cut to 0 bytes under the backend's
 * mapping. The loop then holds the link for a second without touching RAM,
 * long enough for the backend to fault on it, and ends.
 */
static void truncate_own_ram(struct vm *vm, int64_t now)
{
	if (mmap(vm->ram.p, vm->ram.size, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == MAP_FAILED ||
	    ftruncate(vm->ram.fd, 0) < 0)
		fail(vm, "test hook: cannot truncate the RAM: %s", strerror(errno));
	else
		vp_log(VP_LOG_WARN, "test hook: RAM truncated to 0 bytes after %" PRIu64 " frames",
		       vm->tx_pkts + vm->rx_pkts);
	vm->ram_cut_at = now;
}

/*
 * Test hook (--test-bad-desc KIND[@N], docs/vp-vm.md): behave as a hostile
 * frontend process once N frames went either way: one bad chain on our TX
 * ring (the library's test facility), then nothing more is sent and the link
 * is held (control served) until a signal, so a test can watch the backend
 * break only this device. A link not up yet (or no free slot) is tried again.
 */
static void post_bad_desc(struct vm *vm)
{
	static const char *const names[] = { "", "range", "loop", "len", "hdr" };
	int r = vp_port_test_post_bad(vm->port[0], vm->o.bad_kind);

	if (r == -ENOTCONN || r == -ENOSPC)
		return;
	vm->bad_posted = true;
	vm->end_sent = true;  /* no END at exit either: a hostile sender just goes */
	if (r < 0)
		fail(vm, "test hook: cannot post a bad descriptor: %s", strerror(-r));
	else  /* not a healthy run: the report says ok: false */
		fail(vm, "test hook: posted a bad TX chain (%s) after %" PRIu64 " frames; "
		     "holding the link until a signal", names[vm->o.bad_kind],
		     vm->tx_pkts + vm->rx_pkts);
}

static int run_vm(struct opts *o)
{
	static struct vm vmst;
	struct vm *vm = &vmst;
	int64_t next_ctl = 0, wait_ns, last_work = 0;
	bool finished = false;
	int r;

	memset(vm, 0, sizeof(*vm));
	vm->o = *o;
	vm->inject_left = o->tx_first;
	for (unsigned i = 0; i < VP_PORT_MAX_LINKS; i++)
		vm->tap[i].fd = -1;
	vm->ram.fd = -1;
	vm->nports = o->nports;
	vm_random_bytes(&vm->stream, sizeof(vm->stream));
	vm_random_bytes(&vm->rng, sizeof(vm->rng));
	vm->rng |= 1;
	if (!o->mac_set)
		vm_mac_from_index(vm->o.mac, 1);
	if (!memcmp(o->uuid, "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 16))
		vm_random_uuid(vm->o.uuid);
	vm_pkt_tmpl_init(&vm->tmpl, vm->o.dst_mac, vm->o.mac, VM_PKT_DATA, vm->stream);
	if (o->cpu >= 0 && (r = vm_pin_cpu(o->cpu)) < 0) {
		vp_log(VP_LOG_ERR, "cannot pin to CPU %d: %s", o->cpu, strerror(-r));
		return VM_EXIT_FAIL;
	}
	if (alloc_buffers(vm) < 0) {
		vp_log(VP_LOG_ERR, "out of memory");
		free_vm(vm);
		return VM_EXIT_FAIL;
	}
	r = vm_ram_new(&vm->ram, o->ram, g_name, !o->truncate_after);
	if (r < 0) {
		vp_log(VP_LOG_ERR, "cannot create %" PRIu64 " bytes of RAM: %s", o->ram, strerror(-r));
		free_vm(vm);
		return VM_EXIT_FAIL;
	}
	vm_signals_init();
	/* Memory that can shrink, accepted: its truncation must cost only its
	 * link, not this process (the guard is process-wide: ours to install).
	 * Inside a backend VM the BARs we map are revoked by the kernel when a
	 * function is unplugged without GONE first: the same guard. */
	if ((o->allow_unsealed || o->port[0].guest_pci || o->port[1].guest_pci) &&
	    (r = vp_mem_sigbus_guard()) < 0) {
		vp_log(VP_LOG_ERR, "cannot install the SIGBUS guard: %s", strerror(-r));
		free_vm(vm);
		return VM_EXIT_FAIL;
	}
	if (o->app == APP_TAP && tap_open(vm, 0) < 0) {
		free_vm(vm);
		return VM_EXIT_FAIL;
	}
	if (vp_waitset_new(&vm->ws) < 0 ||
	    (vm->tap[0].fd >= 0 && vp_waitset_add_fd(vm->ws, vm->tap[0].fd, POLLIN) < 0)) {
		vp_log(VP_LOG_ERR, "out of memory");
		free_vm(vm);
		return VM_EXIT_FAIL;
	}
	/* Two frontend ports share the RAM: each lays out in its own half. */
	for (unsigned i = 0; i < vm->nports; i++) {
		const struct port_spec *ps = &o->port[i];
		char pname[16];

		snprintf(pname, sizeof(pname), "port%u", i + 1);
		struct vp_port_config pc = {
			.side = ps->kind, .name = pname, .path = ps->path, .mode = o->mode,
			.coalesce = o->coalesce,
			/* The tap app takes 64 KiB frames and hands their
			 * offloads to the kernel: it opts in to TSO (and
			 * offers packed rings, as a backend port does, but
			 * not in a guest: its info window is split-only). */
			.features = o->features ? o->features :
				    o->app == APP_TAP && ps->kind == VP_PORT_BACKEND ?
				    VP_NET_FEATURES | VP_NET_TSO_FEATURES |
				    (ps->guest_pci ? 0 : 1ull << VIRTIO_F_RING_PACKED) : 0,
			/* backend */
			.max_links = o->max_links, .allow_unsealed = o->allow_unsealed,
			.guest_pci = ps->guest_pci, .sysfs_root = o->sysfs_root,
			.pair21_serve = ps->pair21_serve,
			.guest_uuid_set = ps->guest_uuid_set,
			/* frontend */
			.vhost_user = ps->vhost_user, .ram = vm->ram.p, .ram_size = vm->ram.size,
			.ram_fd = vm->ram.fd, .ram_offset = i * (o->ram / 2), .ring = (uint16_t)o->ring,
			.rx_buf_size = rx_buf_for(o), .queue_pairs = o->queues,
			.connect_timeout_ms = (int)(o->connect_timeout * 1000),
		};

		memcpy(pc.mac, vm->o.mac, 6);
		pc.mac[5] = (uint8_t)(pc.mac[5] + i);
		memcpy(pc.uuid, ps->guest_uuid_set ? ps->guest_uuid : vm->o.uuid, 16);
		/* The port logs why it could not be made. */
		r = vp_port_new(&vm->port[i], &pc);
		if (r >= 0)
			r = vm->ws_port[i] = vp_waitset_add_port(vm->ws, vm->port[i]);
		if (r < 0) {
			vm->nports = vm->port[i] ? i + 1 : i;
			free_vm(vm);
			return VM_EXIT_FAIL;
		}
	}
	vm->t0 = vm->prog_at = vm_now_ns();
	if (o->seconds_set && o->app != APP_GEN && o->app != APP_PING) {
		vm->deadline = vm->t0 + (int64_t)(o->seconds * 1e9);
		vm->has_deadline = true;
	}

	while (!finished && !vm_stop_signal) {
		int64_t now = vm_now_ns();
		struct wait_want { bool want_rx, want_tx; } wp[2] = { { true, false },
									{ false, false } };
		bool did = false, w_rx, w_tx, w2_rx, w2_tx;

		if (vm->ram_cut_at) {
			/* Test hook: hold the link, touch nothing, then end. */
			if (now - vm->ram_cut_at >= 1000000000ll)
				finished = true;
			else
				usleep(10000);
			continue;
		}
		wait_ns = 100 * 1000000ll;
		if (now >= next_ctl) {
			for (unsigned i = 0; i < vm->nports; i++)
				if (vp_port_control(vm->port[i]) < 0) {
					fail(vm, "%s: %s", vp_port_name(vm->port[i]),
					     vp_port_error(vm->port[i]));
					finished = true;
				}
			next_ctl = now + 1000000;
			if (!o->quiet && now - vm->prog_at >= 1000000000ll)
				progress(vm, now);
		}
		if (vm->bad_posted) {
			/* Test hook: only the control side from now on. */
			usleep(10000);
			continue;
		}
		switch (o->app) {
		case APP_GEN:
			did = o->queues > 1 ? gen_step_mq(vm, now, &wp[0].want_tx, &wait_ns)
					    : gen_step(vm, now, &wp[0].want_tx, &wait_ns);
			finished |= gen_finished(vm, now);
			break;
		case APP_SINK:
			did = rx_verify(vm, 0, now) > 0;
			if (o->count && vm_verify_received(&vm->ver) >= o->count)
				finished = true;
			if (o->ends && vm->ver.ended >= o->ends)
				finished = true;
			break;
		case APP_ECHO:
			did = echo_step(vm, now, &wp[0].want_rx, &wp[0].want_tx);
			break;
		case APP_PING:
			did = ping_step(vm, now, &wait_ns);
			finished |= ping_finished(vm, now);
			break;
		case APP_FWD:
			/* Backend port 1 to frontend port 2 (a chain's hop): the
			 * one copy lands in our TX slot. */
			if (!o->copy && vp_port_side(vm->port[0]) == VP_PORT_BACKEND &&
			    vp_port_side(vm->port[1]) == VP_PORT_FRONTEND && !vm->txq[1].n)
				did = relay_zc(vm, 0, 1, now, &w_rx, &w2_tx);
			else
				did = relay_step(vm, 0, 1, now, &w_rx, &w2_tx);
			did |= relay_step(vm, 1, 0, now, &w2_rx, &w_tx);
			wp[0] = (struct wait_want){ w_rx, w_tx };
			wp[1] = (struct wait_want){ w2_rx, w2_tx };
			break;
		case APP_TAP:
			did = tap_step(vm, now, &wp[0].want_rx, &wp[0].want_tx);
			break;
		}
		if (vm->has_deadline && now >= vm->deadline && o->app != APP_GEN &&
		    o->app != APP_PING)
			finished = true;
		/* A frontend port gives up by itself; a backend that must send
		 * gives up if no frontend came. */
		if ((o->app == APP_GEN || o->app == APP_PING) && !vm->t_up && !finished &&
		    vp_port_side(vm->port[0]) == VP_PORT_BACKEND &&
		    now - vm->t0 > (int64_t)(o->connect_timeout * 1e9)) {
			fail(vm, "no frontend connected within %.1f s", o->connect_timeout);
			finished = true;
		}
		if (o->truncate_after && vm->tx_pkts + vm->rx_pkts >= o->truncate_after)
			truncate_own_ram(vm, now);
		if (o->bad_kind && !finished && vm->tx_pkts + vm->rx_pkts >= o->bad_after)
			post_bad_desc(vm);
		if (did)
			last_work = now;
		if (did || finished)
			continue;
		/* Idle: sleep per the mode until work, a control message, a
		 * tap frame, or the next timer (progress, rate, deadline). */
		int64_t until = vm->prog_at + 1000000000ll - now;

		if (!o->quiet && until < wait_ns)
			wait_ns = until;
		if (vm->has_deadline && vm->deadline - now < wait_ns)
			wait_ns = vm->deadline - now;
		if (next_ctl - now > wait_ns)
			next_ctl = now + wait_ns;
		int tms = wait_ns <= 0 ? 0 : (int)((wait_ns + 999999) / 1000000);

		for (unsigned i = 0; i < vm->nports; i++)
			vp_waitset_want(vm->ws, vm->ws_port[i], wp[i].want_rx, wp[i].want_tx);
		r = vp_waitset_wait(vm->ws, tms);
		if (r < 0 && r != -EINTR)
			vp_log(VP_LOG_DEBUG, "wait: %s", strerror(-r));
		/* After a sleep, serve the control side at once (a poll-mode
		 * wait never sleeps: it would only add a syscall per pass). */
		if (o->mode != VP_NET_POLL && now - last_work >= 50000)
			next_ctl = 0;
	}
	if (vm_stop_signal) {
		vp_log(VP_LOG_INFO, "%s: stopping", strsignal(vm_stop_signal));
		/* A generator stopped by a signal still tells the sink where it
		 * ended, if the frame fits right away. */
		if (o->app == APP_GEN && !vm->end_sent && vp_port_up(vm->port[0])) {
			vm->gen_done = true;
			/* Built frames not taken now are never sent: the END
			 * marker counts only what left. */
			txq_flush(vm, vm->port[0], &vm->txq[0], vm_now_ns());
			vm->gen_seq -= vm->txq[0].n;
			vm->txq[0].n = 0;
			gen_push_end(vm);
			if (vp_port_tx(vm->port[0], -1, vm->txq[0].pk, 1, 0) == 1)
				vm->end_sent_at = vm_now_ns();
			vm->txq[0].n = 0;
		}
	}
	report(vm, vm_now_ns());
	r = verdict(vm) ? VM_EXIT_OK : VM_EXIT_FAIL;
	free_vm(vm);
	return r;
}

/* ------------------------------------------------------------------------ */
/* chain */

struct child {
	pid_t pid;
	int out;        /* its stdout (report line) */
	char json[4096];
	int status;
	bool done;
};

static int self_exe(char *buf, size_t len)
{
	ssize_t n = readlink("/proc/self/exe", buf, len - 1);

	if (n <= 0 || (size_t)n >= len - 1)
		return -1;
	buf[n] = 0;
	return 0;
}

static pid_t spawn(const char *exe, char *const argv[], int *out)
{
	int pfd[2];
	pid_t pid;

	if (pipe2(pfd, O_CLOEXEC) < 0)
		return -1;
	pid = fork();
	if (pid < 0) {
		close(pfd[0]);
		close(pfd[1]);
		return -1;
	}
	if (pid == 0) {
		signal(SIGINT, SIG_DFL);
		signal(SIGTERM, SIG_DFL);
		dup2(pfd[1], 1);
		execv(exe, argv);
		fprintf(stderr, "vp-vm: cannot run %s: %s\n", exe, strerror(errno));
		_exit(127);
	}
	close(pfd[1]);
	*out = pfd[0];
	return pid;
}

static void read_report(struct child *c)
{
	size_t have = strlen(c->json);
	ssize_t n;

	while (have < sizeof(c->json) - 1 &&
	       (n = read(c->out, c->json + have, sizeof(c->json) - 1 - have)) > 0)
		have += (size_t)n;
	c->json[have] = 0;
}

static double jnum(const char *json, const char *key)
{
	double v = 0;

	vm_json_get_num(json, key, &v);
	return v;
}

static int run_chain(int argc, char **argv)
{
	struct opts o;
	char exe[PATH_MAX], dir[] = "/tmp/vp-chain-XXXXXX", sock[64][128];
	struct child ch[64];
	unsigned n;
	uint64_t v;
	int r, rc = VM_EXIT_OK;
	int64_t t0, limit;

	if (argc >= 3 && (!strcmp(argv[2], "--help") || !strcmp(argv[2], "-h"))) {
		printf(usage_text, VM_PKT_MIN, VM_PKT_MAX, VP_NET_MAX_BURST, (unsigned)VP_PORT_MAX_LINKS,
		       (unsigned)VP_PORT_MAX_LINKS);
		return VM_EXIT_OK;
	}
	if (argc < 3 || vm_parse_u64(argv[2], &v) < 0 || v < 2 || v > 64)
		return vm_usage_error("chain needs a number of VMs, 2..64 (e.g. 'vp-vm chain 3')");
	n = (unsigned)v;
	r = parse_opts(argc, argv, &o, true);
	if (r >= 0)
		return r;
	vp_log_set_level(o.log_level);
	if (o.port[0].kind || o.nports > 1 || o.app_set)
		return vm_usage_error("chain sets up the ports and apps itself");
	if (!o.seconds_set && !o.count) {
		o.seconds = 3;
		o.seconds_set = true;
	}
	if (self_exe(exe, sizeof(exe)) < 0 || !mkdtemp(dir)) {
		vp_log(VP_LOG_ERR, "chain: cannot set up: %s", strerror(errno));
		return VM_EXIT_FAIL;
	}
	for (unsigned i = 0; i < n; i++)
		snprintf(sock[i], sizeof(sock[i]), "%s/vm%u.sock", dir, i + 1);
	vm_signals_init();
	memset(ch, 0, sizeof(ch));
	t0 = vm_now_ns();
	if (!o.quiet)
		fprintf(stderr, "vp-vm chain: %u VMs, %u vhost-pci hops, %s mode, %" PRIu64
			"..%" PRIu64 " B frames\n", n, n - 1, vm_mode_name(o.mode), o.size_lo,
			o.size_hi);
	/* Start from the end: each VM's backend socket exists before the
	 * previous VM connects (frontends retry anyway). */
	for (unsigned k = n; k-- > 0;) {
		char *a[48], size[48], rate[32], count[32], secs[32], burst[16], name[16], cpu[16],
			lvl[8], port2[160];
		unsigned na = 0;
		static const char *const lvls[] = { "err", "warn", "info", "debug" };

		snprintf(size, sizeof(size), "%" PRIu64 "-%" PRIu64, o.size_lo, o.size_hi);
		snprintf(rate, sizeof(rate), "%" PRIu64, o.rate);
		snprintf(count, sizeof(count), "%" PRIu64, o.count);
		snprintf(secs, sizeof(secs), "%.3f", o.seconds);
		snprintf(burst, sizeof(burst), "%u", o.burst);
		snprintf(name, sizeof(name), "vm%u", k + 1);
		/* Quiet VMs unless asked: a sink that leaves at the end makes its
		 * upstream neighbour log a (harmless) warning. */
		snprintf(lvl, sizeof(lvl), "%s", lvls[chain_log_set ? o.log_level : VP_LOG_ERR]);
		a[na++] = exe;
		a[na++] = (char *)"--name";
		a[na++] = name;
		a[na++] = (char *)"--json";
		a[na++] = (char *)"--quiet";
		a[na++] = (char *)"--log-level";
		a[na++] = lvl;
		a[na++] = (char *)"--mode";
		a[na++] = (char *)vm_mode_name(o.mode);
		if (o.coalesce_arg) {
			a[na++] = (char *)"--coalesce";
			a[na++] = (char *)o.coalesce_arg;
		}
		a[na++] = (char *)"--burst";
		a[na++] = burst;
		a[na++] = (char *)"--verify";
		a[na++] = (char *)(o.verify_full ? "full" : "header");
		if (cpu_list) {
			/* the k-th entry of the list, cycling */
			const char *p = cpu_list;
			unsigned cnt = 1, idx;

			for (const char *q = cpu_list; *q; q++)
				cnt += *q == ',';
			idx = k % cnt;
			for (unsigned m = 0; m < idx; m++)
				p = strchr(p, ',') + 1;
			snprintf(cpu, sizeof(cpu), "%.*s", (int)strcspn(p, ","), p);
			a[na++] = (char *)"--cpu";
			a[na++] = cpu;
		}
		if (k == 0) {
			a[na++] = (char *)"--app";
			a[na++] = (char *)"gen";
			a[na++] = (char *)"--connect";
			a[na++] = sock[1];
			a[na++] = (char *)"--size";
			a[na++] = size;
			a[na++] = (char *)"--rate";
			a[na++] = rate;
			if (o.count) {
				a[na++] = (char *)"--count";
				a[na++] = count;
			}
			if (o.seconds_set) {
				a[na++] = (char *)"--seconds";
				a[na++] = secs;
			}
		} else {
			a[na++] = (char *)"--listen";
			a[na++] = sock[k];
			if (k == n - 1) {
				a[na++] = (char *)"--app";
				a[na++] = (char *)"sink";
				a[na++] = (char *)"--ends";
				a[na++] = (char *)"1";
			} else {
				snprintf(port2, sizeof(port2), "frontend,connect=%s", sock[k + 1]);
				a[na++] = (char *)"--app";
				a[na++] = (char *)"fwd";
				a[na++] = (char *)"--port2";
				a[na++] = port2;
			}
		}
		a[na] = NULL;
		ch[k].pid = spawn(exe, a, &ch[k].out);
		if (ch[k].pid < 0) {
			vp_log(VP_LOG_ERR, "chain: cannot start VM %u: %s", k + 1, strerror(errno));
			rc = VM_EXIT_FAIL;
			break;
		}
	}
	/* Wait for the generator and the sink; then stop the forwarders. */
	limit = t0 + (int64_t)((o.seconds_set ? o.seconds : 60) + 30) * 1000000000ll;
	while (rc == VM_EXIT_OK && !(ch[0].done && ch[n - 1].done)) {
		int st;
		pid_t p = waitpid(-1, &st, WNOHANG);

		if (p > 0) {
			for (unsigned k = 0; k < n; k++)
				if (ch[k].pid == p) {
					ch[k].done = true;
					ch[k].status = st;
					if (k > 0 && k < n - 1) {
						vp_log(VP_LOG_ERR, "chain: forwarder vm%u exited early", k + 1);
						rc = VM_EXIT_FAIL;
					}
				}
			continue;
		}
		if (vm_stop_signal) {
			vp_log(VP_LOG_INFO, "chain: %s: stopping the VMs", strsignal(vm_stop_signal));
			break;
		}
		if (vm_now_ns() > limit) {
			vp_log(VP_LOG_ERR, "chain: timed out");
			rc = VM_EXIT_FAIL;
			break;
		}
		struct timespec ts = { 0, 20000000 };

		nanosleep(&ts, NULL);
	}
	/* Stop whoever still runs (the forwarders; everyone after a failure)
	 * from the front of the chain, so each frontend leaves before its
	 * backend does; then reap. */
	for (unsigned k = 0; k < n; k++) {
		if (ch[k].pid > 0 && !ch[k].done) {
			kill(ch[k].pid, SIGTERM);
			int64_t end = vm_now_ns() + 3000000000ll;

			while (waitpid(ch[k].pid, &ch[k].status, WNOHANG) == 0) {
				if (vm_now_ns() > end) {
					kill(ch[k].pid, SIGKILL);
					waitpid(ch[k].pid, &ch[k].status, 0);
					break;
				}
				struct timespec ts = { 0, 10000000 };

				nanosleep(&ts, NULL);
			}
			ch[k].done = true;
		}
		if (ch[k].pid > 0) {
			read_report(&ch[k]);
			close(ch[k].out);
		}
	}
	for (unsigned i = 0; i < n; i++)
		unlink(sock[i]);
	rmdir(dir);

	double cpu = 0, delivered = jnum(ch[n - 1].json, "received"), sent = jnum(ch[0].json, "tx_packets");
	bool ok_sink = false, ok_gen = false;

	for (unsigned k = 0; k < n; k++)
		cpu += jnum(ch[k].json, "cpu_s");
	vm_json_get_bool(ch[n - 1].json, "ok", &ok_sink);
	vm_json_get_bool(ch[0].json, "ok", &ok_gen);
	if (!ok_sink || !ok_gen || delivered != sent || delivered == 0)
		rc = VM_EXIT_FAIL;
	for (unsigned k = 0; k < n; k++)
		if (!ch[k].json[0]) {
			vp_log(VP_LOG_ERR, "chain: vm%u gave no report (status 0x%x)", k + 1,
			       (unsigned)ch[k].status);
			rc = VM_EXIT_FAIL;
		}
	double mpps = jnum(ch[n - 1].json, "rx_mpps"), gbps = jnum(ch[n - 1].json, "rx_gbps");

	if (o.json) {
		struct vm_json j;

		vm_json_begin(&j);
		vm_json_str(&j, "name", "chain");
		vm_json_u64(&j, "vms", n);
		vm_json_str(&j, "mode", vm_mode_name(o.mode));
		vm_json_u64(&j, "sent", (uint64_t)sent);
		vm_json_u64(&j, "delivered", (uint64_t)delivered);
		vm_json_u64(&j, "lost", (uint64_t)jnum(ch[n - 1].json, "lost"));
		vm_json_u64(&j, "corrupt", (uint64_t)jnum(ch[n - 1].json, "corrupt"));
		vm_json_dbl(&j, "mpps", mpps);
		vm_json_dbl(&j, "gbps", gbps);
		vm_json_dbl(&j, "cpu_s", cpu);
		vm_json_dbl(&j, "pkts_per_cpu_s", cpu > 0 ? delivered / cpu : 0);
		vm_json_bool(&j, "ok", rc == VM_EXIT_OK);
		printf("%s\n", vm_json_finish(&j));
	} else {
		printf("chain of %u VMs (%u vhost-pci hops), %s mode:\n", n, n - 1, vm_mode_name(o.mode));
		printf("  sent %.0f, delivered %.0f packets: %.3f Mpps, %.3f Gbit/s; lost %.0f, "
		       "corrupt %.0f\n", sent, delivered, mpps, gbps, jnum(ch[n - 1].json, "lost"),
		       jnum(ch[n - 1].json, "corrupt"));
		printf("  CPU:");
		for (unsigned k = 0; k < n; k++)
			printf(" vm%u %.2f s%s", k + 1, jnum(ch[k].json, "cpu_s"), k + 1 < n ? "," : "");
		printf("; total %.2f s -> %.3f M delivered packets per CPU-second\n", cpu,
		       cpu > 0 ? delivered / cpu / 1e6 : 0.0);
		printf("  result: %s\n", rc == VM_EXIT_OK ? "OK" : "FAILED");
	}
	return rc;
}

int main(int argc, char **argv)
{
	struct opts o;
	int r;

	setvbuf(stderr, NULL, _IOLBF, 0);
	vm_cli_init("vp-vm");
	vp_log_set_handler(vm_log_handler, &g_name);
	if (argc >= 2 && !strcmp(argv[1], "chain")) {
		g_name = "chain";
		return run_chain(argc, argv);
	}
	r = parse_opts(argc, argv, &o, false);
	if (r >= 0)
		return r;
	vp_log_set_level(o.log_level);
	g_name = o.name ? o.name : app_names[o.app];
	return run_vm(&o);
}
