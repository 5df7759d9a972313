# SPDX-License-Identifier: BSD-3-Clause
"""Helpers of bench/suite (see bench/README.md)."""
