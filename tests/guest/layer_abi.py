# SPDX-License-Identifier: GPL-2.0
# The layer ioctls' ABI from a raw caller (include/uapi/linux/lcfs.h): structures built by hand,
# garbage, bad addresses, reserved fields, names, privileges. Run by tests/guest/layers.sh with
# the Debian root's python3:
#
#   layer_abi.py admin MOUNT        as root: argument checking, errors, list cursors
#   layer_abi.py unprivileged LAYERDIR OTHER
#                                   without CAP_SYS_ADMIN (another uid, or root of a user
#                                   namespace): every change EPERM, only LAYERDIR's own layer
#                                   readable, OTHER (a layer name) neither changed nor seen
#
# Prints "ok NAME" or "not ok NAME: ..." per check and exits 1 if any failed.
import ctypes
import errno
import fcntl
import os
import random
import struct
import sys

MAGIC = 0xE5
NAME_SIZE = 256
LIST_MAX = 256


def ioc(direction, nr, size):
    return (direction << 30) | (size << 16) | (MAGIC << 8) | nr


W, R = 1, 2
CREATE = struct.Struct("<QII Q 5Q 256s")
REF = struct.Struct("<Q 3Q")
RENAME = struct.Struct("<Q 3Q 256s")
INFO = struct.Struct("<QQII qII QQQ 4Q 256s")
LIST = struct.Struct("<QQII 4Q")
DIFF = struct.Struct("<QQ 4Q Q II 4Q")
DIFF_BUF_MIN = 4112
FS_INFO_SIZE = 176
assert (CREATE.size, REF.size, RENAME.size, INFO.size, LIST.size, DIFF.size) == (320, 32, 288, 352, 56, 96)

IOC_FS_INFO = ioc(R, 1, FS_INFO_SIZE)
IOC_CREATE = ioc(R | W, 2, CREATE.size)
IOC_CLONE = ioc(R | W, 3, CREATE.size)
IOC_SNAPSHOT = ioc(R | W, 4, CREATE.size)
IOC_FREEZE = ioc(W, 5, REF.size)
IOC_RENAME = ioc(W, 6, RENAME.size)
IOC_REMOVE = ioc(W, 7, REF.size)
IOC_INFO = ioc(R | W, 8, INFO.size)
IOC_LIST = ioc(R | W, 9, LIST.size)
IOC_DIFF = ioc(R | W, 10, DIFF.size)


def diff(id_, buf=0, size=DIFF_BUF_MIN, base=0, cursor=(0, 0, 0, 0), count=0, reserved=(0,) * 4):
    return DIFF.pack(id_, base, *cursor, buf, size, count, *reserved)

failed = 0


def report(name, good, detail=""):
    global failed
    if good:
        print(f"ok {name}")
    else:
        failed += 1
        print(f"not ok {name}: {detail}")


def call(fd, code, arg):
    """The ioctl's errno (0 on success) and its output."""
    try:
        return 0, fcntl.ioctl(fd, code, arg)
    except OSError as e:
        return e.errno, None


def expect(name, fd, code, arg, want):
    got, out = call(fd, code, arg)
    report(name, got == want, f"errno {errno.errorcode.get(got, got)}, expected {errno.errorcode.get(want, want)}")
    return out


def create(source=0, flags=0, name=b"x", reserved0=0, out_id=0, reserved=(0,) * 5):
    return CREATE.pack(source, flags, reserved0, out_id, *reserved, name)


def info(id_=0, name=b"", **fields):
    v = dict(parent=0, flags=0, children=0, sec=0, nsec=0, valid=0, inodes=0, bytes=0, own=0, reserved=(0,) * 4)
    v.update(fields)
    return INFO.pack(id_, v["parent"], v["flags"], v["children"], v["sec"], v["nsec"], v["valid"],
                     v["inodes"], v["bytes"], v["own"], *v["reserved"], name)


def info_of(fd, id_=0, name=b""):
    got, out = call(fd, IOC_INFO, info(id_, name))
    if got:
        return got, None
    f = INFO.unpack(out)
    return 0, dict(id=f[0], parent=f[1], flags=f[2], children=f[3], inodes=f[7], bytes=f[8],
                   name=f[-1].split(b"\0")[0])


def list_all(fd, batch):
    """All layers through LCFS_IOC_LAYER_LIST, `batch` at a time: (errno, [(id, name)], calls)."""
    buf = ctypes.create_string_buffer(INFO.size * batch)
    cursor, seen, calls = 0, [], 0
    while True:
        calls += 1
        got, out = call(fd, IOC_LIST, LIST.pack(cursor, ctypes.addressof(buf), batch, 0, 0, 0, 0, 0))
        if got:
            return got, seen, calls
        cursor, _, count = LIST.unpack(out)[:3]
        for i in range(count):
            f = INFO.unpack_from(buf.raw, i * INFO.size)
            seen.append((f[0], f[-1].split(b"\0")[0]))
        if cursor == 0:
            return 0, seen, calls


def admin(mount):
    fd = os.open(mount, os.O_RDONLY | os.O_DIRECTORY)
    # Known layers: "base" frozen, made by the suite before.
    _, base = info_of(fd, name=b"base")
    report("info_by_name", base is not None and base["flags"] == 1, f"{base}")
    bid = base["id"] if base else 0
    expect("unknown_request", fd, ioc(R | W, 200, 8), b"\0" * 8, errno.ENOTTY)
    expect("wrong_size", fd, ioc(R | W, 2, 64), b"\0" * 64, errno.ENOTTY)
    for code, name in [(IOC_CREATE, "create"), (IOC_INFO, "info"), (IOC_LIST, "list"), (IOC_FS_INFO, "fs_info"),
                       (IOC_FREEZE, "freeze"), (IOC_REMOVE, "remove"), (IOC_RENAME, "rename")]:
        expect(f"bad_address_{name}", fd, code, 16, errno.EFAULT)
    expect("reserved_create", fd, IOC_CREATE, create(reserved=(0, 0, 0, 0, 1)), errno.EINVAL)
    expect("reserved0_create", fd, IOC_CREATE, create(reserved0=1), errno.EINVAL)
    expect("id_set_on_input", fd, IOC_CREATE, create(out_id=5), errno.EINVAL)
    expect("create_with_source", fd, IOC_CREATE, create(source=bid), errno.EINVAL)
    expect("create_flags", fd, IOC_CREATE, create(flags=1), errno.EINVAL)
    expect("clone_unknown_flag", fd, IOC_CLONE, create(source=bid, flags=2), errno.EINVAL)
    expect("clone_no_source", fd, IOC_CLONE, create(), errno.EINVAL)
    expect("snapshot_flags", fd, IOC_SNAPSHOT, create(source=bid, flags=1), errno.EINVAL)
    expect("reserved_ref", fd, IOC_FREEZE, REF.pack(bid, 0, 1, 0), errno.EINVAL)
    expect("reserved_rename", fd, IOC_RENAME, RENAME.pack(bid, 1, 0, 0, b"y"), errno.EINVAL)
    expect("reserved_info", fd, IOC_INFO, info(bid, reserved=(0, 0, 0, 9)), errno.EINVAL)
    expect("info_output_field_set", fd, IOC_INFO, info(bid, inodes=1), errno.EINVAL)
    expect("info_id_and_name", fd, IOC_INFO, info(bid, b"base"), errno.EINVAL)
    expect("info_of_mount_root", fd, IOC_INFO, info(), errno.EINVAL)
    dbuf = ctypes.create_string_buffer(DIFF_BUF_MIN)
    daddr = ctypes.addressof(dbuf)
    expect("diff", fd, IOC_DIFF, diff(bid, daddr), 0)
    expect("diff_bad_buffer", fd, IOC_DIFF, diff(bid, 16), errno.EFAULT)
    expect("diff_small_buffer", fd, IOC_DIFF, diff(bid, daddr, DIFF_BUF_MIN - 1), errno.EINVAL)
    expect("diff_count_set", fd, IOC_DIFF, diff(bid, daddr, count=1), errno.EINVAL)
    expect("diff_reserved", fd, IOC_DIFF, diff(bid, daddr, reserved=(0, 1, 0, 0)), errno.EINVAL)
    expect("diff_bad_cursor", fd, IOC_DIFF, diff(bid, daddr, cursor=(1, 256, 0, 0)), errno.EINVAL)
    expect("diff_not_an_ancestor", fd, IOC_DIFF, diff(bid, daddr, base=bid), errno.EINVAL)
    expect("diff_missing", fd, IOC_DIFF, diff(1 << 20, daddr), errno.ENOENT)
    expect("reserved_list", fd, IOC_LIST, LIST.pack(0, 16, 1, 0, 0, 1, 0, 0), errno.EINVAL)
    expect("list_count_zero", fd, IOC_LIST, LIST.pack(0, 16, 0, 0, 0, 0, 0, 0), errno.EINVAL)
    expect("list_count_too_big", fd, IOC_LIST, LIST.pack(0, 16, LIST_MAX + 1, 0, 0, 0, 0, 0), errno.EINVAL)
    expect("list_bad_entries", fd, IOC_LIST, LIST.pack(0, 16, 4, 0, 0, 0, 0, 0), errno.EFAULT)
    for label, name in [("empty", b""), ("dot", b"."), ("dotdot", b".."), ("slash", b"a/b"),
                        ("not_utf8", b"\xff\xfe"), ("no_nul", b"n" * NAME_SIZE)]:
        expect(f"name_{label}", fd, IOC_CREATE, create(name=name), errno.EINVAL)
        expect(f"rename_{label}", fd, IOC_RENAME, RENAME.pack(bid, 0, 0, 0, name), errno.EINVAL)
    long = b"L" * 255
    out = expect("name_255_bytes", fd, IOC_CREATE, create(name=long), 0)
    if out:
        lid = CREATE.unpack(out)[3]
        _, got = info_of(fd, lid)
        report("name_255_bytes_kept", got is not None and got["name"] == long, f"{got}")
        expect("remove_long", fd, IOC_REMOVE, REF.pack(lid, 0, 0, 0), 0)
    expect("exists", fd, IOC_CREATE, create(name=b"base"), errno.EEXIST)
    expect("clone_missing", fd, IOC_CLONE, create(source=1 << 20, name=b"c"), errno.ENOENT)
    expect("freeze_missing", fd, IOC_FREEZE, REF.pack(1 << 20, 0, 0, 0), errno.ENOENT)
    expect("remove_missing", fd, IOC_REMOVE, REF.pack(1 << 20, 0, 0, 0), errno.ENOENT)
    expect("rename_missing", fd, IOC_RENAME, RENAME.pack(1 << 20, 0, 0, 0, b"q"), errno.ENOENT)
    expect("info_missing", fd, IOC_INFO, info(1 << 20), errno.ENOENT)
    expect("info_missing_name", fd, IOC_INFO, info(0, b"nosuch"), errno.ENOENT)
    out = expect("create_rw", fd, IOC_CREATE, create(name=b"abi-rw"), 0)
    rw = CREATE.unpack(out)[3] if out else 0
    expect("clone_of_read_write", fd, IOC_CLONE, create(source=rw, name=b"abi-c"), errno.EINVAL)
    # Garbage: random structures of every request must fail cleanly or (for a well-formed one)
    # succeed; nothing may crash, and no layer may appear from a bad one.
    rng = random.Random(1)
    before = list_all(fd, 64)[1]
    for code in (IOC_CREATE, IOC_CLONE, IOC_SNAPSHOT, IOC_FREEZE, IOC_RENAME, IOC_REMOVE, IOC_INFO, IOC_LIST,
                 IOC_DIFF):
        size = (code >> 16) & 0x3FFF
        bad = 0
        for _ in range(200):
            got, _ = call(fd, code, bytes(rng.getrandbits(8) for _ in range(size)))
            bad += got not in (errno.EINVAL, errno.EFAULT)
        report(f"garbage_{code & 0xFF}", bad == 0, f"{bad} of 200 gave another errno or succeeded")
    report("garbage_changed_nothing", list_all(fd, 64)[1] == before, "the layer list changed")
    # Listing: one at a time and all at once agree, in id order, each layer once.
    got1, one, calls = list_all(fd, 1)
    got2, many, _ = list_all(fd, LIST_MAX)
    ids = [i for i, _ in many]
    report("list_cursor", got1 == 0 and got2 == 0 and one == many and ids == sorted(set(ids)) and calls >= len(many),
           f"{got1} {got2} {one} {many}")
    expect("remove_rw", fd, IOC_REMOVE, REF.pack(rw, 0, 0, 0), 0)
    os.close(fd)


def unprivileged(layer_dir, other):
    fd = os.open(layer_dir, os.O_RDONLY | os.O_DIRECTORY)
    got, own = info_of(fd)
    report("own_layer_readable", got == 0 and own is not None, f"errno {got}")
    own_id = own["id"] if own else 0
    got, again = info_of(fd, own_id)
    report("own_layer_by_id", got == 0 and again == own, f"errno {got}")
    expect("fs_info", fd, IOC_FS_INFO, b"\0" * FS_INFO_SIZE, 0)
    expect("other_by_name", fd, IOC_INFO, info(0, other), errno.EPERM)
    expect("missing_by_name", fd, IOC_INFO, info(0, b"nosuch"), errno.EPERM)
    for probe in (1, 2, 3, own_id + 1):
        if probe != own_id:
            expect(f"other_by_id_{probe}", fd, IOC_INFO, info(probe), errno.EPERM)
    buf = ctypes.create_string_buffer(INFO.size * 4)
    expect("list", fd, IOC_LIST, LIST.pack(0, ctypes.addressof(buf), 4, 0, 0, 0, 0, 0), errno.EPERM)
    dbuf = ctypes.create_string_buffer(DIFF_BUF_MIN)
    expect("diff", fd, IOC_DIFF, diff(own_id, ctypes.addressof(dbuf)), errno.EPERM)
    expect("create", fd, IOC_CREATE, create(name=b"evil"), errno.EPERM)
    expect("clone", fd, IOC_CLONE, create(source=own_id, name=b"evil"), errno.EPERM)
    expect("snapshot", fd, IOC_SNAPSHOT, create(source=own_id, name=b"evil"), errno.EPERM)
    expect("freeze", fd, IOC_FREEZE, REF.pack(own_id, 0, 0, 0), errno.EPERM)
    expect("rename", fd, IOC_RENAME, RENAME.pack(own_id, 0, 0, 0, b"evil"), errno.EPERM)
    for probe in (1, 2, 3):
        expect(f"remove_{probe}", fd, IOC_REMOVE, REF.pack(probe, 0, 0, 0), errno.EPERM)
    os.close(fd)


if __name__ == "__main__":
    if sys.argv[1] == "admin":
        admin(sys.argv[2])
    else:
        unprivileged(sys.argv[2], sys.argv[3].encode())
    sys.exit(1 if failed else 0)
