"""Generate, check and lint the protobuf contracts.

    python scripts/protos.py gen     # regenerate *_pb2.py, *_pb2_grpc.py, *.pyi beside the protos
    python scripts/protos.py check   # fail when the committed generated code is stale
    python scripts/protos.py lint    # fail when a buf-style rule adopted by the project is broken

buf itself is a Go binary that cannot be installed from the package index, so the rules we adopt
from buf's DEFAULT set (plus "everything is commented") are checked here over the descriptors that
protoc (grpcio-tools) produces with source info.
"""

from __future__ import annotations

import filecmp
import os
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2_grpc.py", "_pb2.pyi", "_pb2_grpc.pyi")


def proto_files() -> list[str]:
    return sorted(str(p.relative_to(PROTOS)) for p in PROTOS.rglob("*.proto"))


def _protoc(args: list[str]) -> None:
    from grpc_tools import protoc
    import grpc_tools

    include = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    # google/rpc/*.proto (status, error_details) ship with googleapis-common-protos, beside
    # their generated modules; card_service.proto imports google/rpc/status.proto.
    from google.rpc import status_pb2

    rpc_include = str(Path(status_pb2.__file__).resolve().parents[2])
    cwd = os.getcwd()
    os.chdir(PROTOS)
    try:
        code = protoc.main(["protoc", "-I.", f"-I{include}", f"-I{rpc_include}", *args, *proto_files()])
    finally:
        os.chdir(cwd)
    if code != 0:
        raise SystemExit(f"protoc failed with exit code {code}")


def generate(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    o = str(out.resolve())
    # The mypy-protobuf plugins are scripts installed beside this interpreter.
    bindir = Path(sys.executable).parent
    _protoc([
        f"--plugin=protoc-gen-mypy={bindir / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={bindir / 'protoc-gen-mypy_grpc'}",
        f"--python_out={o}", f"--grpc_python_out={o}", f"--mypy_out={o}", f"--mypy_grpc_out={o}",
    ])
    # setuptools only ships directories that are packages.
    for d in [PROTOS / "miandan", *[p for p in (PROTOS / "miandan").rglob("*") if p.is_dir()]]:
        init = out / d.relative_to(PROTOS) / "__init__.py"
        init.parent.mkdir(parents=True, exist_ok=True)
        if not init.exists():
            init.write_text("")


def generated_files(root: Path) -> set[str]:
    return {
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.is_file() and p.name.endswith(GENERATED_SUFFIXES)
    }


def check() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp)
        generate(fresh)
        want, have = generated_files(fresh), generated_files(PROTOS)
        problems = [f"missing: protos/{f}" for f in sorted(want - have)]
        problems += [f"not generated from any .proto: protos/{f}" for f in sorted(have - want)]
        problems += [
            f"stale: protos/{f}"
            for f in sorted(want & have)
            if not filecmp.cmp(fresh / f, PROTOS / f, shallow=False)
        ]
    for p in problems:
        print(p)
    if problems:
        print("generated code is stale: run `make protos` and commit the result")
        return 1
    print(f"generated code is up to date ({len(want)} files)")
    return 0


# --- lint -------------------------------------------------------------------------------------

MUTATING_VERBS = (
    "Create", "Claim", "Accept", "Reserve", "Confirm", "Release", "Refund", "Place", "Cancel",
    "Update", "Upsert", "Set", "Add", "Clear", "Enter", "Commit", "Run", "Join",
)
SNAKE = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")
PASCAL = re.compile(r"^[A-Z][A-Za-z0-9]*$")
UPPER_SNAKE = re.compile(r"^[A-Z][A-Z0-9]*(_[A-Z0-9]+)*$")


def _upper_snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).upper()


def lint() -> int:
    from google.protobuf import descriptor_pb2

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "set.pb"
        _protoc([f"--descriptor_set_out={out}", "--include_source_info"])
        fds = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())

    errors: list[str] = []
    messages: dict[str, descriptor_pb2.DescriptorProto] = {}
    for f in fds.file:
        for m in f.message_type:
            messages[f".{f.package}.{m.name}"] = m

    for f in fds.file:
        comments = {tuple(loc.path): loc.leading_comments.strip() for loc in f.source_code_info.location}

        def need_comment(path: tuple[int, ...], what: str) -> None:
            if not comments.get(path):
                errors.append(f"{f.name}: {what} has no comment")

        expected_pkg = os.path.dirname(f.name).replace("/", ".")
        if f.package != expected_pkg:
            errors.append(f"{f.name}: package {f.package} does not match its directory {expected_pkg}")
        if not re.search(r"\.v\d+$", f.package):
            errors.append(f"{f.name}: package {f.package} is not versioned (.v1)")
        if not comments.get((2,)):
            errors.append(f"{f.name}: package has no comment")

        for ei, e in enumerate(f.enum_type):
            need_comment((5, ei), f"enum {e.name}")
            prefix = _upper_snake(e.name) + "_"
            if not e.value or e.value[0].number != 0 or e.value[0].name != prefix + "UNSPECIFIED":
                errors.append(f"{f.name}: enum {e.name} must start with {prefix}UNSPECIFIED = 0")
            for vi, v in enumerate(e.value):
                need_comment((5, ei, 2, vi), f"enum value {v.name}")
                if not v.name.startswith(prefix) or not UPPER_SNAKE.match(v.name):
                    errors.append(f"{f.name}: enum value {v.name} must be UPPER_SNAKE with prefix {prefix}")

        for mi, m in enumerate(f.message_type):
            need_comment((4, mi), f"message {m.name}")
            if not PASCAL.match(m.name):
                errors.append(f"{f.name}: message {m.name} is not PascalCase")
            for fi, fld in enumerate(m.field):
                need_comment((4, mi, 2, fi), f"field {m.name}.{fld.name}")
                if not SNAKE.match(fld.name):
                    errors.append(f"{f.name}: field {m.name}.{fld.name} is not lower_snake_case")
                if fld.name.endswith("_fen") and fld.type != fld.TYPE_INT64:
                    errors.append(f"{f.name}: money field {m.name}.{fld.name} must be int64 fen")
                if fld.name.endswith("_time") and fld.type_name != ".google.protobuf.Timestamp":
                    errors.append(f"{f.name}: time field {m.name}.{fld.name} must be a Timestamp")
                if fld.type in (fld.TYPE_FLOAT,) and "fen" in fld.name:
                    errors.append(f"{f.name}: money must never be a float ({m.name}.{fld.name})")

        used: dict[str, str] = {}
        for si, s in enumerate(f.service):
            need_comment((6, si), f"service {s.name}")
            if not s.name.endswith("Service"):
                errors.append(f"{f.name}: service {s.name} must end with Service")
            for ri, r in enumerate(s.method):
                need_comment((6, si, 2, ri), f"rpc {s.name}.{r.name}")
                for kind, type_name in (("Request", r.input_type), ("Response", r.output_type)):
                    want = f".{f.package}.{r.name}{kind}"
                    if type_name != want:
                        errors.append(f"{f.name}: rpc {r.name} must take/return {want[1:]}, not {type_name[1:]}")
                    if type_name in used:
                        errors.append(f"{f.name}: {type_name[1:]} is used by {used[type_name]} and {r.name}")
                    used[type_name] = r.name
                req = messages.get(r.input_type)
                resp = messages.get(r.output_type)
                if req is None or resp is None:
                    continue
                req_fields = {x.name for x in req.field}
                if r.name.startswith("List"):
                    for need in ("page_size", "page_token"):
                        if need not in req_fields:
                            errors.append(f"{f.name}: list rpc {r.name} request lacks {need}")
                    if "next_page_token" not in {x.name for x in resp.field}:
                        errors.append(f"{f.name}: list rpc {r.name} response lacks next_page_token")
                if r.name.startswith(MUTATING_VERBS) and not r.client_streaming and "request_id" not in req_fields:
                    errors.append(f"{f.name}: mutating rpc {r.name} request lacks request_id")

    for e in errors:
        print(e)
    if errors:
        print(f"{len(errors)} lint error(s)")
        return 1
    print(f"proto lint ok ({len(fds.file)} files)")
    return 0


def main(argv: list[str]) -> int:
    cmd = argv[1] if len(argv) > 1 else "gen"
    if cmd == "gen":
        generate(PROTOS)
        return 0
    if cmd == "check":
        return check()
    if cmd == "lint":
        return lint()
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
