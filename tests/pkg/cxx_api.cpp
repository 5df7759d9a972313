// SPDX-License-Identifier: BSD-3-Clause
// The public headers as a C++ program sees them: every installed header
// compiles with g++ -Wall -Werror, and the program links and runs against the
// shared library (issue #13). Exit status 0 only if each call below behaves.
#include <vhostpci/vhostpci.h>
#include <vhostpci/guestdev.h>
#include <vhostpci/uapi.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

static std::string logged;

static void on_log(enum vp_log_level, const char *msg, void *opaque)
{
	static_cast<std::string *>(opaque)->append(msg);
}

#define CHECK(c) do { if (!(c)) { std::fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #c); return 1; } } while (0)

int main()
{
	// The feature macros expand to the UAPI bits they name.
	CHECK((VP_NET_FEATURES & (1ull << VIRTIO_F_VERSION_1)) != 0);
	CHECK(VP_NET_HDR_LEN == sizeof(struct virtio_net_hdr_v1));

	vp_log_set_handler(on_log, &logged);
	vp_log_set_level(VP_LOG_DEBUG);
	CHECK(vp_log_get_level() == VP_LOG_DEBUG);
	vp_log(VP_LOG_ERR, "from C++ %d", 42);
	CHECK(logged.find("from C++ 42") != std::string::npos);

	struct vp_mem *mem = vp_mem_new();
	CHECK(mem != nullptr);
	static char ram[4096];
	struct vp_mem_region_desc d;
	std::memset(&d, 0, sizeof(d));
	d.gpa = 0x10000;
	d.size = sizeof(ram);
	d.fd = -1;
	d.prot = VP_MEM_RW;
	CHECK(vp_mem_add_local(mem, &d, ram) == 0);
	CHECK(vp_mem_count(mem) == 1);
	CHECK(vp_mem_gpa_ptr(mem, 0x10010, 16, VP_MEM_READ) == ram + 0x10);
	// Outside the region: a negative errno, as in C.
	CHECK(vp_mem_check_gpa(mem, 0x20000, 16, VP_MEM_READ) == -EFAULT);
	vp_mem_free(mem);

	// The registry is opaque: accessors only, from the shared library.
	struct vp_server_config cfg;
	struct vp_server *srv = nullptr;
	std::memset(&cfg, 0, sizeof(cfg));
	cfg.id = "cxx";  // no path: no socket, sessions only from vp_server_adopt()
	CHECK(vp_server_new(&srv, &cfg) == 0);
	struct vp_pci_info *reg = vp_pci_info_new();
	CHECK(reg != nullptr);
	CHECK(vp_server_info(srv, reg) == 0);
	CHECK(vp_pci_info_count(reg) == 0);
	CHECK(vp_pci_info_get(reg, 0) == nullptr);
	const uint8_t uuid[16] = { 1 };
	CHECK(vp_pci_info_find(reg, uuid) == nullptr);
	vp_pci_info_free(reg);
	vp_server_free(srv);

	vp_log_set_handler(nullptr, nullptr);
	std::puts("ok");
	return 0;
}
