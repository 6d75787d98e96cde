"""What every example shares: ``--url`` for a real backend, else the embedded reference backend.

    python examples/workflow_monitor.py                      # embedded backend (needs [server])
    python examples/workflow_monitor.py --url http://localhost:8000 --workflow my-workflow
"""

from __future__ import annotations

import argparse
import contextlib
import os
from typing import Iterator, Optional


def arguments(description: str, *, node: bool = False) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    if node:
        parser.add_argument("--node", default="n-2", help="the node to follow (default n-2)")
    parser.add_argument("--url", default=None, help="a real backend's base URL (default: start the embedded one)")
    parser.add_argument("--workflow", default="wf-1", help="the workflow to use (default wf-1)")
    parser.add_argument("--token", default=os.environ.get("MAGK_TOKEN"), help="bearer token (default $MAGK_TOKEN)")
    return parser.parse_args()


@contextlib.contextmanager
def backend_url(url: Optional[str], pace: float = 0.02) -> Iterator[str]:
    """``url`` itself, or the base URL of an embedded reference backend running for the block."""
    if url:
        yield url
        return
    from magk_client.testing import Backend

    with Backend(pace=pace) as backend:  # wf-1: nodes n-1, n-2, n-3
        yield backend.base_url
