import resource
from pathlib import Path

from services.common.server import raise_open_file_limit


class FakeLimits:
    def __init__(self, soft, hard, refuse=False):
        self.limits, self.refuse, self.set_to = (soft, hard), refuse, None

    def get(self, which):
        assert which == resource.RLIMIT_NOFILE
        return self.limits

    def set(self, which, value):
        if self.refuse:
            raise ValueError("not allowed")
        self.set_to = self.limits = value


def patch(monkeypatch, fake):
    monkeypatch.setattr(resource, "getrlimit", fake.get)
    monkeypatch.setattr(resource, "setrlimit", fake.set)


def test_the_soft_limit_is_lifted_to_the_hard_limit(monkeypatch):
    fake = FakeLimits(1024, 524_288)
    patch(monkeypatch, fake)
    assert raise_open_file_limit() == (1024, 524_288)
    assert fake.set_to == (524_288, 524_288)


def test_nothing_changes_when_already_at_the_hard_limit_or_when_refused(monkeypatch):
    fake = FakeLimits(4096, 4096)
    patch(monkeypatch, fake)
    assert raise_open_file_limit() is None and fake.set_to is None
    fake = FakeLimits(1024, 4096, refuse=True)
    patch(monkeypatch, fake)
    assert raise_open_file_limit() is None


def test_an_unlimited_hard_limit_gets_a_finite_soft_one(monkeypatch):
    fake = FakeLimits(1024, resource.RLIM_INFINITY)
    patch(monkeypatch, fake)
    assert raise_open_file_limit() == (1024, 1 << 20)
    assert fake.set_to == (1 << 20, resource.RLIM_INFINITY)


def test_a_real_process_ends_at_its_hard_limit():
    import subprocess
    import sys

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    low = min(soft, 256)
    code = (
        "import resource, sys; sys.path[:0] = ['protos', '.']\n"
        f"resource.setrlimit(resource.RLIMIT_NOFILE, ({low}, {hard}))\n"
        "from services.common.server import raise_open_file_limit\n"
        "raise_open_file_limit()\n"
        "print(resource.getrlimit(resource.RLIMIT_NOFILE)[0])\n"
    )
    root = Path(__file__).resolve().parents[3]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root).stdout
    expected = hard if hard != resource.RLIM_INFINITY else 1 << 20
    assert int(out) == expected
