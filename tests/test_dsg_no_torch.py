"""dysen.dsg is pure Python: importing all of it must not import torch."""

from __future__ import annotations

import subprocess
import sys


def test_dsg_modules_do_not_import_torch():
    code = (
        "import sys\n"
        "import dysen.dsg, dysen.dsg.convert, dysen.dsg.textfmt, dysen.dsg.metrics, dysen.dsg.io\n"
        "print('torch' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.strip() == "False"
