"""Service-to-service credentials: who may call which RPC, and client channels that carry them.

Metadata keys (lower-case, as gRPC requires):
  x-miandan-internal-token  every call into an internal service (or a verified mTLS client cert)
  x-miandan-admin-token     admin RPCs, in addition to the internal credential
  x-miandan-merchant-token  merchant RPCs (admin also qualifies): the platform's MIANDAN_MERCHANT_TOKEN
                            (every store) or one merchant's grant (services.common.merchant_grant:
                            its own brands and stores only). With the internal credential, or alone:
                            a merchant's systems need not (and should not) hold the internal token,
                            which would let them call every internal RPC as the gateway does.
"""
from __future__ import annotations

import enum
import hmac
import json
from typing import Any, Mapping, Sequence

from .clock import Clock, SystemClock
from .errors import DomainError, PermissionDenied, Unauthenticated, Unavailable, error_details
from .merchant_grant import MerchantScope, RevokedGrants, read_grant
from .rates import KeyedRates

__all__ = [
    "Role",
    "PUBLIC",
    "INTERNAL",
    "ADMIN",
    "MERCHANT",
    "INTERNAL_OR_MERCHANT",
    "MERCHANT_ROLES",
    "INTERNAL_TOKEN_KEY",
    "ADMIN_TOKEN_KEY",
    "MERCHANT_TOKEN_KEY",
    "CREDENTIAL_REASONS",
    "MERCHANT_RATE_LIMITED",
    "UPSTREAM_UNAVAILABLE",
    "refuses_our_credential",
    "credential_refused",
    "AccessPolicy",
    "MerchantScope",
    "internal_metadata",
    "channel_credentials",
    "channel_options",
    "open_channel",
]

INTERNAL_TOKEN_KEY = "x-miandan-internal-token"
ADMIN_TOKEN_KEY = "x-miandan-admin-token"
MERCHANT_TOKEN_KEY = "x-miandan-merchant-token"


class Role(str, enum.Enum):
    PUBLIC = "PUBLIC"  # no service credential (health, reflection, the gateway's end-user RPCs)
    INTERNAL = "INTERNAL"
    ADMIN = "ADMIN"
    MERCHANT = "MERCHANT"  # merchant or admin
    # CancelOrder: the gateway cancels for a user (internal credential), a merchant for its store
    # (its own credential alone will do); which of the two a call is, the servicer decides.
    INTERNAL_OR_MERCHANT = "INTERNAL_OR_MERCHANT"


PUBLIC, INTERNAL, ADMIN, MERCHANT = Role.PUBLIC, Role.INTERNAL, Role.ADMIN, Role.MERCHANT
INTERNAL_OR_MERCHANT = Role.INTERNAL_OR_MERCHANT
# Roles a merchant's own credential may fill without the internal one.
MERCHANT_ROLES = frozenset({MERCHANT, INTERNAL_OR_MERCHANT})

# Rejections are constants: building them per call would cost more than the check itself.
CREDENTIAL_MISSING = Unauthenticated(
    "CREDENTIAL_MISSING", "缺少服务凭证 / missing service credential (x-miandan-internal-token)"
)
CREDENTIAL_INVALID = Unauthenticated("CREDENTIAL_INVALID", "服务凭证无效 / invalid service credential")
ADMIN_REQUIRED = PermissionDenied("ADMIN_REQUIRED", "需要管理员凭证 / admin credential required")
MERCHANT_REQUIRED = PermissionDenied("MERCHANT_REQUIRED", "需要商户或管理员凭证 / merchant or admin credential required")
# A merchant grant's calls beyond its merchant's pace (AccessPolicy.pace): RESOURCE_EXHAUSTED.
MERCHANT_RATE_LIMITED = "MERCHANT_RATE_LIMITED"
# The reasons of a refused service credential: from a peer, a deployment bug, not the caller's doing.
CREDENTIAL_REASONS = frozenset(e.reason for e in (CREDENTIAL_MISSING, CREDENTIAL_INVALID, ADMIN_REQUIRED, MERCHANT_REQUIRED))


def _eq(given: str | bytes | None, expected: bytes) -> bool:
    if given is None:
        return False
    if isinstance(given, str):
        given = given.encode()
    return hmac.compare_digest(given, expected)


class AccessPolicy:
    """Per-service map full method name ("/miandan.card.v1.CardService/CreateCampaign") -> Role.
    Methods not listed get `default` (INTERNAL for internal services, PUBLIC for the gateway)."""

    def __init__(
        self, settings: Any, roles: Mapping[str, Role] | None = None, *, default: Role = INTERNAL, clock: Clock | None = None
    ) -> None:
        self.roles = {k: Role(v) for k, v in (roles or {}).items()}
        self.default = Role(default)
        self._internal = settings.internal_token.encode()
        self._admin = settings.admin_token.encode()
        self._merchant = settings.merchant_token.encode()
        self._grant_key = settings.merchant_signing_key
        self._revoked = RevokedGrants(getattr(settings, "merchant_revoked_file", None))
        self.clock = clock or SystemClock()
        # Per merchant, not per grant: a merchant holding many grants (a terminal per store) has
        # one pace. Per process, as admission is.
        self.merchant_rates = KeyedRates(
            getattr(settings, "merchant_rate", 0.0), getattr(settings, "merchant_burst", 1),
            getattr(settings, "merchant_rates_tracked", 100_000), clock=self.clock, reason=MERCHANT_RATE_LIMITED,
            message="商户调用太频繁，请稍后再试 / too many calls with this merchant's grants, slow down",
        )
        # The grant _grant() verified last, by its text: pace() runs right after check() on the
        # same call (no await between them), so the grant check() just read is not read again.
        self._last_grant: tuple[str, MerchantScope] | None = None
        # Whether a client certificate in the auth context counts as the internal credential:
        # only when the server required and verified it against tls_ca. A server serving one-way
        # TLS (Server(require_client_cert=False), the gateway) turns this off.
        self.trust_client_certificates = bool(getattr(settings, "tls_enabled", False) and getattr(settings, "tls_ca", None))

    def role(self, method: str) -> Role:
        return self.roles.get(method, self.default)

    def check(self, role: Role, metadata: Sequence[tuple[str, Any]] | None, context: Any = None) -> DomainError | None:
        """None when allowed, else the error to abort with. Returned, not raised: rejection is
        a normal outcome under attack and exceptions cost more."""
        if role is PUBLIC:
            return None
        internal, admin, merchant = _credentials(metadata)
        if internal is not None:
            if not _eq(internal, self._internal):
                return CREDENTIAL_INVALID
        elif not self._peer_verified(context):
            # No service credential: only a merchant, on a merchant RPC, with its own credential.
            # An admin always comes through the platform (internal credential first).
            if merchant is not None and role in MERCHANT_ROLES:
                return self._merchant_refusal(merchant)
            return CREDENTIAL_MISSING
        if role is INTERNAL or role is INTERNAL_OR_MERCHANT:
            return None
        if admin is not None and _eq(admin, self._admin):
            return None
        if role is MERCHANT:
            if merchant is not None:
                return self._merchant_refusal(merchant)
            return CREDENTIAL_INVALID if admin is not None else MERCHANT_REQUIRED
        return CREDENTIAL_INVALID if admin is not None else ADMIN_REQUIRED

    def _merchant_refusal(self, merchant: Any) -> DomainError | None:
        """None for the platform's merchant token or a good grant; else why not."""
        if _eq(merchant, self._merchant):
            return None
        scope = self._grant(merchant)
        if isinstance(scope, MerchantScope):
            return None
        return scope if scope is not None else CREDENTIAL_INVALID

    def pace(self, role: Role, metadata: Sequence[tuple[str, Any]] | None) -> DomainError | None:
        """Once per call of a merchant RPC, after check() let it in (the pipeline; a stream is
        one call, when it opens): count it against its merchant's pace when a merchant grant
        came with it, and return the refusal (RESOURCE_EXHAUSTED MERCHANT_RATE_LIMITED, with the
        wait in RetryInfo) when it is beyond. The platform's merchant token and the admin
        credential are not paced: they are the platform's own. Returned, not raised, as check()."""
        if role not in MERCHANT_ROLES or not self.merchant_rates.enabled:
            return None
        _, merchant = self._grant_text(metadata)
        if merchant is None:
            return None
        text = merchant.decode("latin-1") if isinstance(merchant, bytes) else str(merchant)
        last = self._last_grant
        if last is not None and last[0] == text:
            scope: MerchantScope | DomainError | None = last[1]
        else:
            # Not read by check(): CancelOrder with the internal credential beside the grant (its
            # servicer reads the grant when the call is the merchant's). A grant that does not
            # hold is refused there, not here.
            scope = self._grant(merchant)
        if not isinstance(scope, MerchantScope):
            return None
        return self.merchant_rates.refusal(scope.merchant_id)

    def merchant_scope(self, metadata: Sequence[tuple[str, Any]] | None) -> MerchantScope | None:
        """What the caller of a merchant RPC may act on, once check(MERCHANT) has passed: None
        for every store (the admin credential or the platform's merchant token), else the
        stores and brands of its merchant grant."""
        every_store, merchant = self._grant_text(metadata)
        if every_store:
            return None
        scope = self._grant(merchant) if merchant is not None else None
        if isinstance(scope, DomainError):
            # The grant ran out or was revoked since check(MERCHANT) let it in (this very call):
            # say so, as the check would now, not that no merchant credential was sent.
            raise scope
        if not isinstance(scope, MerchantScope):
            raise MERCHANT_REQUIRED  # check(MERCHANT) would have refused this caller
        return scope

    def _grant_text(self, metadata: Sequence[tuple[str, Any]] | None) -> tuple[bool, Any]:
        """(every store, the merchant credential as sent): every store for the admin credential
        or the platform's merchant token; else the credential that may be one merchant's grant
        (None when none came)."""
        _, admin, merchant = _credentials(metadata)
        if (admin is not None and _eq(admin, self._admin)) or (merchant is not None and _eq(merchant, self._merchant)):
            return True, None
        return False, merchant

    def _grant(self, value: Any) -> MerchantScope | DomainError | None:
        """The grant's scope; an error naming what is wrong with a grant; None when the value is
        not a grant at all (then it is a wrong platform token)."""
        text = value.decode("latin-1") if isinstance(value, bytes) else str(value)
        if text.count(".") != 2:
            return None
        try:
            scope = read_grant(self._grant_key, text, self.clock.now().timestamp())
        except ValueError as exc:
            return Unauthenticated("MERCHANT_GRANT_INVALID", f"商户授权无效 / merchant grant refused: {exc}")
        if self._revoked.revoked(scope):
            if self._revoked.unreadable:
                return Unauthenticated(
                    "MERCHANT_GRANT_INVALID", "商户授权暂不可用 / merchant grant refused: the revocation list cannot be read"
                )
            return Unauthenticated("MERCHANT_GRANT_INVALID", "商户授权已吊销 / merchant grant refused: revoked")
        self._last_grant = (text, scope)
        return scope

    def is_internal(self, metadata: Sequence[tuple[str, Any]] | None, context: Any = None) -> bool:
        internal = _credentials(metadata)[0]
        if internal is not None:
            return _eq(internal, self._internal)
        return self._peer_verified(context)

    def _peer_verified(self, context: Any) -> bool:
        # With mTLS the server requires and verifies a client certificate against tls_ca during
        # the handshake, so an x509 identity in the auth context is a proven internal peer.
        if not self.trust_client_certificates or context is None:
            return False
        try:
            auth = context.auth_context()
        except Exception:
            return False
        return bool(auth.get("x509_common_name") or auth.get("x509_subject_alternative_name") or auth.get("x509_pem_cert"))


# --- client side -----------------------------------------------------------------------------

UPSTREAM_UNAVAILABLE = "UPSTREAM_UNAVAILABLE"
CREDENTIAL_REFUSED_RETRY_AFTER_MS = 1000


def refuses_our_credential(rpc_error: Any) -> bool:
    """Whether an upstream's failed call refused this process's own service credential (the
    internal token, the admin or merchant token, or its mTLS identity): UNAUTHENTICATED or
    PERMISSION_DENIED with one of CREDENTIAL_REASONS, or with no reason at all (a peer that is
    not a miandan service). Any other such answer is the peer's word about the caller's request
    (CARD_NOT_OWNED) and is the caller's to hear."""
    import grpc

    if rpc_error.code() not in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
        return False
    reason = error_details(rpc_error)["reason"]
    return reason is None or reason in CREDENTIAL_REASONS


def credential_refused(metadata: Mapping[str, str] | None = None) -> Unavailable:
    """What the caller hears when an upstream refused our credential. Not INTERNAL: nothing the
    caller sent is wrong and no code is broken; it is a deployment fault, usually a rotation of
    MIANDAN_INTERNAL_TOKEN or of the certificates that has reached some processes and not yet
    others, which passes once it has reached them all. So: an upstream that cannot be used right
    now, retry shortly, as for one that is down. Which credential was refused is the operator's
    to read in the log (logged once per burst by the caller of this), not the end user's."""
    return Unavailable(
        UPSTREAM_UNAVAILABLE,
        "服务暂时不可用，请稍后再试 / service temporarily unavailable, please retry shortly",
        CREDENTIAL_REFUSED_RETRY_AFTER_MS,
        metadata=metadata,
    )


def _credentials(metadata: Sequence[tuple[str, Any]] | None) -> tuple[Any, Any, Any]:
    """(internal token, admin token, merchant credential) as sent, None where absent; the first
    of each key. One reading for every check: the role check read the last of a key sent twice
    and is_internal the first, so a call could be judged as two different callers."""
    internal = admin = merchant = None
    for key, value in metadata or ():
        if key == INTERNAL_TOKEN_KEY and internal is None:
            internal = value
        elif key == ADMIN_TOKEN_KEY and admin is None:
            admin = value
        elif key == MERCHANT_TOKEN_KEY and merchant is None:
            merchant = value
    return internal, admin, merchant


def internal_metadata(settings: Any, admin: bool = False, merchant: bool = False) -> tuple[tuple[str, str], ...]:
    """Metadata to pass as `metadata=` on calls into internal services."""
    md: tuple[tuple[str, str], ...] = ((INTERNAL_TOKEN_KEY, settings.internal_token),)
    if admin:
        md += ((ADMIN_TOKEN_KEY, settings.admin_token),)
    if merchant:
        md += ((MERCHANT_TOKEN_KEY, settings.merchant_token),)
    return md


def channel_credentials(settings: Any) -> Any:
    """mTLS client credentials when TLS is configured, else None (use an insecure channel)."""
    import grpc

    if not settings.tls_enabled:
        return None
    root = settings.tls_ca.read_bytes() if settings.tls_ca else None
    return grpc.ssl_channel_credentials(
        root_certificates=root,
        private_key=settings.tls_key.read_bytes(),
        certificate_chain=settings.tls_cert.read_bytes(),
    )


MAX_MESSAGE_BYTES = 16 * 1024 * 1024
RECONNECT_FIRST_MS = 100
RECONNECT_MAX_MS = 1_000


def channel_options(service_config: dict[str, Any] | None = None) -> list[tuple[str, Any]]:
    options: list[tuple[str, Any]] = [
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        # Detect dead peers on idle long-lived channels (and WatchOrder streams) within ~40 s.
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.enable_retries", 1),
        # A restarted peer is found again within a second. gRPC's default backoff (1 s, x1.6,
        # up to 120 s) kept orders failing 2-12 s after a peer was back (make drill
        # --down-seconds 5); on loopback and a LAN a refused connect costs next to nothing.
        ("grpc.initial_reconnect_backoff_ms", RECONNECT_FIRST_MS),
        ("grpc.max_reconnect_backoff_ms", RECONNECT_MAX_MS),
    ]
    if service_config is not None:
        options.append(("grpc.service_config", json.dumps(service_config)))
    return options


def open_channel(settings: Any, target: str, service_config: dict[str, Any] | None = None) -> Any:
    """A grpc.aio channel to another miandan service: mTLS when configured, else insecure.
    Open one per upstream per process and reuse it (channels multiplex calls)."""
    import grpc

    options = channel_options(service_config)
    creds = channel_credentials(settings)
    if creds is None:
        return grpc.aio.insecure_channel(target, options=options)
    return grpc.aio.secure_channel(target, creds, options=options)
