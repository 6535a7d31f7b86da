package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"pingate/integration/loadgen"
)

// startDevProcess runs the built pingate-dev with args in its own process
// until the test ends (or until the caller kills cmd.Process), and returns
// its first line of stdout.
func startDevProcess(t *testing.T, args ...string) (line string, cmd *exec.Cmd) {
	t.Helper()
	cmd = exec.Command(devBinary(t), args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	got := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		sc.Scan()
		got <- sc.Text()
	}()
	select {
	case line = <-got:
	case <-time.After(20 * time.Second):
		t.Fatalf("pingate-dev %s printed nothing within 20 s", strings.Join(args, " "))
	}
	return line, cmd
}

// runDevJSON runs the built pingate-dev and decodes its JSON report.
func runDevJSON(t *testing.T, args ...string) loadgen.Report {
	t.Helper()
	out, errOut, code := execDev(t, args...)
	if code != 0 {
		t.Fatalf("pingate-dev %s: exit %d: %s", strings.Join(args, " "), code, errOut)
	}
	var rep loadgen.Report
	if err := json.Unmarshal([]byte(strings.TrimSpace(out)), &rep); err != nil {
		t.Fatalf("pingate-dev %s: stdout is not one JSON report: %v", strings.Join(args, " "), err)
	}
	return rep
}

func execDev(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(devBinary(t), args...)
	var o, e strings.Builder
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return o.String(), e.String(), ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return o.String(), e.String(), 0
}

// TestBaselineRelayProcesses: client → relay → echo issuer, each its own
// process of the built binary. Every request comes back 00 through the
// relay, the report carries the CPU of all three processes, and once the
// echo issuer is gone the relay answers nothing: the answers came from it.
func TestBaselineRelayProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs three processes")
	}
	line, echo := startDevProcess(t, "bench-baseline", "--listen", "127.0.0.1:0")
	echoPID := echo.Process.Pid
	echoAddr, ok := strings.CutPrefix(line, "echo server on ")
	if !ok {
		t.Fatalf("echo server printed %q", line)
	}
	line, relay := startDevProcess(t, "bench-baseline", "--listen", "127.0.0.1:0", "--relay", echoAddr)
	relayPID := relay.Process.Pid
	f := strings.Fields(line)
	if len(f) != 5 || f[0] != "relay" || f[4] != echoAddr {
		t.Fatalf("relay printed %q, want \"relay on ADDR to %s\"", line, echoAddr)
	}
	relayAddr := f[2]
	watch := "relay=" + strconv.Itoa(relayPID) + ",echo=" + strconv.Itoa(echoPID)
	rep := runDevJSON(t, "bench-baseline", "--target", relayAddr, "--requests", "2000", "--duration", "60s",
		"--warmup", "0", "--concurrency", "2x4", "--json", "--quiet", "--cpu", watch)
	if rep.Requests < 2000 || rep.Errors != 0 || rep.Codes["00"] != rep.Requests {
		t.Errorf("through the relay: requests %d, errors %d, codes %v; want ≥ 2000, all 00", rep.Requests, rep.Errors, rep.Codes)
	}
	var names []string
	for _, u := range rep.CPU {
		names = append(names, u.Name)
		if u.Error != "" || u.CPUS < 0 || u.MicrosPerOp < 0 {
			t.Errorf("cpu of %s (pid %d): %+v, want read and not negative", u.Name, u.PID, u)
		}
	}
	if strings.Join(names, ",") != "client,relay,echo" || rep.CPU[1].PID != relayPID || rep.CPU[2].PID != echoPID {
		t.Errorf("cpu entries %+v, want client, relay (pid %d), echo (pid %d)", rep.CPU, relayPID, echoPID)
	}

	// Stop the echo issuer: the relay has nothing to forward to.
	_ = echo.Process.Kill()
	_ = echo.Wait()
	rep = runDevJSON(t, "bench-baseline", "--target", relayAddr, "--requests", "5", "--duration", "3s",
		"--warmup", "0", "--timeout", "500ms", "--concurrency", "1x1", "--json", "--quiet")
	if rep.Codes["00"] != 0 || rep.Errors == 0 {
		t.Errorf("relay without its echo issuer: codes %v, errors %d; want no answer", rep.Codes, rep.Errors)
	}
}

func TestBaselineRelayUsage(t *testing.T) {
	for _, args := range [][]string{
		{"bench-baseline", "--relay", "127.0.0.1:1"},
		{"bench-baseline", "--cpu", "gateway"},
		{"bench-baseline", "--cpu", "a=1,a=2"},
		{"load", "--cpu", "redis=-4"},
	} {
		_, errOut, code := execDev(t, args...)
		if code != 2 || strings.Count(errOut, "\n") != 1 {
			t.Errorf("pingate-dev %s: exit %d, stderr %q; want exit 2 and one line", strings.Join(args, " "), code, errOut)
		}
	}
}

// TestCPUProfileFlag: issuer-sim --cpu-profile leaves a pprof profile (a
// gzip stream) once it stops; an unwritable path is refused before serving.
func TestCPUProfileFlag(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sim.pprof")
	_, stop := runSimInProcess(t, "--addr", "127.0.0.1:0", "--cpu-profile", path)
	if code := stop(); code != 0 {
		t.Fatalf("issuer-sim exited %d", code)
	}
	b, err := os.ReadFile(path)
	if err != nil || len(b) < 2 || b[0] != 0x1f || b[1] != 0x8b {
		t.Errorf("profile file: %d bytes, err %v; want a gzip-compressed pprof profile", len(b), err)
	}
	var out, errOut bytes.Buffer
	bad := filepath.Join(t.TempDir(), "missing", "x.pprof")
	if code := run(context.Background(), []string{"load", "--cpu-profile", bad, "--target", "127.0.0.1:1"}, &out, &errOut); code == 0 || !strings.Contains(errOut.String(), "--cpu-profile") {
		t.Errorf("load --cpu-profile into a missing directory: exit %d, %q; want a failure naming --cpu-profile", code, errOut.String())
	}
}
