"""proctor's in-sandbox harness: the warm zygote, run children and persistent sessions.

Runs inside the sandbox, next to untrusted code. It talks to proctor only through the
control socket it is handed (length-delimited JSON datagrams) and never decides a grade.
"""
