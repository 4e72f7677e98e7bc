"""`python -m bench.catalog` (`make bench-catalog`): catalog figures with 300,000 stores.

Starts `python -m services.catalog` as a subprocess on a fresh data directory, loads the demo
catalog, imports 300,000 generated stores (timed), then measures one call at a time from one
client: SearchStores nearest-10, MatchIntent and Quote p50/p99, the server's peak RSS (VmHWM)
and the dev-set accuracy of MatchIntent end to end. `--smoke` is a tiny version for CI.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

from bench.loadgen import ROOT, free_port, percentile, wait_serving

DEV_SET = ROOT / "tests" / "data" / "nl_dev_set.jsonl"
SERVICE = "miandan.catalog.v1.CatalogService"


# --- dev-set accuracy, judged on what MatchIntent answers ------------------------------------


async def dev_set_accuracy(stub: Any, metadata: Any, path: str | Path, location: Any) -> tuple[int, int, list[str]]:
    """(correct, total, failures) of the labelled sentences sent through MatchIntent: the whole
    path (resolver, store choice, quote) is judged, with the resolver's own Judge."""
    import grpc

    from miandan.catalog.v1 import catalog_pb2, catalog_service_pb2
    from services.catalog.intent import Candidate, Reading, WantedLine, load_demo_specs
    from services.catalog.intent.evaluation import Judge, load_cases

    judge = Judge(*load_demo_specs())
    correct, failures = 0, []
    cases = load_cases(path)
    for case in cases:
        expect = case["expect"]
        try:
            r = await stub.MatchIntent(
                catalog_service_pb2.MatchIntentRequest(text=case["text"], location=location), metadata=metadata, timeout=10
            )
        except grpc.aio.AioRpcError as err:
            if expect.get("error") == err.code().name:
                correct += 1
            else:
                failures.append(f"{case['text']!r}: {err.code().name} {err.details()}")
            continue
        if "error" in expect:
            failures.append(f"{case['text']!r}: expected {expect['error']}, got an answer")
            continue
        if r.status == catalog_pb2.INTENT_STATUS_MATCHED:
            p = r.proposal
            lines = tuple(WantedLine(l.item_id, l.quantity, {o.group_id: o.option_id for o in l.options}) for l in p.lines)
            reading = Reading((Candidate(p.brand.brand_id, lines, p.confidence, p.explanation),))
        else:
            reading = Reading((), r.clarification)
        why = judge.check(expect, reading)
        if why:
            failures.append(f"{case['text']!r}: {why}")
        else:
            correct += 1
    return correct, len(cases), failures


# --- the server under test -------------------------------------------------------------------


class CatalogProcess:
    def __init__(self, data_dir: Path) -> None:
        self.port = free_port()
        env = dict(os.environ)
        env.update(
            PYTHONPATH=f"{ROOT / 'protos'}{os.pathsep}{ROOT}",
            MIANDAN_DATA=str(data_dir),
            MIANDAN_HOST="127.0.0.1",
            MIANDAN_CATALOG_PORT=str(self.port),
            MIANDAN_CATALOG_METRICS_PORT="off",
            MIANDAN_LOG_CALLS="0",
            MIANDAN_LOG_LEVEL="WARNING",
            # One client, one call at a time: admission limits are not what is measured here.
            MIANDAN_MAX_CONCURRENCY="256",
        )
        self.env = env
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "services.catalog"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def peak_rss_mb(self, field: str = "VmHWM") -> float:
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# --- measurements ----------------------------------------------------------------------------


async def _timed(calls: Sequence[Any]) -> list[float]:
    out = []
    for call in calls:
        t = time.perf_counter()
        await call()
        out.append((time.perf_counter() - t) * 1e3)
    return out


def _p(samples: list[float]) -> str:
    return f"p50 {percentile(samples, 0.50):.2f} ms  p99 {percentile(samples, 0.99):.2f} ms  (n={len(samples)})"


async def run(stores: int, rounds: int, keep: bool) -> dict[str, Any]:
    import grpc

    from miandan.catalog.v1 import catalog_pb2, catalog_service_pb2 as svc, catalog_service_pb2_grpc
    from miandan.common.v1 import common_pb2
    from services.catalog.demo import load_demo
    from services.catalog.generate import CITIES, generate_stores
    from services.common.auth import internal_metadata
    from services.common.config import Settings

    data_dir = Path(tempfile.mkdtemp(prefix="bench-catalog-"))
    server = CatalogProcess(data_dir)
    figures: dict[str, Any] = {}
    try:
        await wait_serving(server.addr, SERVICE, timeout=60)
        settings = Settings.from_env("catalog", server.env)
        admin, md = internal_metadata(settings, admin=True), internal_metadata(settings)
        async with grpc.aio.insecure_channel(server.addr, options=[("grpc.max_send_message_length", 64 << 20)]) as channel:
            stub = catalog_service_pb2_grpc.CatalogServiceStub(channel)
            await load_demo(stub, admin)
            print(f"demo catalog loaded (server RSS {server.peak_rss_mb('VmRSS'):.0f} MB)")

            # Messages are built before the clock starts: the figure is the server's import rate.
            generated = list(generate_stores(stores))
            batches = [svc.ImportStoresRequest(stores=generated[i : i + 5000]) for i in range(0, len(generated), 5000)]

            async def stream():
                for b in batches:
                    yield b

            t = time.perf_counter()
            result = await stub.ImportStores(stream(), metadata=admin, timeout=600)
            figures["import_s"] = time.perf_counter() - t
            print(f"ImportStores: {result.accepted:,} accepted, {result.rejected} rejected in {figures['import_s']:.1f} s"
                  f" (server RSS now {server.peak_rss_mb('VmRSS'):.0f} MB, peak {server.peak_rss_mb():.0f} MB)")
            t = time.perf_counter()
            again = await stub.ImportStores(stream(), metadata=admin, timeout=600)
            print(f"ImportStores re-run (idempotent upsert): {again.accepted:,} accepted in {time.perf_counter() - t:.1f} s"
                  f" (server RSS now {server.peak_rss_mb('VmRSS'):.0f} MB, peak {server.peak_rss_mb():.0f} MB)")

            rng = random.Random(7)
            big = [c for c in CITIES if c[3] >= 4]

            def near_city() -> common_pb2.GeoPoint:
                _, lat, lng, _ = rng.choice(big)
                return common_pb2.GeoPoint(latitude=lat + rng.uniform(-0.05, 0.05), longitude=lng + rng.uniform(-0.05, 0.05))

            search_calls = [
                (lambda req=svc.SearchStoresRequest(location=near_city(), page_size=10): stub.SearchStores(req, metadata=md))
                for _ in range(rounds)
            ]
            await _timed(search_calls[: rounds // 10])  # warm-up
            figures["search"] = await _timed(search_calls)
            print(f"SearchStores nearest-10: {_p(figures['search'])}")
            open_calls = [
                (lambda req=svc.SearchStoresRequest(location=near_city(), page_size=10, open_now=True, brand_id="heytea"): stub.SearchStores(req, metadata=md))
                for _ in range(rounds)
            ]
            figures["search_open_brand"] = await _timed(open_calls)
            print(f"SearchStores nearest-10 open now, one brand: {_p(figures['search_open_brand'])}")

            from services.catalog.intent.evaluation import load_cases

            texts = [c["text"] for c in load_cases(DEV_SET) if c["text"]]
            match_calls = [
                (lambda req=svc.MatchIntentRequest(text=rng.choice(texts), location=near_city(), max_alternatives=2): stub.MatchIntent(req, metadata=md))
                for _ in range(max(rounds // 2, 50))
            ]
            await _timed(match_calls[:20])
            figures["match"] = await _timed(match_calls)
            print(f"MatchIntent: {_p(figures['match'])}")

            menus: dict[str, list[Any]] = {}
            for brand in ("mixue", "luckin", "heytea", "kfc", "freshippo"):
                hits = await stub.SearchStores(svc.SearchStoresRequest(
                    location=common_pb2.GeoPoint(latitude=30.2741, longitude=120.1551), brand_id=brand, page_size=1), metadata=md)
                menu = await stub.GetMenu(svc.GetMenuRequest(store_id=hits.stores[0].store.store_id), metadata=md)
                menus[brand] = [e.item for e in menu.entries]
            by_brand: dict[str, list[str]] = {}
            for s in generated[: min(len(generated), 20_000)]:
                by_brand.setdefault(s.brand_id, []).append(s.store_id)

            def quote_request() -> Any:
                brand = rng.choice(list(by_brand))
                items = rng.sample(menus[brand], k=min(len(menus[brand]), rng.randint(1, 3)))
                lines = [catalog_pb2.LineSelection(item_id=i.item_id, quantity=rng.randint(1, 3)) for i in items]
                return svc.QuoteRequest(store_id=rng.choice(by_brand[brand]), lines=lines)

            quote_calls = [(lambda req=quote_request(): stub.Quote(req, metadata=md)) for _ in range(rounds)]
            await _timed(quote_calls[: rounds // 10])
            figures["quote"] = await _timed(quote_calls)
            print(f"Quote: {_p(figures['quote'])}")

            figures["rss_mb"] = server.peak_rss_mb()
            print(f"catalog peak RSS (VmHWM): {figures['rss_mb']:.0f} MB")
            correct, total, failures = await dev_set_accuracy(
                stub, md, DEV_SET, common_pb2.GeoPoint(latitude=30.2741, longitude=120.1551)
            )
            figures["accuracy"] = correct / total
            print(f"dev-set accuracy (MatchIntent end to end, 杭州): {correct}/{total} = {correct / total:.1%}")
            for f in failures:
                print(f"  MISS {f}")
    finally:
        server.stop()
        if server.proc.returncode not in (0, None):
            err = server.proc.stderr.read().decode(errors="replace") if server.proc.stderr else ""
            print(f"catalog exited with {server.proc.returncode}:\n{err[-4000:]}", file=sys.stderr)
        if not keep:
            import shutil

            shutil.rmtree(data_dir, ignore_errors=True)
    return figures


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="catalog figures with 300,000 stores")
    parser.add_argument("--smoke", action="store_true", help="tiny CI version: 5,000 stores, few calls")
    parser.add_argument("--stores", type=int, default=None, help="stores to import (default 300000)")
    parser.add_argument("--rounds", type=int, default=None, help="calls per measured RPC (default 2000)")
    parser.add_argument("--keep", action="store_true", help="keep the data directory")
    args = parser.parse_args(argv)
    stores = args.stores or (5_000 if args.smoke else 300_000)
    rounds = args.rounds or (100 if args.smoke else 2_000)
    figures = asyncio.run(run(stores, rounds, args.keep))
    print()
    targets = [
        ("ImportStores < 60 s", figures["import_s"] < 60),
        ("SearchStores p99 < 10 ms", percentile(figures["search"], 0.99) < 10),
        ("MatchIntent p99 < 25 ms", percentile(figures["match"], 0.99) < 25),
        ("peak RSS < 300 MB", figures["rss_mb"] < 300),
    ]
    for name, ok in targets:
        print(f"{'PASS' if ok else 'MISS'}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
