// SPDX-License-Identifier: GPL-2.0

// Command lcfs-churn is the snapshotter level of the containerd benchmark
// (tests/guest/containerdbench.py): it drives one snapshotter through containerd's own snapshots
// and leases services, as containerd's client library does, from one process. ctr would cost a
// process start per call, which under TCG outweighs most of what is measured.
//
//	lcfs-churn -snapshotter overlayfs -parent sha256:... [-n 100] [-commit-n 100] [-fs overlayfs]
//
// Every request goes through containerd (its metadata store, then the snapshotter), so the
// snapshotters are compared as containerd uses them. containerd's Remove only drops its own
// record; the snapshotter's Remove (and its Cleanup: overlayfs removes directories there) runs
// in containerd's garbage collector. Each remove below is therefore the Remove call and a
// synchronous collection (a lease deleted with sync set), as `ctr image rm --sync` asks for one.
//
// Results, as BENCH lines (the mean in ms of n calls, timed around the call alone and summed: the
// guest's clock advances in 4 ms steps, which averages out over many calls):
//
//	rpc-noop            Stat of the parent: one request through containerd, no storage work
//	gc-noop             a synchronous collection with nothing to collect
//	prepare             Prepare from the parent (the image's top layer)
//	mount-write-umount  mounting the mounts Prepare returned, writing a 4 KiB file, unmounting
//	remove              Remove of the active snapshot and the collection that removes it
//	churn               the whole iteration (the three above)
//	commit              Commit of such an active snapshot (a second loop: prepare, mount,
//	                    write, unmount, commit, remove of the committed snapshot)
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	leasesapi "github.com/containerd/containerd/api/services/leases/v1"
	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	"github.com/containerd/containerd/mount"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/containerd/pkg/dialer"
	"github.com/containerd/containerd/snapshots"
	"github.com/containerd/containerd/snapshots/proxy"
	"google.golang.org/grpc"
)

var (
	address     = flag.String("address", "/run/containerd/containerd.sock", "containerd's socket")
	namespace   = flag.String("namespace", "default", "containerd namespace")
	snapshotter = flag.String("snapshotter", "", "snapshotter name in containerd")
	fsName      = flag.String("fs", "", "name in the BENCH lines (default: the snapshotter's)")
	parent      = flag.String("parent", "", "committed snapshot to prepare from")
	n           = flag.Int("n", 100, "iterations of the churn loop (and of the no-op calls)")
	commitN     = flag.Int("commit-n", -1, "iterations of the commit loop (default: n)")
	target      = flag.String("target", "/tmp/lcfs-churn-mnt", "mount point")
)

type bench struct {
	sn     snapshots.Snapshotter
	leases leasesapi.LeasesClient
	gcs    int
}

// gc makes containerd collect garbage now and waits for it: the snapshotter's Remove and Cleanup
// of every snapshot containerd has dropped.
func (b *bench) gc(ctx context.Context) error {
	b.gcs++
	id := fmt.Sprintf("lcfs-churn-gc-%d", b.gcs)
	if _, err := b.leases.Create(ctx, &leasesapi.CreateRequest{ID: id}); err != nil {
		return fmt.Errorf("lease create: %w", err)
	}
	if _, err := b.leases.Delete(ctx, &leasesapi.DeleteRequest{ID: id, Sync: true}); err != nil {
		return fmt.Errorf("lease delete (sync): %w", err)
	}
	return nil
}

// prepare asks for an active snapshot as `ctr snapshots prepare` does: labelled as a root for the
// collector, which would otherwise take it (no lease or container refers to it). Commit labels
// the committed snapshot the same way.
func (b *bench) prepare(ctx context.Context, key string) ([]mount.Mount, error) {
	return b.sn.Prepare(ctx, key, *parent, snapshots.WithLabels(gcRoot()))
}

// gcRoot is the label that keeps a snapshot from the collector, as ctr sets it.
func gcRoot() map[string]string {
	return map[string]string{"containerd.io/gc.root": time.Now().UTC().Format(time.RFC3339)}
}

// use mounts the snapshot, writes a small file as a container's first write would, and unmounts.
func use(mounts []mount.Mount, i int) error {
	if err := mount.All(mounts, *target); err != nil {
		return fmt.Errorf("mount: %w", err)
	}
	data := make([]byte, 4096)
	werr := os.WriteFile(filepath.Join(*target, fmt.Sprintf("churn-%d", i)), data, 0o644)
	if err := mount.UnmountAll(*target, 0); err != nil {
		return fmt.Errorf("unmount: %w", err)
	}
	if werr != nil {
		return fmt.Errorf("write: %w", werr)
	}
	return nil
}

// timer sums the time of the calls it times.
type timer struct{ sum time.Duration }

func (t *timer) time(f func() error) error {
	start := time.Now()
	err := f()
	t.sum += time.Since(start)
	return err
}

func report(test string, t timer, count int) {
	ms := float64(t.sum.Nanoseconds()) / 1e6 / float64(count)
	fmt.Printf("BENCH test=%s fs=%s n=%d value=%.3f unit=ms\n", test, *fsName, count, ms)
}

func main() {
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("lcfs-churn: ")
	if *snapshotter == "" || *parent == "" || *n < 1 {
		log.Fatal("-snapshotter, -parent and -n >= 1 are required")
	}
	if *fsName == "" {
		*fsName = *snapshotter
	}
	if *commitN < 0 {
		*commitN = *n
	}
	if err := os.MkdirAll(*target, 0o755); err != nil {
		log.Fatal(err)
	}
	conn, err := grpc.Dial(dialer.DialAddress(*address), grpc.WithInsecure(),
		grpc.WithContextDialer(dialer.ContextDialer))
	if err != nil {
		log.Fatalf("dial %s: %v", *address, err)
	}
	defer conn.Close()
	ctx := namespaces.WithNamespace(context.Background(), *namespace)
	b := &bench{
		sn:     proxy.NewSnapshotter(snapshotsapi.NewSnapshotsClient(conn), *snapshotter),
		leases: leasesapi.NewLeasesClient(conn),
	}
	must := func(what string, err error) {
		if err != nil {
			log.Fatalf("%s: %v", what, err)
		}
	}

	// One untimed round first: connection set-up, and the parent's files in the page cache for
	// every snapshotter alike.
	m, err := b.prepare(ctx, "churn-warm")
	must("prepare churn-warm", err)
	must("use churn-warm", use(m, 0))
	must("remove churn-warm", b.sn.Remove(ctx, "churn-warm"))
	must("gc", b.gc(ctx))

	var noop, gcNoop timer
	for i := 0; i < *n; i++ {
		must("stat", noop.time(func() error { _, err := b.sn.Stat(ctx, *parent); return err }))
	}
	report("rpc-noop", noop, *n)
	for i := 0; i < *n; i++ {
		must("gc", gcNoop.time(func() error { return b.gc(ctx) }))
	}
	report("gc-noop", gcNoop, *n)

	var prep, use_, rm, churn timer
	for i := 0; i < *n; i++ {
		key := fmt.Sprintf("churn-%d", i)
		start := time.Now()
		must("prepare "+key, prep.time(func() error { m, err = b.prepare(ctx, key); return err }))
		must("use "+key, use_.time(func() error { return use(m, i) }))
		must("remove "+key, rm.time(func() error {
			if err := b.sn.Remove(ctx, key); err != nil {
				return err
			}
			return b.gc(ctx)
		}))
		churn.sum += time.Since(start)
	}
	report("prepare", prep, *n)
	report("mount-write-umount", use_, *n)
	report("remove", rm, *n)
	report("churn", churn, *n)

	var commit timer
	for i := 0; i < *commitN; i++ {
		key, name := fmt.Sprintf("commit-active-%d", i), fmt.Sprintf("commit-%d", i)
		m, err = b.prepare(ctx, key)
		must("prepare "+key, err)
		must("use "+key, use(m, i))
		must("commit "+name, commit.time(func() error {
			return b.sn.Commit(ctx, name, key, snapshots.WithLabels(gcRoot()))
		}))
		must("remove "+name, b.sn.Remove(ctx, name))
		must("gc", b.gc(ctx))
	}
	if *commitN > 0 {
		report("commit", commit, *commitN)
	}
}
