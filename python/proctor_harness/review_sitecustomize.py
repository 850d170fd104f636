"""Installed as `sitecustomize` in a review's smoke run: subprocesses get the stand-ins too."""

import os

if os.environ.get("PROCTOR_REVIEW_EVENTS"):
    try:
        import sys

        import proctor_review_standins as _standins

        _standins.install()
        _previous_hook = sys.excepthook

        def _hook(kind, value, tb):
            _standins.report_exception(value)
            _previous_hook(kind, value, tb)

        sys.excepthook = _hook
    except Exception:
        pass
