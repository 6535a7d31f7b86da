#!/usr/bin/env python3
"""An independent branch teller system for pingate, built from docs/branch-api.md, docs/openapi.yaml and
docs/dev-keys.md alone (the card population and PINs of the development issuer from docs/iso8583-acquirer.md,
"Development setup"; the limits from docs/rate-limits.md).

HTTP is `requests` over mutual TLS with the development certificates (`pingate-dev dev-certs`, the table in
docs/branch-api.md, "Running it"). PIN blocks are ISO 9564-1:2017 format 4 (AES), written here from the
standard with `cryptography` (section 9.4 "Format 4": the 16-byte plain-text PIN field C=4, N, PIN, fill A,
random fill; the 16-byte PAN field M, PAN, zero pad; block = E(K, E(K, PIN field) XOR PAN field)), and
cross-checked with psec's implementation (knovichikhin/psec) and the worked example of
docs/iso8583-issuer.md. Nothing of pingate's code is used.

It plays every flow of docs/branch-api.md against a running gateway on the embedded default: a PIN change at
the counter and at a kiosk, a reset with a PIN pad block and a generated-PIN reset with a PIN mailer under dual
control (teller submits, supervisor approves or refuses, self-approval and non-supervisor approval refused),
unblock after wrong PINs, operation lookup, idempotency, and every documented problem.

Run: python3 scripts/branch_client.py --url https://127.0.0.1:8443 --certs var/dev-certs \
         --spool var/mailers --docs docs
Prints `ok   ...` or `FAIL ...` per check (never a PIN, a PIN block or a full PAN); exit status 1 on any FAIL.
"""
import argparse
import hashlib
import hmac
import json
import os
import re
import secrets
import stat
import struct
import sys
import time
import uuid
import warnings

warnings.filterwarnings("ignore")

import requests  # noqa: E402
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes  # noqa: E402
from psec import pinblock as psec_pinblock  # noqa: E402

failures = []

# docs/dev-keys.md: dev-branch-zpk (FIPS-197 C.1) and dev-issuer-zpk (SP 800-38A F.1).
BRANCH_ZPK = bytes.fromhex("000102030405060708090A0B0C0D0E0F")
ISSUER_ZPK = bytes.fromhex("2B7E151628AED2A6ABF7158809CF4F3C")
BRANCH, INSTITUTION = "BR0117", "200001"
PROBLEM_KEYS = {"type", "title", "status", "detail", "errors", "operation_id"}
RESULT_KEYS = {"operation_id", "operation", "status", "channel", "institution", "branch", "terminal",
               "masked_pan", "teller", "supervisor", "mode", "outcome", "response_code", "reason", "event_id",
               "mailer", "submitted", "approve_by", "completed"}
RESULT_REQUIRED = {"operation_id", "operation", "status", "channel", "institution", "branch", "terminal",
                   "masked_pan", "submitted"}


def check(ok, what, got=None):
    if ok:
        print("ok   " + what)
    else:
        print("FAIL " + what + ("" if got is None else " — got " + got))
        failures.append(what)
    return ok


# --- ISO 9564-1:2017 format 4 ---------------------------------------------------------------------------------

def _aes(key, block, decrypt=False):
    c = Cipher(algorithms.AES(key), modes.ECB())
    op = c.decryptor() if decrypt else c.encryptor()
    return op.update(block) + op.finalize()


def pin_field_4(pin):
    """ISO 9564-1:2017 9.4.2: C=4, N=len, PIN digits, fill A to nibble 16, then 8 random bytes."""
    nib = "4" + "%X" % len(pin) + pin
    nib += "A" * (16 - len(nib))
    return bytes.fromhex(nib) + secrets.token_bytes(8)


def pan_field_4(pan):
    """ISO 9564-1:2017 9.4.3: M = PAN length - 12 (0 if shorter), the PAN (left-padded to 12), zero pad."""
    m = max(len(pan) - 12, 0)
    digits = pan if len(pan) >= 12 else pan.rjust(12, "0")
    return bytes.fromhex(("%X" % m + digits).ljust(32, "0"))


def encipher4(key, pin, pan):
    inter = _aes(key, pin_field_4(pin))
    return _aes(key, bytes(a ^ b for a, b in zip(inter, pan_field_4(pan)))).hex().upper()


def decipher4(key, block_hex, pan):
    inter = _aes(key, bytes.fromhex(block_hex), decrypt=True)
    field = _aes(key, bytes(a ^ b for a, b in zip(inter, pan_field_4(pan))), decrypt=True).hex().upper()
    if field[0] != "4":
        raise ValueError("not a format 4 PIN field")
    n = int(field[1], 16)
    return field[2:2 + n]


def self_test_pinblocks():
    pan = "6228481200000011"
    block = encipher4(BRANCH_ZPK, "4826", pan)
    check(psec_pinblock.decipher_pinblock_iso_4(BRANCH_ZPK, bytes.fromhex(block), pan) == "4826",
          "format 4 block made from ISO 9564-1:2017 deciphers with psec")
    other = psec_pinblock.encipher_pinblock_iso_4(BRANCH_ZPK, "4826", pan).hex().upper()
    check(decipher4(BRANCH_ZPK, other, pan) == "4826", "psec's format 4 block deciphers with ours")
    check(encipher4(BRANCH_ZPK, "4826", pan) != block, "format 4 blocks carry random fill (two differ)")
    # docs/iso8583-issuer.md "Worked example": PAN 4111111111111111, PIN 1234 under dev-issuer-zpk.
    check(decipher4(ISSUER_ZPK, "DA54393B0E45C3C9C14858C99F2EF480", "4111111111111111") == "1234",
          "the issuer doc's worked format 4 example deciphers to its PIN")


# --- the development card population (docs/iso8583-acquirer.md) ------------------------------------------------

def luhn(body):
    total = 0
    for i, c in enumerate(reversed(body)):
        d = int(c)
        if i % 2 == 0:
            d *= 2
            d -= 9 if d > 9 else 0
        total += d
    return str((10 - total % 10) % 10)


def card(prefix, index):
    body = prefix + str(index).zfill(15 - len(prefix))
    return body + luhn(body)


def trivial(pin):
    up = all((int(pin[i + 1]) - int(pin[i])) % 10 == 1 for i in range(len(pin) - 1))
    down = all((int(pin[i]) - int(pin[i + 1])) % 10 == 1 for i in range(len(pin) - 1))
    return len(set(pin)) == 1 or up or down


def initial_pin(pan, seed=1):
    mac = hmac.new(struct.pack(">Q", seed), pan.encode(), hashlib.sha256).digest()
    for off in range(0, 29, 2):
        pin = "%04d" % (struct.unpack(">I", mac[off:off + 4])[0] % 10000)
        if not trivial(pin):
            return pin
    return "5821"


def strong_pin(pan, avoid=()):
    """A PIN the embedded weak-PIN rules accept (docs/iso8583-acquirer.md): none trivial, not a run of the
    PAN, not in the list, not one of avoid."""
    banned = set("1212 2121 1122 2211 1313 1010 2000 2001 1004 6969 2580 0852 1470 0741 3690 0963 1357 2468 "
                 "1590 7531 1100 1984 1999 2020 5683 1379 1236 2552 0101 0007".split())
    for cand in ("4826", "7093", "3619", "5084", "9260"):
        if cand not in banned and cand not in pan and not trivial(cand) and cand not in avoid:
            return cand
    raise RuntimeError("no strong PIN")


def masked(pan):
    return pan[:6] + "*" * (len(pan) - 10) + pan[-4:]


# --- HTTP ------------------------------------------------------------------------------------------------------

class Client:
    def __init__(self, url, certs, who):
        self.url, self.who = url, who
        self.s = requests.Session()
        # Without this, REQUESTS_CA_BUNDLE in the environment overrides Session.verify (psf/requests#3829).
        self.s.trust_env = False
        self.s.verify = os.path.join(certs, "ca.pem")
        self.s.cert = (os.path.join(certs, who + ".pem"), os.path.join(certs, who + "-key.pem"))

    def post(self, path, body, key=None, raw=None, ctype="application/json", headers=None):
        h = {"Content-Type": ctype} if ctype else {}
        if key is not None:
            h["Idempotency-Key"] = key
        h.update(headers or {})
        data = raw if raw is not None else json.dumps(body).encode()
        return self.s.post(self.url + path, data=data, headers=h, timeout=30)

    def get(self, path):
        return self.s.get(self.url + path, timeout=30)


TERMINALS = iter("BR17T%03d" % i for i in range(1, 1000))


def terminal():
    """A fresh PIN pad per operation: terminal limits are 1/s, burst 5 (docs/rate-limits.md)."""
    return next(TERMINALS)


def change_body(pan, old, new, teller="T0117-07", **over):
    b = {"pan": pan, "branch": BRANCH, "terminal": terminal(), "teller": teller, "pin_format": 4,
         "key_index": 1, "old_pin_block": encipher4(BRANCH_ZPK, old, pan),
         "new_pin_block": encipher4(BRANCH_ZPK, new, pan)}
    b.update(over)
    return b


def reset_body(pan, new=None, teller="T0117-07", ref="IDCHK-2026-000123", **over):
    b = {"pan": pan, "branch": BRANCH, "terminal": terminal(), "teller": teller, "identity_check_ref": ref}
    if new is None:
        b["mode"] = "generated"
    else:
        b.update(mode="pin_pad", pin_format=4, key_index=1, new_pin_block=encipher4(BRANCH_ZPK, new, pan))
    b.update(over)
    return b


def unblock_body(pan, teller="T0117-07", **over):
    b = {"pan": pan, "branch": BRANCH, "terminal": terminal(), "teller": teller,
         "identity_check_ref": "IDCHK-2026-000125"}
    b.update(over)
    return b


def secret_free(text, secret_values):
    return not any(v and v in text for v in secret_values)


def expect_result(what, r, code, secrets_in_request=(), **want):
    """r is an operation answer with HTTP status; want names result fields and their values."""
    try:
        res = r.json()
    except ValueError:
        return check(False, what, "%d %s, not JSON" % (r.status_code, r.headers.get("Content-Type")))
    got = {k: res.get(k) for k in want}
    ok = (r.status_code == code and r.headers.get("Content-Type", "").startswith("application/json")
          and got == want)
    extra = set(res) - RESULT_KEYS
    missing = RESULT_REQUIRED - set(res)
    detail = "%d %s" % (r.status_code, json.dumps(got, sort_keys=True))
    if extra or missing:
        detail += " extra=%s missing=%s" % (sorted(extra), sorted(missing))
    ok = ok and not extra and not missing
    ok = ok and re.fullmatch(r"[0-9]{6}\*+[0-9]{4}", res.get("masked_pan", "")) is not None
    ok = ok and secret_free(r.text, secrets_in_request)
    if res.get("status") == "completed":
        ok = ok and ("event_id" in res) == (res.get("outcome") != "failed") and "completed" in res
    check(ok, what + " → %d %s" % (code, json.dumps(want, sort_keys=True)), detail)
    return res


def expect_problem(what, r, status, slug, pointer=None, secrets_in_request=()):
    ctype = r.headers.get("Content-Type", "")
    try:
        p = r.json()
    except ValueError:
        p = {}
    pointers = [e.get("pointer") for e in p.get("errors", []) if isinstance(e, dict)]
    ok = (r.status_code == status and ctype.startswith("application/problem+json")
          and p.get("type") == "urn:pingate:problem:" + slug and p.get("status") == status
          and isinstance(p.get("title"), str) and not set(p) - PROBLEM_KEYS
          and secret_free(r.text, secrets_in_request))
    if pointer is not None:
        ok = ok and pointer in pointers
    want = "%d %s" % (status, slug) + ("" if pointer is None else " errors ∋ " + pointer)
    got = "%d %s type=%s errors=%s keys=%s" % (r.status_code, ctype, p.get("type"), pointers, sorted(p))
    return check(ok, what + " → " + want, got)


# --- the flows -------------------------------------------------------------------------------------------------

def contract(teller, docs):
    r = teller.get("/v1/openapi.yaml")
    with open(os.path.join(docs, "openapi.yaml"), "rb") as f:
        doc = f.read()
    check(r.status_code == 200 and r.headers.get("Content-Type", "").startswith("application/yaml")
          and r.content == doc, "GET /v1/openapi.yaml → 200 application/yaml, docs/openapi.yaml",
          "%d %s %d bytes" % (r.status_code, r.headers.get("Content-Type"), len(r.content)))


def change_flow(teller, teller2, pan):
    old = initial_pin(pan)
    new = strong_pin(pan, (old,))
    body = change_body(pan, old, new)
    key = str(uuid.uuid4())
    blocks = (pan, body["old_pin_block"], body["new_pin_block"])
    r = teller.post("/v1/pin/changes", body, key=key)
    res = expect_result("change at the counter", r, 200, blocks, operation="change", status="completed",
                        channel="branch", institution=INSTITUTION, branch=BRANCH, masked_pan=masked(pan),
                        teller="T0117-07", outcome="approved", response_code="00", reason="approved")
    # The same key and request, fields reordered and spaced: the first answer byte for byte.
    raw = json.dumps(dict(reversed(list(body.items()))), indent=2).encode()
    r2 = teller.post("/v1/pin/changes", None, key=key, raw=raw)
    check(r2.status_code == r.status_code and r2.content == r.content,
          "same Idempotency-Key, same request reordered → first answer byte for byte",
          "%d, %s" % (r2.status_code, "same bytes" if r2.content == r.content else "other bytes"))
    g = teller.get("/v1/operations/" + res.get("operation_id", "x"))
    expect_result("lookup of the change", g, 200, blocks, operation_id=res.get("operation_id"),
                  status="completed", outcome="approved", response_code="00")
    other = dict(body, terminal=terminal())
    expect_problem("same Idempotency-Key, another request", teller.post("/v1/pin/changes", other, key=key),
                   422, "idempotency-key-reused", secrets_in_request=blocks)
    # Keys belong to the certificate's identity: another teller's same key is a new request.
    body2 = change_body(pan, new, strong_pin(pan, (old, new)))
    del body2["teller"]
    r3 = teller2.post("/v1/pin/changes", body2, key=key)
    res3 = expect_result("another teller's request under the same key runs", r3, 200, (pan,), teller="T0117-08",
                         outcome="approved")
    check(res3.get("operation_id") not in (None, res.get("operation_id")), "… as an operation of its own")


def kiosk_flow(kiosk, pan):
    old = initial_pin(pan)
    new = strong_pin(pan, (old,))
    body = change_body(pan, old, new, teller="K0117-01")
    expect_result("change at a kiosk", kiosk.post("/v1/pin/changes", body), 200, (pan,), channel="kiosk",
                  teller="K0117-01", outcome="approved", response_code="00")
    body = change_body(pan, new, strong_pin(pan, (old, new)))
    del body["teller"]
    expect_result("kiosk change without the optional teller", kiosk.post("/v1/pin/changes", body), 200, (pan,),
                  channel="kiosk", teller="K0117-01", outcome="approved")
    expect_problem("kiosk submits a reset", kiosk.post("/v1/pin/resets", reset_body(pan, new, teller="K0117-01")),
                   403, "role-not-permitted", secrets_in_request=(pan,))
    expect_problem("kiosk submits a generated reset",
                   kiosk.post("/v1/pin/resets", reset_body(pan, teller="K0117-01")), 403, "role-not-permitted")
    expect_result("unblock at a kiosk", kiosk.post("/v1/pin/unblocks", unblock_body(pan, teller="K0117-01")),
                  200, (pan,), operation="unblock", channel="kiosk", outcome="approved", response_code="00")


def wrong_pin_unblock_flow(teller, pan):
    """The simulated issuer answers the third wrong PIN in a row 75 and keeps the card locked until an unblock
    or a reset (docs/branch-api.md, "Development cards")."""
    pin = initial_pin(pan)
    wrong = strong_pin(pan, (pin,))
    for i in range(2):
        body = change_body(pan, wrong, strong_pin(pan, (pin, wrong)))
        expect_result("change with a wrong old PIN (%d of 3)" % (i + 1), teller.post("/v1/pin/changes", body),
                      200, (pan,), outcome="declined", response_code="55", reason="incorrect_pin")
    body = change_body(pan, wrong, strong_pin(pan, (pin, wrong)))
    expect_result("change with a wrong old PIN (3 of 3) locks the card", teller.post("/v1/pin/changes", body),
                  200, (pan,), outcome="declined", response_code="75", reason="pin_tries_exceeded")
    body = change_body(pan, pin, wrong)
    expect_result("change with the right PIN on the locked card", teller.post("/v1/pin/changes", body), 200,
                  (pan,), outcome="declined", response_code="75", reason="pin_tries_exceeded")
    expect_result("unblock", teller.post("/v1/pin/unblocks", unblock_body(pan)), 200, (pan,),
                  operation="unblock", channel="branch", outcome="approved", response_code="00",
                  reason="approved")
    body = change_body(pan, pin, wrong)
    expect_result("change with the right PIN after the unblock", teller.post("/v1/pin/changes", body), 200,
                  (pan,), outcome="approved", response_code="00")


def pending(what, r, pan):
    res = expect_result(what, r, 202, (pan,), operation="reset", status="pending_approval", teller="T0117-07")
    op = res.get("operation_id", "")
    check(r.headers.get("Location") == "/v1/operations/" + op and "approve_by" in res
          and "outcome" not in res, what + ": Location, approve_by, no outcome yet",
          "Location=%s keys=%s" % (r.headers.get("Location"), sorted(res)))
    return op


def reset_pin_pad_flow(teller, teller2, supervisor, pan):
    new = strong_pin(pan, (initial_pin(pan),))
    body = reset_body(pan, new)
    op = pending("reset with a PIN pad block", teller.post("/v1/pin/resets", body), pan)
    expect_result("lookup of the pending reset", teller.get("/v1/operations/" + op), 200, (pan,),
                  status="pending_approval", mode="pin_pad")
    expect_problem("the submitting teller approves", teller.post("/v1/operations/%s/approval" % op,
                   {"decision": "approve"}), 403, "role-not-permitted")
    expect_problem("another teller approves", teller2.post("/v1/operations/%s/approval" % op,
                   {"decision": "approve"}), 403, "role-not-permitted")
    expect_problem("approval with an unknown decision", supervisor.post("/v1/operations/%s/approval" % op,
                   {"decision": "maybe"}), 422, "invalid-request", "/decision")
    key = str(uuid.uuid4())
    r = supervisor.post("/v1/operations/%s/approval" % op, {"decision": "approve"}, key=key)
    expect_result("supervisor approves", r, 200, (pan,), operation_id=op, status="completed",
                  supervisor="S0117-01", teller="T0117-07", outcome="approved", response_code="00")
    r2 = supervisor.post("/v1/operations/%s/approval" % op, {"decision": "approve"}, key=key)
    check(r2.status_code == 200 and r2.content == r.content, "approval replayed with its key → same answer",
          str(r2.status_code))
    expect_problem("approval replayed with its key and another decision",
                   supervisor.post("/v1/operations/%s/approval" % op, {"decision": "refuse"}, key=key),
                   422, "idempotency-key-reused")
    expect_problem("a second approval", supervisor.post("/v1/operations/%s/approval" % op,
                   {"decision": "approve"}), 409, "not-pending")
    expect_result("change with the PIN the reset set", teller.post("/v1/pin/changes",
                  change_body(pan, new, strong_pin(pan, (new, initial_pin(pan))))), 200, (pan,),
                  outcome="approved", response_code="00")


def reset_refused_flow(teller, supervisor, pan):
    op = pending("reset to be refused", teller.post("/v1/pin/resets", reset_body(pan, "7093")), pan)
    res = expect_result("supervisor refuses", supervisor.post("/v1/operations/%s/approval" % op,
                        {"decision": "refuse"}), 200, (pan,), status="refused", supervisor="S0117-01")
    check(not {"outcome", "response_code", "event_id"} & set(res), "a refused reset has no outcome", str(sorted(res)))
    expect_problem("approval after a refusal", supervisor.post("/v1/operations/%s/approval" % op,
                   {"decision": "approve"}), 409, "not-pending")
    expect_result("the card's PIN is unchanged after the refusal", teller.post("/v1/pin/changes",
                  change_body(pan, initial_pin(pan), "4826")), 200, (pan,), outcome="approved")


def self_approval_flow(supervisor, pan):
    body = reset_body(pan, "3619", teller="S0117-01")
    r = supervisor.post("/v1/pin/resets", body)
    res = expect_result("a supervisor submits a reset", r, 202, (pan,), status="pending_approval",
                        teller="S0117-01")
    expect_problem("the supervisor approves its own reset", supervisor.post(
        "/v1/operations/%s/approval" % res.get("operation_id", "x"), {"decision": "approve"}), 403,
        "self-approval")


def generated_flow(teller, supervisor, pan, spool):
    op = pending("reset with a generated PIN", teller.post("/v1/pin/resets", reset_body(pan)), pan)
    r = supervisor.post("/v1/operations/%s/approval" % op, {"decision": "approve"})
    res = expect_result("supervisor approves the generated reset", r, 200, (pan,), status="completed",
                        mode="generated", outcome="approved", response_code="00",
                        mailer={"reference": op, "printed": True})
    path = os.path.join(spool, op + ".mailer")
    try:
        text = open(path).read()
        fmode, dmode = stat.S_IMODE(os.stat(path).st_mode), stat.S_IMODE(os.stat(spool).st_mode)
    except OSError as e:
        check(False, "PIN mailer in the spool", type(e).__name__)
        return
    check(fmode == 0o600 and dmode == 0o700, "mailer file 0600 in a 0700 spool", "%o, %o" % (fmode, dmode))
    lines = text.splitlines()
    m = re.search(r"^Your new PIN: ([0-9]+)$", text, re.M)
    check(lines[:1] == ["PIN MAILER"] and ("Reference: " + op) in lines and ("Card: " + masked(pan)) in lines
          and pan not in text and m is not None and len(m.group(1)) == 6,
          "mailer as documented: reference, masked card, a 6-digit PIN (default length)",
          "lines=%d pin_digits=%s" % (len(lines), len(m.group(1)) if m else None))
    try:
        address = [x for x in lines[lines.index("Card: " + masked(pan)) + 1:] if x][:1]
    except ValueError:
        address = []
    check(bool(address) and not address[0].startswith("Your new PIN"), "mailer names the branch's address",
          "no address line")
    check(res.get("mailer", {}).get("reference") == op and "PIN:" not in r.text, "the answer never has the PIN")
    if m:
        gen = m.group(1)
        expect_result("change with the mailer's PIN", teller.post("/v1/pin/changes",
                      change_body(pan, gen, strong_pin(pan, (gen,)))), 200, (pan,), outcome="approved")
    expect_problem("generated reset with a PIN block", teller.post("/v1/pin/resets",
                   reset_body(pan, new_pin_block="00" * 16)), 400, "unknown-field", "/new_pin_block")
    expect_problem("generated reset with pin_length 3", teller.post("/v1/pin/resets",
                   reset_body(pan, pin_length=3)), 422, "invalid-request", "/pin_length")


def expired_flow(teller, supervisor, pan, window):
    """An approval after the institution's approval_window (the Go test configures a short one)."""
    r = teller.post("/v1/pin/resets", reset_body(pan, "5084"))
    op = pending("reset left past its approval window", r, pan)
    time.sleep(window + 1)
    expect_problem("approval after the window", supervisor.post("/v1/operations/%s/approval" % op,
                   {"decision": "approve"}), 409, "approval-expired")
    res = expect_result("lookup of the expired reset", teller.get("/v1/operations/" + op), 200, (pan,),
                        status="expired")
    check(not {"outcome", "response_code", "event_id"} & set(res), "an expired reset has no outcome",
          str(sorted(res)))
    expect_result("the card's PIN is unchanged after the expiry", teller.post("/v1/pin/changes",
                  change_body(pan, initial_pin(pan), "4826")), 200, (pan,), outcome="approved")


def outcomes_without_card(teller):
    pan = "4111111111111111"  # Luhn-valid, outside the routed BIN ranges: refused by pingate (no_route)
    expect_result("change for a card no BIN range covers", teller.post("/v1/pin/changes",
                  change_body(pan, "4826", "7093")), 200, (pan,), outcome="rejected", response_code="14",
                  reason="no_route")
    pan = card("62284812", 9999)[:-1] + "0"  # in a routed range, unknown to the issuer
    pan = pan if luhn(pan[:-1]) != pan[-1] else pan[:-1] + "1"
    expect_result("change for a card the issuer does not hold", teller.post("/v1/pin/changes",
                  change_body(pan, "4826", "7093")), 200, (pan,), outcome="declined", response_code="14",
                  reason="no_such_card")


def problems(teller, pan):
    pin = initial_pin(pan)
    good = change_body(pan, pin, strong_pin(pan, (pin,)))
    sec = (pan, good["old_pin_block"], good["new_pin_block"])
    P = "/v1/pin/changes"

    def without(k):
        return {f: v for f, v in good.items() if f != k}

    expect_problem("wrong content type", teller.post(P, good, ctype="text/plain"), 415, "unsupported-media-type",
                   secrets_in_request=sec)
    expect_problem("no content type", teller.post(P, good, ctype=None), 415, "unsupported-media-type")
    expect_problem("JSON in another charset", teller.post(P, good, ctype="application/json; charset=latin1"), 415,
                   "unsupported-media-type")
    expect_problem("body not JSON", teller.post(P, None, raw=b"{\"pan\":"), 400, "malformed-json")
    expect_problem("body an array", teller.post(P, None, raw=b"[]"), 400, "malformed-json")
    expect_problem("body null", teller.post(P, None, raw=b"null"), 400, "malformed-json")
    expect_problem("trailing data", teller.post(P, None, raw=json.dumps(good).encode() + b"{}"), 400,
                   "malformed-json", secrets_in_request=sec)
    dup = json.dumps(good)[:-1] + ', "branch": "BR0117"}'
    expect_problem("a member twice", teller.post(P, None, raw=dup.encode()), 400, "malformed-json", "/branch",
                   secrets_in_request=sec)
    expect_problem("unknown field", teller.post(P, dict(good, colour="blue")), 400, "unknown-field", "/colour",
                   secrets_in_request=sec)
    expect_problem("unblock with a PIN block", teller.post("/v1/pin/unblocks",
                   unblock_body(pan, new_pin_block=good["new_pin_block"])), 400, "unknown-field", "/new_pin_block",
                   secrets_in_request=sec)
    for f in ("pan", "old_pin_block", "new_pin_block", "pin_format", "key_index", "terminal", "branch"):
        expect_problem("missing " + f, teller.post(P, without(f)), 422, "invalid-request", "/" + f,
                       secrets_in_request=sec)
    expect_problem("missing mode of a reset", teller.post("/v1/pin/resets",
                   {k: v for k, v in reset_body(pan).items() if k != "mode"}), 422, "invalid-request", "/mode")
    expect_problem("reset without teller", teller.post("/v1/pin/resets",
                   {k: v for k, v in reset_body(pan).items() if k != "teller"}), 422, "invalid-request", "/teller")
    expect_problem("unblock without identity_check_ref", teller.post("/v1/pin/unblocks",
                   {k: v for k, v in unblock_body(pan).items() if k != "identity_check_ref"}), 422,
                   "invalid-request", "/identity_check_ref")
    expect_problem("a null value", teller.post(P, dict(good, teller=None)), 422, "invalid-request", "/teller")
    expect_problem("key_index as a string", teller.post(P, dict(good, key_index="1")), 422, "invalid-request",
                   "/key_index")
    expect_problem("key_index 1.5", teller.post(P, None, raw=json.dumps(good).replace(
        '"key_index": 1', '"key_index": 1.5').encode()), 422, "invalid-request", "/key_index")
    r = teller.post(P, None, raw=json.dumps(dict(good, terminal=terminal())).replace(
        '"key_index": 1', '"key_index": 1.0').encode())
    expect_result("key_index 1.0 is the integer 1", r, 200, sec, outcome="approved")
    pin = strong_pin(pan, (pin,))  # the change above took
    expect_problem("PAN of 12 digits", teller.post(P, dict(good, pan="622848120000")), 422, "invalid-request",
                   "/pan")
    expect_problem("terminal of 7 characters", teller.post(P, dict(good, terminal="BR0117T")), 422,
                   "invalid-request", "/terminal")
    expect_problem("identity_check_ref a bare ID number", teller.post("/v1/pin/unblocks",
                   unblock_body(pan, identity_check_ref="11010519491231002X")), 422, "invalid-request",
                   "/identity_check_ref")
    expect_problem("teller holding 12 digits", teller.post("/v1/pin/unblocks",
                   unblock_body(pan, teller="T622848120000")), 422, "invalid-request", "/teller")
    expect_problem("PIN block not hexadecimal", teller.post(P, dict(good, old_pin_block="Z" * 32)), 422,
                   "invalid-pin-block", "/old_pin_block", secrets_in_request=sec)
    expect_problem("PIN block of 16 hex digits under format 4", teller.post(P, dict(
        good, new_pin_block=good["new_pin_block"][:16])), 422, "invalid-pin-block", "/new_pin_block",
        secrets_in_request=sec)
    expect_problem("format 0 at a format 4 institution", teller.post(P, dict(
        good, pin_format=0, old_pin_block=good["old_pin_block"][:16], new_pin_block=good["new_pin_block"][:16])),
        422, "pin-block-format-not-permitted", "/pin_format", secrets_in_request=sec)
    expect_problem("key index the institution lacks", teller.post(P, dict(good, key_index=2)), 422,
                   "unknown-key-index", "/key_index", secrets_in_request=sec)
    wrong_key = bytes(16)
    body = dict(good, terminal=terminal(), old_pin_block=encipher4(wrong_key, pin, pan))
    expect_result("PIN block under another key (docs/iso8583-acquirer.md refusals)", teller.post(P, body), 200,
                  sec, outcome="rejected", response_code="30", reason="invalid_pin_block")
    expect_problem("another branch", teller.post(P, dict(good, branch="BR0118")), 403, "branch-not-permitted",
                   secrets_in_request=sec)
    expect_problem("another teller's id", teller.post(P, dict(good, teller="T0117-08")), 403,
                   "teller-not-permitted", secrets_in_request=sec)
    expect_problem("body over max_body_bytes", teller.post(P, None, raw=b'{"pan":"' + b"1" * 17000 + b'"}'), 413,
                   "body-too-large")
    for what, key in (("empty", ""), ("too long", "k" * 256), ("not visible ASCII", "a b")):
        expect_problem("Idempotency-Key " + what, teller.post(P, good, key=key), 400, "idempotency-key-invalid")
    expect_problem("unknown operation", teller.get("/v1/operations/" + str(uuid.uuid4())), 404, "not-found")
    expect_problem("malformed operation id", teller.get("/v1/operations/not-an-id"), 404, "not-found")
    expect_problem("unknown path", teller.get("/v1/pins"), 404, "not-found")
    expect_problem("approval of an unknown operation", teller.post("/v1/operations/%s/approval" % uuid.uuid4(),
                   {"decision": "approve"}), 403, "role-not-permitted")
    r = teller.get(P)
    expect_problem("GET on the changes route", r, 405, "method-not-allowed")
    check("POST" in r.headers.get("Allow", ""), "405 names Allow: POST", r.headers.get("Allow"))
    r = teller.s.delete(teller.url + "/v1/operations/" + str(uuid.uuid4()))
    expect_problem("DELETE on an operation", r, 405, "method-not-allowed")
    check("GET" in r.headers.get("Allow", ""), "405 names Allow: GET", r.headers.get("Allow"))


def supervisor_problems(supervisor):
    expect_problem("supervisor approves an unknown operation", supervisor.post(
        "/v1/operations/%s/approval" % uuid.uuid4(), {"decision": "approve"}), 404, "not-found")
    expect_problem("approval with an unknown field", supervisor.post(
        "/v1/operations/%s/approval" % uuid.uuid4(), {"decision": "approve", "note": "x"}), 400, "unknown-field",
        "/note")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--url", default="https://127.0.0.1:8443")
    ap.add_argument("--certs", default="var/dev-certs")
    ap.add_argument("--spool", default="var/mailers")
    ap.add_argument("--docs", default="docs")
    ap.add_argument("--approval-window", type=float, default=0,
                    help="the institution's approval_window in seconds, if short enough to wait out; 0: skip")
    a = ap.parse_args()
    self_test_pinblocks()
    teller, teller2 = Client(a.url, a.certs, "teller"), Client(a.url, a.certs, "teller2")
    supervisor, kiosk = Client(a.url, a.certs, "supervisor"), Client(a.url, a.certs, "kiosk")
    contract(teller, a.docs)
    with open(os.path.join(a.docs, "branch-api.md")) as f:
        example = re.search(r'"pan": "([0-9]+)"', f.read()).group(1)
    check(example[:8] in ("62284812", "62284813") and luhn(example[:-1]) == example[-1],
          "the example card of docs/branch-api.md is a development card", masked(example))
    # One card per flow: a card has 10 operations a day (docs/rate-limits.md).
    change_flow(teller, teller2, example)
    wrong_pin_unblock_flow(teller, card("62284812", 2))
    reset_pin_pad_flow(teller, teller2, supervisor, card("62284812", 3))
    reset_refused_flow(teller, supervisor, card("62284812", 4))
    self_approval_flow(supervisor, card("62284812", 5))
    generated_flow(teller, supervisor, card("62284812", 6), a.spool)
    kiosk_flow(kiosk, card("62284813", 1))
    if a.approval_window:
        expired_flow(teller, supervisor, card("62284812", 8), a.approval_window)
    outcomes_without_card(teller)
    problems(teller, card("62284812", 7))
    supervisor_problems(supervisor)
    print("%d failure(s)" % len(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
