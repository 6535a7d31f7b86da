package main

import (
	"bufio"
	"encoding/binary"
	"io"
	"net"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"pingate/iso8583"
)

// rawATM is an acquirer connection that writes bytes as given, behind the
// binary2 length header written here by hand, and reads answers one frame at
// a time: it sends what an independent client would, not what our packer
// makes.
type rawATM struct {
	t  *testing.T
	nc net.Conn
	r  *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *rawATM {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return &rawATM{t: t, nc: nc, r: bufio.NewReader(nc)}
}

// send writes one frame.
func (c *rawATM) send(msg []byte) {
	c.t.Helper()
	hdr := binary.BigEndian.AppendUint16(nil, uint16(len(msg)))
	if _, err := c.nc.Write(append(hdr, msg...)); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// recv reads one frame; io.EOF when the gateway closed the connection.
func (c *rawATM) recv() ([]byte, error) {
	_ = c.nc.SetReadDeadline(time.Now().Add(15 * time.Second))
	var hdr [2]byte
	if _, err := io.ReadFull(c.r, hdr[:]); err != nil {
		return nil, err
	}
	b := make([]byte, binary.BigEndian.Uint16(hdr[:]))
	_, err := io.ReadFull(c.r, b)
	return b, err
}

// exchange sends msg and returns its answer unpacked.
func (c *rawATM) exchange(name string, msg []byte) *iso8583.Fields {
	c.t.Helper()
	c.send(msg)
	b, err := c.recv()
	if err != nil {
		c.t.Fatalf("%s: no answer: %v", name, err)
	}
	f, err := iso8583.Unpack(iso8583.AcquirerSpec, b)
	if err != nil {
		c.t.Fatalf("%s: answer does not unpack: %v", name, err)
	}
	return f
}

// docGolden returns the golden messages of docs/iso8583-acquirer.md by name:
// the bytes of each "text:" line, exactly as a reader would copy them.
func docGolden(t *testing.T) map[string][]byte {
	t.Helper()
	raw, err := os.ReadFile("../../docs/iso8583-acquirer.md")
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile("(?m)^\\*\\*([0-9a-z-]+)\\*\\* — .*\\n\\n```\\ntext: (.*)\\n")
	out := map[string][]byte{}
	for _, m := range re.FindAllStringSubmatch(string(raw), -1) {
		out[m[1]] = []byte(strings.TrimRight(m[2], "\r"))
	}
	if len(out) == 0 {
		t.Fatal("no golden messages found in docs/iso8583-acquirer.md")
	}
	return out
}

func goldenNamed(t *testing.T, g map[string][]byte, name string) []byte {
	t.Helper()
	b, ok := g[name]
	if !ok {
		t.Fatalf("docs/iso8583-acquirer.md has no golden message %s", name)
	}
	return b
}
