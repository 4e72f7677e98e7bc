"""Process settings from the environment (12-factor): one frozen Settings per process."""
from __future__ import annotations

import ipaddress
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from .decimal_text import ascii_int

__all__ = [
    "Settings", "DEFAULT_PORTS", "SERVICES", "env_number", "event_loop_from_env", "check_campaign_id",
    "check_start_files", "prepare_data_dir", "MAX_PENDING_CALLS", "DEV_SECRETS", "refuse_published_secrets",
]

DEFAULT_PORTS: dict[str, int] = {"gateway": 50050, "card": 50051, "catalog": 50052, "order": 50053, "lottery": 50054}
SERVICES = tuple(DEFAULT_PORTS)
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_JWT_ALGORITHMS = ("HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "EdDSA")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")
# MIANDAN_EVENT_LOOP: "" and "uvloop" = uvloop where installed, "asyncio" = the standard loop.
EVENT_LOOPS = ("uvloop", "asyncio")
# The campaign id rule of the card service (services/card/model.py), checked here too so a bad
# MIANDAN_CAMPAIGN_ID stops a service at start rather than failing every order or draw later.
_CAMPAIGN_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
# The campaign when MIANDAN_CAMPAIGN_ID is unset or blank (as gateway.wiring and services.suite say).
DEFAULT_CAMPAIGN_ID = "spring-2026"
# What gRPC sends as an ASCII metadata value: printable ASCII, space included. Any other
# character (the newline of a secret written with `echo`, a tab, a non-ASCII letter) makes gRPC's
# core refuse every call that carries the token, before it is sent.
_METADATA_VALUE = re.compile(r"[\x20-\x7e]*")
# gRPC takes max_pending_calls, and twice it as the hard limit, as a C int.
MAX_PENDING_CALLS = (2**31 - 1) // 2


@dataclass(frozen=True)
class Settings:
    service: str
    # As it goes before ":port" in an address: an IPv6 literal in brackets ([::1]), whether or not
    # MIANDAN_HOST had them, so every f"{host}:{port}" (the bind, the suite's upstream addresses,
    # the log lines) is one gRPC reads as host and port.
    host: str = "127.0.0.1"
    port: int = 0
    # None = no /metrics endpoint.
    metrics_port: int | None = None
    data_dir: Path = Path("data")
    grace_seconds: float = 5.0
    internal_token: str = "dev-internal-token"
    admin_token: str = "dev-admin-token"
    merchant_token: str = "dev-merchant-token"
    # Signs merchant grants (services.common.merchant_grant): one merchant, its own stores only.
    merchant_signing_key: str = "dev-merchant-signing-key-change-me-in-production"
    # Revoked merchant grants, one merchant id a line (services.common.merchant_grant): re-read
    # while the services run, so a leaked grant stops working without a restart.
    merchant_revoked_file: Path | None = None
    jwt_secret: str = "dev-jwt-secret-change-me-in-production-0000"
    jwt_issuer: str = "miandan"
    # MIANDAN_CAMPAIGN_ID as checked at start (stripped; the default when blank), so the gateway
    # serves the id that was checked and not the raw variable. None: a Settings made in code,
    # whose reader falls back to the environment.
    campaign_id: str | None = None
    jwt_algorithm: str = "HS256"
    jwt_public_key_file: Path | None = None
    jwt_private_key_file: Path | None = None
    # The longest a user token may live (exp - iat). A token is a bearer credential: one minted
    # by mistake or by a leaked signing pipeline for years must not open an account for years.
    jwt_max_lifetime_s: float = 7 * 86_400
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_ca: Path | None = None
    gateway_addr: str = "127.0.0.1:50050"
    card_addr: str = "127.0.0.1:50051"
    catalog_addr: str = "127.0.0.1:50052"
    order_addr: str = "127.0.0.1:50053"
    lottery_addr: str = "127.0.0.1:50054"
    log_level: str = "INFO"
    max_concurrency: int = 64
    # The adaptive limit's floor (capped at max_concurrency). Why 32: shedding below it buys
    # nothing. By Little's law a full floor queues 32 / throughput seconds of work; even at the
    # ~200 orders/s the whole order path managed on the shared 2-core box (bench-out/overload.txt)
    # that is ~160 ms, far inside the seconds-long client deadlines, and a single card or catalog
    # RPC is several times cheaper than a whole order. With a floor of 4, CPU queueing from 80
    # concurrent orders through the gateway read as overload and card and catalog shed CRITICAL
    # calls they would have served in time. Above the floor the latency gradient rules.
    min_concurrency: int = 32
    # MIANDAN_<SERVICE>_MAX_WAIT_MS may set it for one service. The gateway keeps 50 ms: at 20 ms
    # the overload benchmark's p99 of refusals fell from 101 to 79 ms on average (still above the
    # 50 ms target) but goodput at 3x and 5x capacity from 1,037 to 947 orders/s (six interleaved
    # 10 s steps each): a call refused sooner is an order not served.
    max_wait_ms: float = 50.0
    # Average latency above which the admission limit shrinks whatever its history says (0 = no
    # target); see services/common/admission.py.
    target_latency_ms: float = 250.0
    # Event-loop lag above which every new call is refused at once (0 = off, the default: on a
    # box shared with other work, scheduling delays read as lag); see admission.py. The
    # benchmarks ran the suite with 50 until max_pending_calls bounded the calls waiting for a
    # busy loop more directly.
    max_loop_lag_ms: float = 0.0
    # Calls gRPC may hold for this server before its event loop asks for them (0 = gRPC's own
    # limits, 1000 and 3000). grpc.aio asks for one call per method per loop turn (`make
    # bench-intake` measures it), so a loop behind on CPU takes calls in slower than a crowd
    # sends them, and the rest wait in gRPC's C core, unseen by admission.py, until their
    # deadlines pass (a precise open-loop client at 3x capacity got 2-second queues and 19%
    # goodput). Beyond N held calls gRPC refuses new ones at random (always beyond 2N) in C,
    # even while the loop is busy: the client sees CANCELLED, the only status gRPC's core sends
    # there. While such refusals are a minority they take milliseconds (p99 < 10 ms at 3-5x with
    # the load generator on its own CPU); when they are most of the answers they took 66-272 ms
    # p99 too, so this bounds the queue, it does not replace admission. The benchmarks run the
    # gateway with 32 (MIANDAN_GATEWAY_MAX_PENDING_CALLS) and the services behind it without: their
    # callers' admission already bounds the calls sent to them, and a call an internal core refused
    # reached users as UPSTREAM_UNAVAILABLE (29-76 in 15 s of make bench at 3 x 24 users in
    # flight; none with the gateway alone bounded). The default keeps gRPC's limits because
    # in-process tests fire hundreds of calls in one tick.
    max_pending_calls: int = 0
    # Gateway: WatchOrder streams one user, and the whole process, may hold open at once
    # (gateway/watches.py says why streams need their own bound).
    watches_per_user: int = 5
    max_watches: int = 10_000
    # Calls per second one end user may keep up at the gateway, and how many at once (0 = off).
    user_rate: float = 5.0
    user_burst: int = 20
    user_rates_tracked: int = 100_000
    # Order service and catalog: calls per second one merchant keeps up with its grants, and how
    # many at once (0 = off; services/common/auth.py, AccessPolicy.pace). A merchant is an outside
    # party: without it one merchant's systems could take as much of a process's admission
    # capacity as they liked. 20/s and bursts of 100 are far above what a store's staff taps or a
    # chain's systems poll (a merchant's stores share them; WatchStoreOrders streams the changes).
    merchant_rate: float = 20.0
    merchant_burst: int = 100
    merchant_rates_tracked: int = 100_000
    # Gateway: the part of its admission limit, in percent, that calls to each upstream hold as
    # their own (gateway/clients.py, Bulkhead): a frozen order service then holds half the slots,
    # not every one, and Join / GetWallet / EnterLottery keep theirs. Beyond it, places are lent
    # only until a tenth of the upstream's calls in flight (at least one) have waited
    # upstream_stall_ms (the p99 objective of a call); then the lent calls end.
    upstream_share_percent: int = 50
    upstream_stall_ms: float = 500.0
    log_calls: bool = True

    @property
    def db_path(self) -> Path:
        return self.data_dir / f"{self.service}.db"

    @property
    def tls_enabled(self) -> bool:
        return self.tls_cert is not None and self.tls_key is not None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @classmethod
    def from_env(cls, service: str, env: Mapping[str, str] | None = None) -> "Settings":
        """Read MIANDAN_* variables; env=None means os.environ (pass {} in tests for pure defaults).
        Raises ValueError naming the offending variable."""
        if service not in DEFAULT_PORTS:
            raise ValueError(f"unknown service {service!r}; expected one of {', '.join(SERVICES)}")
        e = os.environ if env is None else env
        svc = service.upper()

        port_var = f"MIANDAN_{svc}_PORT"
        port = _port(e, port_var, DEFAULT_PORTS[service], allow_zero=True)
        metrics_var = f"MIANDAN_{svc}_METRICS_PORT"
        raw_metrics = e.get(metrics_var)
        if raw_metrics is None or raw_metrics.strip() == "":
            # Port 0 (ephemeral, tests) has no meaningful "+1000" neighbour.
            metrics_port = port + 1000 if port else None
        elif raw_metrics.strip().lower() == "off":
            metrics_port = None
        else:
            metrics_port = _port(e, metrics_var, 0, allow_zero=True) or None
        if metrics_port is not None and metrics_port == port:
            # Both would be bound: the second bind fails, after the store is open.
            raise ValueError(f"{metrics_var}={metrics_port} is the same port as {port_var}; give /metrics its own port (or 'off')")

        tls_cert, tls_key = _path(e, "MIANDAN_TLS_CERT"), _path(e, "MIANDAN_TLS_KEY")
        if (tls_cert is None) != (tls_key is None):
            raise ValueError("MIANDAN_TLS_CERT and MIANDAN_TLS_KEY must be set together")

        log_level = e.get("MIANDAN_LOG_LEVEL", "INFO").strip().upper()
        if log_level not in _LOG_LEVELS:
            raise ValueError(f"MIANDAN_LOG_LEVEL={log_level!r} is not one of {', '.join(_LOG_LEVELS)}")
        algorithm = e.get("MIANDAN_JWT_ALGORITHM", "HS256").strip()
        if algorithm not in _JWT_ALGORITHMS:
            raise ValueError(f"MIANDAN_JWT_ALGORITHM={algorithm!r} is not one of {', '.join(_JWT_ALGORITHMS)}")

        host = e.get("MIANDAN_HOST", "127.0.0.1").strip()
        if not host:
            raise ValueError("MIANDAN_HOST must not be empty")
        listen_host = address_host(host)
        if listen_host is None:
            raise ValueError(
                f"MIANDAN_HOST={host!r} is not a host name or an IP address (the port is {port_var}; "
                "an IPv6 address goes with or without brackets: ::1 or [::1])"
            )
        event_loop_from_env(e)
        campaign = (e.get("MIANDAN_CAMPAIGN_ID") or "").strip()
        if campaign:
            check_campaign_id(campaign, "MIANDAN_CAMPAIGN_ID")

        refuse_published_secrets(e, service, host)

        return cls(
            service=service,
            host=listen_host,
            port=port,
            metrics_port=metrics_port,
            data_dir=Path(_unless_blank(e.get("MIANDAN_DATA")) or "data"),
            grace_seconds=_number(e, "MIANDAN_GRACE_SECONDS", 5.0, float, minimum=0),
            internal_token=_metadata_token(e, "MIANDAN_INTERNAL_TOKEN", "dev-internal-token"),
            admin_token=_metadata_token(e, "MIANDAN_ADMIN_TOKEN", "dev-admin-token"),
            merchant_token=_metadata_token(e, "MIANDAN_MERCHANT_TOKEN", "dev-merchant-token"),
            merchant_signing_key=_secret(e, "MIANDAN_MERCHANT_SIGNING_KEY", "dev-merchant-signing-key-change-me-in-production"),
            merchant_revoked_file=_path(e, "MIANDAN_MERCHANT_REVOKED_FILE"),
            jwt_secret=_secret(e, "MIANDAN_JWT_SECRET", "dev-jwt-secret-change-me-in-production-0000"),
            # Blank is unset: "" is an issuer no token names, so every user would be refused.
            jwt_issuer=(e.get("MIANDAN_JWT_ISSUER") or "").strip() or "miandan",
            jwt_algorithm=algorithm,
            campaign_id=campaign or DEFAULT_CAMPAIGN_ID,
            jwt_public_key_file=_path(e, "MIANDAN_JWT_PUBLIC_KEY_FILE"),
            jwt_private_key_file=_path(e, "MIANDAN_JWT_PRIVATE_KEY_FILE"),
            jwt_max_lifetime_s=_number(e, "MIANDAN_JWT_MAX_LIFETIME_S", 7 * 86_400, float, minimum=1),
            tls_cert=tls_cert,
            tls_key=tls_key,
            tls_ca=_path(e, "MIANDAN_TLS_CA"),
            gateway_addr=_addr(e, "MIANDAN_GATEWAY_ADDR", "gateway"),
            card_addr=_addr(e, "MIANDAN_CARD_ADDR", "card"),
            catalog_addr=_addr(e, "MIANDAN_CATALOG_ADDR", "catalog"),
            order_addr=_addr(e, "MIANDAN_ORDER_ADDR", "order"),
            lottery_addr=_addr(e, "MIANDAN_LOTTERY_ADDR", "lottery"),
            log_level=log_level,
            max_concurrency=int(_number(e, "MIANDAN_MAX_CONCURRENCY", 64, int, minimum=1)),
            min_concurrency=int(_number(e, "MIANDAN_MIN_CONCURRENCY", 32, int, minimum=1)),
            max_wait_ms=_own_or_shared(e, service, "MAX_WAIT_MS", 50.0, float, minimum=0),
            target_latency_ms=_number(e, "MIANDAN_TARGET_LATENCY_MS", 250.0, float, minimum=0),
            max_loop_lag_ms=_number(e, "MIANDAN_MAX_LOOP_LAG_MS", 0.0, float, minimum=0),
            max_pending_calls=int(_own_or_shared(e, service, "MAX_PENDING_CALLS", 0, int, minimum=0, maximum=MAX_PENDING_CALLS)),
            watches_per_user=int(_number(e, "MIANDAN_WATCHES_PER_USER", 5, int, minimum=1)),
            max_watches=int(_number(e, "MIANDAN_MAX_WATCHES", 10_000, int, minimum=1)),
            user_rate=_rate(e, "MIANDAN_USER_RATE", 5.0),
            user_burst=int(_number(e, "MIANDAN_USER_BURST", 20, int, minimum=1)),
            user_rates_tracked=int(_number(e, "MIANDAN_USER_RATE_TRACKED", 100_000, int, minimum=1)),
            merchant_rate=_rate(e, "MIANDAN_MERCHANT_RATE", 20.0),
            merchant_burst=_merchant_burst(e),
            merchant_rates_tracked=int(_number(e, "MIANDAN_MERCHANT_RATE_TRACKED", 100_000, int, minimum=1)),
            upstream_share_percent=int(_number(e, "MIANDAN_UPSTREAM_SHARE_PERCENT", 50, int, minimum=1, maximum=100)),
            upstream_stall_ms=_number(e, "MIANDAN_UPSTREAM_STALL_MS", 500.0, float, minimum=1),
            log_calls=_bool(e, "MIANDAN_LOG_CALLS", True),
        )


def env_number(
    e: Mapping[str, str] | None,
    var: str,
    default: float,
    kind: type = float,
    *,
    minimum: float | None = None,
    above: float | None = None,
    maximum: float | None = None,
) -> float:
    """The number in variable `var` of `e` (None = os.environ), or `default` when it is unset or
    blank. kind=int accepts integers only; floats must be finite (inf and nan are refused: an
    "infinite" TTL or interval would overflow where it is turned into milliseconds or a
    timer). minimum/maximum are inclusive bounds, above an exclusive lower one. Raises
    ValueError naming the variable and its value."""
    e = os.environ if e is None else e
    raw = e.get(var)
    if raw is None or raw.strip() == "":
        return default
    text = raw.strip()
    try:
        value = kind(text)
    except (ValueError, OverflowError):
        what = "an integer" if kind is int else "a number"
        raise ValueError(f"{var}={raw!r} is not {what}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{var}={raw!r} is not a finite number")
    if minimum is not None and value < minimum:
        raise ValueError(f"{var}={raw!r} must be >= {_plain(minimum)}")
    if above is not None and not value > above:
        raise ValueError(f"{var}={raw!r} must be > {_plain(above)}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{var}={raw!r} must be <= {_plain(maximum)}")
    return value


# The smallest pace a limiter takes: one call in about eleven days. Below it a rate's interval
# (1 / rate) stops being a finite number of seconds (1e-320), and the limit would be off
# without anyone having said 0.
MIN_RATE = 1e-6


def _rate(e: Mapping[str, str], var: str, default: float) -> float:
    """Calls per second a limiter keeps up: 0 turns it off, else at least MIN_RATE."""
    rate = _number(e, var, default, float, minimum=0)
    if 0 < rate < MIN_RATE:
        raise ValueError(f"{var}={e.get(var)!r} must be 0 (no limit) or at least {MIN_RATE:g} calls a second")
    return rate


def _plain(bound: float) -> str:
    """A bound as people write it: 1073741823 and 0.5, not 1.07374e+09 and 0.500000."""
    return str(int(bound)) if float(bound).is_integer() else repr(float(bound))


def _own_or_shared(
    e: Mapping[str, str], service: str, name: str, default: float, kind: type, *, minimum: float, maximum: float | None = None
) -> float:
    """MIANDAN_<SERVICE>_<NAME>, else MIANDAN_<NAME>: settings that belong to the edge of the suite
    (the gateway's bound on held calls, its admission wait) must be settable for one service from
    the one environment `make run` passes every service."""
    shared = _number(e, f"MIANDAN_{name}", default, kind, minimum=minimum, maximum=maximum)
    own = f"MIANDAN_{service.upper()}_{name}"
    return _number(e, own, shared, kind, minimum=minimum, maximum=maximum) if own in e else shared


def _number(
    e: Mapping[str, str], var: str, default: float, kind: type, *, minimum: float, maximum: float | None = None
) -> float:
    return env_number(e, var, default, kind, minimum=minimum, maximum=maximum)


def _merchant_burst(e: Mapping[str, str]) -> int:
    """MIANDAN_MERCHANT_BURST, at least 1: a burst of 0 would refuse every merchant call, which
    is not how the limit is turned off (MIANDAN_MERCHANT_RATE=0 is), so the refusal says so."""
    burst = int(env_number(e, "MIANDAN_MERCHANT_BURST", 100, int))
    if burst < 1:
        raise ValueError(
            f"MIANDAN_MERCHANT_BURST={e.get('MIANDAN_MERCHANT_BURST')!r} must be >= 1 "
            "(MIANDAN_MERCHANT_RATE=0 turns the merchant limit off)"
        )
    return burst


def event_loop_from_env(env: Mapping[str, str] | None = None) -> str:
    """MIANDAN_EVENT_LOOP: "uvloop" (also when unset) or "asyncio"; ValueError otherwise."""
    e = os.environ if env is None else env
    raw = e.get("MIANDAN_EVENT_LOOP") or ""
    value = raw.strip().lower() or "uvloop"
    if value not in EVENT_LOOPS:
        raise ValueError(f"MIANDAN_EVENT_LOOP={raw!r} is not one of {', '.join(EVENT_LOOPS)}")
    return value


def check_campaign_id(value: str, var: str) -> str:
    if not _CAMPAIGN_ID.fullmatch(value):
        raise ValueError(f"{var}={value!r} is not a campaign id (letters, digits, '-' and '_', 1..64 characters)")
    return value


def _port(e: Mapping[str, str], var: str, default: int, *, allow_zero: bool) -> int:
    value = int(_number(e, var, default, int, minimum=0 if allow_zero else 1))
    if value > 65535:
        raise ValueError(f"{var}={value} is not a valid TCP port (0-65535)")
    return value


def _bool(e: Mapping[str, str], var: str, default: bool) -> bool:
    """Blank is unset, as for every number: a `MIANDAN_LOG_CALLS=` left in an env file turned the
    per-call log off."""
    raw = e.get(var) or ""
    v = raw.strip().lower()
    if not v:
        return default
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise ValueError(f"{var}={raw!r} is not a boolean (use 1/0, true/false, yes/no, on/off)")


def _unless_blank(raw: str | None) -> str | None:
    """`raw`, or None when unset or only spaces: blank is unset, as for every number."""
    return raw if raw and raw.strip() else None


def _path(e: Mapping[str, str], var: str) -> Path | None:
    raw = _unless_blank(e.get(var))
    return Path(raw) if raw else None


# The development secrets every copy of this repository carries: fine on loopback, where only
# this machine can call, and a master key for anyone anywhere else (they mint user tokens,
# merchant grants and admin calls).
# The development secrets every copy of this repository carries, and the services that trust
# each: fine on loopback, where only this machine can call, and a master key for anyone anywhere
# else (user tokens, merchant grants, internal and admin calls).
DEV_SECRETS: dict[str, tuple[str, tuple[str, ...]]] = {
    "MIANDAN_INTERNAL_TOKEN": ("dev-internal-token", SERVICES),
    "MIANDAN_ADMIN_TOKEN": ("dev-admin-token", SERVICES),
    "MIANDAN_MERCHANT_TOKEN": ("dev-merchant-token", ("catalog", "order")),
    "MIANDAN_MERCHANT_SIGNING_KEY": ("dev-merchant-signing-key-change-me-in-production", ("catalog", "order")),
    "MIANDAN_JWT_SECRET": ("dev-jwt-secret-change-me-in-production-0000", ("gateway",)),
}
# RFC 7518 3.2: an HMAC key at least as long as the hash (HS256: 32 bytes); a shorter one can be
# searched for offline from any one token it signed. The merchant grants are HS256.
MIN_HMAC_KEY_BYTES = 32
HMAC_KEY_BYTES = {"HS256": 32, "HS384": 48, "HS512": 64}


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name or a wildcard such as 0.0.0.0: reachable from elsewhere


def refuse_published_secrets(e: Mapping[str, str], service: str | None, host: str) -> None:
    """A service listening beyond loopback refuses to start while a secret it trusts is still
    the development value (MIANDAN_ALLOW_DEV_SECRETS=1 allows it on a closed test network), or
    while an HMAC key it verifies with is shorter than its algorithm's hash (HMAC_KEY_BYTES; the
    merchant grants' HS256: MIN_HMAC_KEY_BYTES). service=None: every
    secret of the suite at once (make run names them all in one go). ValueError names the
    variables."""
    if _loopback(host) or _bool(e, "MIANDAN_ALLOW_DEV_SECRETS", False):
        return
    jwt_algorithm = e.get("MIANDAN_JWT_ALGORITHM", "HS256").strip()
    hmac_jwt = jwt_algorithm.startswith("HS")
    trusted = [
        var for var, (_, services) in DEV_SECRETS.items()
        if (service is None or service in services) and (hmac_jwt or var != "MIANDAN_JWT_SECRET")
    ]
    left = [var for var in trusted if e.get(var, DEV_SECRETS[var][0]) == DEV_SECRETS[var][0]]
    if left:
        one = len(left) == 1
        raise ValueError(
            f"MIANDAN_HOST={host} listens beyond this machine but {', '.join(left)} "
            f"{'is' if one else 'are'} the published development value: set {'it' if one else 'them'} "
            "(or MIANDAN_ALLOW_DEV_SECRETS=1 on a closed test network)"
        )
    least = {
        "MIANDAN_MERCHANT_SIGNING_KEY": (MIN_HMAC_KEY_BYTES, ""),
        "MIANDAN_JWT_SECRET": (
            HMAC_KEY_BYTES.get(jwt_algorithm, MIN_HMAC_KEY_BYTES), f" (the size of the hash of MIANDAN_JWT_ALGORITHM={jwt_algorithm})"
        ),
    }
    for var, (size, why) in least.items():
        if var in trusted and len(e[var].encode()) < size:
            raise ValueError(f"{var} is shorter than {size} bytes{why}: an HMAC key that short can be found from one token it signed")


def _secret(e: Mapping[str, str], var: str, default: str) -> str:
    value = e.get(var, default)
    if not value.strip():
        # An empty token would let any caller that sends an empty header through, and one of
        # spaces is a credential anyone can guess.
        raise ValueError(f"{var} must not be empty or blank")
    return value


def _metadata_token(e: Mapping[str, str], var: str, default: str) -> str:
    """A token that travels in call metadata: printable ASCII only. The value is never echoed:
    the line goes to logs that more people read than hold the secret."""
    value = _secret(e, var, default)
    if not _METADATA_VALUE.fullmatch(value):
        at = next(i for i, c in enumerate(value) if not _METADATA_VALUE.fullmatch(c))
        raise ValueError(
            f"{var} has a character gRPC cannot send in metadata ({_char_name(value[at])} at position {at + 1} of "
            f"{len(value)}; a token is printable ASCII, and a secret written with echo ends with a newline)"
        )
    return value


def _char_name(c: str) -> str:
    return {"\n": "a newline", "\r": "a carriage return", "\t": "a tab"}.get(c, f"U+{ord(c):04X}")


def address_host(host: str) -> str | None:
    """`host` as it goes before ":port": an IPv6 literal bracketed ("::1" -> "[::1]"), a name or
    an IPv4 address as it is; None for a host with a colon or brackets that is no IPv6 address
    ("localhost:50051", "[127.0.0.1]"). Unbracketed, "::1:50051" is no host and port to gRPC:
    the server says only "Failed to bind", a channel dials some other address."""
    if not any(c in host for c in ":[]"):
        return host
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    return f"[{bare}]" if _ipv6(bare) else None


def _ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def _addr(e: Mapping[str, str], var: str, service: str) -> str:
    raw = (_unless_blank(e.get(var)) or _local_addr(e, service)).strip()
    if raw.startswith(("unix:", "unix-abstract:")):
        return raw
    host, sep, port = raw.rpartition(":")
    if _ipv6(raw) or _ipv6(host):
        # Not bracketed for the operator as MIANDAN_HOST is: "fe80::1:5005" is an address without
        # a port and an address with one, and gRPC would dial the first.
        raise ValueError(
            f"{var}={raw!r}: an IPv6 address goes in brackets, then the port, e.g. [::1]:{DEFAULT_PORTS[service]}"
        )
    if not sep or not host or ascii_int(port, minimum=1, maximum=65535) is None:
        raise ValueError(f"{var}={raw!r} is not host:port")
    return raw


def _local_addr(e: Mapping[str, str], service: str) -> str:
    """Where `service` listens on this machine when no MIANDAN_<SERVICE>_ADDR says otherwise: the
    MIANDAN_<SERVICE>_PORT the operator moved it to for `make run` (a shared machine's defaults
    taken), so the tools run with the same environment (make demo, make audit, make catalog-300k)
    find the suite instead of waiting on the default port. Port 0 (any free port) names no
    address: the default stays."""
    port = _port(e, f"MIANDAN_{service.upper()}_PORT", DEFAULT_PORTS[service], allow_zero=True)
    return f"127.0.0.1:{port or DEFAULT_PORTS[service]}"


_TLS_FILES = (("MIANDAN_TLS_CERT", "tls_cert", "certificate"), ("MIANDAN_TLS_KEY", "tls_key", "private key"), ("MIANDAN_TLS_CA", "tls_ca", "certificate"))


def check_start_files(settings: Settings) -> None:
    """The files a service reads at start, read once now: ValueError naming the variable when one
    is missing, unreadable or not PEM, instead of an OSError (or gRPC's refusal to bind) after
    the store is open. The gateway also needs its token verification key when the algorithm is
    not HMAC (MIANDAN_JWT_PUBLIC_KEY_FILE)."""
    files = [(var, getattr(settings, attr), what) for var, attr, what in _TLS_FILES]
    if settings.service == "gateway" and settings.jwt_algorithm not in ("HS256", "HS384", "HS512"):
        if settings.jwt_public_key_file is None:
            raise ValueError(f"MIANDAN_JWT_ALGORITHM={settings.jwt_algorithm} needs MIANDAN_JWT_PUBLIC_KEY_FILE")
        files.append(("MIANDAN_JWT_PUBLIC_KEY_FILE", settings.jwt_public_key_file, "jwt"))
    for var, path, what in files:
        if path is None:
            continue
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise ValueError(f"{var}={str(path)!r} cannot be read: {exc.strerror or exc}") from None
        if what == "jwt":
            if not _jwt_key_ok(settings.jwt_algorithm, data):
                raise ValueError(f"{var}={str(path)!r} is not a {settings.jwt_algorithm} public key")
        elif _pem_kind(data, what) is None:
            raise ValueError(f"{var}={str(path)!r} is not a PEM {what}")


def _jwt_key_ok(algorithm: str, data: bytes) -> bool:
    """Whether PyJWT takes `data` as the verification key of `algorithm` (it reads several
    formats: PEM keys and certificates, OpenSSH keys, JWKs)."""
    try:
        import jwt
    except ImportError:  # pragma: no cover - only the gateway needs PyJWT
        return True
    try:
        jwt.get_algorithm_by_name(algorithm).prepare_key(data)
    except Exception:  # noqa: BLE001 - PyJWT raises several kinds for a key it cannot use
        return False
    return True


def _pem_kind(data: bytes, what: str) -> str | None:
    """The parsed object's kind if `data` holds a PEM `what`, else None."""
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization
    except ImportError:  # pragma: no cover - cryptography is a dependency
        return what if b"-----BEGIN" in data else None
    try:
        if what == "certificate":
            x509.load_pem_x509_certificates(data)
        else:
            serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        return None
    return what


def prepare_data_dir(settings: Settings) -> Path:
    """Create MIANDAN_DATA (the stores' directory) if needed; ValueError naming the variable when
    it cannot be created or is not a writable directory."""
    path = settings.data_dir
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"MIANDAN_DATA={str(path)!r} cannot be created: {exc.strerror or exc}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ValueError(f"MIANDAN_DATA={str(path)!r} is not a writable directory")
    return path
