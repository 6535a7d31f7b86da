package main

import (
	"net"

	"pingate/integration/payshield/hsmsim"
)

// startDemoHSM runs a payShield simulator in process on a loopback port for
// `pingate demo --hsm`, on the test key-block LMK with keyBlock.
func startDemoHSM(keyBlock bool) (addr string, stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	s := hsmsim.New(hsmsim.Config{HeaderLen: 4, KeyBlock: keyBlock})
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Serve(ln) }()
	return ln.Addr().String(), func() { s.Close(); <-done }, nil
}
