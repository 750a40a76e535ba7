"""An outside QUIC client (aioquic) that sends a gateway its first Initial and then never
answers, so its address is never validated. Prints, as one JSON object, what it sent and
what the gateway sent back within the window: the test checks QUIC's anti-amplification
bound (RFC 9000 section 8.1: before validation, at most three times the bytes received).

    python amplification.py HOST PORT SECONDS
"""

import json
import socket
import ssl
import sys
import time

from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection


LONG_HEADER_KINDS = {0: "initial", 1: "0-rtt", 2: "handshake", 3: "retry"}


def packet_kind(datagram: bytes) -> str:
    """The first packet's kind: a long header's type, or `short`."""
    if not datagram or not datagram[0] & 0x80:
        return "short"
    return LONG_HEADER_KINDS[(datagram[0] & 0x30) >> 4]


def main() -> None:
    host, port, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    config = QuicConfiguration(
        is_client=True,
        alpn_protocols=["isthmus/1.1", "isthmus/1"],
        # The handshake never gets far enough for a certificate to matter: the client
        # stops after its first flight.
        verify_mode=ssl.CERT_NONE,
        server_name="gateway",
    )
    connection = QuicConnection(configuration=config)
    connection.connect((host, port), now=time.time())
    flight = connection.datagrams_to_send(now=time.time())

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    started = time.monotonic()
    sent = 0
    for data, _ in flight:
        sent += sock.sendto(data, (host, port))

    received, datagrams, first, last = 0, 0, None, None
    replies = []
    deadline = started + seconds
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        sock.settimeout(left)
        try:
            data, _ = sock.recvfrom(65535)
        except socket.timeout:
            break
        now = time.monotonic() - started
        first = now if first is None else first
        last = now
        received += len(data)
        datagrams += 1
        replies.append([round(now, 3), len(data), packet_kind(data)])
    print(
        json.dumps(
            {
                "sent": sent,
                "datagrams_sent": len(flight),
                "received": received,
                "datagrams_received": datagrams,
                "first_reply_s": first,
                "last_reply_s": last,
                "replies": replies,
            }
        )
    )


if __name__ == "__main__":
    main()
