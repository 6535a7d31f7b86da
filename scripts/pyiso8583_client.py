#!/usr/bin/env python3
"""An independent acquirer client for pingate, built from docs/iso8583-acquirer.md alone.

The message spec is read from the document's data element table and handed to pyiso8583
(knovichikhin/pyiso8583); PIN blocks and keys are made with psec (knovichikhin/psec) and the
`cryptography` package. Nothing of pingate's code is used. The client checks that pyiso8583
re-encodes every golden message of the document byte for byte, that the document's key check
values are right, then plays the document's scenarios against a running gateway (the embedded
default) over TCP with binary2 framing:

  echo before sign-on (no DE 32), sign-on, echo, key change as a TR-31 block (00), key change in
  the legacy form (30), a PIN change for the first published card under the new key (00, DE 11
  and DE 37 echoed), a weak new PIN (P6), a request with an unreadable DE 52 (30 with DE 7, 11,
  32, 37 and 41 echoed), sign-off.

Run: python3 scripts/pyiso8583_client.py --addr 127.0.0.1:8583 --doc docs/iso8583-acquirer.md
Exit status 0 when every check holds; each failure is printed (never a PIN or key).
"""
import argparse
import re
import socket
import struct
import sys
import warnings

warnings.filterwarnings("ignore")  # cryptography's TripleDES deprecation notices

import iso8583  # noqa: E402  pyiso8583
from cryptography.hazmat.primitives import cmac  # noqa: E402
from cryptography.hazmat.primitives.ciphers import algorithms  # noqa: E402
from psec import des, pinblock  # noqa: E402

failures = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        failures.append(what)


def spec_from_doc(doc):
    """pyiso8583 spec from the '## Data elements' table."""
    table = doc.split("## Data elements", 1)[1].split("\n### ", 1)[0]
    spec = {"h": {"data_enc": "ascii", "len_enc": "ascii", "len_type": 0, "max_len": 0, "desc": "header"},
            "p": {"data_enc": "ascii", "len_enc": "ascii", "len_type": 0, "max_len": 16, "desc": "primary bitmap"},
            "1": {"data_enc": "ascii", "len_enc": "ascii", "len_type": 0, "max_len": 16, "desc": "secondary bitmap"}}
    for row in table.splitlines():
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        if len(cells) < 4 or not cells[0].isdigit():
            continue
        de, name, fmt, wire = cells[0], cells[1], cells[2], cells[3]
        if de == "1":
            continue
        len_type = 3 if wire.startswith("LLL") else 2 if wire.startswith("LL") else 0
        m = re.search(r"(\d+) hex digits", wire)
        if m:  # DE 52, DE 125: hex text, the longest block
            max_len = int(m.group(1))
        else:
            max_len = int(re.search(r"(\d+)$", fmt.replace("..", "")).group(1))
        spec["t" if de == "0" else de] = {"data_enc": "ascii", "len_enc": "ascii", "len_type": len_type,
                                         "max_len": max_len, "desc": name}
    return spec


def goldens(doc):
    out = {}
    for m in re.finditer(r"(?m)^\*\*([0-9a-z-]+)\*\* — .*\n\n```\ntext: (.*)\n", doc):
        out[m.group(1)] = m.group(2).encode("ascii")
    return out


def tdes_ecb(key, data):
    return des.encrypt_tdes_ecb(key, data)


def kcv(alg, key):
    if alg == "tdes":
        return tdes_ecb(key, bytes(8))[:3].hex().upper()
    c = cmac.CMAC(algorithms.AES(key))
    c.update(bytes(16))
    return c.finalize()[:5].hex().upper()


class Link:
    def __init__(self, addr, spec):
        host, port = addr.rsplit(":", 1)
        self.s = socket.create_connection((host, int(port)), timeout=15)
        self.spec = spec

    def send_raw(self, msg):
        self.s.sendall(struct.pack(">H", len(msg)) + msg)
        hdr = self._read(2)
        return self._read(struct.unpack(">H", hdr)[0])

    def _read(self, n):
        b = b""
        while len(b) < n:
            chunk = self.s.recv(n - len(b))
            if not chunk:
                raise ConnectionError("gateway closed the connection")
            b += chunk
        return b

    def exchange(self, msg):
        ans, _ = iso8583.decode(bytearray(self.send_raw(msg)), self.spec)
        return ans

    def send(self, fields):
        raw, _ = iso8583.encode(dict(fields), self.spec)
        return self.exchange(bytes(raw))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--addr", required=True)
    ap.add_argument("--doc", required=True)
    a = ap.parse_args()
    doc = open(a.doc, encoding="utf-8").read()
    spec = spec_from_doc(doc)
    gold = goldens(doc)
    check(len(gold) >= 16, "the document has its golden messages (%d)" % len(gold))

    # The document's spec, in pyiso8583, reproduces every golden message byte for byte.
    for name, raw in sorted(gold.items()):
        try:
            dec, _ = iso8583.decode(bytearray(raw), spec)
            enc, _ = iso8583.encode(dec, spec)
            check(bytes(enc) == raw, "pyiso8583 re-encodes golden %s byte for byte" % name)
        except Exception as e:  # noqa: BLE001
            check(False, "pyiso8583 decodes golden %s (%s)" % (name, type(e).__name__))

    # Key check values of the development setup table, and the DE 123 worked example.
    for label, alg, value, want in re.findall(r"`(dev-[a-z-]+)` \((tdes|aes), `([0-9A-F]+)`, KCV `([0-9A-F]+)`\)", doc):
        check(kcv(alg, bytes.fromhex(value)) == want, "KCV of %s is %s" % (label, want))
    new_key = bytes.fromhex(re.search(r"(?m)^- new zone PIN key: `([0-9A-F]+)`, KCV `([0-9A-F]+)`", doc).group(1))
    ex_kcv = re.search(r"(?m)^- new zone PIN key: `([0-9A-F]+)`, KCV `([0-9A-F]+)`", doc).group(2)
    zmk = bytes.fromhex(re.search(r"(?m)^- ZMK: `dev-atm-zmk`, `([0-9A-F]+)`", doc).group(1))
    legacy = re.search(r"(?m)^- legacy form: `([0-9A-F/]+)`$", doc).group(1)
    tr31 = re.search(r"(?m)^- TR-31 form: `([ -~]+?)`$", doc).group(1)
    check(kcv("tdes", new_key) == ex_kcv, "worked example: KCV of the new key")
    check(legacy == tdes_ecb(zmk, new_key).hex().upper() + "/" + ex_kcv, "worked example: legacy form is the key under dev-atm-zmk")
    from psec import tr31 as psec_tr31
    _, unwrapped = psec_tr31.unwrap(zmk, tr31)
    check(unwrapped == new_key, "worked example: TR-31 form unwraps (psec) under dev-atm-zmk to the new key")

    link = Link(a.addr, spec)
    ans = link.exchange(gold["0800-echo"])
    check(ans["t"] == "0810" and ans.get("39") == "00", "golden echo before sign-on: 0810 00")
    ans = link.exchange(gold["0800-sign-on"])
    check(ans["t"] == "0810" and ans.get("39") == "00", "golden sign-on: 0810 00")
    ans = link.exchange(gold["0800-echo"])
    check(ans.get("39") == "00" and ans.get("11") == "000102", "golden echo after sign-on: 00, DE 11 echoed")
    ans = link.exchange(gold["0800-key-change"])
    check(ans["t"] == "0810" and ans.get("39") == "00", "golden key change (TR-31): 0810 00")
    ans = link.exchange(gold["0800-key-change-legacy"])
    check(ans["t"] == "0810" and ans.get("39") == "30", "golden legacy key change: 0810 30 (key_block_required)")

    # The first published card and its initial PIN, from the development setup table.
    cards = re.findall(r"(?m)^\| (\d{16}) \| (\d{4}) \|$", doc)
    check(len(cards) > 0, "the document lists development cards")
    pan, pin = cards[0]

    def block(p):
        return tdes_ecb(new_key, pinblock.encode_pinblock_iso_0(p, pan)).hex().upper()

    def change(stan, old, new):
        return link.send({"t": "0100", "2": pan, "3": "700000", "7": "0612150000", "11": stan, "12": "150000",
                          "13": "0612", "32": "100001", "37": "PYCLI" + stan + "0", "41": "PYATM001",
                          "42": "PYISO8583 TEST ", "52": block(old), "53": "0001000000000000", "125": block(new)})

    ans = change("000201", pin, "4826")
    check(ans["t"] == "0110" and ans.get("39") == "00", "PIN change of the first card under the new key: 0110 00")
    check(ans.get("11") == "000201" and ans.get("37") == "PYCLI0002010", "PIN change answer echoes DE 11 and DE 37")
    ans = change("000202", "4826", "1234")
    check(ans.get("39") == "P6", "a sequence as new PIN: P6")

    raw, _ = iso8583.encode({"t": "0100", "2": pan, "3": "700000", "7": "0612150100", "11": "000203", "12": "150100",
                             "13": "0612", "32": "100001", "37": "PYCLI0002030", "41": "PYATM001",
                             "42": "PYISO8583 TEST ", "52": block("4826"), "53": "0001000000000000",
                             "125": block("4827")}, spec)
    raw = bytes(raw).replace(b"PYISO8583 TEST 16", b"PYISO8583 TEST 15", 1)
    ans = link.exchange(raw)
    echoed = all(ans.get(k) == v for k, v in
                 {"7": "0612150100", "11": "000203", "32": "100001", "37": "PYCLI0002030", "41": "PYATM001"}.items())
    check(ans["t"] == "0110" and ans.get("39") == "30" and echoed,
          "a 0100 with an unreadable DE 52: 0110 30 echoing DE 7, 11, 32, 37, 41")
    ans = link.exchange(gold["0800-sign-off"])
    check(ans.get("39") == "00", "golden sign-off: 0810 00")

    if failures:
        print("%d check(s) failed" % len(failures))
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
