"""A newcomer's first minutes: the suite starts with one command, every server answers health
and reflection, grpcurl can list and describe without .proto files, and SIGTERM stops cleanly."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.suite_process import SERVICES, start_suite, suite_environment

PROTO_SERVICE = {
    "card": "miandan.card.v1.CardService",
    "catalog": "miandan.catalog.v1.CatalogService",
    "order": "miandan.order.v1.OrderService",
    "lottery": "miandan.lottery.v1.LotteryService",
    "gateway": "miandan.gateway.v1.GatewayService",
}
MODULES = {name: ("gateway" if name == "gateway" else f"services.{name}") for name in SERVICES}


def grpcurl(*args: str, timeout: float = 20) -> subprocess.CompletedProcess:
    binary = shutil.which("grpcurl") or str(Path(sys.executable).parent / "grpcurl")
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("name", SERVICES)
def test_grpcurl_lists_the_service_health_and_reflection_of_every_server(suite, name):
    listed = grpcurl("-plaintext", suite.addr(name), "list")
    assert listed.returncode == 0, listed.stderr
    services = listed.stdout.split()
    assert PROTO_SERVICE[name] in services
    assert "grpc.health.v1.Health" in services


@pytest.mark.parametrize("name", SERVICES)
def test_every_server_reports_serving_over_grpc_health(suite, name):
    for service in ("", PROTO_SERVICE[name]):
        reply = grpcurl("-plaintext", "-d", json.dumps({"service": service}), suite.addr(name), "grpc.health.v1.Health/Check")
        assert reply.returncode == 0, reply.stderr
        assert json.loads(reply.stdout)["status"] == "SERVING"


def test_grpcurl_describes_a_message_without_proto_files(suite):
    described = grpcurl("-plaintext", suite.addr("card"), "describe", "miandan.card.v1.ClaimSignupCardRequest")
    assert described.returncode == 0, described.stderr
    assert "request_id" in described.stdout and "campaign_id" in described.stdout


def test_grpcurl_describes_every_rpc_named_in_the_design(suite):
    rpcs = {
        "card": "CreateCampaign GetCampaign ClaimSignupCard GetInviteCode AcceptInvite ListCards GetWallet "
        "ReserveCard ConfirmReservation ReleaseReservation RefundCard GetInviteStats GetBudget",
        "catalog": "ImportStores UpsertBrand UpsertMenuItem ListBrands SearchStores GetMenu GetStore SetItemAvailability Quote MatchIntent",
        "order": "AddCartItem GetCart ClearCart PlaceOrder ConfirmPayment GetOrder ListOrders CancelOrder UpdateOrderStatus WatchOrder",
        "lottery": "EnterDraw GetDraw CommitDraw RunDraw VerifyDraw ListMyEntries",
        "gateway": "Join GetWallet OrderByText PlaceOrder GetOrder ListOrders CancelOrder WatchOrder SearchStores "
        "GetMenu EnterLottery GetDrawResults",
    }
    for name, names in rpcs.items():
        described = grpcurl("-plaintext", suite.addr(name), "describe", PROTO_SERVICE[name])
        assert described.returncode == 0, described.stderr
        for rpc in names.split():
            assert f"rpc {rpc} (" in described.stdout, f"{name} lacks {rpc}"


def test_a_call_with_a_missing_field_is_invalid_argument_naming_the_field(suite):
    reply = grpcurl(
        "-plaintext", "-H", f"x-miandan-internal-token: {suite.settings.internal_token}",
        "-d", json.dumps({"campaign_id": "spring-2026", "user_id": ""}),
        suite.addr("card"), "miandan.card.v1.CardService/ClaimSignupCard",
    )
    assert reply.returncode != 0
    assert "InvalidArgument" in reply.stderr and "user_id" in reply.stderr


def test_json_of_the_wrong_type_is_refused_and_the_server_keeps_serving(suite):
    reply = grpcurl(
        "-plaintext", "-H", f"x-miandan-internal-token: {suite.settings.internal_token}",
        "-d", '{"campaign_id": 12, "user_id": {"x": 1}, "unknown_field": true}',
        suite.addr("card"), "miandan.card.v1.CardService/ClaimSignupCard",
    )
    assert reply.returncode != 0
    health = grpcurl("-plaintext", suite.addr("card"), "grpc.health.v1.Health/Check")
    assert json.loads(health.stdout)["status"] == "SERVING"


def test_every_server_exports_prometheus_metrics(suite):
    for name in SERVICES:
        with urllib.request.urlopen(f"http://127.0.0.1:{suite.metrics_port(name)}/metrics", timeout=5) as reply:
            text = reply.read().decode()
        assert "miandan_rpc_calls_total" in text


def test_sigterm_stops_every_server_within_the_grace_period_with_exit_code_zero(tmp_path):
    env = suite_environment(tmp_path, MIANDAN_GRACE_SECONDS="3")
    processes = {
        name: subprocess.Popen([sys.executable, "-m", MODULES[name]], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for name in SERVICES
    }
    try:
        for name, process in processes.items():
            # The server prints its address once it is listening.
            line = process.stdout.readline()
            assert "listening" in line, (name, line, process.stderr.read() if process.poll() is not None else "")
        for process in processes.values():
            process.send_signal(signal.SIGTERM)
        started = time.monotonic()
        for name, process in processes.items():
            assert process.wait(timeout=10) == 0, name
        assert time.monotonic() - started < 3 + 2
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()


def test_the_suite_itself_stops_all_children_on_sigterm(tmp_path):
    running = start_suite(tmp_path)
    assert running.stop(timeout=30) == 0
    ports = [int(running.env[f"MIANDAN_{n.upper()}_PORT"]) for n in SERVICES]
    import socket

    for port in ports:  # nothing is left listening
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) != 0


def test_a_service_killed_under_make_run_is_restarted_and_the_gateway_reaches_it_again(tmp_path):
    import os
    import re
    import select

    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from miandan.gateway.v1 import gateway_service_pb2 as gw, gateway_service_pb2_grpc

    running = start_suite(tmp_path)
    try:
        (line,) = [line for line in running.output if line.startswith("order ")]
        pid = int(re.search(r"\(pid (\d+)\)", line).group(1))
        os.kill(pid, signal.SIGKILL)
        said = ""
        deadline = time.monotonic() + 20
        while "restarting" not in said and time.monotonic() < deadline:
            if select.select([running.process.stdout], [], [], 0.5)[0]:
                said = running.process.stdout.readline()
        assert said.startswith("order") and "exited with code -9; restarting" in said, said

        with grpc.insecure_channel(running.addr("order")) as channel:
            check = health_pb2_grpc.HealthStub(channel).Check
            request = health_pb2.HealthCheckRequest(service="miandan.order.v1.OrderService")
            while True:
                try:
                    if check(request, timeout=1).status == health_pb2.HealthCheckResponse.SERVING:
                        break
                except grpc.RpcError:
                    pass
                assert time.monotonic() < deadline, "the restarted order service never reported SERVING"
                time.sleep(0.1)
        # Through the gateway, whose channel to the order service saw it die: found again within
        # its short reconnect backoff, so the app's next tap works.
        with grpc.insecure_channel(running.addr("gateway")) as channel:
            stub = gateway_service_pb2_grpc.GatewayServiceStub(channel)
            md = (("authorization", f"Bearer {running.token('after-restart')}"),)
            until = time.monotonic() + 2.0
            while True:
                try:
                    assert not stub.ListOrders(gw.ListOrdersRequest(), metadata=md, timeout=2).orders
                    break
                except grpc.RpcError as err:
                    assert err.code() == grpc.StatusCode.UNAVAILABLE and time.monotonic() < until, err
                    time.sleep(0.05)
    finally:
        assert running.stop(timeout=30) == 0
