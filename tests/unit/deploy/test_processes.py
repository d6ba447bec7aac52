"""The local servers' processes: a failing command's error and log."""

from __future__ import annotations

import pytest

from deploy.local.processes import InfraError, run


def test_a_secret_on_a_failing_command_line_is_kept_out_of_the_log_and_the_error(
        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(InfraError) as failure:
        run(["sh", "-c", "echo s3cret >&2; exit 3", "s3cret"], secret="s3cret")
    assert "s3cret" not in str(failure.value) and "***" in str(failure.value)
    assert "s3cret" not in capsys.readouterr().err
