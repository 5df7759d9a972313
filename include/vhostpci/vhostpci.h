/* SPDX-License-Identifier: BSD-3-Clause */
/* libvhostpci: everything in one include. */
#ifndef VHOSTPCI_VHOSTPCI_H
#define VHOSTPCI_VHOSTPCI_H

#include "common.h"
#include "log.h"
#include "mem.h"
#include "vring.h"
#include "proto.h"
#include "sock.h"
#include "server.h"
#include "client.h"
#include "net.h"
#include "net21.h"
#include "fd.h"
#include "device.h"
#include "devinfo.h"
#include "port.h"
#include "waitset.h"

#endif
