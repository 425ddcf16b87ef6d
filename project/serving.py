"""How Ripple's daphne workers are started: one definition for deploy/, tests/ and bench/.

The Makefile and the Dockerfile spell the same flags out (they cannot import this module);
tests/unit/test_settings.py checks they agree.
"""

# daphne drops a connection whose incoming frame exceeds this (the client sees 1006). 64 KiB is
# well below daphne's 1 MiB default and above the app's own limit (RIPPLE_MAX_FRAME_CHARS,
# 16,384 characters: at most 64 KiB of UTF-8), which answers with an error frame instead.
MAX_WEBSOCKET_FRAME_BYTES = 65536
# The message limit applies to what the server sends too (autobahn refuses to send more), and
# a `subscribed` frame carries up to RIPPLE_MAX_HISTORY_BYTES of messages plus the member list.
# An incoming message split into many frames is buffered up to this before the app refuses it.
MAX_WEBSOCKET_MESSAGE_BYTES = 4 * 1024 * 1024

DAPHNE_FLAGS = [
    "--websocket-max-message-size",
    str(MAX_WEBSOCKET_MESSAGE_BYTES),
    "--websocket-max-frame-size",
    str(MAX_WEBSOCKET_FRAME_BYTES),
    # No 24 h cap on a socket's life (daphne's default is 86,400 s).
    "--websocket_timeout",
    "-1",
]
