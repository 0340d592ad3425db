// SPDX-License-Identifier: GPL-2.0

// Package conformance runs containerd's own snapshotter test suite
// (github.com/containerd/containerd/snapshots/testsuite, containerd 1.6 as Debian bookworm packages
// it) twice:
//
//   - TestLcfs: against containerd-lcfs-grpc through containerd's proxy client, over a gRPC
//     connection to the daemon's unix socket made as containerd makes it for a proxy plugin. Each
//     case gets a fresh daemon on a fresh file-backed LCFS image (the suite wants an empty
//     snapshotter per case), stopped and unmounted when the case ends.
//   - TestOverlay: against containerd's overlayfs snapshotter in-process, as the reference.
//
// Both mount, so both need root. scripts/build-go.sh conformance builds this package into the static
// test binary lcfs-snapshot-conformance; in the guest (tests/guest/gotest-results.sh turns the
// -test.v lines into LCFS-RESULT lines):
//
//	lcfs-snapshot-conformance -test.v -test.timeout 30m [-test.run TestLcfs/Basic]
//
// Environment:
//
//	LCFS_SNAPSHOTTER                the daemon (default: containerd-lcfs-grpc, looked up in PATH)
//	LCFS_SNAPSHOTTER_ARGS           more daemon arguments, split at white space ("--log-level debug")
//	LCFS_SNAPSHOTTER_SIZE           size of each case's image file (default 1G; sparse)
//	LCFS_SNAPSHOTTER_START_TIMEOUT  seconds a daemon may take to answer (default 120)
//	LCFS_CONFORMANCE_LOG=1          log every daemon's stderr, not only that of failed cases
//	TMPDIR                          where the suite's case directories and the images go (/tmp)
package conformance

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	"github.com/containerd/containerd/log"
	"github.com/containerd/containerd/pkg/dialer"
	"github.com/containerd/containerd/snapshots"
	"github.com/containerd/containerd/snapshots/overlay"
	"github.com/containerd/containerd/snapshots/overlay/overlayutils"
	"github.com/containerd/containerd/snapshots/proxy"
	"github.com/containerd/containerd/snapshots/testsuite"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
)

func requireRoot(t *testing.T) {
	// Not t.Skip: a skipped suite must not look like a passed one.
	if os.Geteuid() != 0 {
		t.Fatal("the snapshotter suite mounts: run it as root")
	}
}

// Both suites run at once (-test.parallel bounds the cases in flight): the reference's
// 128LayersMount alone takes minutes under TCG.
func TestLcfs(t *testing.T) {
	t.Parallel()
	requireRoot(t)
	testsuite.SnapshotterSuite(t, "Lcfs", newLcfs)
}

func TestOverlay(t *testing.T) {
	t.Parallel()
	requireRoot(t)
	testsuite.SnapshotterSuite(t, "Overlay", newOverlay)
}

// newOverlay is containerd's overlayfs snapshotter on the case's root, as containerd's own
// overlay test builds it.
func newOverlay(ctx context.Context, root string) (snapshots.Snapshotter, func() error, error) {
	if err := overlayutils.Supported(root); err != nil {
		return nil, nil, fmt.Errorf("overlayfs is not usable on %s: %w", root, err)
	}
	sn, err := overlay.NewSnapshotter(root)
	if err != nil {
		return nil, nil, err
	}
	return sn, func() error {
		var errs errorList
		errs.add(sn.Close())
		errs.add(unmountUnder(ctx, filepath.Dir(root)))
		return errs.err()
	}, nil
}

// --- the daemon ---------------------------------------------------------------------------------

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func startTimeout() time.Duration {
	if s, err := strconv.Atoi(os.Getenv("LCFS_SNAPSHOTTER_START_TIMEOUT")); err == nil && s > 0 {
		return time.Duration(s) * time.Second
	}
	// Generous: under TCG with the debug kernel, four cases' daemons format and mount at once
	// while the containerd tests beside them import images; a start has taken over 30 s there.
	return 120 * time.Second
}

// daemon is one case's containerd-lcfs-grpc.
type daemon struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed once the process has been waited for
	status error         // cmd.Wait's result, valid after exited is closed
	// state holds the image, the mount point and the daemon's log. It is outside the suite's
	// case directory because on a failure the suite (testutil.DumpDirOnFailure) lists that
	// directory and reads every regular file under it whole, before the cleanup runs: the sparse
	// image would be read whole, and every file of every layer listed (some 17,000 lines for
	// 128LayersMount).
	state string
	root  string // the case's snapshotter root: the socket
	image string
	logf  string
	mnt   string
	sock  string
}

// forks is served by one goroutine locked to its OS thread for good: Pdeathsig (the daemons die
// with the test binary, after a -test.timeout panic too) belongs to the thread that forked the
// child, and Go ends a thread whose locked goroutine returns, as containerd's mount helpers do.
var forks = make(chan func())

func init() {
	go func() {
		runtime.LockOSThread()
		for f := range forks {
			f()
		}
	}()
}

func (d *daemon) start() error {
	logFile, err := os.Create(d.logf)
	if err != nil {
		return err
	}
	defer logFile.Close() // the child has its own descriptor
	args := []string{"--root", d.root, "--address", d.sock, "--mountpoint", d.mnt,
		"--device", d.image, "--size", envOr("LCFS_SNAPSHOTTER_SIZE", "1G")}
	args = append(args, strings.Fields(os.Getenv("LCFS_SNAPSHOTTER_ARGS"))...)
	d.cmd = exec.Command(envOr("LCFS_SNAPSHOTTER", "containerd-lcfs-grpc"), args...)
	d.cmd.Stdout = logFile
	d.cmd.Stderr = logFile
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	started := make(chan error)
	forks <- func() { started <- d.cmd.Start() }
	if err := <-started; err != nil {
		return err
	}
	d.exited = make(chan struct{})
	go func() {
		d.status = d.cmd.Wait()
		close(d.exited)
	}()
	return nil
}

func (d *daemon) hasExited() bool {
	select {
	case <-d.exited:
		return true
	default:
		return false
	}
}

// waitSocket waits until the socket accepts connections: the daemon binds it only once the
// filesystem is mounted and its metadata recovered. Polling the socket itself, not through gRPC,
// because a gRPC channel that failed to connect backs off for seconds before it tries again.
func (d *daemon) waitSocket(deadline time.Time) error {
	for {
		if d.hasExited() {
			return fmt.Errorf("the daemon exited before serving (%v)", d.status)
		}
		c, err := net.DialTimeout("unix", d.sock, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no answer on %s within %v: %v", d.sock, startTimeout(), err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop ends the daemon as its service manager would (SIGTERM) and reports anything but a clean
// exit, an exit before it was asked to stop included.
func (d *daemon) stop() error {
	if d.hasExited() {
		return fmt.Errorf("the daemon exited during the test (%v)", d.status)
	}
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	select {
	case <-d.exited:
		if d.status != nil {
			return fmt.Errorf("the daemon stopped (SIGTERM) with %v", d.status)
		}
		return nil
	case <-time.After(30 * time.Second):
		d.cmd.Process.Kill()
		<-d.exited
		return errors.New("the daemon did not stop within 30 s of SIGTERM (killed)")
	}
}

func (d *daemon) kill() {
	if !d.hasExited() {
		d.cmd.Process.Kill()
		<-d.exited
	}
}

func (d *daemon) log() string {
	b, err := os.ReadFile(d.logf)
	if err != nil {
		return fmt.Sprintf("(no daemon log: %v)", err)
	}
	if len(b) == 0 {
		return "(the daemon's stderr is empty)"
	}
	return strings.TrimRight(string(b), "\n")
}

// newLcfs starts a daemon on a new image for one case and connects containerd's proxy client to
// it. A daemon that does not answer in time is killed and its stderr returned in the error.
func newLcfs(ctx context.Context, root string) (snapshots.Snapshotter, func() error, error) {
	state, err := os.MkdirTemp("", "lcfs-conformance-")
	if err != nil {
		return nil, nil, err
	}
	d := &daemon{
		state: state,
		root:  root,
		image: filepath.Join(state, "lcfs.img"),
		logf:  filepath.Join(state, "daemon.log"),
		mnt:   filepath.Join(state, "mnt"),
		sock:  filepath.Join(root, "s.sock"),
	}
	// On failure: stop what was started, keep the daemon's words in the error.
	fail := func(e error) (snapshots.Snapshotter, func() error, error) {
		d.kill()
		var errs errorList
		errs.add(e)
		errs.add(unmountUnder(ctx, filepath.Dir(root)))
		errs.add(unmountUnder(ctx, state, d.mnt))
		errs.add(detachLoops(d.image))
		msg := fmt.Sprintf("%v\nstderr of %s:\n%s", errs.err(), d.cmd.Path, d.log())
		os.RemoveAll(state)
		return nil, nil, errors.New(msg)
	}
	if err := d.start(); err != nil {
		os.RemoveAll(state)
		return nil, nil, fmt.Errorf("cannot start the daemon: %w", err)
	}
	deadline := time.Now().Add(startTimeout())
	if err := d.waitSocket(deadline); err != nil {
		return fail(err)
	}

	// As containerd dials a proxy plugin (services/server: proxyClients.getClient).
	conn, err := grpc.Dial(dialer.DialAddress(d.sock),
		grpc.WithInsecure(),
		grpc.WithContextDialer(dialer.ContextDialer),
	)
	if err != nil {
		return fail(err)
	}
	sn := proxy.NewSnapshotter(snapshotsapi.NewSnapshotsClient(conn), "lcfs")

	// The first request, and a check of the suite's assumption that it starts empty.
	pctx, cancel := context.WithDeadline(ctx, deadline)
	var found []string
	err = sn.Walk(pctx, func(_ context.Context, info snapshots.Info) error {
		found = append(found, info.Name)
		return nil
	})
	cancel()
	if err == nil && len(found) > 0 {
		err = fmt.Errorf("a new daemon lists snapshots already: %q", found)
	}
	if err != nil {
		conn.Close()
		return fail(fmt.Errorf("first request (List): %w", err))
	}

	cleanup := func() error {
		var errs errorList
		errs.add(conn.Close())
		errs.add(d.stop())
		// First what a failed case left mounted in its directory (bind mounts of layers, which
		// would keep the filesystem alive), then the LCFS mount, which the daemon leaves.
		errs.add(unmountUnder(ctx, filepath.Dir(root)))
		errs.add(unmountUnder(ctx, state, d.mnt))
		errs.add(detachLoops(d.image))
		err := errs.err()
		if err != nil || caseFailed(ctx) || os.Getenv("LCFS_CONFORMANCE_LOG") == "1" {
			caseLog(ctx, "stderr of %s:\n%s", d.cmd.Path, d.log())
		}
		if rerr := os.RemoveAll(state); rerr != nil && err == nil {
			err = rerr
		}
		return err
	}
	return sn, cleanup, nil
}

// caseTest is the *testing.T of the running case, or nil. The suite hands the constructor no
// *testing.T, only a context whose logger writes to the case's test (log/logtest's hook, field t);
// the test is read out of that hook, to know at the cleanup whether the case failed and to log
// the daemon's stderr as it is (logrus would quote it onto one line).
func caseTest(ctx context.Context) testing.TB {
	tbType := reflect.TypeOf((*testing.TB)(nil)).Elem()
	for _, hooks := range log.G(ctx).Logger.Hooks {
		for _, h := range hooks {
			v := reflect.ValueOf(h)
			if v.Kind() != reflect.Ptr || v.Elem().Kind() != reflect.Struct {
				continue
			}
			f := v.Elem().FieldByName("t")
			if !f.IsValid() || f.Type() != tbType {
				continue
			}
			// An unexported field: reflect reads it only through its address.
			tb, _ := reflect.NewAt(f.Type(), unsafe.Pointer(f.UnsafeAddr())).Elem().Interface().(testing.TB)
			return tb
		}
	}
	return nil
}

// caseFailed tells whether the running case has failed so far; true if that cannot be known (a
// containerd update changed log/logtest), so that nothing is hidden then.
func caseFailed(ctx context.Context) bool {
	if tb := caseTest(ctx); tb != nil {
		return tb.Failed()
	}
	return true
}

// caseLog logs to the running case, through its logger if the test itself is out of reach.
func caseLog(ctx context.Context, format string, args ...interface{}) {
	if tb := caseTest(ctx); tb != nil {
		tb.Logf(format, args...)
	} else {
		log.G(ctx).Infof(format, args...)
	}
}

// --- mounts and loop devices --------------------------------------------------------------------

// mountPoints lists the mount points in /proc/self/mountinfo at or under dir, with their
// sources.
func mountPoints(dir string) (map[string]string, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	found := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		// ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - TYPE SOURCE SUPEROPTIONS
		f := strings.Fields(line)
		sep := -1
		for i, s := range f {
			if s == "-" {
				sep = i
				break
			}
		}
		if len(f) < 5 || sep < 0 || sep+2 >= len(f) {
			continue
		}
		mp := unescapeMountinfo(f[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			found[mp] = unescapeMountinfo(f[sep+2])
		}
	}
	return found, nil
}

// unescapeMountinfo undoes the kernel's octal escapes (\040 for a space) in mountinfo fields.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// unmountUnder unmounts everything mounted at or under dir, deepest first, mounts stacked on
// one point included, and logs those that are not expected (left by the case). Whatever a case
// left mounted would otherwise be walked into by the suite's final RemoveAll, and bind mounts of
// layers keep the LCFS filesystem and its loop device alive after its mount point is unmounted.
func unmountUnder(ctx context.Context, dir string, expected ...string) error {
	for round := 0; ; round++ {
		mps, err := mountPoints(dir)
		if err != nil || len(mps) == 0 {
			return err
		}
		if round == 10 {
			return fmt.Errorf("still mounted after 10 rounds of unmounting: %v", mps)
		}
		paths := make([]string, 0, len(mps))
		for mp := range mps {
			paths = append(paths, mp)
		}
		sort.Slice(paths, func(i, j int) bool { return len(paths[i]) > len(paths[j]) })
		for _, mp := range paths {
			if err := unmountRetry(mp); err != nil {
				return fmt.Errorf("cannot unmount %s (%s): %w", mp, mps[mp], err)
			}
			if !contains(expected, mp) {
				caseLog(ctx, "unmounted %s (%s), left mounted by the case", mp, mps[mp])
			}
		}
	}
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}

// unmountRetry retries a busy unmount for a while: a process that just exited (the daemon) may
// still be releasing what it held.
func unmountRetry(mp string) error {
	var err error
	for i := 0; i < 50; i++ {
		if err = unix.Unmount(mp, 0); err != unix.EBUSY {
			if err == unix.EINVAL { // no longer a mount point
				return nil
			}
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
	return err
}

// detachLoops detaches the loop devices still backed by image. mount -o loop normally sets them
// to clear themselves at the unmount (autoclear), but not every mount(8) does, and a leaked loop
// device keeps the image's space.
func detachLoops(image string) error {
	devs, err := filepath.Glob("/sys/block/loop*/loop/backing_file")
	if err != nil {
		return err
	}
	var errs errorList
	for _, f := range devs {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // cleared meanwhile
		}
		back := strings.TrimSuffix(strings.TrimSpace(string(b)), " (deleted)")
		if back != image {
			continue
		}
		dev := "/dev/" + filepath.Base(filepath.Dir(filepath.Dir(f)))
		fd, err := unix.Open(dev, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errs.add(fmt.Errorf("%s (backed by %s): %w", dev, image, err))
			continue
		}
		if err := unix.IoctlSetInt(fd, unix.LOOP_CLR_FD, 0); err != nil && err != unix.ENXIO {
			errs.add(fmt.Errorf("cannot detach %s from %s: %w", dev, image, err))
		}
		unix.Close(fd)
	}
	return errs.err()
}

// --- errors -------------------------------------------------------------------------------------

// errorList collects the errors of a cleanup that goes on after the first (Go 1.19 has no
// errors.Join).
type errorList []error

func (l *errorList) add(err error) {
	if err != nil {
		*l = append(*l, err)
	}
}

func (l errorList) err() error {
	switch len(l) {
	case 0:
		return nil
	case 1:
		return l[0]
	}
	msgs := make([]string, len(l))
	for i, e := range l {
		msgs[i] = e.Error()
	}
	return errors.New(strings.Join(msgs, "; "))
}
