#!/usr/bin/env bash
# Operating-system tools the DICOM validation tests use: dcmtk (dsrdump) and dicom3tools (dciodvfy).
# Needs root (or sudo); without them those tests skip and say why.
set -euo pipefail
if command -v dsrdump >/dev/null && command -v dciodvfy >/dev/null; then exit 0; fi
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq dcmtk dicom3tools >/dev/null
