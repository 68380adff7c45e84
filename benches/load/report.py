#!/usr/bin/env python3
"""Statistics and the BENCHMARKS.md writer of `benches/load/run.sh`.

    report.py oha < oha.json
        one oha JSON summary as "rps p50_ms p99_ms ok_share requests"
    report.py write OUT QUICK KEY DURATION RATE IDLE VERSIONS MACHINE RESULTS
        BENCHMARKS.md from run.sh's results file (one `key= v/v/v v/v/v` line per key, a
        value per round); the sections other tools wrote below this script's own are kept.

The shell script only starts processes and collects numbers; everything computed from them is
here, with its tests in test_report.py.
"""
import datetime
import json
import math
import sys

PEERS = ["certgate", "nginx", "haproxy"]
OWN_SECTIONS = (
    "# Benchmarks",
    "## Certificate-bound tokens (certgate only)",
    "## Rate limits (certgate only)",
    "## API keys (certgate only)",
)


def oha_summary(doc):
    """"rps p50_ms p99_ms ok_share requests" from oha's JSON output."""
    s, p = doc["summary"], doc["latencyPercentiles"]
    codes = doc.get("statusCodeDistribution", {})
    ok = codes.get("200", 0)
    total = sum(codes.values()) or 1
    return "%.0f %.3f %.3f %.4f %d" % (
        s["requestsPerSec"],
        (p.get("p50") or 0) * 1e3,
        (p.get("p99") or 0) * 1e3,
        ok / total,
        total,
    )


def parse_results(lines):
    """{key: [[field, ...] per round]} from `key= a/b/c d/e/f` lines."""
    res = {}
    for line in lines:
        k, _, v = line.strip().partition("=")
        if k:
            res[k] = [x.split("/") for x in v.split()]
    return res


def median(vals):
    """The lower median (a value that was measured, never an average of two)."""
    vals = sorted(vals)
    return vals[(len(vals) - 1) // 2] if vals else math.nan


def pct(a, b):
    """b against a, as a % change."""
    return (b / a - 1) * 100 if a else math.nan


class Results:
    def __init__(self, res):
        self.res = res

    def best(self, k, i, fn):
        """fn (max for rates, min for costs) over the rounds of field i of key k."""
        vals = [float(r[i]) for r in self.res.get(k, []) if len(r) > i]
        return fn(vals) if vals else math.nan

    def change(self, base_k, k):
        """The median over rounds of each round's own k against base_k, as a % change."""
        pairs = zip(self.res.get(base_k, []), self.res.get(k, []))
        return median([pct(float(x[0]), float(y[0])) for x, y in pairs])

    def median_row(self, name, key):
        """Each peer's median round, and as ratio the median of each round's own ratio to nginx."""
        vals = {p: [float(r[0]) for r in self.res.get(p + key, [])] for p in PEERS}
        cells = []
        for p in PEERS:
            ratios = [v / b for v, b in zip(vals[p], vals["nginx"]) if b]
            cells.append(
                "%.1f µs" % (median(vals[p]) / 1000)
                + (" (%.2fx)" % median(ratios) if ratios else "")
            )
        return "| %s | %s |" % (name, " | ".join(cells))

    def idle_stat(self, p, which):
        r = self.res.get(p + ".e", [])
        if not r:
            return math.nan
        before, after, n, anon = (float(x) for x in r[0])
        if which == "base":
            return before / 1024
        if which == "anon":
            return anon / 1024
        return (after - before) / n if n else math.nan


def ratio(v, base):
    if base != base or v != v or base == 0:
        return ""
    return " (%.2fx)" % (v / base)


def row(name, unit, get, fmt="%.0f"):
    vals = {p: get(p) for p in PEERS}
    cells = [fmt % vals[p] + unit + ratio(vals[p], vals["nginx"]) for p in PEERS]
    return "| %s | %s |" % (name, " | ".join(cells))


def peer_rows(r, rate):
    """The table comparing certgate with nginx and HAProxy."""
    b = r.best
    rows = [
        row("(a) keep-alive HTTP/1.1, max req/s", "", lambda p: b(p + ".a", 0, max)),
        row("(a) p50 latency", " ms", lambda p: b(p + ".a", 1, min), fmt="%.3f"),
        row("(a) p99 latency", " ms", lambda p: b(p + ".a", 2, min), fmt="%.3f"),
        row(
            "(a) proxy CPU time per request (lower is better)",
            " µs",
            lambda p: b(p + ".cpu", 0, min) / 1000,
            fmt="%.1f",
        ),
        r.median_row("(a) proxy CPU time per request, median round", ".cpu"),
        r.median_row("(a) of which user space (median round, from utime)", ".a.usr"),
        r.median_row("(a) of which kernel (median round, from stime)", ".a.sys"),
        row("(b) p50 at %s req/s" % rate, " ms", lambda p: b(p + ".b", 1, min), fmt="%.3f"),
        row("(b) p99 at %s req/s" % rate, " ms", lambda p: b(p + ".b", 2, min), fmt="%.3f"),
        row("(c) HTTP/2, 8 conns x 16 streams, req/s", "", lambda p: b(p + ".c", 0, max)),
        row("(c) p99 latency", " ms", lambda p: b(p + ".c", 2, min), fmt="%.3f"),
        row(
            "(c) proxy CPU time per request (lower is better)",
            " µs",
            lambda p: b(p + ".ccpu", 0, min) / 1000,
            fmt="%.1f",
        ),
        r.median_row("(c) proxy CPU time per request, median round", ".ccpu"),
        r.median_row("(c) of which user space (median round, from utime)", ".c.usr"),
        r.median_row("(c) of which kernel (median round, from stime)", ".c.sys"),
        row(
            "(d) new connection per request (full mTLS handshake), req/s",
            "",
            lambda p: b(p + ".d", 0, max),
        ),
        row(
            "(e) RSS before the idle connections",
            " MiB",
            lambda p: r.idle_stat(p, "base"),
            fmt="%.1f",
        ),
        row(
            "(e) of which anonymous memory (heap, stacks; the rest is mapped code and data files)",
            " MiB",
            lambda p: r.idle_stat(p, "anon"),
            fmt="%.1f",
        ),
        row(
            "(e) RSS per idle keep-alive mTLS connection",
            " KiB",
            lambda p: r.idle_stat(p, "per"),
            fmt="%.1f",
        ),
    ]
    ok_rates = {
        p: min((b(p + s, 3, min) for s in ".a .b .c .d".split()), default=1) for p in PEERS
    }
    direct_p50 = b("direct.b", 1, min)
    added = {p: (b(p + ".b", 1, min) - direct_p50) * 1000 for p in PEERS}
    rows.append(
        "| (b) added p50 over direct at %s req/s | %s |"
        % (rate, " | ".join("%.0f µs" % added[p] for p in PEERS))
    )
    rows.append(
        "| share of 200 answers (lowest scenario) | %s |"
        % " | ".join("%.4f" % ok_rates[p] for p in PEERS)
    )
    return rows


def token_rows(r):
    """Access tokens: certgate only (the peers have no RFC 8705 support), same run."""
    b = r.best
    rows = []
    for label, s in [
        ("(g) keep-alive HTTP/1.1, 64 conns", "a"),
        ("(h) HTTP/2, 8 conns x 16 streams", "c"),
    ]:
        plain_cpu = "certgate.cpu" if s == "a" else "certgate.ccpu"
        hk, tk = "hdr.%scpu" % s, "token.%scpu" % s
        r0, rh, rt = b("certgate." + s, 0, max), b("hdr." + s, 0, max), b("token." + s, 0, max)
        c0, ch, ct = (b(k, 0, min) / 1000 for k in (plain_cpu, hk, tk))
        rows.append(
            "| %s | %.0f / %.1f µs | %.0f / %.1f µs (%+.1f%%) | %.0f / %.1f µs (%+.1f%% / %+.1f%%) | %.4f |"
            % (
                label, r0, c0, rh, ch, r.change(plain_cpu, hk), rt, ct,
                r.change(plain_cpu, tk), r.change(hk, tk), b("token." + s, 3, min),
            )
        )
    return rows


def certgate_only_row(r, label, prefix):
    """Scenario (a) against the same scenario on another certgate route (`prefix`.a/.acpu)."""
    b = r.best
    return "| %s | %.0f / %.1f µs | %.0f / %.1f µs (%+.1f%%) | %.4f |" % (
        label,
        b("certgate.a", 0, max), b("certgate.cpu", 0, min) / 1000,
        b(prefix + ".a", 0, max), b(prefix + ".acpu", 0, min) / 1000,
        r.change("certgate.cpu", prefix + ".acpu"), b(prefix + ".a", 3, min),
    )


def rate_limit_row(r):
    return certgate_only_row(
        r, "(i) keep-alive HTTP/1.1, 64 conns, per-identity rate limit that never triggers", "rl")


def api_key_row(r):
    return certgate_only_row(
        r, "(j) keep-alive HTTP/1.1, 64 conns, a legacy API key instead of a client certificate",
        "key")


def render(args, res, now=None):
    """The BENCHMARKS.md sections this script owns."""
    quick, key, duration, rate, idle, versions, machine = (
        args["quick"], args["key"], args["duration"], args["rate"], args["idle"],
        args["versions"], args["machine"],
    )
    r = Results(res)
    now = now or datetime.datetime.now(datetime.timezone.utc)
    direct_rps, direct_p50 = r.best("direct.a", 0, max), r.best("direct.b", 1, min)
    mode = "smoke (--quick): numbers are indicative only" if quick == "1" else "full"
    command = "bash benches/load/run.sh" + (" --quick" if quick == "1" else "") + (
        " --rsa" if key == "rsa" else ""
    )
    return f"""# Benchmarks

Generated by `{command}` on {now.strftime('%Y-%m-%d %H:%M UTC')} ({mode}).

- Machine: {machine}
- Versions: {versions}
- Setup: {('ECDSA P-256' if key == 'ec' else 'RSA-2048')} certificates from one CA with a CRL; every proxy requires
  and verifies the client certificate (CA + CRL), TLS 1.2/1.3, keep-alive to the upstream, adds an
  identity header, no access log. Each proxy runs one worker pinned to one CPU; oha and the upstream
  (`certgate-bench upstream`, a minimal hyper server) share the other CPU, so at high rates the
  load generator can be the limit. Runs: {duration} per scenario, scenarios alternating between
  proxies; best of the rounds. Idle connections: {idle}.
- (f) direct to the upstream, plain HTTP, same load generator: {direct_rps:.0f} req/s (the ceiling
  of this load generator on its CPU), p50 {direct_p50:.3f} ms at {rate} req/s.
- CPU time per request: the proxy's own CPU time during (a) (all its threads, kernel time
  included, from /proc/PID/task/*/schedstat) divided by the requests it served. It measures cost
  per request whether the proxy or the load generator was the limit, and is steadier than req/s
  on a shared machine. The user-space and kernel rows split the same CPU by the kernel's own
  accounting (utime and stime in /proc/PID/task/*/stat, in clock ticks, so their sum need not
  match the schedstat figure exactly). "Median round" rows give each proxy's median over the
  rounds, and as ratio the median of the rounds' own ratios: a round runs the three proxies one
  after the other within the same minutes, so its ratio does not mix minutes.

| scenario | certgate | nginx | haproxy |
|---|---|---|---|
""" + "\n".join(peer_rows(r, rate)) + "\n\nRatios in parentheses are to nginx in the same run.\n" + """
## Certificate-bound tokens (certgate only)

The same scenarios on a route that requires an ES256 access token bound to the client
certificate (RFC 8705), presented on every request, against the route without a token in the
same run. The token is verified once per connection and taken from the connection's cache after.

Each cell: max req/s / CPU time per request (best of the rounds). "Header only" sends the same
`Authorization` header to the route without a token requirement (it is forwarded, not checked):
the cost of carrying the token's bytes. The last CPU figures compare the token route with no
header, then with the header-only route (certgate's own token work). Percentages are the median
of each round's own ratio (the machine drifts between rounds, so best-of values from different
rounds would compare different minutes).

| scenario | no token | header only | token checked | share of 200 |
|---|---|---|---|---|
""" + "\n".join(token_rows(r)) + "\n" + """
## Rate limits (certgate only)

The same scenario as (a) on a route with a per-identity rate limit set so high it never
refuses: what checking it costs. Cells: max req/s / CPU time per request (best of the rounds;
the percentage is the median of each round's own ratio).

| scenario | no limit | rate limit checked | share of 200 |
|---|---|---|---|
""" + rate_limit_row(r) + "\n" + """
## API keys (certgate only)

The same scenario as (a), but the clients present no certificate and send an issued key
(`x-api-key`) to a route with `api_keys = true`: the CRC32 check, the id lookup, the
HMAC-SHA-256 compared in constant time, the deprecation headers. Cells as above.

| scenario | client certificate | API key checked | share of 200 |
|---|---|---|---|
""" + api_key_row(r) + "\n"


def keep_other_sections(text, previous):
    """`text`, then the sections of `previous` (the old file) that other tools wrote."""
    lines = previous.split("\n") if previous else []
    tail = next(
        (i for i, l in enumerate(lines) if l.startswith("#") and l.strip() not in OWN_SECTIONS),
        None,
    )
    if tail is not None:
        text += "\n" + "\n".join(lines[tail:])
    return text


def main(argv):
    if argv[1:2] == ["oha"]:
        print(oha_summary(json.load(sys.stdin)))
        return 0
    if argv[1:2] == ["write"] and len(argv) == 11:
        out, quick, key, duration, rate, idle, versions, machine, path = argv[2:11]
        with open(path) as f:
            res = parse_results(f)
        args = dict(quick=quick, key=key, duration=duration, rate=rate, idle=idle,
                    versions=versions, machine=machine)
        try:
            with open(out) as f:
                previous = f.read()
        except FileNotFoundError:
            previous = ""
        text = keep_other_sections(render(args, res), previous)
        with open(out, "w") as f:
            f.write(text)
        print(text)
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
