"""The one lock rule (``dgqa_data.paths.claim_lock``) behind run locks and synth's finalizer."""

from __future__ import annotations

import os
import time

from dgqa_data.paths import FRESH_LOCK_S, claim_lock, process_owner


def test_claim_take_over_and_refuse(tmp_path):
    lock = tmp_path / "x.lock"
    assert claim_lock(lock) is None and lock.read_text() == process_owner()
    assert claim_lock(lock) == process_owner()  # held by a live process (this one): refused
    host = process_owner().rsplit("-", 1)[0]
    lock.write_text(f"{host}-999999999")  # its owner was killed
    assert claim_lock(lock) is None and lock.read_text() == process_owner()
    lock.write_text("")  # created, owner not written yet: held while fresh
    assert claim_lock(lock) == "a process that is taking it"
    old = time.time() - FRESH_LOCK_S - 5  # ... abandoned once older than FRESH_LOCK_S
    os.utime(lock, (old, old))
    assert claim_lock(lock) is None and lock.read_text() == process_owner()
