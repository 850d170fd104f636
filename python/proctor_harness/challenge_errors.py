"""Errors of a challenge run as the participant should read them (both sandboxes).

Imported as `proctor_errors`. A traceback keeps the participant's frames (and the
libraries they called) and drops proctor's own harness frames, and names the
participant's files relative to their project ("solution.py", line 12), so an error
points at their file and line, never at proctor's.
"""
import os
import sys
import traceback

# A warm run's ../inputs is a link to where the sandbox keeps its inputs, and Python names
# frames by either form: frames are compared resolved, and both forms are stripped.
INPUTS = os.path.abspath(os.path.join("..", "inputs"))
_REAL_INPUTS = os.path.realpath(INPUTS)
_REAL_CODE = os.path.join(_REAL_INPUTS, "code") + os.sep
CODES = sorted({os.path.join(INPUTS, "code") + os.sep, _REAL_CODE}, key=len, reverse=True)


def _ours(filename):
    if filename.startswith("<frozen importlib"):
        return True
    path = os.path.realpath(filename)
    return path.startswith(_REAL_INPUTS + os.sep) and not path.startswith(_REAL_CODE)


def participant_traceback():
    """The current exception's traceback without proctor's frames."""
    error = sys.exc_info()[1]
    summary = traceback.TracebackException.from_exception(error)
    seen = set()
    part = summary
    while part is not None and id(part) not in seen:
        seen.add(id(part))
        frames = [f for f in part.stack if not _ours(f.filename)]
        part.stack = traceback.StackSummary.from_list(frames)
        part = part.__cause__ or part.__context__
    text = "".join(summary.format())
    for code in CODES:
        text = text.replace(code, "")
    return text
