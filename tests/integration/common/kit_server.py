"""A kit server (build_server, port 0) serving generic handlers under a test service name, wired
as services are: interceptor, policy, admission, metrics."""
import dataclasses

import grpc
from prometheus_client import CollectorRegistry

from services.common.admission import AdmissionController
from services.common.auth import AccessPolicy
from services.common.config import Settings
from services.common.metrics import RpcMetrics
from services.common.server import build_server


def kit_settings():
    return dataclasses.replace(Settings.from_env("card", {}), port=0, metrics_port=None, grace_seconds=1.0)


async def start_generic(name, handlers, *, roles=None, admission=None):
    """(server, port) of a started server; admission defaults to a fixed limit of 8, no wait."""
    settings = kit_settings()
    server = build_server(
        settings,
        service_names=[name],
        register=lambda s: s.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(name, handlers),)),
        policy=AccessPolicy(settings, roles or {}),
        admission=admission or AdmissionController(8, min_limit=8, max_limit=8, max_wait_ms=0),
        metrics=RpcMetrics(CollectorRegistry()),
    )
    return server, await server.start()
