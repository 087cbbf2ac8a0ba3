"""``python -m diffgan_lib``: the command line (see ``diffgan_lib.cli``)."""
from .cli import main

raise SystemExit(main())
