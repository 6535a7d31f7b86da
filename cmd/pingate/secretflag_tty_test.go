//go:build linux

package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// ttyKey is a TDES key typed at the terminal: the devindtools.com
// PinblockCalc worked ISO-0 example's key (pinblock/testdata names it).
const ttyKey = "E8DD93B8AF13999C7644C0FE11F5D2A7"

// openPTY opens a pseudo-terminal pair.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return m, s
}

// TestSecretFlagFromTerminalIsNotEchoed: through the built binary, a key
// typed at a terminal for "--key -" is read with echo off after a prompt
// naming the flag: the terminal shows the prompt, never the key, and the
// command prints the key's KCV.
func TestSecretFlagFromTerminalIsNotEchoed(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := opsBinary(t)
	master, slave := openPTY(t)
	cmd := exec.Command(bin, "key", "kcv", "--key", "-", "--alg", "tdes")
	var stdout bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, &stdout, slave
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	screen := make(chan string, 1)
	go func() { b, _ := io.ReadAll(master); screen <- string(b) }()

	// Type the key only once the terminal no longer echoes.
	deadline := time.Now().Add(10 * time.Second)
	for {
		tio, err := unix.IoctlGetTermios(int(slave.Fd()), unix.TCGETS)
		if err != nil {
			t.Fatal(err)
		}
		if tio.Lflag&unix.ECHO == 0 {
			break
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			t.Fatal("the terminal still echoes: the key would show on the screen")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := master.WriteString(ttyKey + "\n"); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("key kcv --key - at a terminal: %v", err)
	}
	slave.Close() // the master then reads to EOF
	var shown string
	select {
	case shown = <-screen:
	case <-time.After(10 * time.Second):
		t.Fatal("the terminal's output did not end")
	}
	if !strings.Contains(shown, "--key (not shown): ") {
		t.Errorf("the terminal showed %q, want a prompt naming --key", shown)
	}
	if strings.Contains(strings.ToUpper(shown), ttyKey) {
		t.Error("the key was echoed on the terminal")
	}
	literal := tdesKCV(t, ttyKey) // `key kcv` refuses a literal --key
	if keyLastLine(stdout.String()) != literal {
		t.Errorf("key kcv --key - at a terminal printed %q, want %q", stdout.String(), literal)
	}
}
