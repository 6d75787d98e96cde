"""``python -m magk_client.cli``: the ``magk-client`` command."""

import sys

from . import main

sys.exit(main())
