#!/usr/bin/env python3
"""Drive the gateway's MCP endpoint with the official Python MCP SDK, in both protocol eras.

An independent client check: the `mcp` package from PyPI (see `scripts/mcp-sdk-check`, which
pins it and runs this file in its own virtualenv) talks to a gateway this script starts in
sandbox mode on a free loopback port, with a random bootstrap key and in-memory storage. It
plays the seed conversation once per era the SDK speaks:

  legacy       the initialize handshake (`Client(..., mode="legacy")`, 2025-11-25)
  2026-07-28   the stateless revision: `server/discover` through the SDK's auto negotiation,
               then `Client(..., mode="2026-07-28", prior_discover=...)`

and prints one `PASS <era>: <check>` / `FAIL <era>: <check>: <reason>` line per check, `NOTE`
lines for what the SDK tolerated but looks off, and a closing `mcp-sdk-check: N passed, N
failed` line. Exit status: 0 all passed, 1 a check failed, 2 the run itself could not be set up
(bad arguments, the gateway did not start).

The SDK validates every successful `tools/call` result's `structuredContent` against the
tool's `outputSchema` from `tools/list` (`ClientSession.validate_tool_result`, jsonschema); a
validation error is a failed check. Nothing here works around the server: a protocol error, a
rejected result or a wrong status is reported as it came, with the HTTP exchange behind it.

The key is never printed: it is generated here, sent only to the gateway, and redacted from
anything echoed (SDK logs, HTTP exchanges, gateway log lines).
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from types import UnionType
from typing import Any, get_args
from urllib.parse import urljoin, urlsplit

try:
    import anyio
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared.exceptions import MCPError
    from mcp_types import CallToolResult, ImageContent, Implementation
    from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, LATEST_HANDSHAKE_VERSION, MODERN_PROTOCOL_VERSIONS
    from pydantic import ValidationError
except ImportError as exc:  # pragma: no cover - run through scripts/mcp-sdk-check
    sys.stderr.write(
        f"mcp_sdk_check.py: cannot import the MCP SDK ({exc}); run it through scripts/mcp-sdk-check,\n"
        "which installs the pinned `mcp` package in its own virtualenv.\n"
    )
    sys.exit(2)

LEGACY = "legacy"
MODERN = "2026-07-28"
ERAS = (LEGACY, MODERN)

EXPECTED_TOOLS = {
    "search_products",
    "get_product",
    "create_checkout",
    "update_checkout",
    "get_checkout",
    "cancel_checkout",
    "request_payment",
    "get_payment_status",
}
COFFEE_ID = "7f3c9a52-1d8e-4b6a-9c2f-0e5d8b1a4c71"
COFFEE_NAME = "Ethiopian Yirgacheffe"
COFFEE_PRICE = 1899
CHECKOUT_TOTAL = 2146
CURRENCY = "CAD"
BUYER = {"name": "John Doe", "email": "john@example.com"}
FULFILLMENT = {
    "type": "shipping",
    "address": {
        "street": "123 Main St",
        "city": "Toronto",
        "state": "ON",
        "postal_code": "M5V 1A1",
        "country": "CA",
    },
}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# Statuses get_payment_status may report on the way to `completed`.
PAYMENT_PROGRESS = ("pending", "approved", "completed")
# Fields a 2026-07-28 result may carry that no handshake-era result schema has.
MODERN_ONLY_RESULT_FIELDS = ("resultType", "ttlMs", "cacheScope")
SECRET_HEADERS = ("x-api-key", "authorization")
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")

REQUEST_TIMEOUT_S = 30.0
CHECK_TIMEOUT_S = 90.0
POLL_INTERVAL_S = 1.0
POLL_MAX_S = 30.0
STARTUP_TIMEOUT_S = 60.0
BODY_ECHO_CHARS = 1500

_SECRETS: list[str] = []


def redact(text: str) -> str:
    for secret in _SECRETS:
        if secret:
            text = text.replace(secret, "<redacted>")
    return text


def out(line: str) -> None:
    print(redact(line), flush=True)


def short(value: Any, limit: int = 300) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --------------------------------------------------------------------------------------------
# The gateway process


class Gateway:
    """The gateway under test: sandbox mode on a free loopback port, stopped on exit."""

    def __init__(self, binary: str, workdir: str) -> None:
        self.binary = binary
        self.workdir = workdir
        self.key = secrets.token_urlsafe(36)  # 48 characters; the gateway wants at least 32
        _SECRETS.append(self.key)
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.stdout_path = os.path.join(workdir, "gateway.stdout")
        self.stderr_path = os.path.join(workdir, "gateway.stderr")

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def mcp_url(self) -> str:
        return f"{self.base_url}/mcp"

    def start(self) -> None:
        last_error = "no attempt made"
        for _attempt in range(3):
            self.port = free_port()
            env = {k: v for k, v in os.environ.items() if not k.startswith("SACP_")}
            env["SACP_LISTEN"] = f"127.0.0.1:{self.port}"
            env["SACP_BOOTSTRAP_API_KEY"] = self.key
            with open(self.stdout_path, "wb") as so, open(self.stderr_path, "wb") as se:
                self.proc = subprocess.Popen(
                    [self.binary],
                    stdin=subprocess.DEVNULL,
                    stdout=so,
                    stderr=se,
                    env=env,
                    cwd=self.workdir,
                    start_new_session=True,  # its own process group, stopped by stop()
                )
            deadline = time.monotonic() + STARTUP_TIMEOUT_S
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    last_error = f"the gateway exited with status {self.proc.returncode} before listening"
                    break
                if "listening on" in read_text(self.stdout_path) and port_open(self.port):
                    return
                time.sleep(0.1)
            else:
                last_error = f"no 'listening on' banner within {STARTUP_TIMEOUT_S:.0f}s"
                self.stop()
                break
            if "address already in use" not in read_text(self.stderr_path).lower():
                break  # not a port race: retrying would fail the same way
        raise SetupError(f"{last_error}\n{self.log_tail(30)}")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        for sig, wait_s in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(proc.pid, sig)  # the group this script created for the gateway
            except ProcessLookupError:
                return
            try:
                proc.wait(timeout=wait_s)
                return
            except subprocess.TimeoutExpired:
                continue

    def log_tail(self, lines: int, only_problems: bool = False) -> str:
        text = read_text(self.stdout_path) + read_text(self.stderr_path)
        rows = [r for r in text.splitlines() if r.strip()]
        if only_problems:
            rows = [r for r in rows if " WARN " in r or " ERROR " in r or "panicked" in r]
        return "\n".join("  | " + redact(r) for r in rows[-lines:])


class SetupError(Exception):
    pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def read_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


# --------------------------------------------------------------------------------------------
# The HTTP tap: every exchange of an httpx2 client, for diagnostics and conformance notes


@dataclass
class Exchange:
    label: str
    method: str
    path: str
    request_headers: dict[str, str]
    request_body: str
    status: int = 0
    response_headers: dict[str, str] = field(default_factory=dict)
    response_body: str = ""

    def rpc_method(self) -> str | None:
        try:
            body = json.loads(self.request_body)
        except ValueError:
            return None
        return body.get("method") if isinstance(body, dict) else None

    def render(self) -> str:
        req_h = ", ".join(f"{k}: {v}" for k, v in self.request_headers.items() if k.startswith("mcp-"))
        resp_h = ", ".join(
            f"{k}: {v}"
            for k, v in self.response_headers.items()
            if k in ("content-type", "mcp-session-id", "www-authenticate", "x-request-id")
        )
        return (
            f"  > {self.method} {self.path} [{req_h}] {short(self.request_body, BODY_ECHO_CHARS)}\n"
            f"  < {self.status} [{resp_h}] {short(self.response_body, BODY_ECHO_CHARS)}"
        )


class Tap:
    def __init__(self) -> None:
        self.exchanges: list[Exchange] = []
        self._pending: dict[int, Exchange] = {}

    def hooks(self, label: str) -> dict[str, list[Callable[..., Awaitable[None]]]]:
        async def on_request(request: httpx2.Request) -> None:
            headers = {
                k.lower(): ("<redacted>" if k.lower() in SECRET_HEADERS else v) for k, v in request.headers.items()
            }
            try:
                body = request.content.decode("utf-8", "replace")
            except Exception:  # a streaming body: not used by the MCP transport
                body = "<stream>"
            ex = Exchange(label, request.method, request.url.raw_path.decode(), headers, body)
            self.exchanges.append(ex)
            self._pending[id(request)] = ex

        async def on_response(response: httpx2.Response) -> None:
            ex = self._pending.pop(id(response.request), None)
            if ex is None:
                return
            ex.status = response.status_code
            ex.response_headers = {k.lower(): v for k, v in response.headers.items()}
            if ex.response_headers.get("content-type", "").lower().startswith("text/event-stream"):
                ex.response_body = "<event stream>"
            else:
                await response.aread()
                ex.response_body = response.content.decode("utf-8", "replace")

        return {"request": [on_request], "response": [on_response]}

    def since(self, index: int) -> list[Exchange]:
        return self.exchanges[index:]


# --------------------------------------------------------------------------------------------
# SDK log capture: warnings the SDK logs while tolerating something


class LogCapture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.records: list[tuple[str, str]] = []
        self.era = "setup"

    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg = record.getMessage()
        except Exception:
            msg = str(record.msg)
        self.records.append((self.era, f"{record.levelname} {record.name}: {msg}"))


# --------------------------------------------------------------------------------------------
# Results


class CheckFailed(Exception):
    pass


@dataclass
class Results:
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    notes: int = 0
    failures: list[str] = field(default_factory=list)

    def ok(self, era: str, name: str, detail: str = "") -> None:
        self.passed += 1
        out(f"PASS {era}: {name}" + (f" ({detail})" if detail else ""))

    def fail(self, era: str, name: str, reason: str, evidence: str = "") -> None:
        self.failed += 1
        self.failures.append(f"{era}: {name}")
        out(f"FAIL {era}: {name}: {reason}")
        if evidence:
            out(evidence)

    def skip(self, era: str, name: str, reason: str) -> None:
        self.skipped += 1
        out(f"SKIP {era}: {name}: {reason}")

    def note(self, era: str, text: str) -> None:
        self.notes += 1
        out(f"NOTE {era}: {text}")


try:
    _ExceptionGroup: type[BaseException] = BaseExceptionGroup  # type: ignore[name-defined]
except NameError:  # Python 3.10: anyio brings the backport
    from exceptiongroup import BaseExceptionGroup as _ExceptionGroup  # type: ignore[no-redef]


def describe(exc: BaseException) -> str:
    """A one-line reason for an exception raised by the SDK or a check."""
    if isinstance(exc, _ExceptionGroup):
        return "; ".join(describe(e) for e in exc.exceptions)
    if isinstance(exc, MCPError):
        data = f", data={short(exc.data, 400)}" if exc.data is not None else ""
        return f"MCPError {exc.code}: {exc.message}{data}"
    if isinstance(exc, ValidationError):
        errs = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors()[:5])
        return f"the SDK rejected the server's result (pydantic {exc.title}): {errs}"
    if isinstance(exc, RuntimeError) and "structured content" in str(exc).lower():
        return f"output-schema validation failed: {short(str(exc), 800)}"
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, CheckFailed):
        return str(exc)
    return f"{type(exc).__name__}: {short(str(exc), 800)}"


# --------------------------------------------------------------------------------------------
# The wallet: approve the payment as the person would


class _FormParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, Any]] = []
        self._form: dict[str, Any] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k.lower(): (v or "") for k, v in attrs}
        if tag == "form":
            self._form = {"method": a.get("method", "get").lower(), "action": a.get("action", ""), "inputs": {}}
            self.forms.append(self._form)
        elif tag in ("input", "button") and self._form is not None and a.get("name"):
            self._form["inputs"].setdefault(a["name"], []).append((a.get("type", "").lower(), a.get("value", "")))

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._form = None


def ensure_loopback(url: str, what: str) -> None:
    host = (urlsplit(url).hostname or "").lower()
    if host not in LOOPBACK_HOSTS:
        raise CheckFailed(f"{what} is not on the loopback gateway ({short(url)}): refusing to contact it")


async def approve_in_wallet(authorization_url: str, tap: Tap, label: str) -> str:
    """GET the wallet page, POST its form with decision=approve; returns the page's user_code."""
    ensure_loopback(authorization_url, "authorization_url")
    async with httpx2.AsyncClient(timeout=REQUEST_TIMEOUT_S, event_hooks=tap.hooks(label)) as http:
        page = await http.get(authorization_url)
        if page.status_code != 200:
            raise CheckFailed(f"GET authorization_url answered {page.status_code}: {short(page.text)}")
        parser = _FormParser()
        parser.feed(page.text)
        for form in parser.forms:
            codes = [value for kind, value in form["inputs"].get("user_code", []) if kind == "hidden"]
            if form["method"] == "post" and codes:
                break
        else:
            raise CheckFailed(
                "the wallet page has no <form method=post> with a hidden user_code input: " + short(page.text, 600)
            )
        action = urljoin(str(page.url), form["action"])
        ensure_loopback(action, "the wallet form's action")
        answer = await http.post(action, data={"user_code": codes[0], "decision": "approve"})
        if answer.status_code >= 400:
            raise CheckFailed(
                f"POST {urlsplit(action).path} (approve) answered {answer.status_code}: {short(answer.text)}"
            )
        return codes[0]


# --------------------------------------------------------------------------------------------
# The conversation, per era


def structured(result: CallToolResult, tool: str) -> dict[str, Any]:
    if result.is_error:
        text = " ".join(getattr(c, "text", f"<{c.type}>") for c in result.content)
        raise CheckFailed(f"{tool} returned isError=true: {short(text, 800)}")
    if not isinstance(result.structured_content, dict):
        raise CheckFailed(f"{tool} returned no structuredContent object (got {short(result.structured_content)})")
    return result.structured_content


def expect(cond: bool, message: str) -> None:
    if not cond:
        raise CheckFailed(message)


def api_key_client(key: str | None, tap: Tap, label: str, bearer: bool = False) -> httpx2.AsyncClient:
    headers: dict[str, str] = {}
    if key is not None:
        headers = {"Authorization": f"Bearer {key}"} if bearer else {"X-API-Key": key}
    return httpx2.AsyncClient(
        headers=headers,
        timeout=httpx2.Timeout(REQUEST_TIMEOUT_S, read=REQUEST_TIMEOUT_S),
        event_hooks=tap.hooks(label),
    )


def sdk_client(url: str, http: httpx2.AsyncClient, mode: str, prior: Any = None) -> Client:
    return Client(
        streamable_http_client(url, http_client=http),
        mode=mode,
        prior_discover=prior,
        read_timeout_seconds=REQUEST_TIMEOUT_S,
        client_info=Implementation(name="sacp-mcp-sdk-check", version=mcp_version()),
    )


def mcp_version() -> str:
    try:
        from importlib.metadata import version

        return version("mcp")
    except Exception:
        return "unknown"


class EraRun:
    def __init__(self, era: str, gw: Gateway, results: Results, tap: Tap, logs: LogCapture) -> None:
        self.era = era
        self.gw = gw
        self.results = results
        self.tap = tap
        self.logs = logs
        self.label = f"{era}/main"
        self.validated: list[str] = []  # tools whose structuredContent the SDK checked
        self.noted: set[str] = set()
        self.output_schemas: dict[str, dict[str, Any] | None] = {}

    def note_once(self, text: str) -> None:
        if text not in self.noted:
            self.noted.add(text)
            self.results.note(self.era, text)

    async def check(self, name: str, fn: Callable[[], Awaitable[str | None]], needs: list[Any] | None = None) -> bool:
        for need in needs or []:
            if need is None:
                self.results.skip(self.era, name, "an earlier check it depends on failed")
                return False
        mark = len(self.tap.exchanges)
        try:
            with anyio.fail_after(CHECK_TIMEOUT_S):
                detail = await fn()
        except Exception as exc:  # every failure is reported, none hidden
            mcp_exchanges = [e for e in self.tap.since(mark) if e.path.startswith("/mcp")]
            evidence = "\n".join(e.render() for e in (mcp_exchanges or self.tap.since(mark))[-3:])
            if not isinstance(exc, (CheckFailed, MCPError, ValidationError, RuntimeError, TimeoutError)):
                evidence += "\n" + "".join(traceback.format_exception(exc)).rstrip()
            self.results.fail(self.era, name, describe(exc), evidence)
            return False
        self.results.ok(self.era, name, detail or "")
        return True

    async def call(self, client: Client, tool: str, args: dict[str, Any]) -> CallToolResult:
        result = await client.call_tool(tool, args)
        if not result.is_error and self.output_schemas.get(tool) is not None:
            self.validated.append(tool)
        return result

    async def run(self) -> None:
        self.logs.era = self.era
        prior = None
        if self.era == MODERN:
            prior = await self.discover()
        async with api_key_client(self.gw.key, self.tap, self.label) as http:
            # Connecting enters the SDK's task groups, so it cannot run inside a check's own
            # timeout scope: the SDK's read timeout bounds it instead.
            mark = len(self.tap.exchanges)
            connected = False
            try:
                async with sdk_client(self.gw.mcp_url, http, self.era, prior) as client:
                    connected = True
                    await self.check("connect", lambda: self.connected(client))
                    await self.conversation(client)
            except Exception as exc:
                evidence = "\n".join(e.render() for e in self.tap.since(mark)[-3:])
                if connected:
                    self.results.fail(self.era, "disconnect", describe(exc), evidence)
                else:
                    self.results.fail(self.era, "connect", describe(exc), evidence)
                    self.results.skip(self.era, "seed conversation", "could not connect")
        await self.check("bearer authentication", self.bearer)
        await self.check("no API key is refused (HTTP 401)", lambda: self.refused(None))
        await self.check("a wrong API key is refused (HTTP 401)", lambda: self.refused(secrets.token_urlsafe(36)))
        self.conformance_notes()

    # -- connecting

    async def discover(self) -> Any:
        holder: dict[str, Any] = {}

        async def probe() -> str:
            async with api_key_client(self.gw.key, self.tap, f"{self.era}/discover") as http:
                async with sdk_client(self.gw.mcp_url, http, "auto") as client:
                    session = client.session
                    expect(
                        client.protocol_version == MODERN,
                        f"mode='auto' negotiated {client.protocol_version!r}, not {MODERN!r} "
                        f"(initialize fallback: {session.initialize_result is not None})",
                    )
                    result = session.discover_result
                    expect(result is not None, "mode='auto' did not adopt a server/discover result")
                    expect(MODERN in result.supported_versions, f"supportedVersions {result.supported_versions}")
                    expect(result.capabilities.tools is not None, "discover capabilities have no `tools`")
                    holder["result"] = result
                    info = client.server_info
                    who = f"{info.name} {info.version}" if info else "no serverInfo stamp"
                    return f"server/discover: supportedVersions {result.supported_versions}, {who}"

        await self.check("server/discover (SDK auto negotiation picks 2026-07-28)", probe)
        return holder.get("result")

    async def connected(self, client: Client) -> str:
        if self.era == LEGACY:
            init = client.session.initialize_result
            expect(init is not None, "no InitializeResult")
            expect(
                client.protocol_version in HANDSHAKE_PROTOCOL_VERSIONS,
                f"negotiated {client.protocol_version!r}, not a handshake-era version",
            )
            expect(client.server_capabilities.tools is not None, "initialize capabilities have no `tools`")
            info = client.server_info
            return f"initialize: protocolVersion {client.protocol_version}, server {info.name} {info.version}"
        return (
            f"mode={self.era!r} adopted, protocol {client.protocol_version} (no wire traffic until the first request)"
        )

    # -- the seed conversation

    async def conversation(self, client: Client) -> None:
        state: dict[str, Any] = {}

        async def list_tools() -> str:
            listed = await client.list_tools()
            names = [t.name for t in listed.tools]
            self.output_schemas = {t.name: t.output_schema for t in listed.tools}
            expect(listed.next_cursor is None, f"unexpected nextCursor {listed.next_cursor!r}")
            expect(len(names) == len(set(names)), f"duplicate tool names: {names}")
            missing, extra = EXPECTED_TOOLS - set(names), set(names) - EXPECTED_TOOLS
            expect(not missing and not extra, f"missing {sorted(missing)}, unexpected {sorted(extra)}")
            without = sorted(n for n, s in self.output_schemas.items() if s is None)
            state["listed"] = listed
            suffix = f"; no outputSchema: {without}" if without else "; every tool has an outputSchema"
            return f"{len(names)} tools{suffix}"

        await self.check("list_tools", list_tools)

        async def schemas_valid() -> str:
            from jsonschema import SchemaError
            from jsonschema.validators import validator_for

            problems = []
            dialects = set()
            for tool in state["listed"].tools:
                for kind, schema in (("inputSchema", tool.input_schema), ("outputSchema", tool.output_schema)):
                    if schema is None:
                        continue
                    cls = validator_for(schema)
                    dialects.add(cls.__name__)
                    try:
                        cls.check_schema(schema)
                    except SchemaError as exc:
                        problems.append(f"{tool.name}.{kind}: {exc.message}")
            expect(not problems, "; ".join(problems))
            return "validated by " + ", ".join(sorted(dialects))

        await self.check("tool schemas are valid JSON Schema", schemas_valid, [state.get("listed")])

        async def validation_active() -> str:
            bogus = CallToolResult(content=[], structured_content={"unexpected": True})
            try:
                await client.session.validate_tool_result("create_checkout", bogus)
            except RuntimeError as exc:
                return f"a non-conforming structuredContent is rejected: {short(str(exc), 120)}"
            raise CheckFailed("the SDK accepted a structuredContent that breaks create_checkout's outputSchema")

        await self.check("SDK output-schema validation is active", validation_active, [state.get("listed")])

        async def search() -> str:
            sc = structured(await self.call(client, "search_products", {"query": "coffee"}), "search_products")
            products = sc.get("products")
            expect(isinstance(products, list), f"structuredContent.products is not a list: {short(sc)}")
            hit = next((p for p in products if isinstance(p, dict) and p.get("id") == COFFEE_ID), None)
            expect(hit is not None, f"{COFFEE_ID} not among {[p.get('id') for p in products]}")
            expect(hit.get("name") == COFFEE_NAME, f"name {hit.get('name')!r}")
            price = hit.get("price") or {}
            expect(
                price.get("amount") == COFFEE_PRICE and price.get("currency") == CURRENCY,
                f"price {short(price)}, expected {COFFEE_PRICE} {CURRENCY}",
            )
            return f"{len(products)} products, {COFFEE_NAME} {price.get('formatted')}"

        await self.check("search_products", search)

        async def create() -> str:
            args = {"items": [{"product_id": COFFEE_ID, "quantity": 1}]}
            sc = structured(await self.call(client, "create_checkout", args), "create_checkout")
            total = sc.get("total") or {}
            expect(isinstance(sc.get("id"), str) and sc["id"], f"no checkout id: {short(sc)}")
            expect(
                total.get("amount") == CHECKOUT_TOTAL and total.get("currency") == CURRENCY,
                f"total {short(total)}, expected {CHECKOUT_TOTAL} {CURRENCY}",
            )
            state["checkout_id"] = sc["id"]
            return f"{sc['id']}, status {sc.get('status')}, total {total.get('formatted')}"

        await self.check("create_checkout", create)

        async def update() -> str:
            args = {"checkout_id": state["checkout_id"], "buyer": BUYER, "fulfillment": FULFILLMENT}
            sc = structured(await self.call(client, "update_checkout", args), "update_checkout")
            expect(
                sc.get("status") == "ready_for_payment",
                f"status {sc.get('status')!r}, missing {sc.get('missing')}, expected 'ready_for_payment'",
            )
            state["ready"] = True
            return f"status {sc['status']}"

        await self.check("update_checkout", update, [state.get("checkout_id")])

        async def request_payment() -> str:
            result = await self.call(client, "request_payment", {"checkout_id": state["checkout_id"]})
            sc = structured(result, "request_payment")
            expect(
                sc.get("status") == "authorization_required",
                f"status {sc.get('status')!r}, expected 'authorization_required': {short(sc)}",
            )
            amount = sc.get("amount") or {}
            expect(amount.get("amount") == CHECKOUT_TOTAL, f"amount {short(amount)}, expected {CHECKOUT_TOTAL}")
            images = [c for c in result.content if isinstance(c, ImageContent)]
            expect(bool(images), f"no image content block among {[c.type for c in result.content]}")
            expect(images[0].mime_type == "image/png", f"image mimeType {images[0].mime_type!r}")
            try:
                png = base64.b64decode(images[0].data, validate=True)
            except ValueError as exc:
                raise CheckFailed(f"image data is not base64: {exc}") from exc
            expect(png.startswith(PNG_MAGIC), "image data is not a PNG")
            url = sc.get("authorization_url")
            expect(isinstance(url, str) and bool(url), "no authorization_url")
            state["authorization_url"] = url
            state["user_code"] = sc.get("user_code")
            return f"authorization_required, {amount.get('formatted')}, QR image/png {len(png)} bytes"

        await self.check("request_payment", request_payment, [state.get("ready")])

        async def approve() -> str:
            code = await approve_in_wallet(state["authorization_url"], self.tap, f"{self.era}/wallet")
            if state.get("user_code") and code != state["user_code"]:
                self.results.note(
                    self.era, "the wallet page's user_code differs from request_payment's structuredContent.user_code"
                )
            state["approved"] = True
            return "approved at the simulated wallet"

        await self.check("wallet approval", approve, [state.get("authorization_url")])

        async def poll() -> str:
            seen: list[str] = []
            deadline = time.monotonic() + POLL_MAX_S
            while True:
                args = {"checkout_id": state["checkout_id"]}
                sc = structured(await self.call(client, "get_payment_status", args), "get_payment_status")
                status = sc.get("status")
                if not seen or seen[-1] != status:
                    seen.append(status)
                expect(
                    status in PAYMENT_PROGRESS,
                    f"status {status!r} ({sc.get('reason') or sc.get('message')}) after {' -> '.join(map(str, seen))}",
                )
                if status == "completed":
                    order = sc.get("order_id")
                    expect(isinstance(order, str) and bool(order), f"completed without order_id: {short(sc)}")
                    return f"{' -> '.join(seen)}, order_id {order}"
                if time.monotonic() >= deadline:
                    raise CheckFailed(f"not completed within {POLL_MAX_S:.0f}s: {' -> '.join(map(str, seen))}")
                await anyio.sleep(POLL_INTERVAL_S)

        await self.check("get_payment_status until completed", poll, [state.get("approved")])

        async def validation_summary() -> str:
            expect(bool(self.validated), "no tool result was validated against an outputSchema")
            kinds = sorted(set(self.validated))
            return f"{len(self.validated)} results of {len(kinds)} tools validated against their outputSchema"

        await self.check("structuredContent validated by the SDK", validation_summary)

    # -- authentication

    async def bearer(self) -> str:
        async with api_key_client(self.gw.key, self.tap, f"{self.era}/bearer", bearer=True) as http:
            async with sdk_client(self.gw.mcp_url, http, self.era) as client:
                listed = await client.list_tools()
                expect(len(listed.tools) == len(EXPECTED_TOOLS), f"{len(listed.tools)} tools")
        return "Authorization: Bearer <key> connects and lists the tools"

    async def refused(self, key: str | None) -> str:
        label = f"{self.era}/unauthenticated"
        mark = len(self.tap.exchanges)
        error: BaseException | None = None
        async with api_key_client(key, self.tap, label) as http:
            try:
                async with sdk_client(self.gw.mcp_url, http, self.era) as client:
                    # Pinned to 2026-07-28 the SDK sends nothing to connect: the first request
                    # is where the server must refuse.
                    await client.list_tools()
            except Exception as exc:
                error = exc
        posts = [e for e in self.tap.since(mark) if e.label == label and e.method == "POST"]
        statuses = [e.status for e in posts]
        expect(error is not None, f"the SDK connected and listed tools without a valid key (HTTP {statuses})")
        expect(bool(posts), f"no request reached the server; the SDK failed with {describe(error)}")
        expect(statuses[0] == 401, f"first answer was HTTP {statuses[0]}, not 401: {posts[0].render()}")
        expect(all(s == 401 for s in statuses), f"answers {statuses}")
        if "www-authenticate" not in posts[0].response_headers:
            self.note_once(
                "401 from /mcp has no WWW-Authenticate header (RFC 9110 §11.6.1: a 401 MUST carry one; "
                f"content-type {posts[0].response_headers.get('content-type')!r})",
            )
        return f"HTTP {statuses[0]} on {posts[0].rpc_method()}; the SDK raised {describe(error)}"

    # -- what the SDK tolerated

    def conformance_notes(self) -> None:
        era = self.era
        for _era, message in [r for r in self.logs.records if r[0] == era]:
            self.results.note(era, f"SDK logged {short(message, 400)}")
        self.logs.records = [r for r in self.logs.records if r[0] != era]
        version_key = LATEST_HANDSHAKE_VERSION if era == LEGACY else MODERN
        once = self.note_once
        for ex in self.tap.exchanges:
            if not ex.label.startswith(era + "/") or not ex.path.startswith("/mcp"):
                continue
            method = ex.rpc_method()
            ctype = ex.response_headers.get("content-type", "")
            if ex.status == 202:
                if ex.response_body:
                    once(f"202 to {method} has a body: {short(ex.response_body)}")
                if ctype:
                    once(f"202 (no body) to {method} carries content-type {ctype!r}")
                continue
            if ex.status != 200 or method is None:
                continue
            if "mcp-session-id" in ex.response_headers:
                once(f"{method} answered with an Mcp-Session-Id header (the endpoint is meant to be stateless)")
            if not ctype.lower().startswith(("application/json", "text/event-stream")):
                once(f"{method} answered with content-type {ctype!r}")
            try:
                message = json.loads(ex.response_body)
            except ValueError:
                continue
            if not isinstance(message, dict):
                continue
            if message.get("jsonrpc") != "2.0":
                once(f"{method} response has jsonrpc={message.get('jsonrpc')!r}")
            request = json.loads(ex.request_body)
            request_id = request.get("id") if isinstance(request, dict) else None
            if message.get("id") != request_id or type(message.get("id")) is not type(request_id):
                once(f"{method} response id {message.get('id')!r} does not echo the request id {request_id!r}")
            if ("result" in message) == ("error" in message):
                once(f"{method} response has {'both' if 'result' in message else 'neither'} result and error")
            result = message.get("result")
            if not isinstance(result, dict):
                continue
            if era == LEGACY:
                leaked = [f for f in MODERN_ONLY_RESULT_FIELDS if f in result]
                if leaked:
                    once(
                        f"{method} result on a {LATEST_HANDSHAKE_VERSION} connection carries 2026-07-28-only "
                        f"field(s) {leaked} (the SDK drops them silently)"
                    )
            unknown = unknown_result_fields(method, version_key, result)
            leftover = [f for f in unknown if era != LEGACY or f not in MODERN_ONLY_RESULT_FIELDS]
            if leftover:
                once(f"{method} result has field(s) outside the {version_key} schema: {leftover}")
            if method == "tools/list":
                for tool_field in unknown_tool_fields(version_key, result):
                    once(f"tools/list: a tool carries field {tool_field!r} outside the {version_key} Tool schema")


def _wire_fields(model: Any) -> set[str] | None:
    members = get_args(model) if isinstance(model, UnionType) else (model,)
    fields: set[str] = set()
    for member in members:
        if not hasattr(member, "model_fields"):
            return None
        fields |= {f.alias or n for n, f in member.model_fields.items()}
    return fields


def unknown_result_fields(method: str, version: str, result: dict[str, Any]) -> list[str]:
    """Top-level result keys that `version`'s wire schema for `method` does not define."""
    try:
        from mcp_types import methods

        fields = _wire_fields(methods.SERVER_RESULTS[(method, version)])
    except Exception:  # an SDK internal moved: no note rather than a wrong one
        return []
    return [] if fields is None else sorted(set(result) - fields)


def unknown_tool_fields(version: str, result: dict[str, Any]) -> list[str]:
    try:
        import importlib

        module = importlib.import_module("mcp_types._v" + version.replace("-", "_"))
        fields = _wire_fields(module.Tool)
    except Exception:
        return []
    if fields is None:
        return []
    found: set[str] = set()
    for tool in result.get("tools") or []:
        if isinstance(tool, dict):
            found |= set(tool) - fields
    return sorted(found)


# --------------------------------------------------------------------------------------------


async def run_all(gw: Gateway, eras: list[str], results: Results, logs: LogCapture) -> None:
    tap = Tap()
    for era in eras:
        await EraRun(era, gw, results, tap, logs).run()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("gateway", help="path to the sacp-gateway binary")
    parser.add_argument("--era", choices=[*ERAS, "both"], default="both", help="protocol era(s) to drive")
    args = parser.parse_args()

    binary = os.path.abspath(args.gateway)
    if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
        out(f"mcp-sdk-check: {args.gateway} is not an executable file")
        return 2
    if MODERN not in MODERN_PROTOCOL_VERSIONS:
        out(f"mcp-sdk-check: this SDK does not speak {MODERN} (it knows {MODERN_PROTOCOL_VERSIONS})")
        return 2

    logs = LogCapture()
    logging.getLogger().addHandler(logs)
    logging.getLogger().setLevel(logging.WARNING)

    def on_signal(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    eras = list(ERAS) if args.era == "both" else [args.era]
    results = Results()
    out(
        f"mcp-sdk-check: MCP Python SDK mcp {mcp_version()} (mcp-types {mcp_types_version()}), "
        f"httpx2 {httpx2.__version__}; eras: {', '.join(eras)}"
    )
    with tempfile.TemporaryDirectory(prefix="mcp-sdk-check.") as workdir:
        gw = Gateway(binary, workdir)
        try:
            try:
                gw.start()
            except SetupError as exc:
                out(f"mcp-sdk-check: the gateway did not start: {exc}")
                return 2
            out(f"mcp-sdk-check: gateway {os.path.basename(binary)} on {gw.base_url} (sandbox, in-memory)")
            anyio.run(run_all, gw, eras, results, logs)
            if results.failed:
                tail = gw.log_tail(30, only_problems=True)
                if tail:
                    out("gateway WARN/ERROR log lines:\n" + tail)
        except KeyboardInterrupt as exc:
            out(f"mcp-sdk-check: interrupted ({exc})")
            results.failed += 1
        finally:
            gw.stop()
    for era, message in logs.records:  # anything logged outside an era's own run
        results.note(era, f"SDK logged {short(message, 400)}")
    if results.failures:
        out("failed: " + "; ".join(results.failures))
    summary = f"mcp-sdk-check: {results.passed} passed, {results.failed} failed"
    if results.skipped:
        summary += f", {results.skipped} skipped"
    out(f"notes: {results.notes}")
    out(summary)
    return 1 if results.failed else 0


def mcp_types_version() -> str:
    try:
        from importlib.metadata import version

        return version("mcp-types")
    except Exception:
        return "unknown"


if __name__ == "__main__":
    sys.exit(main())
