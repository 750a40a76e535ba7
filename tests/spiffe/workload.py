"""A SPIFFE workload, with py-spiffe, against a gateway's Workload API
(gateway/tests/workload_api.rs runs it). Prints one line per fact, for the test to read.

    workload.py SOCKET fetch     each SVID's SPIFFE ID and serial, and the bundle's trust domains
    workload.py SOCKET refused   expects the API to refuse this caller; prints why
    workload.py SOCKET rotates   waits (up to 60 s) for the stream to push a new SVID
"""
import sys
import time

from spiffe import WorkloadApiClient, X509Source

socket, mode = "unix://" + sys.argv[1], sys.argv[2]

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
else:
    sys.exit("unknown mode " + mode)
