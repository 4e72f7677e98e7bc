"""`python -m miandan backup` copies a store while its service keeps writing: the copy is a
consistent snapshot (integrity ok, the kept totals agree with its cards, every card in it is in
the live store), and the service never notices."""
from __future__ import annotations

import asyncio
import dataclasses
import sqlite3

import grpc
import pytest

from miandan.card.v1 import card_pb2, card_service_pb2 as pb, card_service_pb2_grpc
from miandan.__main__ import main as miandan_main
from services.backup import back_up
from services.card.wiring import build
from services.common.auth import internal_metadata
from services.common.clock import FakeClock
from services.common.config import Settings


def _cards(path) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {r[0] for r in conn.execute("SELECT card_id FROM cards")}


def _totals_agree(path) -> bool:
    with sqlite3.connect(path) as conn:
        kept = dict(conn.execute("SELECT state, face_value_fen FROM card_totals WHERE face_value_fen > 0"))
        summed = dict(conn.execute("SELECT state, SUM(face_value_fen) FROM cards GROUP BY state"))
    return kept == summed


async def test_a_backup_taken_under_writes_is_a_consistent_snapshot(tmp_path):
    settings = dataclasses.replace(
        Settings.from_env("card", {}), port=0, metrics_port=None, data_dir=tmp_path / "data", log_calls=False,
        max_concurrency=1000, max_wait_ms=5000,
    )
    server = await build(settings, clock=FakeClock(), sweep_interval_s=3600)
    port = await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    stub = card_service_pb2_grpc.CardServiceStub(channel)
    admin, md = internal_metadata(settings, admin=True), internal_metadata(settings)
    try:
        create = pb.CreateCampaignRequest(request_id="c", campaign_id="spring", name="春节", rules=card_pb2.CampaignRules(budget_fen=10**9))
        create.start_time.FromSeconds(0)
        create.end_time.FromSeconds(4_000_000_000)
        await stub.CreateCampaign(create, metadata=admin)
        writing = True

        async def sign_ups(worker: int) -> int:
            n = 0
            while writing:
                await stub.ClaimSignupCard(pb.ClaimSignupCardRequest(campaign_id="spring", user_id=f"w{worker}-{n}"), metadata=md)
                n += 1
            return n

        writers = [asyncio.ensure_future(sign_ups(w)) for w in range(8)]
        await asyncio.sleep(0.3)
        copies = []
        for i in range(3):  # several copies while the writers go on
            copies += await asyncio.to_thread(back_up, settings.data_dir, tmp_path / f"backup-{i}")
        writing = False
        written = sum(await asyncio.gather(*writers))
    finally:
        await channel.close()
        await server.stop(1.0)

    live = _cards(settings.db_path)
    assert len(live) == written > 0
    for copy in copies:
        assert copy.integrity == "ok"
        snapshot = _cards(copy.path)
        assert snapshot and snapshot <= live
        assert _totals_agree(copy.path)
    assert len(_cards(copies[-1].path)) > len(_cards(copies[0].path))  # they were taken as it grew


def test_the_operator_command_copies_every_store_and_refuses_to_overwrite(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    for name in ("card", "order"):
        with sqlite3.connect(data / f"{name}.db") as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("CREATE TABLE t (x)")
            conn.execute("INSERT INTO t VALUES (1)")
    assert miandan_main(["backup", str(tmp_path / "b"), "--data", str(data)]) == 0
    out = capsys.readouterr().out
    assert "card" in out and "order" in out and "backup complete" in out
    with sqlite3.connect(tmp_path / "b" / "order.db") as conn:
        assert conn.execute("SELECT x FROM t").fetchall() == [(1,)]
    assert miandan_main(["backup", str(tmp_path / "b"), "--data", str(data)]) == 2  # exists already
    assert miandan_main(["backup", str(tmp_path / "c"), "--data", str(tmp_path / "nothing")]) == 2
    assert "no stores" in capsys.readouterr().err
