import asyncio

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from chat import dashboard, hub


class Command(BaseCommand):
    help = (
        "Send a worker's sockets to the other workers (close code 4512, spread over --window seconds) "
        "before it is stopped. Without --process: list the workers. Needs REDIS_URL (the channel layer)."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--process",
            action="append",
            default=[],
            help="process id to drain (repeat for several); see the list",
        )
        parser.add_argument(
            "--pid", type=int, action="append", default=[], help="drain the worker with this PID"
        )
        parser.add_argument("--all", dest="everyone", action="store_true", help="drain every worker")
        parser.add_argument(
            "--window",
            type=float,
            default=None,
            help="seconds to spread the closes over (default RIPPLE_DRAIN_S)",
        )

    def handle(self, *args, process, pid, everyone, window, **options):
        if not settings.REDIS_URL:
            raise CommandError(
                "REDIS_URL is not set: without the Redis channel layer no worker can be reached"
            )
        window_s = settings.RIPPLE_DRAIN_S if window is None else window
        if window_s < 0:
            raise CommandError("--window must be 0 or more")
        asyncio.run(self._run(process, pid, everyone, window_s))

    async def _run(self, wanted: list[str], pids: list[int], everyone: bool, window_s: float) -> None:
        try:
            workers = await dashboard.processes()
            if not (wanted or pids or everyone):
                for snapshot in workers:
                    self.stdout.write(
                        f"{snapshot['process_id']}  pid {snapshot['pid']}  {snapshot['open_sockets']} sockets"
                    )
                if not workers:
                    self.stdout.write("no worker has reported in the last few seconds")
                return
            targets = [
                s["process_id"] for s in workers if everyone or s["process_id"] in wanted or s["pid"] in pids
            ]
            unknown = set(wanted) - set(targets)
            if unknown or not targets:
                raise CommandError(f"no such worker: {', '.join(sorted(unknown)) or pids}")
            for process_id in targets:
                await hub.control_event(hub.EVENT_DRAIN, {"process": process_id, "window_s": window_s})
                self.stdout.write(f"draining {process_id} over {window_s:g} s")
        finally:
            await dashboard.close_redis_client()
