"""Counts the answers in schemathesis VCR cassettes (scripts/schemathesis.sh).

Usage: schemathesis_answers.py TELLER-CASSETTE SUPERVISOR-CASSETTE

Fails unless the teller's run had PIN operations answered 200 or 202 by the
flow, and the supervisor's run had an approval answered 200: a contract run
that only ever met refusals would test nothing behind them.
"""
import re
import sys

# In a cassette each interaction ("- id: ...") has its request's uri and
# method, then its response's status code.
URI = re.compile(r"^    uri: '([^']*)'$", re.M)
METHOD = re.compile(r"^    method: '(\w+)'$", re.M)
CODE = re.compile(r"^  response:\n    status:\n      code: '(\d+)'$", re.M)


def answers(path):
    with open(path) as f:
        text = f.read()
    out = []
    for chunk in re.split(r"^- id: ", text, flags=re.M)[1:]:
        uri, method, code = URI.search(chunk), METHOD.search(chunk), CODE.search(chunk)
        if uri and method and code:
            out.append((method.group(1), re.sub(r"^https://[^/]+", "", uri.group(1)), int(code.group(1))))
    return out


def main(teller, supervisor):
    ok = True
    for path, need_approval in ((teller, False), (supervisor, True)):
        got = answers(path)
        flow = [a for a in got if a[0] == "POST" and a[1].startswith("/v1/pin/") and a[2] in (200, 202)]
        approvals = [a for a in got if a[0] == "POST" and a[1].endswith("/approval") and a[2] == 200]
        lookups = [a for a in got if a[0] == "GET" and a[1].startswith("/v1/operations/") and a[2] == 200]
        name = path.rsplit("/", 1)[-1]
        print(f"schemathesis: {name}: {len(got)} requests; {len(flow)} PIN operations answered 200/202, "
              f"{len(approvals)} approvals answered 200, {len(lookups)} lookups answered 200")
        if not flow:
            print(f"schemathesis: {name}: no request reached the PIN flow", file=sys.stderr)
            ok = False
        if need_approval and not approvals:
            print(f"schemathesis: {name}: no approval was answered 200", file=sys.stderr)
            ok = False
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
