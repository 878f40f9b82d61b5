"""The default thread count: all cores on an idle machine, one when other processes use the CPU,
judged from the CPU time used now, not from the load average (which still holds a finished
install for a minute)."""

import os

from videomae_np import cli


def test_an_idle_machine_with_a_high_load_average_gets_all_cores(monkeypatch):
    monkeypatch.setattr(cli, "_busy_cores", lambda seconds=cli.BUSY_SAMPLE_S: 0.05)
    monkeypatch.setattr(os, "getloadavg", lambda: (3.0, 3.0, 3.0))
    assert cli.default_threads() is None             # None: every core


def test_a_busy_machine_gets_one_thread(monkeypatch, capsys):
    monkeypatch.setattr(cli, "_busy_cores", lambda seconds=cli.BUSY_SAMPLE_S: 1.2)
    assert cli.default_threads() == 1
    assert "busy" in capsys.readouterr().out


def test_busy_cores_is_a_fraction_of_the_machine_or_unknown():
    busy = cli._busy_cores(0.05)
    assert busy is None or 0.0 <= busy <= (os.cpu_count() or 1) + 1e-9
