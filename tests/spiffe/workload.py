"""A SPIFFE workload, with py-spiffe, against a gateway's Workload API
(gateway/tests/workload_api.rs runs it). Prints one line per fact, for the test to read.

    workload.py SOCKET fetch     each SVID's SPIFFE ID and serial, and the bundle's trust domains
    workload.py SOCKET refused   expects the API to refuse this caller; prints why
    workload.py SOCKET rotates   waits (up to 60 s) for the stream to push a new SVID
    workload.py SOCKET call ID ADDR NAME
                                 mutual TLS to ADDR (a gateway's workload mTLS listener)
                                 with the SVID ID (`-`: none), server name NAME; sends a
                                 line and prints `echoed`, or `refused` and why
    workload.py SOCKET oversized SIZE
                                 a FetchX509SVID request (raw, with grpcio) carrying SIZE
                                 bytes in a field no message has; prints `answered` or
                                 `refused CODE DETAILS`
    workload.py SOCKET hold ID ADDR NAME
                                 the same, then a line every 100 ms until the connection
                                 is cut (prints `cut`), at most 60 s
"""
import os
import socket as net
import ssl
import sys
import tempfile
import time

from cryptography.hazmat.primitives import serialization
from spiffe import WorkloadApiClient, X509Source

socket, mode = "unix://" + sys.argv[1], sys.argv[2]


def mtls_context(want):
    """A TLS client context with the SVID `want` (none for `-`) and the bundle's roots.
    The gateway's certificate names it by SPIFFE ID, not by a DNS name: the chain is
    verified here and the ID printed for the test to check."""
    client = WorkloadApiClient(socket_path=socket, default_timeout=30)
    bundles = client.fetch_x509_bundles()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_REQUIRED
    pem = serialization.Encoding.PEM
    roots = b"".join(
        root.public_bytes(pem) for bundle in bundles.bundles for root in bundle.x509_authorities
    )
    context.load_verify_locations(cadata=roots.decode())
    if want != "-":
        svid = next(s for s in client.fetch_x509_svids() if str(s.spiffe_id) == want)
        directory = tempfile.mkdtemp()
        chain, key = os.path.join(directory, "svid.pem"), os.path.join(directory, "key.pem")
        with open(chain, "wb") as f:
            f.write(b"".join(c.public_bytes(pem) for c in svid.cert_chain))
        with open(key, "wb") as f:
            f.write(
                svid.private_key.private_bytes(
                    pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
                )
            )
        context.load_cert_chain(chain, key)
    client.close()
    return context


def connect(want, address, name):
    host, port = address.rsplit(":", 1)
    tls = mtls_context(want).wrap_socket(
        net.create_connection((host, int(port)), timeout=30), server_hostname=name
    )
    uris = [v for k, v in tls.getpeercert().get("subjectAltName", ()) if k == "URI"]
    print("server", ",".join(uris), flush=True)
    return tls


def exchange(tls, line):
    """Sends `line` and reads it back; False when the connection ends first."""
    tls.sendall(line)
    echoed = b""
    while len(echoed) < len(line):
        chunk = tls.recv(len(line) - len(echoed))
        if not chunk:
            return False
        echoed += chunk
    return echoed == line

if mode == "fetch":
    client = WorkloadApiClient(socket_path=socket, default_timeout=30)
    for svid in client.fetch_x509_svids():
        print("svid", svid.spiffe_id, svid.leaf.serial_number, flush=True)
    bundles = client.fetch_x509_bundles()
    for bundle in bundles.bundles:
        print("bundle", bundle.trust_domain, len(bundle.x509_authorities), flush=True)
    client.close()
elif mode == "refused":
    client = WorkloadApiClient(socket_path=socket, default_timeout=30)
    try:
        svid = client.fetch_x509_svid()
    except Exception as e:  # py-spiffe wraps the gRPC status
        print("refused", type(e).__name__, str(e).replace("\n", " "), flush=True)
        sys.exit(0)
    print("issued", svid.spiffe_id, flush=True)
    sys.exit(1)
elif mode == "rotates":
    source = X509Source(socket_path=socket, timeout_in_seconds=30)
    first = source.svid.leaf.serial_number
    print("first", source.svid.spiffe_id, first, flush=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        current = source.svid.leaf.serial_number
        if current != first:
            print("rotated", source.svid.spiffe_id, current, flush=True)
            source.close()
            sys.exit(0)
        time.sleep(0.2)
    print("not rotated", flush=True)
    sys.exit(1)
elif mode == "call":
    try:
        tls = connect(*sys.argv[3:6])
        ok = exchange(tls, b"hello through the mesh\n")
    except (OSError, ssl.SSLError) as e:
        print("refused", type(e).__name__, str(e).replace("\n", " "), flush=True)
        sys.exit(0)
    print("echoed" if ok else "refused closed", flush=True)
elif mode == "hold":
    tls = connect(*sys.argv[3:6])
    deadline, sent = time.monotonic() + 60, 0
    while time.monotonic() < deadline:
        try:
            if not exchange(tls, b"ping %d\n" % sent):
                raise ConnectionResetError("closed")
        except (OSError, ssl.SSLError) as e:
            print("cut", sent, type(e).__name__, flush=True)
            sys.exit(0)
        sent += 1
        print("echo", sent, flush=True)
        time.sleep(0.1)
    print("still open", flush=True)
    sys.exit(1)
elif mode == "oversized":
    import grpc

    def varint(n):
        out = b""
        while True:
            byte, n = n & 0x7F, n >> 7
            out += bytes([byte | (0x80 if n else 0)])
            if not n:
                return out

    size = int(sys.argv[3])
    # Field 111, length-delimited: protobuf skips fields it does not know, so only the
    # size can make the API refuse this request.
    request = b"\xfa\x06" + varint(size) + b"\0" * size
    channel = grpc.insecure_channel(socket, options=[("grpc.default_authority", "localhost")])
    call = channel.unary_stream("/SpiffeWorkloadAPI/FetchX509SVID")
    try:
        for _ in call(request, metadata=(("workload.spiffe.io", "true"),), timeout=10):
            print("answered", flush=True)
            break
    except grpc.RpcError as e:
        print("refused", e.code().name, e.details(), flush=True)
else:
    sys.exit("unknown mode " + mode)
