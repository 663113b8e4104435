#!/usr/bin/env bash
# Slow-loris clients against `hgfleet serve`: hundreds of connections that
# send their headers one byte a second. Meanwhile normal webhook POSTs, from
# the same address and from others, are answered promptly (the latencies are
# printed); one address cannot hold more than its share of connections
# (max_connections / 4 = 128); and every slow connection is closed once the
# request deadline passes (HGFLEET_HTTP_REQUEST_TIMEOUT seconds from opening,
# 3 here instead of the default 10, so the test waits less), although it was
# never idle. A bad HGFLEET_HTTP_REQUEST_TIMEOUT stops serve with exit 2,
# naming it. Also the other HTTP limits: 431 for headers over 32 KiB, and 413
# for a declared body over 256 KiB, answered instead of "100 Continue".
set -euo pipefail
# shellcheck source=tests/integration/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

tmp=$(hgf_tmpdir)
HGFLEET_DATABASE_URL=$(hgf_new_db slowloris)
token=$(openssl rand -hex 24)
export HGFLEET_DATABASE_URL HGFLEET_WEBHOOK_TOKEN=$token HGFLEET_LISTEN=127.0.0.1:0
export HGFLEET_WORKERS=2 HGFLEET_LOG_FORMAT=json AWS_EC2_METADATA_DISABLED=true
for bad in 0 -3 3601 3s soon ' '; do
  hgf_expect_exit 2 env HGFLEET_HTTP_REQUEST_TIMEOUT="$bad" "$HGFLEET_BIN" serve
  hgf_assert_contains "$HGF_ERR" "HGFLEET_HTTP_REQUEST_TIMEOUT" "a bad request deadline ($bad) is named"
done
deadline=3
export HGFLEET_HTTP_REQUEST_TIMEOUT=$deadline
hgf_expect_exit 0 "$HGFLEET_BIN" migrate
hgf_bg "$HGFLEET_BIN" serve >"$tmp/serve.out" 2>"$tmp/serve.log"
line=$(hgf_wait_for_line "$tmp/serve.out" 'serving on http://' 10)
base=${line##* }
hgf_wait_for_line "$tmp/serve.log" "\"serve\.listening\".*request_timeout=${deadline}s\"" 5 >/dev/null
for (( i = 0; i < 50; i++ )); do curl -fsS "$base/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
cat >"$tmp/loris.py" <<'PY'
import http.client, json, select, socket, sys, time

# A second loopback address must reach the server for the per-address part.
try:
    socket.socket().bind(("127.0.0.2", 0))
except OSError as e:
    sys.exit(f"FAIL: cannot bind 127.0.0.2: {e}")
host, port = sys.argv[1].split("//")[1].rsplit(":", 1)
port, token = int(port), sys.argv[2]
DEADLINE, PER_IP = float(sys.argv[3]), 128
EVENT = json.dumps({"version": "0", "id": "1", "detail-type": "ECR Image Action",
    "source": "aws.ecr", "account": "999999999999", "time": "2026-11-30T01:54:34Z",
    "region": "us-east-1", "resources": [], "detail": {"result": "SUCCESS",
    "repository-name": "team/app", "image-digest": "sha256:" + "a" * 64, "action-type": "PUSH"}})

class Loris:
    """Sends a request's headers one byte at a time, never finishing them;
    or, with body=True, whole headers at once and then the body so."""
    def __init__(self, src, body=False):
        self.sock = socket.create_connection((host, port), source_address=(src, 0))
        self.opened, self.closed, self.sent = time.monotonic(), None, 0
        self.text = b"POST /api/webhooks/ecr HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"z" * 1000
        if body:
            self.sock.sendall(b"POST /api/webhooks/ecr HTTP/1.1\r\nHost: x\r\nAuthorization: "
                              b"Bearer " + token.encode() + b"\r\nContent-Type: application/json"
                              b"\r\nContent-Length: 1000\r\n\r\n")
            self.text = b"{" + b" " * 998 + b"}"
        self.sock.setblocking(False)

    def tick(self):
        if self.closed is None:
            try:
                self.sock.send(self.text[self.sent:self.sent + 1])
                self.sent += 1
            except OSError:
                self.close()

    def close(self):
        self.closed = time.monotonic() - self.opened
        self.sock.close()

def poll(lorises, seconds):
    """Notices the server closing connections (EOF or reset) for a while."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        live = [l for l in lorises if l.closed is None]
        if not live:
            return
        ready, _, _ = select.select([l.sock for l in live], [], [], min(0.05, end - time.monotonic()))
        for l in live:
            if l.sock in ready:
                try:
                    data = l.sock.recv(4096)
                except OSError:
                    data = b""
                if not data:
                    l.close()

def tick_all(lorises, seconds):
    """One byte per second on every connection, watching for closes."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for l in lorises:
            l.tick()
        poll(lorises, min(1.0, end - time.monotonic()))

def post(src):
    t0 = time.monotonic()
    c = http.client.HTTPConnection(host, port, timeout=5, source_address=(src, 0))
    c.request("POST", "/api/webhooks/ecr", EVENT, {"Content-Type": "application/json",
                                                   "Authorization": "Bearer " + token})
    r = c.getresponse()
    body = r.read()
    c.close()
    assert r.status == 200 and b"unknown registry" in body, (r.status, body)
    return (time.monotonic() - t0) * 1000

def stats(ms):
    ms = sorted(ms)
    return "n=%d p50=%.1f ms max=%.1f ms" % (len(ms), ms[len(ms) // 2], ms[-1])

# Phase 1: 100 slow connections from 127.0.0.1 (and 10 slow bodies from
# 127.0.0.4); normal POSTs from 127.0.0.1 meanwhile. Phases 1 and 2 take
# about a quarter second a round, so that they end before the first
# connections' deadline.
first = [Loris("127.0.0.1") for _ in range(100)] + [Loris("127.0.0.4", True) for _ in range(10)]
lat_same = []
for _ in range(4):
    tick_all(first, 0.25)
    lat_same += [post("127.0.0.1") for _ in range(3)]
# Phase 2: 150 more from 127.0.0.1 (only 28 fit under the per-address
# limit) and 128 from 127.0.0.2; normal POSTs from a third address.
more = [Loris("127.0.0.1") for _ in range(150)] + [Loris("127.0.0.2") for _ in range(128)]
everyone = first + more
lat_other = []
for _ in range(4):
    tick_all(everyone, 0.25)
    lat_other += [post("127.0.0.3") for _ in range(3)]
open_after_phases = time.monotonic() - first[0].opened
refused = [l for l in more[:150] if l.closed is not None and l.closed < 2]
accepted = [l for l in everyone if l not in refused]
print("normal POSTs beside 110 slow clients (100 from its address): " + stats(lat_same))
print("normal POSTs beside %d slow clients, another address: %s" % (len(accepted), stats(lat_other)))
print("refused at once: %d of 150 (128 per address); phases 1 and 2 took %.1f s" % (len(refused),
      open_after_phases))
assert len(refused) == 150 - (PER_IP - 100), len(refused)
assert max(lat_same + lat_other) < 1000, "a normal POST waited a second or more"
# Phase 3: keep trickling; every accepted connection must be closed by the
# server once the deadline passes, and not before. (No need to trickle on
# once all are closed.)
end = first[0].opened + DEADLINE + 4
while time.monotonic() < end and any(l.closed is None for l in accepted):
    tick_all(everyone, min(1.0, end - time.monotonic()))
still = [l for l in accepted if l.closed is None]
closed_after = sorted(l.closed for l in accepted if l.closed is not None)
span = "%.1f to %.1f s" % (closed_after[0], closed_after[-1]) if closed_after else "never"
print("slow clients closed by the server after %s (deadline %.0f s); still open: %d"
      % (span, DEADLINE, len(still)))
assert not still, "%d slow connections are still open" % len(still)
assert closed_after[0] >= DEADLINE - 0.5, closed_after[0]
assert closed_after[-1] <= DEADLINE + 3, closed_after[-1]
assert all(l.sent >= DEADLINE - 1 for l in accepted), "the clients did not keep sending"
print("after them: " + stats([post("127.0.0.1") for _ in range(5)]))
PY
timeout 120 python3 "$tmp/loris.py" "$base" "$token" "$deadline"
grep -q "\"event\":\"http.slow_clients_closed\".*within $deadline s\"" "$tmp/serve.log" ||
  hgf_fail "no log line for the slow clients closed at the $deadline s deadline"
echo "ok: slow clients do not block the webhook, and are closed at the deadline"

# Headers over 32 KiB: MHD's 431. A declared body over 256 KiB from a client
# that waits for "100 Continue": 413 instead, so the body is never sent.
python3 - "$base" <<'PY'
import socket, sys, time
host, port = sys.argv[1].split("//")[1].rsplit(":", 1)
s = socket.create_connection((host, int(port)))
s.sendall(b"POST /api/webhooks/ecr HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 40000 + b"\r\n\r\n")
status = s.recv(64).split(b"\r\n")[0]
assert status.startswith(b"HTTP/1.1 431"), status
s = socket.create_connection((host, int(port)))
s.settimeout(5)
t0 = time.monotonic()
s.sendall(b"POST /api/webhooks/ecr HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
          b"Expect: 100-continue\r\nContent-Length: 100000000\r\n\r\n")
reply = s.recv(4096)
assert reply.startswith(b"HTTP/1.1 413") and b"262144" in reply, reply
print("413 for a 100 MB Content-Length after %.1f ms, nothing of the body sent" % ((time.monotonic() - t0) * 1000))
PY
curl -fsS "$base/healthz" >/dev/null || hgf_fail "serve is unhealthy afterwards"
echo "PASS: slow-loris clients and HTTP limits"
