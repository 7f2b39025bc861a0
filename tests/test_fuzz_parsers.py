"""A bounded fuzzing run over every sender's checks, verifier and parser, plus the storage forms
(tests/fuzz_parsers.py): atheris, coverage-guided, for a fixed time budget when it is installed; the same
target under hypothesis over raw bytes otherwise. Either way a crash fails the test."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzz_parsers import one_input, seeds

ATHERIS_SECONDS = int(os.environ.get("BROKER_FUZZ_SECONDS", "15"))
HAS_ATHERIS = importlib.util.find_spec("atheris") is not None


def test_fuzz_parsers_and_verifiers(tmp_path: Path) -> None:
    if not HAS_ATHERIS:
        fuzz_with_hypothesis()
        return
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for index, seed in enumerate(seeds()):
        (corpus / f"seed-{index}").write_bytes(seed)
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.fuzz_parsers",
            f"-max_total_time={ATHERIS_SECONDS}",
            "-max_len=8192",
            "-rss_limit_mb=1024",
            f"-artifact_prefix={tmp_path}/",
            str(corpus),
        ],
        capture_output=True,
        text=True,
        timeout=ATHERIS_SECONDS + 60,
        cwd=Path(__file__).resolve().parents[1],
    )
    tail = "\n".join(run.stderr.splitlines()[-40:])
    assert run.returncode == 0, f"atheris found a crash:\n{tail}"
    assert "Done" in run.stderr, tail  # it ran to its time budget, not stopped early


@settings(max_examples=3000, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.one_of(st.binary(max_size=4096), st.sampled_from(seeds())))
def fuzz_with_hypothesis(data: bytes) -> None:
    one_input(data)


def test_seeds_reach_the_parsers() -> None:
    # The seeds are valid deliveries, so the fuzzer starts from inputs that parse.
    from tests.fuzz_parsers import split

    for seed in seeds():
        source, headers, body = split(seed)
        from handlers.senders import SENDERS

        assert SENDERS[source].parse(headers, body)
