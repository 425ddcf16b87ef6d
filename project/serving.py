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
MAX_WEBSOCKET_MESSAGE_BYTES = 4 * 1024 * 1024
# What a client may send in one message, however many frames it is split into: the frame limit.
# autobahn has one message limit for both directions, so chat/daphne_guard.py applies this one
# to incoming messages itself, before buffering a fragment past it (the client sees 1009 or
# 1006). Otherwise every socket could make the worker hold 4 MiB of fragments.
MAX_WEBSOCKET_INCOMING_MESSAGE_BYTES = MAX_WEBSOCKET_FRAME_BYTES

DAPHNE_FLAGS = [
    "--websocket-max-message-size",
    str(MAX_WEBSOCKET_MESSAGE_BYTES),
    "--websocket-max-frame-size",
    str(MAX_WEBSOCKET_FRAME_BYTES),
    # No 24 h cap on a socket's life (daphne's default is 86,400 s).
    "--websocket_timeout",
    "-1",
]
