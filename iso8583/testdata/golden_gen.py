#!/usr/bin/env python3
"""Writes golden.json: golden messages of both dialects.

The wire form of every field is derived here, independently of the Go code,
from the layouts written in docs/iso8583-acquirer.md and docs/iso8583-issuer.md.
The Go tests pack the fields and compare with these bytes, and unpack the bytes
and compare with the fields. Run: python3 golden_gen.py > golden.json
"""
import json

PAN0 = "4012345678909"          # ANSI X9.24-1:2009 A.4.2 test PAN
PAN4 = "4111111111111111"       # ANSI X9.24-3:2017 supplement test PAN
SRC0 = ("PAN and PIN blocks: ANSI X9.24-1:2009 A.4.2 DUKPT test data (PAN 4012345678909, PIN 1234, "
        "encrypted format 0 blocks for KSN FFFF9876543210E00001 / E00002), as reproduced in "
        "github.com/openemv/dukpt test/dukpt_tdes_test.c and copied in pinblock/testdata/pinblock-vectors.json")
SRC4 = ("PAN and PIN blocks: ANSI X9.24-3:2017 Supplement Test Vectors, AES-128 BDK, KSN 1234567890123456000000nn "
        "(encrypted format 4 blocks), as reproduced in github.com/openemv/dukpt test/dukpt_aes128_test.c and "
        "copied in pinblock/testdata/pinblock-vectors.json")
SRCK = ("DE 123: the new zone PIN key F039121BEC83D26B169BDCD5B22AAF8F with KCV CB9DEA, published together in ASC X9 "
        "TR 31-2018 Annex A.7.2.1 (copied in pinblock/testdata/tr31-vectors.json), as a TR-31 version B key block "
        "(header B0096P0TB00N0000: mode of use B, as the gateway deciphers under it) under the development ZMK dev-atm-zmk 89E88CF7931444F334BD7547FC3F380C (docs/dev-keys.md), "
        "wrapped once with psec 1.3.0 tr31.wrap (its random padding fixed here)")
SRCKL = ("DE 123, legacy form: the new zone PIN key F039121BEC83D26B169BDCD5B22AAF8F with KCV CB9DEA, published together in "
         "ASC X9 TR 31-2018 Annex A.7.2.1, enciphered with TDES-ECB under the development ZMK dev-atm-zmk "
         "89E88CF7931444F334BD7547FC3F380C (docs/dev-keys.md) by psec 1.3.0 des.encrypt_tdes_ecb")
KEYBLOCK = "B0096P0TB00N00003DFE914CFDB9F1E36887101A8EC87994B0CF31BD006ACF164D5592B21E808BE0DAAFBF1E4D6CBACF"
SRCN = "other values are illustrative; the wire bytes are derived by testdata/golden_gen.py from the documented layouts"

# Field classes: (kind, max) per data element, identical in both dialects.
N, AN, ANS, PIN, COMP = "n", "an", "ans", "pin", "composite"
SPEC = {
    2: (N, "LL"), 3: (N, 6), 7: (N, 10), 11: (N, 6), 12: (N, 6), 13: (N, 4), 32: (N, "LL"),
    37: (AN, 12), 39: (AN, 2), 41: (ANS, 8), 42: (ANS, 15), 48: (COMP, "LLL"), 52: (PIN, "LL"),
    53: (N, 16), 70: (N, 3), 90: (N, 42), 100: (N, "LL"), 123: (ANS, "LLL"), 125: (PIN, "LLL"),
}


def bitmap(ids):
    ids = [i for i in ids if i > 1]
    size = 16 if max(ids) > 64 else 8
    b = bytearray(size)
    if size == 16:
        b[0] |= 0x80
    for i in ids:
        b[(i - 1) // 8] |= 0x80 >> ((i - 1) % 8)
    return bytes(b)


def bcd(digits):
    if len(digits) % 2:
        digits = "0" + digits
    return bytes.fromhex(digits)


def acq_field(i, v):
    kind, ln = SPEC[i]
    if kind == COMP:
        body = "".join(tag + "%02d" % len(s) + s for tag, s in sorted(v.items()))
        return "%03d" % len(body) + body
    if kind == PIN:
        h = v.upper()
        return ("%02d" if ln == "LL" else "%03d") % len(h) + h
    if ln == "LL":
        return "%02d" % len(v) + v
    if ln == "LLL":
        return "%03d" % len(v) + v
    assert len(v) == ln, (i, v)
    return v


def iss_field(i, v):
    kind, ln = SPEC[i]
    if kind == COMP:
        body = b"".join(tag.encode() + bcd("%02d" % len(s)) + s.encode() for tag, s in sorted(v.items()))
        return bcd("%04d" % len(body)) + body
    if kind == PIN:
        raw = bytes.fromhex(v)
        return bytes([len(raw)]) + raw
    if kind == N:
        if ln == "LL":
            return bcd("%02d" % len(v)) + bcd(v)
        assert len(v) == ln, (i, v)
        return bcd(v)
    if ln == "LLL":
        return bcd("%04d" % len(v)) + v.encode()
    if ln == "LL":
        return bcd("%02d" % len(v)) + v.encode()
    assert len(v) == ln, (i, v)
    return v.encode()


def message(name, source, fields):
    ids = sorted(int(k) for k in fields if k != "0")
    acq = [["0", fields["0"]], ["1", bitmap(ids).hex().upper()]]
    iss = [["0", bcd(fields["0"]).hex().upper()], ["1", bitmap(ids).hex().upper()]]
    for i in ids:
        v = fields[str(i)]
        acq.append([str(i), acq_field(i, v)])
        iss.append([str(i), iss_field(i, v).hex().upper()])
    flat = {}
    for k in sorted(fields, key=int):
        if isinstance(fields[k], dict):
            for tag, s in sorted(fields[k].items()):
                flat[k + "." + tag] = s
        else:
            flat[k] = fields[k]
    return {"name": name, "source": source + "; " + SRCN, "fields": flat,
            "acquirer_wire": dict(acq), "issuer_wire": dict(iss)}


base0 = {"2": PAN0, "7": "0612143015", "11": "000001", "12": "163015", "13": "0612", "32": "100001",
         "37": "416314000001", "41": "ATM00042", "42": "BANK BRANCH 017"}
base4 = {"2": PAN4, "7": "0612143112", "11": "000002", "12": "163112", "13": "0612", "32": "100001",
         "37": "416314000002", "41": "BRT00007", "42": "BANK BRANCH 017"}
base4r = dict(base4, **{"11": "000003", "37": "416314000003", "7": "0612143340", "12": "163340"})
base4u = dict(base4, **{"11": "000004", "37": "416314000004", "7": "0612143501", "12": "163501"})
teller = {"01": "T1042", "04": "BR017"}
branch = {"01": "T1042", "02": "IDV-2024-000731", "03": "S0007", "04": "BR017"}


def resp(req, mti, code, drop=("12", "13", "48", "52", "53", "125")):
    r = {k: v for k, v in req.items() if k not in drop}
    r["0"] = mti
    r["39"] = code
    return r


change0 = dict(base0, **{"0": "0100", "3": "700000", "52": "1B9C1845EB993A7A", "53": "0001000000000000",
                         "125": "10A01C8D02C69107"})
change4 = dict(base4, **{"0": "0100", "3": "700000", "48": teller,
                         "52": "A912150391AB65A67E52883D81CE2D15", "53": "0402000000000000",
                         "100": "200002", "125": "52A00503BD34BA1383F6A7EE9FE2547F"})
reset4 = dict(base4r, **{"0": "0100", "3": "710000", "48": branch, "53": "0402000000000000",
                         "125": "71B3D0528669498777555A8BE6698E44"})
unblock = dict(base4u, **{"0": "0100", "3": "720000", "48": {"01": "T1042", "02": "IDV-2024-000732"}})
rev = {k: v for k, v in change0.items() if k not in ("52", "53", "125")}
rev.update({"0": "0420", "11": "000005", "7": "0612143115",
            "90": "0100" + "000001" + "0612143015" + "00000100001" + "00000000000"})
nm = {"7": "0612140000", "32": "100001"}

msgs = [
    message("0100-change-format0", SRC0, change0),
    message("0100-change-format4-branch", SRC4, change4),
    message("0100-reset-format4", SRC4, reset4),
    message("0100-unblock", SRC4 + " (PAN only)", unblock),
    message("0110-change-incorrect-pin", SRC0 + " (PAN only)", resp(change0, "0110", "55")),
    message("0110-reset-approved", SRC4 + " (PAN only)", resp(reset4, "0110", "00")),
    message("0110-unblock-approved", SRC4 + " (PAN only)", resp(unblock, "0110", "00")),
    message("0420-change-reversal", SRC0 + " (PAN only)", rev),
    message("0430-change-reversal-response", SRC0 + " (PAN only)", resp(rev, "0430", "00", drop=("12", "13"))),
    message("0800-sign-on", "", dict(nm, **{"0": "0800", "11": "000101", "70": "001"})),
    message("0810-sign-on", "", dict(nm, **{"0": "0810", "11": "000101", "39": "00", "70": "001"})),
    message("0800-echo", "", {"0": "0800", "7": "0612141500", "11": "000102", "70": "301"}),
    message("0810-echo", "", {"0": "0810", "7": "0612141500", "11": "000102", "39": "00", "70": "301"}),
    message("0800-key-change", SRCK, {"0": "0800", "7": "0612142000", "11": "000103", "53": "0001000000000000",
                                      "70": "161", "123": KEYBLOCK}),
    message("0810-key-change", "", {"0": "0810", "7": "0612142000", "11": "000103", "39": "00", "70": "161"}),
    message("0800-key-change-legacy", SRCKL, {"0": "0800", "7": "0612142100", "11": "000105", "53": "0001000000000000",
                                             "70": "161", "123": "778A9766A6ED58F447C8465FA92E0B4D/CB9DEA"}),
    message("0810-key-change-legacy", "", {"0": "0810", "7": "0612142100", "11": "000105", "39": "30", "70": "161"}),
    message("0800-sign-off", "", dict(nm, **{"0": "0800", "7": "0612235900", "11": "000104", "70": "002"})),
    message("0810-sign-off", "", dict(nm, **{"0": "0810", "7": "0612235900", "11": "000104", "39": "00",
                                             "70": "002"})),
]
for m in msgs:
    m["source"] = m["source"].lstrip("; ")

print('{\n "comment": %s,\n "messages": [' % json.dumps(
    "Golden messages of both dialects, generated by golden_gen.py (see its docstring); "
    "acquirer_wire is the ASCII text of each field, issuer_wire the hex of each field."))
for n, m in enumerate(msgs):
    print("  {")
    for k in ("name", "source", "fields", "acquirer_wire", "issuer_wire"):
        print("   %s: %s%s" % (json.dumps(k), json.dumps(m[k]), "," if k != "issuer_wire" else ""))
    print("  }" + ("," if n < len(msgs) - 1 else ""))
print(" ]\n}")
