"""``infra.py`` as the Makefile runs it: a script of the standard library alone; nothing is started."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

INFRA = Path(__file__).resolve().parents[3] / "deploy" / "local" / "infra.py"


def test_the_sasl_port_is_read_from_the_environment_by_the_standard_library_alone(tmp_path: Path) -> None:
    code = "import infra; print(infra.Kafka().sasl_port, infra.Kafka(sasl_port=None).sasl_port)"
    env = {"PATH": os.environ.get("PATH", ""), "CARECRM_RUN_DIR": str(tmp_path)}
    for value, expected in (("29094", "29094 None"), ("", "None None")):
        # -S -I: no site-packages and no user paths, as with a bare system python3.
        out = subprocess.run([sys.executable, "-S", "-I", "-c", f"import sys; sys.path.insert(0, '.'); {code}"],
                             cwd=INFRA.parent, env={**env, "CARECRM_KAFKA_SASL_PORT": value},
                             capture_output=True, text=True, check=True).stdout
        assert out.strip() == expected


def test_the_script_runs_from_any_directory_with_the_standard_library_alone(tmp_path: Path) -> None:
    env = {"PATH": os.environ.get("PATH", ""), "CARECRM_RUN_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-S", "-I", str(INFRA), "status"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == ["kafka: stopped", "ferretdb: stopped", "postgresql: stopped"]
