#!/usr/bin/env python3
"""An independent issuer host for pingate, built from docs/iso8583-issuer.md and docs/dev-keys.md alone.

The message spec is read from the issuer document's data element table (and its encoding table) and
handed to pyiso8583 (knovichikhin/pyiso8583); the field use per message is read from the document's
"Field use per message" table; the zone PIN key is the `dev-issuer-zpk` row of docs/dev-keys.md. PIN
blocks are deciphered with psec (knovichikhin/psec): ISO 9564-1 format 4 (AES) with
psec.pinblock.decipher_pinblock_iso_4, formats 0 and 3 (TDES) with psec.des and psec.pinblock. Nothing
of pingate's code is used.

Before it listens, the program checks that its spec re-encodes every golden message of the document
byte for byte. Then it serves pingate's issuer links over TCP (binary2 or ascii4 framing):

  0800 001 / 002 / 301 -> 0810 00; 0800 161 -> 0810 30 (this host holds no ZMK);
  0100 700000 change: old PIN (DE 52) checked against the card table, 00 / 55 / 75 / 14;
  0100 710000 reset: the new PIN (DE 125) set, 00 / 14;
  0100 720000 unblock: the wrong-PIN counter cleared, 00 / 14;
  0420 -> 0430 00: an approved change or reset it names (DE 90) is undone.

Every field of every message is checked against the document (field use M / O / -, formats, DE 7 /
12 / 13 clocks, DE 32 / 100 / 53 values, DE 48 subfields, DE 90 layout); a difference prints a FAIL
line. A PIN, a key or a full PAN is never printed (PANs show as first 6 and last 4 digits).

Run: python3 scripts/pyiso8583_issuer.py --doc docs/iso8583-issuer.md --keys docs/dev-keys.md \\
         --listen 127.0.0.1:0 --institution 999001 --receiving 300009 --pin-format 4 --key-index 1 \\
         --card PAN:PIN [--card PAN:PIN ...] [--cards FILE] [--delay LAST4:SECONDS (the card's first 0100)]
The first line printed is "listening HOST:PORT". SIGTERM or SIGINT stops it; the exit status is 0 when
no check failed, 1 otherwise.
"""
import argparse
import datetime
import re
import signal
import socket
import struct
import sys
import threading
import time
import warnings

warnings.filterwarnings("ignore")  # cryptography's TripleDES deprecation notices

import iso8583  # noqa: E402  pyiso8583
from cryptography.hazmat.primitives import cmac  # noqa: E402
from cryptography.hazmat.primitives.ciphers import algorithms  # noqa: E402
from psec import des, pinblock  # noqa: E402

failures = []
out_lock = threading.Lock()


def say(line):
    with out_lock:
        print(line, flush=True)


checks = [0]


def check(ok, what):
    """Record a check; only failures are printed, passes are counted."""
    checks[0] += 1
    if not ok:
        failures.append(what)
        say("FAIL " + what)
    return ok


def masked(pan):
    return pan[:6] + "*" * max(len(pan) - 10, 0) + pan[-4:] if len(pan) >= 10 else "*" * len(pan)


# ---------------------------------------------------------------------------------------------------
# The spec, from the document


def spec_from_doc(doc):
    """pyiso8583 spec from '## Data elements' (format and wire columns) and '## Encoding'.

    Returns (spec, meta) where meta[de] = (kind, max_len, fixed) with kind n, an, ans, b or 48.
    """
    table = doc.split("## Data elements", 1)[1].split("\n## ", 1)[0]
    spec = {"h": {"data_enc": "b", "len_enc": "b", "len_type": 0, "max_len": 0, "desc": "header"},
            "p": {"data_enc": "b", "len_enc": "b", "len_type": 0, "max_len": 8, "desc": "primary bitmap"},
            "1": {"data_enc": "b", "len_enc": "b", "len_type": 0, "max_len": 8, "desc": "secondary bitmap"}}
    meta = {}
    for row in table.splitlines():
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        if len(cells) < 4 or not cells[0].isdigit():
            continue
        de, name, fmt, wire = cells
        if de == "1":
            continue
        key = "t" if de == "0" else de
        if fmt.startswith("b "):  # DE 52, 125: "b 8 or 16", "binary L + raw"
            check("binary L" in wire, "doc: DE %s wire %r is a binary L prefix" % (de, wire))
            spec[key] = {"data_enc": "b", "len_enc": "b", "len_type": 1, "max_len": 16, "desc": name}
            meta[de] = ("b", 16, False)
            continue
        m = re.fullmatch(r"(n|an|ans)(\.\.)?(\d+)", fmt)
        if not check(m is not None, "doc: DE %s format %r is n/an/ans" % (de, fmt)):
            continue
        kind, var, n = m.group(1), bool(m.group(2)), int(m.group(3))
        if var:
            len_type = 2 if "LLL" in wire else 1  # LL: 1 BCD byte; LLL: 2 BCD bytes
            check("BCD LL" in wire, "doc: DE %s variable wire %r has a BCD length" % (de, wire))
        else:
            len_type = 0
        if kind == "n":
            check("BCD" in wire, "doc: DE %s n element travels in BCD (%r)" % (de, wire))
            spec[key] = {"data_enc": "b", "len_enc": "bcd", "len_type": len_type, "max_len": n,
                         "len_count": "nibbles", "left_pad": "0", "desc": name}
            if not var:
                check(wire == "%d bytes BCD" % ((n + 1) // 2),
                      "doc: DE %s n%d wire %r is %d bytes BCD" % (de, n, wire, (n + 1) // 2))
        else:
            # DE 48's subfield lengths are BCD bytes (0x00-0x99), not ASCII: read it as latin-1.
            enc = "latin-1" if de == "48" else "ascii"
            spec[key] = {"data_enc": enc, "len_enc": "bcd", "len_type": len_type, "max_len": n, "desc": name}
            if not var:
                check(wire == "%d bytes ASCII" % n, "doc: DE %s %s%d wire %r is %d bytes ASCII" % (de, kind, n, wire, n))
        meta[de] = ("48" if de == "48" else kind, n, not var)
    return spec, meta


def field_use_from_doc(doc):
    """{(mti, proc or nmi): {de: 'M'|'O'|'-'}} from the generated usage table."""
    block = doc.split("<!-- BEGIN generated:usage -->", 1)[1].split("<!-- END generated:usage -->", 1)[0]
    rows = [[c.strip() for c in r.strip().strip("|").split("|")] for r in block.strip().splitlines()]
    header, body = rows[0], rows[2:]
    cols = []
    for h in header[1:]:
        mti, codes = h.split(" ", 1)
        cols.append([(mti, c.strip()) for c in codes.split(",")])
    use = {}
    for r in body:
        de = r[0]
        for i, cell in enumerate(r[1:]):
            for k in cols[i]:
                use.setdefault(k, {})[de] = {"M": "M", "O": "O"}.get(cell, "-")
    return use


def goldens(doc):
    out = {}
    for m in re.finditer(r"(?m)^\*\*([0-9a-z-]+)\*\* — .*\n\n```\n((?:[0-9a-f]{4}: [0-9A-F]+\n)+)```", doc):
        out[m.group(1)] = bytes.fromhex("".join(line.split(": ", 1)[1] for line in m.group(2).splitlines()))
    return out


def issuer_zpk(keys_doc):
    """The dev-issuer-zpk row of docs/dev-keys.md: the key, checked against the row's KCV."""
    m = re.search(r"(?m)^\| `dev-issuer-zpk` \| [^|]*\| AES-128 \| ([0-9A-F]*) \| `([0-9A-F]{32})` \|", keys_doc)
    if not m:
        raise SystemExit("docs/dev-keys.md: no AES-128 dev-issuer-zpk row")
    key = bytes.fromhex(m.group(2))
    c = cmac.CMAC(algorithms.AES(key))  # the AES KCV: AES-CMAC of 16 zero bytes, first 5 bytes
    c.update(bytes(16))
    check(c.finalize()[:5].hex().upper() == m.group(1), "dev-keys.md: the KCV of dev-issuer-zpk is its AES-CMAC KCV")
    return key


# ---------------------------------------------------------------------------------------------------
# Field checks


def is_digits(s):
    return s.isascii() and s.isdigit()


def is_an(s):
    return s.isascii() and s.isalnum()


def is_ans(s):
    return all(0x20 <= ord(c) <= 0x7E for c in s)


def valid_mmddhhmmss(s):
    try:
        datetime.datetime.strptime("2000" + s, "%Y%m%d%H%M%S")  # 2000: a leap year, 0229 is valid
        return True
    except ValueError:
        return False


def check_formats(msg, meta, what):
    """Each present element against its doc format (pyiso8583 has checked lengths and prefixes)."""
    for de, (kind, n, fixed) in meta.items():
        key = "t" if de == "0" else de
        if key not in msg or de in ("0",):
            continue
        v = msg[key]
        if kind == "n":
            check(is_digits(v), "%s: DE %s holds a BCD nibble above 9" % (what, de))
            check(len(v) == n if fixed else 1 <= len(v) <= n,
                  "%s: DE %s is %d digits, the doc says n%s%d" % (what, de, len(v), "" if fixed else "..", n))
        elif kind == "an":
            check(is_an(v), "%s: DE %s is not an (letters and digits)" % (what, de))
        elif kind == "ans":
            check(is_ans(v), "%s: DE %s is not printable ASCII" % (what, de))
        elif kind == "b":
            check(len(v) in (16, 32), "%s: DE %s is a %d-byte PIN block, the doc says 8 or 16" % (what, de, len(v) // 2))


def parse_de48(raw, what):
    """DE 48: 2-digit ASCII tag, 1 BCD byte length, ASCII value; tags in order. Returns {tag: value}."""
    maxes = {"01": 16, "02": 32, "03": 16, "04": 16}
    b = raw.encode("latin-1")
    subs, i, last = {}, 0, ""
    while i < len(b):
        if not check(i + 3 <= len(b), "%s: DE 48 ends inside a subfield header" % what):
            break
        tag = b[i:i + 2].decode("latin-1")
        lb = b[i + 2]
        check(tag in maxes, "%s: DE 48 tag %r is not 01-04" % (what, tag))
        if not check(lb >> 4 <= 9 and lb & 15 <= 9, "%s: DE 48.%s length byte is not BCD" % (what, tag)):
            break
        n = (lb >> 4) * 10 + (lb & 15)
        val = b[i + 3:i + 3 + n]
        check(len(val) == n, "%s: DE 48.%s is shorter than its length" % (what, tag))
        check(tag > last, "%s: DE 48 tags out of order (%s after %s)" % (what, tag, last))
        check(n <= maxes.get(tag, 999), "%s: DE 48.%s is %d long, the doc says ans..%d" % (what, tag, n, maxes.get(tag, 0)))
        check(all(0x20 <= c <= 0x7E for c in val), "%s: DE 48.%s is not printable ASCII" % (what, tag))
        subs[tag] = val.decode("latin-1")
        last = tag
        i += 3 + n
    return subs


def check_use(msg, use, what, sub48=None):
    for de, u in use.items():
        if de.startswith("48."):
            have = sub48 is not None and de[3:] in sub48
        else:
            have = de in msg
        if u == "M":
            check(have, "%s: mandatory DE %s missing" % (what, de))
        elif u == "-":
            check(not have, "%s: DE %s present, the doc does not allow it" % (what, de))
    for de in msg:
        if de.isdigit() and de not in ("1",):
            check(de in use, "%s: DE %s is not in the doc's field use" % (what, de))


def check_clocks(msg, what, now):
    de7 = msg.get("7", "")
    if check(valid_mmddhhmmss(de7), "%s: DE 7 is not MMDDhhmmss" % what):
        t7 = datetime.datetime.strptime("%04d%s" % (now.year, de7), "%Y%m%d%H%M%S")
        skew = min(abs((t7.replace(year=y) - now.replace(tzinfo=None)).total_seconds()) for y in (now.year - 1, now.year, now.year + 1))
        check(skew <= 300, "%s: DE 7 is %d s from this host's UTC clock" % (what, skew))
    if "12" in msg:
        check(msg["12"] == de7[4:10], "%s: DE 12 is not the time of DE 7 (UTC send time)" % what)
    if "13" in msg:
        check(msg["13"] == de7[0:4], "%s: DE 13 is not the date of DE 7" % what)


# ---------------------------------------------------------------------------------------------------
# The host


class Host:
    def __init__(self, a, spec, meta, use, zpk):
        self.a, self.spec, self.meta, self.use, self.zpk = a, spec, meta, use, zpk
        self.lock = threading.Lock()
        self.cards = {}  # pan -> {"pin": str, "tries": int}
        self.done = {}  # (stan, de7, de32) of an approved 0100 -> (pan, previous PIN or None)
        self.reversed = set()
        self.delays = {}
        self.counts = {}

    def count(self, what):
        with self.lock:
            self.counts[what] = self.counts.get(what, 0) + 1

    def decipher(self, block_hex, pan, what):
        block = bytes.fromhex(block_hex)
        fmt = self.a.pin_format
        try:
            if fmt == 4:
                check(len(block) == 16, "%s: a format 4 block is %d bytes, want 16" % (what, len(block)))
                return pinblock.decipher_pinblock_iso_4(self.zpk, block, pan)
            clear = des.decrypt_tdes_ecb(self.zpk, block)
            return (pinblock.decode_pinblock_iso_0 if fmt == 0 else pinblock.decode_pinblock_iso_3)(clear, pan)
        except ValueError as e:  # psec's messages name no PIN digit
            check(False, "%s: PIN block does not decipher to a format %d block under dev-issuer-zpk (%s)"
                  % (what, fmt, str(e).split(":")[0]))
            return None

    def answer(self, req, mti, code, keep):
        ans = {"t": mti, "39": code}
        for de in keep:
            if de in req:
                ans[de] = req[de]
        return ans

    def handle(self, raw):
        try:
            msg, _ = iso8583.decode(bytearray(raw), self.spec)
        except iso8583.DecodeError as e:
            check(False, "a frame does not decode with the doc's spec: %s" % str(e).split(":")[0])
            return None, 0
        mti = msg["t"]
        # What came, for the log: element numbers, and the values that are neither card nor PIN data.
        shown = " ".join("%s=%s" % (k, msg[k]) for k in ("11", "32", "37", "41", "42", "53", "70", "90", "100") if k in msg)
        say("recv %s DEs %s; %s" % (mti, ",".join(sorted((k for k in msg if k.isdigit() and k != "1"), key=int)), shown))
        now = datetime.datetime.now(datetime.timezone.utc)
        if mti == "0800":
            return self.netmgmt(msg, now), 0
        if mti == "0100":
            return self.auth(msg, now)
        if mti == "0420":
            return self.reversal(msg, now), 0
        check(False, "MTI %s is not one pingate sends to issuers" % mti)
        return None, 0

    def netmgmt(self, msg, now):
        nmi = msg.get("70", "")
        what = "0800 %s" % nmi
        use = self.use.get(("0800", nmi))
        if not check(use is not None, "0800 with DE 70 %r: not a code of the doc" % nmi):
            return self.answer(msg, "0810", "30", ("7", "11", "32", "70", "100"))
        check_use(msg, use, what)
        check_formats(msg, self.meta, what)
        check_clocks(msg, what, now)
        if "32" in msg:
            check(msg["32"] == self.a.institution, "%s: DE 32 is not the gateway's routing.institution" % what)
        if "100" in msg:
            check(msg["100"] == self.a.receiving, "%s: DE 100 is not this issuer's institution" % what)
        name = {"001": "sign-on", "002": "sign-off", "301": "echo", "161": "key change"}[nmi] if nmi in ("001", "002", "301", "161") else nmi
        self.count(name)
        say("got  0800 %s (%s) STAN %s" % (nmi, name, msg.get("11")))
        code = "30" if nmi == "161" else "00"
        return self.answer(msg, "0810", code, ("7", "11", "32", "70", "100"))

    def auth(self, msg, now):
        proc = msg.get("3", "")
        what = "0100 %s STAN %s" % (proc, msg.get("11"))
        keep = ("2", "3", "7", "11", "12", "13", "32", "37", "41", "42", "100")
        use = self.use.get(("0100", proc))
        if not check(use is not None, "0100 with DE 3 %r: not a processing code of the doc" % proc):
            return self.answer(msg, "0110", "30", keep), 0
        sub48 = parse_de48(msg["48"], what) if "48" in msg else None
        if sub48 is not None:
            say("recv %s DE 48 tags %s" % (what, ",".join(sorted(sub48))))
            for tag, v in sorted(sub48.items()):
                check(re.search(r"\d{12}|[0-9A-Fa-f]{16}", v) is None,
                      "%s: DE 48.%s holds a run of 12 digits or 16 hex digits (a PAN or PIN block?)" % (what, tag))
        check_use(msg, use, what, sub48)
        check_formats(msg, self.meta, what)
        check_clocks(msg, what, now)
        check(msg.get("32") == self.a.institution, "%s: DE 32 is not the gateway's routing.institution" % what)
        if "100" in msg:
            check(msg["100"] == self.a.receiving, "%s: DE 100 is not this issuer's institution" % what)
        if "53" in msg:
            de53 = msg["53"]
            check(de53[0:2] == "%02d" % self.a.pin_format, "%s: DE 53 format %s, the issuer's pin_format is %d"
                  % (what, de53[0:2], self.a.pin_format))
            check(de53[2:4] == "%02d" % self.a.key_index, "%s: DE 53 key index %s, the issuer's key_index is %d"
                  % (what, de53[2:4], self.a.key_index))
            check(de53[4:] == "0" * 12, "%s: DE 53 positions 5-16 are not zeros" % what)
        pan = msg.get("2", "")
        old = self.decipher(msg["52"], pan, what + " DE 52") if "52" in msg else None
        new = self.decipher(msg["125"], pan, what + " DE 125") if "125" in msg else None
        if ("52" in msg and old is None) or ("125" in msg and new is None):
            code = "30"
        else:
            code = self.apply(msg, proc, pan, old, new)
        say("got  %s card %s: answered %s" % (what, masked(pan), code))
        self.count("0100 %s %s" % (proc, code))
        with self.lock:
            delay = self.delays.pop(pan[-4:], 0)  # the card's first 0100 only
        return self.answer(msg, "0110", code, keep), delay

    def apply(self, msg, proc, pan, old, new):
        with self.lock:
            card = self.cards.get(pan)
            if card is None:
                return "14"
            k = (msg.get("11"), msg.get("7"), msg.get("32"))
            if k in self.reversed:  # its reversal came first: the late original is not applied
                return "00"
            if proc == "700000":
                if card["tries"] >= self.a.max_tries:
                    return "75"
                if old != card["pin"]:
                    card["tries"] += 1
                    return "55"
                self.done[k] = (pan, card["pin"])
                card["pin"], card["tries"] = new, 0
                say("card %s: PIN changed" % masked(pan))
            elif proc == "710000":
                self.done[k] = (pan, card["pin"])
                card["pin"], card["tries"] = new, 0
                say("card %s: PIN reset" % masked(pan))
            else:
                card["tries"] = 0
                say("card %s: unblocked" % masked(pan))
            return "00"

    def reversal(self, msg, now):
        what = "0420 %s STAN %s" % (msg.get("3"), msg.get("11"))
        keep = ("2", "3", "7", "11", "32", "37", "41", "42", "90", "100")
        use = self.use.get(("0420", msg.get("3", "")))
        if not check(use is not None, "0420 with DE 3 %r: not a processing code of the doc" % msg.get("3")):
            return self.answer(msg, "0430", "30", keep)
        check_use(msg, use, what)
        check_formats(msg, self.meta, what)
        check_clocks(msg, what, now)
        check(msg.get("32") == self.a.institution, "%s: DE 32 is not the gateway's routing.institution" % what)
        de90 = msg.get("90", "0" * 42)
        check(de90[0:4] == "0100", "%s: DE 90 original MTI %s, want 0100" % (what, de90[0:4]))
        check(valid_mmddhhmmss(de90[10:20]), "%s: DE 90 positions 11-20 are not MMDDhhmmss" % what)
        check(de90[31:42] == "0" * 11, "%s: DE 90 positions 32-42 (forwarding institution) are not zeros" % what)
        k = (de90[4:10], de90[10:20], de90[20:31].lstrip("0") or "0")
        with self.lock:
            self.reversed.add(k)
            orig = self.done.pop(k, None)
            if orig is not None and orig[0] == msg.get("2"):
                self.cards[orig[0]]["pin"] = orig[1]
                state = "original undone"
            else:
                state = "nothing to undo"
        say("got  %s card %s: reversal of STAN %s, %s" % (what, masked(msg.get("2", "")), k[0], state))
        self.count("0420 " + state)
        return self.answer(msg, "0430", "00", keep)

    def serve_conn(self, conn):
        wlock = threading.Lock()

        def send(ans, delay):
            if delay:
                time.sleep(delay)
            try:
                raw, _ = iso8583.encode(dict(ans), self.spec)
            except iso8583.EncodeError as e:
                check(False, "answer %s does not encode: %s" % (ans["t"], str(e).split(":")[0]))
                return
            raw = bytes(raw)
            hdr = struct.pack(">H", len(raw)) if self.a.framing == "binary2" else b"%04d" % len(raw)
            with wlock:
                try:
                    conn.sendall(hdr + raw)
                except OSError:
                    pass

        try:
            while True:
                hdr = read_n(conn, 2 if self.a.framing == "binary2" else 4)
                if hdr is None:
                    return
                n = struct.unpack(">H", hdr)[0] if self.a.framing == "binary2" else int(hdr)
                raw = read_n(conn, n)
                if raw is None:
                    return
                ans, delay = self.handle(raw)
                if ans is None:
                    continue
                if delay:
                    threading.Thread(target=send, args=(ans, delay), daemon=True).start()
                else:
                    send(ans, 0)
        finally:
            conn.close()


def read_n(conn, n):
    b = b""
    while len(b) < n:
        try:
            chunk = conn.recv(n - len(b))
        except OSError:
            return None
        if not chunk:
            return None
        b += chunk
    return b


def load_cards(a):
    cards = []
    for c in a.card:
        cards.append(c)
    if a.cards:
        with open(a.cards, encoding="ascii") as f:
            cards += [line.strip() for line in f if line.strip() and not line.startswith("#")]
    table = {}
    for c in cards:
        pan, _, pin = c.partition(":")
        if not (is_digits(pan) and 12 <= len(pan) <= 19 and is_digits(pin) and 4 <= len(pin) <= 12):
            raise SystemExit("a card is PAN:PIN, 12-19 and 4-12 digits (card %s)" % masked(pan))
        table[pan] = {"pin": pin, "tries": 0}
    return table


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--doc", required=True, help="docs/iso8583-issuer.md")
    ap.add_argument("--keys", required=True, help="docs/dev-keys.md")
    ap.add_argument("--listen", default="127.0.0.1:0")
    ap.add_argument("--framing", choices=["binary2", "ascii4"], default="binary2")
    ap.add_argument("--institution", required=True, help="the gateway's routing.institution (DE 32)")
    ap.add_argument("--receiving", required=True, help="this issuer's routing.issuers[].institution (DE 100)")
    ap.add_argument("--pin-format", type=int, choices=[0, 3, 4], default=4)
    ap.add_argument("--key-index", type=int, default=0)
    ap.add_argument("--max-tries", type=int, default=3)
    ap.add_argument("--card", action="append", default=[], help="PAN:PIN")
    ap.add_argument("--cards", help="file of PAN:PIN lines")
    ap.add_argument("--delay", action="append", default=[], help="LAST4:SECONDS: answer that card's first 0100 late")
    a = ap.parse_args()

    doc = open(a.doc, encoding="utf-8").read()
    spec, meta = spec_from_doc(doc)
    use = field_use_from_doc(doc)
    zpk = issuer_zpk(open(a.keys, encoding="utf-8").read())
    if a.pin_format != 4:
        raise SystemExit("dev-issuer-zpk is AES-128: only pin_format 4 uses it")

    # The doc's spec, in pyiso8583, reproduces every golden message byte for byte.
    gold = goldens(doc)
    check(len(gold) >= 18, "the document has its golden messages (%d)" % len(gold))
    for name, raw in sorted(gold.items()):
        try:
            dec, _ = iso8583.decode(bytearray(raw), spec)
            enc, _ = iso8583.encode(dec, spec)
            check(bytes(enc) == raw, "pyiso8583 re-encodes golden %s byte for byte" % name)
            code = dec.get("3") if dec["t"][:2] in ("01", "04") else dec.get("70")
            if check((dec["t"], code) in use, "golden %s: %s %s is in the field use table" % (name, dec["t"], code)):
                sub48 = parse_de48(dec["48"], "golden " + name) if "48" in dec else None
                check_use(dec, use[(dec["t"], code)], "golden " + name, sub48)
                check_formats(dec, meta, "golden " + name)
        except Exception as e:  # noqa: BLE001
            check(False, "pyiso8583 decodes golden %s (%s)" % (name, type(e).__name__))
    # The doc's worked example: a format 4 block under dev-issuer-zpk deciphers (psec) to its PIN.
    ex = doc.split("### Worked example: a format 4 PIN block under `dev-issuer-zpk`", 1)
    if check(len(ex) == 2, "the document has its format 4 worked example"):
        ex = ex[1].split("\n#", 1)[0]
        ex_key = re.search(r"(?m)^- key: `dev-issuer-zpk`, AES-128 `([0-9A-F]{32})`", ex)
        ex_pan = re.search(r"(?m)^- PAN: `(\d+)`", ex)
        ex_pin = re.search(r"(?m)^- PIN: `(\d+)`", ex)
        ex_blk = re.search(r"(?m)^- DE 52 on the wire: `10` `([0-9A-F]{32})`", ex)
        if check(all((ex_key, ex_pan, ex_pin, ex_blk)), "the worked example names key, PAN, PIN and block"):
            check(bytes.fromhex(ex_key.group(1)) == zpk, "the worked example's key is dev-keys.md's dev-issuer-zpk")
            got = pinblock.decipher_pinblock_iso_4(zpk, bytes.fromhex(ex_blk.group(1)), ex_pan.group(1))
            check(got == ex_pin.group(1), "the worked example's block deciphers (psec) to its PIN")

    host = Host(a, spec, meta, use, zpk)
    host.cards = load_cards(a)
    for d in a.delay:
        last4, _, secs = d.partition(":")
        host.delays[last4] = float(secs)

    h, p = a.listen.rsplit(":", 1)
    ln = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ln.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ln.bind((h, int(p)))
    ln.listen(16)
    say("listening %s:%d" % ln.getsockname())
    say("cards: %s" % ", ".join(masked(pan) for pan in sorted(host.cards)))

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    def accept():
        while True:
            try:
                conn, peer = ln.accept()
            except OSError:
                return
            say("link from %s:%d" % peer)
            threading.Thread(target=host.serve_conn, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    while not stop.wait(0.2):
        pass
    ln.close()
    for k in sorted(host.counts):
        say("count %s: %d" % (k, host.counts[k]))
    say("%d checks made" % checks[0])
    if failures:
        say("%d check(s) failed" % len(failures))
        return 1
    say("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
