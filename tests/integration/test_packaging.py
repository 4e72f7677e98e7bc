"""`pip install .` gives a client application the generated stubs and the .proto files."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_wheel_ships_stubs_protos_and_services_that_import_from_it_alone(tmp_path):
    source = tmp_path / "src"
    # Build from a copy so the run leaves no build/ or egg-info in the work tree.
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".venv", "data", ".git", "build", "*.egg-info", "__pycache__", "bench-out"))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", str(source), "-w", str(tmp_path / "dist")],
        check=True, capture_output=True,
    )
    wheel = next((tmp_path / "dist").glob("miandan-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for area in ("card", "catalog", "order", "lottery", "gateway"):
        assert f"miandan/{area}/v1/{area}_service.proto" in names
        assert f"miandan/{area}/v1/{area}_service_pb2_grpc.py" in names
        assert f"miandan/{area}/v1/{area}_service_pb2.pyi" in names
    assert "services/common/server.py" in names

    unpacked = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(unpacked)
    probe = (
        "from miandan.card.v1 import card_service_pb2_grpc, card_service_pb2;"
        "import importlib.resources as r;"
        "assert 'service CardService' in (r.files('miandan.card.v1') / 'card_service.proto').read_text();"
        "print(card_service_pb2_grpc.CardServiceStub.__name__)"
    )
    out = subprocess.run([sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(unpacked)!r}); {probe}"],
                         capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "CardServiceStub"
