# SPDX-License-Identifier: GPL-2.0
# LCFS top-level Makefile. Kbuild (the module) is driven from here with `make -C $(KDIR) M=...`.
#
#   make test    set up everything needed, build, run host, KUnit and VM tests (short forms)
#   make soak    the long forms: fsx at 100,000 operations per seed, more crash rounds and
#                corrupted images, longer fuzzing and stress
#   SUITES="host posix ..." with either: only these groups (scripts/test.sh lists them)
#   make run     set up, build, boot a VM with a file-backed disk and run the demo
#   make shell   interactive guest with the module and tools
#
# LCFS_KERNEL=release selects the guest kernel without debugging instrumentation (kernel/*.config).
#
# Everything outside the repository (toolchain, kernel source and build, guest images) is cached
# under $(LCFS_CACHE), default /var/cache/lcfs.

SHELL := /bin/bash
export LCFS_CACHE ?= /var/cache/lcfs
LLVM_SUFFIX := -19
export LIBCLANG_PATH ?= /usr/lib/llvm$(LLVM_SUFFIX)/lib
# Cargo's intermediate artifacts are cached across clones (each clone's own crates get their own
# files there; the binaries still land in the clone's userspace/target).
export CARGO_BUILD_BUILD_DIR ?= $(LCFS_CACHE)/cargo-build
BUILD := $(CURDIR)/build

.PHONY: all setup kernel module userspace man guest-tools test soak run shell bench clippy fmt-check clean

all: module userspace

setup:
	@LCFS_QUIET=1 scripts/setup.sh

kernel: setup
	@scripts/build-kernel.sh >/dev/null

# Kbuild decides what to rebuild; KDIR comes from the kernel cache. LCFS_KERNEL=release builds
# the release kernel and a module for it (scripts/build-module.sh).
module: kernel
	@scripts/build-module.sh >/dev/null

userspace: setup
	@cd userspace && cargo build --release --quiet -p lcfs-mkfs -p lcfs-fsck -p lcfs-cli
	@mkdir -p $(BUILD)/host
	@install -m755 userspace/target/release/mkfs-lcfs $(BUILD)/host/mkfs.lcfs
	@install -m755 userspace/target/release/fsck-lcfs $(BUILD)/host/fsck.lcfs
	@install -m755 userspace/target/release/lcfs $(BUILD)/host/lcfs

# Man pages (section 8) and bash, zsh and fish completions of the tools, generated from their
# clap definitions into build/man and build/completions.
man: setup
	@cd userspace && cargo run --release --quiet -p lcfs-gen -- $(BUILD)/man $(BUILD)/completions

# Static binaries for the busybox guest.
guest-tools: setup
	@cd userspace && cargo build --release --quiet --target x86_64-unknown-linux-musl -p lcfs-mkfs -p lcfs-fsck -p lcfs-cli \
		-p lcfs-snapshotter
	@mkdir -p $(BUILD)/guest
	@install -s -m755 userspace/target/x86_64-unknown-linux-musl/release/mkfs-lcfs $(BUILD)/guest/mkfs.lcfs
	@install -s -m755 userspace/target/x86_64-unknown-linux-musl/release/fsck-lcfs $(BUILD)/guest/fsck.lcfs
	@install -s -m755 userspace/target/x86_64-unknown-linux-musl/release/lcfs $(BUILD)/guest/lcfs
	@install -s -m755 userspace/target/x86_64-unknown-linux-musl/release/containerd-lcfs-grpc \
		$(BUILD)/guest/containerd-lcfs-grpc

test:
	@SUITES="$(SUITES)" scripts/test.sh

soak:
	@SUITES="$(SUITES)" LCFS_SOAK=1 scripts/test.sh

run: module guest-tools
	@scripts/vm.sh --run demo

shell: module guest-tools
	@scripts/vm.sh --shell

# Format-core benchmark table, then the guest benchmarks on the release kernel (not tests); see
# Documentation/benchmarks.md.
bench: setup guest-tools
	@cd userspace && cargo run --release --quiet -p lcfs-bench
	@scripts/fsbench.sh
	@scripts/layerbench.sh
	@scripts/containerdbench.sh

clippy: setup
	@cd userspace && cargo clippy --release --all-targets --quiet -- -D warnings

fmt-check:
	@cd userspace && cargo fmt --all --check && cargo fmt --manifest-path fuzz/Cargo.toml --check

clean:
	@if [ -d "$(LCFS_CACHE)/kernel" ]; then kdir=$$(scripts/build-kernel.sh 2>/dev/null) && \
		$(MAKE) -s -C "$$kdir" LLVM=$(LLVM_SUFFIX) M=$(CURDIR) clean || true; fi
	@rm -rf $(BUILD) userspace/target
