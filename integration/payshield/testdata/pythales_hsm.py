"""Start pythales' payShield simulator (PyPI pythales 0.74, unmodified) on a
free loopback port for integration/payshield's tests.

pythales binds every interface on a fixed port; this launcher only replaces
that one step, binding 127.0.0.1 on a port the kernel picks, and prints
"LISTENING <port>" as its first line. It also silences pythales' byte
traces: pythales 0.74 calls tracetools.trace(title, data) while the only
tracetools on PyPI (1.26) takes trace(data, title) and raises on the first
message. Everything else is pythales' own code.

Usage: python3 -u pythales_hsm.py <LMK as 32 hex digits>
"""
import socket
import sys

import pythales.hsm
from pythales.hsm import HSM

pythales.hsm.trace = lambda *args: None


class LoopbackHSM(HSM):
    def init_connection(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(5)
        print("LISTENING {}".format(self.sock.getsockname()[1]), flush=True)


if __name__ == "__main__":
    LoopbackHSM(key=sys.argv[1]).run()
