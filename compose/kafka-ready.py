"""Waits until a Kafka broker answers a metadata request naming a broker.

    kafka-ready.py BOOTSTRAP TIMEOUT_SECONDS

Exit 0 when ready, 1 at the deadline. Runs in the clients' venv
(kafka-python), so it asks as an independent client would.
"""
import signal
import socket
import sys
import time

from kafka import KafkaAdminClient

bootstrap, timeout = sys.argv[1], float(sys.argv[2])
host, port = bootstrap.split(",")[0].rsplit(":", 1)
last = "port closed"


def give_up(*_):
    print(f"kafka-ready: {bootstrap} did not answer metadata within {timeout}s: {last}",
          file=sys.stderr)
    sys.exit(1)


# One hard deadline, whatever the client blocks on.
signal.signal(signal.SIGALRM, give_up)
signal.setitimer(signal.ITIMER_REAL, timeout)
while True:
    try:
        socket.create_connection((host, int(port)), 1).close()
    except OSError as e:
        last = f"port closed ({e})"
        time.sleep(0.2)
        continue
    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
        try:
            brokers = admin.describe_cluster().get("brokers") or []
        finally:
            admin.close()
        if brokers:
            sys.exit(0)
        last = "no brokers in metadata"
    except Exception as e:  # starting: no metadata yet
        last = repr(e)
    time.sleep(0.2)
