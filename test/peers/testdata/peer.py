"""A TLS 1.3 peer on Python's ssl (OpenSSL) for golibtls's tests.

    peer.py ROLE MODE COUNT CERT KEY CA [PORT]

ROLE is "server" (listens on 127.0.0.1, prints its port, serves one
connection) or "client" (connects to 127.0.0.1:PORT, server name
"localhost"). After the handshake it sends, by MODE:

    tickets          COUNT session tickets (server; ctx.num_tickets), then "hello"
    keyupdate        COUNT KeyUpdate messages, then "hello"
    flood-tickets    session tickets until the connection fails (server)
    flood-keyupdate  KeyUpdate messages until the connection fails
    halfclose        "request", then shuts down its TCP write side without
                     close_notify

and then reads until the end of the stream and prints what it read as
"read: <repr>", or the error as "error: ...". A flood prints "sent: N".
Every wait is bounded (20 s).
"""

import ctypes
import select
import socket
import ssl
import sys
import time

import _ssl

role, mode, count, cert, key, ca = sys.argv[1:7]
count = int(count)

if role == "server":
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    ctx.num_tickets = count if mode == "tickets" else 0
else:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(ca)
ctx.minimum_version = ssl.TLSVersion.TLSv1_3

if role == "server":
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(1)
    ls.settimeout(20)
    print(ls.getsockname()[1], flush=True)
    raw, _ = ls.accept()
    raw.settimeout(20)
    t = ctx.wrap_socket(raw, server_side=True)
else:
    raw = socket.create_connection(("127.0.0.1", int(sys.argv[7])), timeout=20)
    t = ctx.wrap_socket(raw, server_hostname="localhost")

# Python's ssl cannot send a KeyUpdate or an extra ticket: call OpenSSL
# through ctypes on the SSL object (the field after the socket in CPython's
# PySSLSocket), checked first with SSL_version.
lib = ctypes.CDLL(getattr(_ssl, "__file__", None))  # None: built into python3
for name in ("SSL_version", "SSL_key_update", "SSL_new_session_ticket", "SSL_do_handshake"):
    getattr(lib, name).argtypes = [ctypes.c_void_p] + ([ctypes.c_int] if name == "SSL_key_update" else [])
ssl_ptr = ctypes.cast(id(t._sslobj), ctypes.POINTER(ctypes.c_void_p))[3]
if lib.SSL_version(ssl_ptr) != 0x304:
    sys.exit("cannot find the SSL object of Python's ssl module")


def send_one(kind):
    """Queues one KeyUpdate or ticket and sends it (SSL_do_handshake)."""
    if kind == "keyupdate":
        ok = lib.SSL_key_update(ssl_ptr, 0)
    else:
        ok = lib.SSL_new_session_ticket(ssl_ptr)
    return ok == 1 and lib.SSL_do_handshake(ssl_ptr) == 1


if mode == "keyupdate":
    for _ in range(count):
        if not send_one("keyupdate"):
            sys.exit("SSL_key_update failed")
elif mode.startswith("flood-"):
    # Until the connection fails or the peer has closed its end (a failed
    # write does not always make SSL_do_handshake fail).
    closed = select.poll()
    closed.register(t.fileno(), select.POLLRDHUP)
    sent, end = 0, time.monotonic() + 20
    while time.monotonic() < end and send_one(mode[len("flood-"):]):
        sent += 1
        if sent % 50 == 0 and closed.poll(0):
            break
    print("sent:", sent, flush=True)
    sys.exit(0)

if mode == "halfclose":
    t.sendall(b"request")
    # shutdown(2) on a duplicate of the descriptor: the TLS object stays.
    socket.socket(fileno=socket.dup(t.fileno())).shutdown(socket.SHUT_WR)
else:
    t.sendall(b"hello")

got = b""
try:
    while True:
        b = t.recv(1024)
        if not b:
            break
        got += b
except Exception as e:  # noqa: BLE001 - reported to the test
    print("read:", repr(got), flush=True)
    print("error:", e, flush=True)
    sys.exit(0)
print("read:", repr(got), flush=True)
