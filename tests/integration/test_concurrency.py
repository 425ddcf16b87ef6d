"""Sequence numbers under concurrent writers: threads in one process and several processes."""

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import close_old_connections

from chat import services
from chat.models import Message, Room
from tests.support.processes import ROOT

pytestmark = pytest.mark.django_db(transaction=True)


def assert_gap_free(slug: str, expected: int) -> None:
    seqs = list(Message.objects.filter(room__slug=slug).order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, expected + 1))
    assert Room.objects.get(slug=slug).last_seq == expected


def test_many_threads_posting_at_once_get_seq_1_to_n_without_gap_or_repeat():
    room = services.room_get_or_create(slug="threads")

    def post(i: int) -> int:
        try:
            return services.message_store(
                room=room, author="t", user_id=None, body=f"m{i}", client_id=f"t-{i}"
            ).message.seq
        finally:
            close_old_connections()

    with ThreadPoolExecutor(max_workers=16) as pool:
        seqs = list(pool.map(post, range(200)))
    assert sorted(seqs) == list(range(1, 201))
    assert_gap_free("threads", 200)


def test_several_processes_posting_at_once_get_seq_1_to_n(live_database_url):
    services.room_get_or_create(slug="processes")
    env = {**os.environ, "DATABASE_URL": live_database_url, "DJANGO_SECRET_KEY": "x", "DJANGO_DEBUG": "0"}
    env["DJANGO_SETTINGS_MODULE"] = "project.settings"
    children = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.support.post_many", "processes", "60", f"p{n}"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for n in range(4)
    ]
    try:
        outputs = [child.communicate(timeout=120)[0].decode() for child in children]
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
    assert [child.returncode for child in children] == [0, 0, 0, 0], outputs
    assert_gap_free("processes", 240)
    # Each writer's own messages kept their order.
    for n in range(4):
        bodies = list(
            Message.objects.filter(room__slug="processes", author=f"p{n}")
            .order_by("seq")
            .values_list("body", flat=True)
        )
        assert bodies == [f"p{n}-{i}" for i in range(60)]
