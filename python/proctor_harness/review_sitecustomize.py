"""Installed as `sitecustomize` in a review's smoke run: every Python process the project
starts (children, grandchildren, `-m` modules) records itself and its uncaught exception,
and gets the stand-ins too."""

import os

# The project's installed dependencies: after the runtime on the path (`.pth` files honoured).
if os.environ.get("PROCTOR_REVIEW_ENV") and os.path.isdir(os.environ["PROCTOR_REVIEW_ENV"]):
    try:
        import site

        site.addsitedir(os.environ["PROCTOR_REVIEW_ENV"])
    except Exception:
        pass

if os.environ.get("PROCTOR_REVIEW_EVENTS"):
    try:
        import sys

        import proctor_review_standins as _standins

        _standins.record_process()
        _standins.install()
        _previous_hook = sys.excepthook

        def _hook(kind, value, tb):
            _standins.report_exception(value)
            _previous_hook(kind, value, tb)

        sys.excepthook = _hook
    except Exception:
        pass
