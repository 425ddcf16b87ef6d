"""``--route balancer``: deploy/nginx.conf's upstream, emulated (fewest connections, then the next worker)."""

from __future__ import annotations

# --route balancer follows deploy/nginx.conf: least_conn, and proxy_next_upstream (error, timeout,
# http_502, http_503, http_403) with proxy_next_upstream_tries 2. A connect timeout is not
# retried here: the client's 15 s covers the whole handshake, not nginx's 5 s TCP connect.
BALANCER_TRIES = 2
BALANCER_NEXT_ON = frozenset({"refused", "reset", "closed_in_handshake", "http_403", "http_502", "http_503"})


class Balancer:
    """nginx's ``least_conn`` over the workers, with its round-robin among the least loaded."""

    def __init__(self, workers: int) -> None:
        # The clients' connections per worker, handshakes included (what nginx's least_conn counts).
        self.open_by_worker = [0] * workers
        self.next_turn = 0  # the round-robin among workers with as few connections

    def opened(self, worker: int) -> None:
        self.open_by_worker[worker] += 1

    def closed(self, worker: int) -> None:
        self.open_by_worker[worker] -= 1

    def picks(self) -> list[int]:
        """The workers one attempt may try, in order: fewest connections first, at most BALANCER_TRIES."""
        count = len(self.open_by_worker)
        turn = self.next_turn
        self.next_turn = (turn + 1) % count
        order = sorted(range(count), key=lambda index: (self.open_by_worker[index], (index - turn) % count))
        return order[:BALANCER_TRIES]

    @staticmethod
    def moves_on(kind: str) -> bool:
        """nginx tries the next worker after this failure (``proxy_next_upstream``) before answering."""
        return kind in BALANCER_NEXT_ON
