#!/bin/bash
# qemu-pair21.sh with interrupts in the guest: -M q35 with an intel-iommu, .0 bound to
# vfio-pci, the guest's vp-vm --pair21-guest in --mode irq, woken by .0's MSI-X through VFIO
# (docs/window21.md 9); the host's generator is paced so that the guest's sink sleeps, and
# it must have been woken (tests/guest/tests/pair21.sh, VP_P21_VFIO=1). Same arguments and
# exit codes as qemu-pair21.sh.
VP_P21_IRQ=1 exec "$(dirname "$0")/qemu-pair21.sh" "$@"
