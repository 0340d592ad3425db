src/.lcfs_main.o.d: /var/cache/lcfs/kernel/7.3.4-1~bpo13+1-d40bc1504a03/.clippy.toml src/lcfs_main.rs src/format/mod.rs src/format/bytes.rs src/format/crc32c.rs src/format/superblock.rs src/fs.rs src/fs/super_.rs src/vfs.rs src/vfs/bindings.rs src/vfs/block.rs src/vfs/dir.rs src/vfs/inode.rs src/vfs/registration.rs src/vfs/super_block.rs src/vfs/bindings_generated.rs /var/cache/lcfs/kernel/7.3.4-1~bpo13+1-d40bc1504a03/rust/libcore.rmeta /var/cache/lcfs/kernel/7.3.4-1~bpo13+1-d40bc1504a03/rust/libkernel.rmeta /var/cache/lcfs/kernel/7.3.4-1~bpo13+1-d40bc1504a03/rust/libffi.rmeta /var/cache/lcfs/kernel/7.3.4-1~bpo13+1-d40bc1504a03/rust/libcompiler_builtins.rmeta /var/cache/lcfs/kernel/7.3.4-1~bpo13+1-d40bc1504a03/rust/libpin_init.rmeta /var/cache/lcfs/kernel/7.3.4-1~bpo13+1-d40bc1504a03/rust/libpin_init_internal.so /var/cache/lcfs/kernel/7.3.4-1~bpo13+1-d40bc1504a03/rust/libmacros.so /var/cache/lcfs/kernel/7.3.4-1~bpo13+1-d40bc1504a03/rust/libbuild_error.rmeta /var/cache/lcfs/kernel/7.3.4-1~bpo13+1-d40bc1504a03/rust/libzerocopy.rmeta /var/cache/lcfs/kernel/7.3.4-1~bpo13+1-d40bc1504a03/rust/libbindings.rmeta /var/cache/lcfs/kernel/7.3.4-1~bpo13+1-d40bc1504a03/rust/libzerocopy_derive.so /var/cache/lcfs/kernel/7.3.4-1~bpo13+1-d40bc1504a03/rust/libuapi.rmeta

src/lcfs_main.o: /var/cache/lcfs/kernel/7.3.4-1~bpo13+1-d40bc1504a03/.clippy.toml src/lcfs_main.rs src/format/mod.rs src/format/bytes.rs src/format/crc32c.rs src/format/superblock.rs src/fs.rs src/fs/super_.rs src/vfs.rs src/vfs/bindings.rs src/vfs/block.rs src/vfs/dir.rs src/vfs/inode.rs src/vfs/registration.rs src/vfs/super_block.rs src/vfs/bindings_generated.rs /var/cache/lcfs/kernel/7.3.4-1~bpo13+1-d40bc1504a03/rust/libcore.rmeta /var/cache/lcfs/kernel/7.3.4-1~bpo13+1-d40bc1504a03/rust/libkernel.rmeta /var/cache/lcfs/kernel/7.3.4-1~bpo13+1-d40bc1504a03/rust/libffi.rmeta /var/cache/lcfs/kernel/7.3.4-1~bpo13+1-d40bc1504a03/rust/libcompiler_builtins.rmeta /var/cache/lcfs/kernel/7.3.4-1~bpo13+1-d40bc1504a03/rust/libpin_init.rmeta /var/cache/lcfs/kernel/7.3.4-1~bpo13+1-d40bc1504a03/rust/libpin_init_internal.so /var/cache/lcfs/kernel/7.3.4-1~bpo13+1-d40bc1504a03/rust/libmacros.so /var/cache/lcfs/kernel/7.3.4-1~bpo13+1-d40bc1504a03/rust/libbuild_error.rmeta /var/cache/lcfs/kernel/7.3.4-1~bpo13+1-d40bc1504a03/rust/libzerocopy.rmeta /var/cache/lcfs/kernel/7.3.4-1~bpo13+1-d40bc1504a03/rust/libbindings.rmeta /var/cache/lcfs/kernel/7.3.4-1~bpo13+1-d40bc1504a03/rust/libzerocopy_derive.so /var/cache/lcfs/kernel/7.3.4-1~bpo13+1-d40bc1504a03/rust/libuapi.rmeta

/var/cache/lcfs/kernel/7.3.4-1~bpo13+1-d40bc1504a03/.clippy.toml:
src/lcfs_main.rs:
src/format/mod.rs:
src/format/bytes.rs:
src/format/crc32c.rs:
src/format/superblock.rs:
src/fs.rs:
src/fs/super_.rs:
src/vfs.rs:
src/vfs/bindings.rs:
src/vfs/block.rs:
src/vfs/dir.rs:
src/vfs/inode.rs:
src/vfs/registration.rs:
src/vfs/super_block.rs:
src/vfs/bindings_generated.rs:
/var/cache/lcfs/kernel/7.3.4-1~bpo13+1-d40bc1504a03/rust/libcore.rmeta:
/var/cache/lcfs/kernel/7.3.4-1~bpo13+1-d40bc1504a03/rust/libkernel.rmeta:
/var/cache/lcfs/kernel/7.3.4-1~bpo13+1-d40bc1504a03/rust/libffi.rmeta:
/var/cache/lcfs/kernel/7.3.4-1~bpo13+1-d40bc1504a03/rust/libcompiler_builtins.rmeta:
/var/cache/lcfs/kernel/7.3.4-1~bpo13+1-d40bc1504a03/rust/libpin_init.rmeta:
/var/cache/lcfs/kernel/7.3.4-1~bpo13+1-d40bc1504a03/rust/libpin_init_internal.so:
/var/cache/lcfs/kernel/7.3.4-1~bpo13+1-d40bc1504a03/rust/libmacros.so:
/var/cache/lcfs/kernel/7.3.4-1~bpo13+1-d40bc1504a03/rust/libbuild_error.rmeta:
/var/cache/lcfs/kernel/7.3.4-1~bpo13+1-d40bc1504a03/rust/libzerocopy.rmeta:
/var/cache/lcfs/kernel/7.3.4-1~bpo13+1-d40bc1504a03/rust/libbindings.rmeta:
/var/cache/lcfs/kernel/7.3.4-1~bpo13+1-d40bc1504a03/rust/libzerocopy_derive.so:
/var/cache/lcfs/kernel/7.3.4-1~bpo13+1-d40bc1504a03/rust/libuapi.rmeta:

# env-dep:CLIPPY_ARGS
# env-dep:CLIPPY_CONF_DIR=/var/cache/lcfs/kernel/7.3.4-1~bpo13+1-d40bc1504a03
