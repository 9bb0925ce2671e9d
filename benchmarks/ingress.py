"""Ingress throughput vs a bare Starlette app, same uvicorn settings, real Redis, load from another process.

    .venv/bin/python -m benchmarks.ingress [--redis-url redis://127.0.0.1:6379/14] [--duration 10]
                                           [--connections 32] [--loader auto|wrk|httpx]

Starts, one after the other, two uvicorn processes (one worker each, same flags): the real ingress
(``create_app`` on real Redis: Ed25519 verification, replay window, AES-GCM seal, arq enqueue) and a
bare Starlette app whose only route answers 200 without doing anything. Each is driven by a separate
load process (``wrk`` with a Lua script cycling through pre-signed GHL payloads when ``wrk`` is
installed, else an asyncio httpx client process) after a short warm-up. Prints requests/s, p50 and
p99 latency for each, and the ratio ingress/bare (target >= 0.5).

Uses its own key prefix (``bench-ingress-<random>``) on a spare DB index (default 14) and deletes
every key it created (the queue, the arq job keys) at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

PAYLOADS = 200

_WRK_LUA = r"""
local reqs = {}
local i = 0
init = function(args)
  local f = assert(io.open(args[1], "r"))
  for line in f:lines() do
    local sig, body = line:match("^([^\t]+)\t(.*)$")
    local headers = {}
    headers["Content-Type"] = "application/json"
    if sig ~= "-" then headers["X-GHL-Signature"] = sig end
    reqs[#reqs + 1] = wrk.format("POST", "/webhooks/ghl", headers, body)
  end
  f:close()
end
request = function()
  i = (i % #reqs) + 1
  return reqs[i]
end
"""


# ------------------------------------------------------------------------------------ the two apps (factories)


def ingress_app() -> Any:
    """The real ingress on ``REDIS_URL`` (uvicorn ``--factory``)."""
    from ghl_intake.embedded import build_app, make_pool
    from ghl_intake.settings import Settings

    settings = Settings.from_env()
    return build_app(settings, make_pool(settings))


def bare_app() -> Any:
    """A Starlette app that answers 200 to the same requests without doing anything."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def ok(request: Request) -> JSONResponse:
        return JSONResponse({"event_id": "-"})

    return Starlette(routes=[Route("/webhooks/ghl", ok, methods=["POST"])])


# ------------------------------------------------------------------------------------ helpers


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, proc: subprocess.Popen[bytes], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("server did not start")


def _uvicorn_cmd(factory: str, port: int) -> list[str]:
    return [sys.executable, "-m", "uvicorn", f"benchmarks.ingress:{factory}", "--factory", "--host", "127.0.0.1",
            "--port", str(port), "--workers", "1", "--no-access-log", "--log-level", "warning", "--lifespan", "off"]


def _payloads(n: int) -> list[tuple[str, bytes]]:
    from ghl_intake.demo_data import fixture_webhooks

    hooks = [h for h in fixture_webhooks() if h.shape == "marketplace"]
    out = []
    for i in range(n):
        h = hooks[i % len(hooks)]
        obj = json.loads(h.body)
        obj["webhookId"] = str(uuid.uuid4())
        out.append((h.name, json.dumps(obj, separators=(",", ":")).encode()))
    return out


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc), for CPU cost per request."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


def _parse_wrk(text: str) -> dict[str, float]:
    def dur(v: str) -> float:
        m = re.match(r"([\d.]+)(us|ms|s)", v)
        assert m, v
        return float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1000.0}[m.group(2)]

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))  # type: ignore[union-attr]
    p50 = dur(re.search(r"\s50%\s+(\S+)", text).group(1))  # type: ignore[union-attr]
    p99 = dur(re.search(r"\s99%\s+(\S+)", text).group(1))  # type: ignore[union-attr]
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    total = int(re.search(r"(\d+) requests in", text).group(1))  # type: ignore[union-attr]
    return {"rps": rps, "p50_ms": p50, "p99_ms": p99, "non2xx": int(m.group(1)) if m else 0, "requests": total}


async def _httpx_load(url: str, lines: list[tuple[str, bytes]], duration: float, conns: int) -> dict[str, float]:
    import httpx

    lat: list[float] = []
    non2xx = 0
    stop = time.perf_counter() + duration
    limits = httpx.Limits(max_connections=conns, max_keepalive_connections=conns)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:
        async def worker(k: int) -> None:
            nonlocal non2xx
            i = k
            while time.perf_counter() < stop:
                sig, body = lines[i % len(lines)]
                i += conns
                t0 = time.perf_counter()
                r = await client.post("/webhooks/ghl", content=body,
                                      headers={"content-type": "application/json", "x-ghl-signature": sig})
                lat.append(time.perf_counter() - t0)
                non2xx += r.status_code >= 300

        t0 = time.perf_counter()
        await asyncio.gather(*(worker(k) for k in range(conns)))
        elapsed = time.perf_counter() - t0
    lat.sort()
    return {"rps": len(lat) / elapsed, "p50_ms": statistics.median(lat) * 1000,
            "p99_ms": lat[int(len(lat) * 0.99) - 1] * 1000, "non2xx": non2xx, "requests": len(lat)}


def _load_main(argv: list[str]) -> None:
    """``python -m benchmarks.ingress --load URL FILE DURATION CONNS``: the httpx load process."""
    url, path, duration, conns = argv[0], argv[1], float(argv[2]), int(argv[3])
    lines = []
    for line in Path(path).read_text().splitlines():
        sig, body = line.split("\t", 1)
        lines.append((sig, body.encode()))
    print(json.dumps(asyncio.run(_httpx_load(url, lines, duration, conns))))


def _drive(loader: str, url: str, payload_file: Path, lua: Path, duration: float, conns: int) -> tuple[dict[str, float], str]:
    if loader == "wrk":
        cmd = ["wrk", "-t1", f"-c{conns}", f"-d{int(duration)}s", "--latency", "-s", str(lua), url, "--",
               str(payload_file)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        return _parse_wrk(out), shlex.join(cmd)
    cmd = [sys.executable, "-m", "benchmarks.ingress", "--load", url, str(payload_file), str(duration), str(conns)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1]), shlex.join(cmd)


async def _cleanup(redis_url: str, prefix: str) -> int:
    from redis.asyncio import Redis

    r = Redis.from_url(redis_url)
    n = 0
    try:
        ids = await r.zrange(f"{prefix}:q:dedup", 0, -1)
        for i in range(0, len(ids), 1000):
            n += await r.delete(*[b"arq:job:" + j for j in ids[i:i + 1000]])
        keys = [k async for k in r.scan_iter(match=f"{prefix}:*", count=1000)]
        for i in range(0, len(keys), 1000):
            n += await r.delete(*keys[i:i + 1000])
    finally:
        await r.aclose()
    return n


async def _queued(redis_url: str, prefix: str) -> int:
    from redis.asyncio import Redis

    r = Redis.from_url(redis_url)
    try:
        return int(await r.zcard(f"{prefix}:q:dedup"))
    finally:
        await r.aclose()


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--load":
        _load_main(sys.argv[2:])
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/14", help="a spare DB index")
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--loader", choices=("auto", "wrk", "httpx"), default="auto")
    p.add_argument("--rounds", type=int, default=3, help="alternating bare/ingress runs; the best of each counts")
    args = p.parse_args()
    loader = args.loader if args.loader != "auto" else ("wrk" if shutil.which("wrk") else "httpx")

    from ghl_intake.keys import generate_env
    from ghl_intake.signing import GhlSigner

    signer = GhlSigner()
    prefix = f"bench-ingress-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, **generate_env("bench"), "REDIS_URL": args.redis_url, "INTAKE_KEY_PREFIX": prefix,
           "GHL_ED25519_PUBLIC_KEY": signer.public_pem, "PYTHONPATH": str(Path(__file__).resolve().parent.parent),
           # no workers drain the queue here: lift the backpressure depth limit (the check itself still runs)
           "INTAKE_BP_MAX_QUEUE": "100000000"}
    tmp = Path(tempfile.mkdtemp(prefix="bench-ingress-"))
    payload_file, lua = tmp / "payloads.tsv", tmp / "ghl.lua"
    payloads = _payloads(PAYLOADS)
    payload_file.write_text("".join(f"{signer.sign(b)}\t{b.decode()}\n" for _, b in payloads))
    lua.write_text(_WRK_LUA)
    body_sizes = [len(b) for _, b in payloads]
    print(f"loader: {loader}; {args.connections} connections, {args.duration:.0f} s per run after "
          f"{args.warmup:.0f} s warm-up; {PAYLOADS} signed GHL payloads ({min(body_sizes)}-{max(body_sizes)} bytes); "
          f"Redis {args.redis_url}; CPUs: {os.cpu_count()}")
    rounds: dict[str, list[dict[str, float]]] = {"bare": [], "ingress": []}
    commands: dict[str, str] = {}
    procs: dict[str, subprocess.Popen[bytes]] = {}
    urls: dict[str, str] = {}
    try:
        for name, factory in (("bare", "bare_app"), ("ingress", "ingress_app")):
            port = _free_port()
            server_cmd = _uvicorn_cmd(factory, port)
            procs[name] = subprocess.Popen(server_cmd, env=env, cwd=str(Path(__file__).resolve().parent.parent))
            _wait_port(port, procs[name])
            urls[name] = f"http://127.0.0.1:{port}/webhooks/ghl" if loader == "wrk" else f"http://127.0.0.1:{port}"
            commands[name] = f"server: {shlex.join(server_cmd)}"
            if args.warmup > 0:
                _drive(loader, urls[name], payload_file, lua, args.warmup, args.connections)
        # alternate the two apps, so that a noisy neighbour on the machine hits both alike
        for _ in range(args.rounds):
            for name in ("bare", "ingress"):
                before = asyncio.run(_queued(args.redis_url, prefix)) if name == "ingress" else 0
                cpu0 = _cpu_s(procs[name].pid)
                res, load_cmd = _drive(loader, urls[name], payload_file, lua, args.duration, args.connections)
                res["cpu_us"] = (_cpu_s(procs[name].pid) - cpu0) / max(1, res["requests"]) * 1e6
                if name == "ingress":
                    res["enqueued"] = asyncio.run(_queued(args.redis_url, prefix)) - before
                rounds[name].append(res)
                commands[name] = commands[name].split("\n")[0] + f"\n  load:   {load_cmd}"
    finally:
        for proc in procs.values():
            proc.terminate()
            proc.wait(10)
        removed = asyncio.run(_cleanup(args.redis_url, prefix))
        shutil.rmtree(tmp, ignore_errors=True)
    results = {name: max(rs, key=lambda r: r["rps"]) for name, rs in rounds.items()}
    for name in ("bare", "ingress"):
        print(f"{name} rounds req/s: " + ", ".join(f"{r['rps']:.0f}" for r in rounds[name])
              + "; server CPU us/req: " + ", ".join(f"{r['cpu_us']:.0f}" for r in rounds[name]))
    print("best round of each:")
    print(f"{'app':<8} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'requests':>9} {'non-2xx':>8} {'server CPU us/req':>18}")
    for name in ("bare", "ingress"):
        r = results[name]
        print(f"{name:<8} {r['rps']:>10.0f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} {int(r['requests']):>9} "
              f"{int(r['non2xx']):>8} {r['cpu_us']:>18.0f}")
    ratio = results["ingress"]["rps"] / results["bare"]["rps"]
    print(f"ratio ingress/bare: {ratio:.2f} (target >= 0.50: {'met' if ratio >= 0.5 else 'NOT met'})")
    cpu_ratio = min(r["cpu_us"] for r in rounds["bare"]) / min(r["cpu_us"] for r in rounds["ingress"])
    print(f"CPU-cost ratio bare/ingress (server CPU per request, least-disturbed rounds; what the req/s "
          f"ratio would be on a dedicated core): {cpu_ratio:.2f}")
    print(f"ingress enqueued {int(results['ingress']['enqueued'])} envelopes in its best run; "
          f"cleanup removed {removed} keys")
    for name in ("bare", "ingress"):
        print(f"{name}:\n  {commands[name]}")
    return 0 if all(r["non2xx"] == 0 for r in rounds["ingress"]) else 1


if __name__ == "__main__":
    sys.exit(main())
