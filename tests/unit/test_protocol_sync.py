"""One source of truth for the protocol: every copy of it agrees with ``chat/protocol/``.

``chat/protocol/codes.py`` defines the frame types, error codes and the server's close codes;
``chat/protocol/__init__.py`` opens with a table of them. The
browser client (``static/js/ripple/constants.js``) names them again, adds the codes it sends
itself and the reconnect policy; the docs have tables of them; the Python clients in
``tests/support`` and ``bench`` (which may import neither ``chat`` nor ``tests``) keep copies of
the close codes and the policy. Each check below is a function from file text to a list of
problems, so the last tests can show that a drifted copy is caught.
"""

from __future__ import annotations

import ast
import importlib
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from chat import protocol
from chat.protocol import codes

ROOT = Path(__file__).resolve().parents[2]
PROTOCOL_CODES = ROOT / "chat/protocol/codes.py"  # the constants
PROTOCOL_INIT = ROOT / "chat/protocol/__init__.py"  # the docstring table
JS_CONSTANTS = ROOT / "static/js/ripple/constants.js"
JS_OPTIONS = ROOT / "static/js/ripple/options.js"
JS_FRAMES = ROOT / "static/js/ripple/frames.js"
JS_SHARING = [ROOT / "static/js/sse-socket.js", ROOT / "static/js/dashboard.js"]
PROTOCOL_DOC = ROOT / "docs/protocol.md"
SECURITY_DOC = ROOT / "docs/security.md"
PYTHON_CLIENT_DIRS = [ROOT / "tests/support", ROOT / "bench"]

# What a client does after a close.
STAY_AWAY, QUICK, BACKOFF = "stay away", "quick reconnect", "backoff"
# Python clients' reconnect settings (seconds) and the JS client's DEFAULTS (ms) they mirror.
PY_DEFAULTS_S = {
    "BACKOFF_BASE_S": "backoffBaseMs",
    "BACKOFF_MAX_S": "backoffMaxMs",
    "QUICK_RECONNECT_S": "quickReconnectMs",
    "STABLE_AFTER_S": "stableAfterMs",
    "CONNECT_TIMEOUT_S": "connectTimeoutMs",
}


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


# --- chat/protocol/: the source -----------------------------------------------------------


def protocol_frame_types(text: str) -> dict[str, str]:
    """Name -> type of the constants under the "Client frame types" and "Server-only" comments."""
    types: dict[str, str] = {}
    for heading in ("# Client frame types.", "# Server-only frame types."):
        assert heading in text, f"chat/protocol/codes.py lost its {heading!r} block"
        block = text.split(heading, 1)[1].split("\n\n", 1)[0]
        types.update(re.findall(r'^([A-Z_]+) = "([a-z_]+)"$', block, re.MULTILINE))
    return types


def protocol_close_codes() -> dict[str, int]:
    """``CLOSE_X = n`` of chat/protocol/codes.py as ``{"X": n}``."""
    return {
        name.removeprefix("CLOSE_"): value
        for name, value in vars(codes).items()
        if name.startswith("CLOSE_") and isinstance(value, int)
    }


# --- the JavaScript client ------------------------------------------------------------------


def js_frozen_map(text: str, name: str) -> dict[str, str | int]:
    """``export const NAME = Object.freeze({KEY: 'value' | 123, ...})`` from JS source."""
    match = re.search(rf"const {name} = Object\.freeze\(\{{(.*?)\}}\);", text, re.DOTALL)
    assert match, f"no frozen map {name}"
    entries: dict[str, str | int] = {}
    for key, string, number in re.findall(r"^\s*([A-Za-z_]+): (?:'([^']*)'|(\d+)),", match.group(1), re.M):
        entries[key] = string if number == "" else int(number)
    return entries


def js_code_list(text: str, name: str, close: dict[str, str | int]) -> set[int]:
    """``const NAME = Object.freeze([CLOSE.A, CLOSE.B])`` as the codes it names."""
    match = re.search(rf"const {name} = Object\.freeze\(\[(.*?)\]\);", text, re.DOTALL)
    assert match, f"no code list {name}"
    return {int(close[key]) for key in re.findall(r"CLOSE\.([A-Z_]+)", match.group(1))}


def js_policy(text: str) -> Callable[[int], str]:
    """The client's reconnect policy, read from constants.js's data."""
    close = js_frozen_map(text, "CLOSE")
    low, high = int(close["NO_RETRY_MIN"]), int(close["NO_RETRY_MAX"])
    also = js_code_list(text, "NO_RETRY_ALSO", close)
    exempt = js_code_list(text, "RETRY_IN_NO_RETRY_RANGE", close)
    quick = js_code_list(text, "QUICK_RECONNECT", close)

    def after(code: int) -> str:
        if code in also or (low <= code <= high and code not in exempt):
            return STAY_AWAY
        return QUICK if code in quick else BACKOFF

    return after


def js_close_codes(text: str) -> dict[str, int]:
    close = js_frozen_map(text, "CLOSE")
    return {key: int(value) for key, value in close.items() if not key.startswith("NO_RETRY_")}


def js_problems(text: str, codes_text: str) -> list[str]:
    """constants.js against chat/protocol/codes.py: frame types, error codes, server close codes."""
    problems = []
    frames = js_frozen_map(text, "FRAME")
    if frames != protocol_frame_types(codes_text):
        problems.append(f"FRAME {frames} != chat/protocol/codes.py {protocol_frame_types(codes_text)}")
    errors = js_frozen_map(text, "ERROR_CODE")
    if set(errors.values()) != set(protocol.ERROR_CODES):
        problems.append(f"ERROR_CODE differs: {set(errors.values()) ^ set(protocol.ERROR_CODES)}")
    problems += [f"ERROR_CODE.{k} is {v!r}" for k, v in errors.items() if k.lower() != v]
    close = js_close_codes(text)
    for name, code in protocol_close_codes().items():
        if close.get(name) != code:
            problems.append(f"CLOSE.{name} is {close.get(name)}, chat/protocol/codes.py says {code}")
    server = set(protocol_close_codes().values())
    problems += [
        f"CLOSE.{k} = {v}: a server code chat/protocol/codes.py lacks"
        for k, v in close.items()
        if 4400 <= v < 4600 and v not in server
    ]
    return problems


def js_sharing_problems(text: str) -> list[str]:
    """A module that shares the client's codes names none of its own."""
    pattern = r"const CLOSE_[A-Z_]+\s*=\s*\d+|\.close\(\s*\d+|code\s*===?\s*\d{4}"
    return [f"redeclares a close code: {m}" for m in re.findall(pattern, text)]


# --- the docs -------------------------------------------------------------------------------


def md_section_table(text: str, heading: str) -> list[list[str]]:
    """The body rows of the first table under ``heading`` (up to the next ``## `` heading)."""
    assert heading in text, f"no section {heading!r}"
    section = text.split(heading + "\n", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    rows, started = [], False
    for line in section.splitlines():
        if line.startswith("|"):
            started = True
            rows.append([cell.strip() for cell in line.strip("|").split("|")])
        elif started:
            break
    assert lines and len(rows) > 2, f"no table under {heading!r}"
    return rows[2:]


def doc_policy(text: str) -> str:
    """The protocol doc's "should the client reconnect?" cell as a policy."""
    if "at once" in text:
        return QUICK
    return BACKOFF if "yes" in text else STAY_AWAY


def protocol_doc_problems(text: str, codes_text: str, js_text: str) -> list[str]:
    problems = []
    frame_types = set(protocol_frame_types(codes_text).values())
    client = {row[0].strip("`") for row in md_section_table(text, "## Client → server")}
    server = {row[0].strip("`") for row in md_section_table(text, "## Server → client")}
    if client != set(protocol.CLIENT_TYPES):
        problems.append(f"client frames table {sorted(client)} != {sorted(protocol.CLIENT_TYPES)}")
    if client | server != frame_types:
        problems.append(
            f"frame tables differ from chat/protocol/codes.py: {sorted((client | server) ^ frame_types)}"
        )
    errors = {row[0].strip("`") for row in md_section_table(text, "## Errors")}
    if errors != set(protocol.ERROR_CODES):
        problems.append(f"error code table differs: {sorted(errors ^ set(protocol.ERROR_CODES))}")
    after = js_policy(js_text)
    known = set(js_close_codes(js_text).values())
    listed = set()
    for row in md_section_table(text, "## Close codes"):
        code = int(row[0])
        listed.add(code)
        if code not in known:
            problems.append(f"close code {code} in docs/protocol.md is unknown to the client")
        if doc_policy(row[-1]) != after(code):
            problems.append(
                f"close code {code}: the doc says {doc_policy(row[-1])!r}, the client does {after(code)!r}"
            )
    problems += [
        f"close code {c} missing from docs/protocol.md"
        for c in protocol_close_codes().values()
        if c not in listed
    ]
    return problems


def security_doc_problems(text: str) -> list[str]:
    """Close codes (bold) and error codes (error `x`) named in docs/security.md exist."""
    codes = set(protocol_close_codes().values())
    problems = [
        f"close code {c} in docs/security.md"
        for c in map(int, re.findall(r"\*\*(4\d\d\d)\*\*", text))
        if c not in codes
    ]
    errors = re.findall(r"error `([a-z_]+)`", text)
    problems += [f"error code {e} in docs/security.md" for e in errors if e not in protocol.ERROR_CODES]
    return problems


def protocol_docstring_problems(init_text: str) -> list[str]:
    """chat/protocol/__init__.py's docstring table lists every CLOSE_ constant."""
    table = init_text.split("Close codes\n", 1)[1].split('"""', 1)[0]
    listed = {int(code) for code in re.findall(r"^\s+(\d{4})\s", table, re.MULTILINE)}
    return [
        f"close code {c} missing from chat/protocol/__init__.py's docstring"
        for c in protocol_close_codes().values()
        if c not in listed
    ]


# --- the Python clients ---------------------------------------------------------------------


def python_constants(text: str) -> dict[str, object]:
    """Module-level ``NAME = literal`` (and frozensets of names) of a Python file."""
    tree = ast.parse(text)
    values: dict[str, object] = {}
    for node in tree.body:
        if not (
            isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
        ):
            continue
        name = node.targets[0].id
        try:
            values[name] = ast.literal_eval(node.value)
        except ValueError:
            if (
                isinstance(node.value, ast.Call)
                and node.value.args
                and isinstance(node.value.args[0], ast.Set)
            ):
                values[name] = {values.get(e.id) for e in node.value.args[0].elts if isinstance(e, ast.Name)}
    return values


def python_client_problems(text: str, js_text: str, socket_text: str, frames_text: str) -> list[str]:
    """A Python client's close codes, quick-reconnect set, report names and defaults match the JS client."""
    close = js_close_codes(js_text)
    codes = set(close.values())
    defaults = js_frozen_map(socket_text, "DEFAULTS")
    problems = []
    for name, value in python_constants(text).items():
        key = name.removeprefix("CLOSE_")
        if name.startswith("CLOSE_") and isinstance(value, int) and close.get(key) != value:
            problems.append(f"{name} = {value}, the client's CLOSE.{key} is {close.get(key)}")
        elif name == "QUICK_RECONNECT_CODES" and value != js_code_list(
            js_text, "QUICK_RECONNECT", js_frozen_map(js_text, "CLOSE")
        ):
            problems.append(f"QUICK_RECONNECT_CODES = {value}")
        elif name == "CLOSE_NAMES" and isinstance(value, dict):
            problems += [f"CLOSE_NAMES names unknown code {c}" for c in value if c not in codes]
        elif name in PY_DEFAULTS_S and value * 1000 != defaults[PY_DEFAULTS_S[name]]:  # type: ignore[operator]
            problems.append(
                f"{name} = {value}, the client's {PY_DEFAULTS_S[name]} is {defaults[PY_DEFAULTS_S[name]]}"
            )
        elif name == "MAX_ATTEMPTS" and value != defaults["maxAttempts"]:
            problems.append(f"MAX_ATTEMPTS = {value}")
        elif name.startswith("RETRY_AFTER_") and name.endswith("_S"):
            js_name = name.removesuffix("_S") + "_MS"
            js_value = re.search(rf"const {js_name} = (\d+);", frames_text)
            if js_value is None or value * 1000 != int(js_value.group(1)):  # type: ignore[operator]
                problems.append(f"{name} = {value}, frames.js's {js_name} differs")
    return problems


def python_client_files() -> list[Path]:
    return sorted(p for d in PYTHON_CLIENT_DIRS for p in d.rglob("*.py") if "CLOSE_" in read(p))


def no_retry_functions() -> list[tuple[str, Callable[[int], bool]]]:
    """Every ``is_no_retry_close`` of the Python clients, imported."""
    found = []
    for path in sorted(p for d in PYTHON_CLIENT_DIRS for p in d.rglob("*.py")):
        if "def is_no_retry_close(" in read(path):
            module = importlib.import_module(".".join(path.relative_to(ROOT).with_suffix("").parts))
            found.append((str(path.relative_to(ROOT)), module.is_no_retry_close))
    return found


# --- the tests ------------------------------------------------------------------------------


def test_js_constants_match_chat_protocol():
    assert js_problems(read(JS_CONSTANTS), read(PROTOCOL_CODES)) == []


@pytest.mark.parametrize("path", JS_SHARING, ids=lambda p: p.name)
def test_js_modules_import_close_codes_instead_of_redeclaring(path):
    assert "./ripple/constants.js" in read(path)
    assert js_sharing_problems(read(path)) == []


def test_protocol_doc_tables_match_chat_protocol_and_the_client_policy():
    assert protocol_doc_problems(read(PROTOCOL_DOC), read(PROTOCOL_CODES), read(JS_CONSTANTS)) == []


def test_security_doc_names_only_real_codes():
    assert security_doc_problems(read(SECURITY_DOC)) == []


def test_protocol_docstring_lists_every_close_code():
    assert protocol_docstring_problems(read(PROTOCOL_INIT)) == []


def test_python_clients_copy_the_client_close_codes_and_defaults():
    files = python_client_files()
    assert any(p.match("tests/support/chat_client.py") for p in files)
    assert any(p.is_relative_to(ROOT / "bench") for p in files)
    js, socket, frames = read(JS_CONSTANTS), read(JS_OPTIONS), read(JS_FRAMES)
    problems = {str(p.relative_to(ROOT)): python_client_problems(read(p), js, socket, frames) for p in files}
    assert {path: found for path, found in problems.items() if found} == {}


def test_python_clients_stay_away_after_the_same_codes_as_the_js_client():
    after = js_policy(read(JS_CONSTANTS))
    functions = no_retry_functions()
    assert len(functions) >= 2, "tests/support/chat_client.py and bench's storm policy"
    codes = [1000, 1001, 1005, 1006, 1008, 1011, 1012, 4000, 4001, 4002, 4003, 4399, 4400, 4499, 4500]
    codes += list(js_close_codes(read(JS_CONSTANTS)).values())
    for where, is_no_retry_close in functions:
        disagree = [c for c in codes if is_no_retry_close(c) != (after(c) == STAY_AWAY)]
        assert disagree == [], where


# --- the checks catch drift -----------------------------------------------------------------


def drifted(text: str, old: str, new: str) -> str:
    assert old in text, f"{old!r} not found: update this test's example"
    return text.replace(old, new, 1)


def test_a_drifted_js_copy_is_caught():
    js, proto = read(JS_CONSTANTS), read(PROTOCOL_CODES)
    assert js_problems(drifted(js, "SESSION_ENDED: 4401,", "SESSION_ENDED: 4402,"), proto)
    assert js_problems(drifted(js, "  ROOM_CLOSED: 'room_closed',\n});", "});"), proto)
    assert js_problems(drifted(js, "  RATE_LIMITED: 'rate_limited',\n", ""), proto)
    assert js_sharing_problems("const CLOSE_ABNORMAL = 1006;")


def test_a_drifted_doc_or_policy_is_caught():
    doc, proto, js = read(PROTOCOL_DOC), read(PROTOCOL_CODES), read(JS_CONSTANTS)
    assert protocol_doc_problems(drifted(doc, "| 4403 | Ripple |", ""), proto, js)
    assert protocol_doc_problems(drifted(doc, "| `forbidden` |", "| `forbidden_room` |"), proto, js)
    reconnects_4403 = drifted(
        js,
        "RETRY_IN_NO_RETRY_RANGE = Object.freeze([",
        "RETRY_IN_NO_RETRY_RANGE = Object.freeze([CLOSE.DISCONNECTED_BY_MODERATOR, ",
    )
    assert protocol_doc_problems(doc, proto, reconnects_4403)
    assert security_doc_problems("closed with **4430**")


def test_a_drifted_python_client_is_caught():
    js, socket, frames = read(JS_CONSTANTS), read(JS_OPTIONS), read(JS_FRAMES)
    client = read(ROOT / "tests/support/chat_client.py")
    assert python_client_problems(
        drifted(client, "CLOSE_HEARTBEAT_TIMEOUT = 4408", "CLOSE_HEARTBEAT_TIMEOUT = 4409"),
        js,
        socket,
        frames,
    )
    storm = (
        "CLOSE_DRAINING = 4512\nQUICK_RECONNECT_CODES = frozenset({CLOSE_DRAINING})\nBACKOFF_BASE_S = 0.25\n"
    )
    assert len(python_client_problems(storm, js, socket, frames)) == 2
