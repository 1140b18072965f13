"""``python -m dysen.cli``: the same as the ``dysen`` console script; as a process of a multi-process launch
(torchrun, ``dysen launch``) it ends the process group when the command succeeds
(``dysen.train.loop.end_process_group``)."""

import sys

from dysen.cli import main

code = main()
if code == 0 and "torch.distributed" in sys.modules:
    from dysen.train.loop import end_process_group

    end_process_group()
sys.exit(code)
