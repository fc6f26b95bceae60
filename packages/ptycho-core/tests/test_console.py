"""ptycho_core.console: our loggers only, no duplicates, framework chatter held back, progress only on a tty."""

from __future__ import annotations

import io
import logging

import pytest

from ptycho_core import console


@pytest.fixture
def restore_logging():
    names = (*console.OUR_LOGGERS, *console.FRAMEWORK_LOGGERS, *console.NOISY_LOGGERS)
    saved = {n: (logging.getLogger(n).level, list(logging.getLogger(n).handlers)) for n in names}
    root_handlers = list(logging.getLogger().handlers)
    yield
    for n, (level, handlers) in saved.items():
        logger = logging.getLogger(n)
        logger.setLevel(level)
        logger.handlers[:] = handlers
    assert logging.getLogger().handlers == root_handlers


def test_configure_twice_prints_each_line_once_and_leaves_root_alone(restore_logging):
    root = list(logging.getLogger().handlers)
    stream = io.StringIO()
    console.configure_logging(stream=stream)
    console.configure_logging(stream=stream)
    assert logging.getLogger().handlers == root
    logging.getLogger("ptycho.workflow").info("training %s", "x")
    logging.getLogger("ptycho_data.npz").debug("hidden at INFO")
    logging.getLogger("lightning.pytorch.utilities.rank_zero").info("💡 Tip: install something")
    logging.getLogger("tensorflow").info("start-up line")
    assert stream.getvalue().splitlines() == ["INFO ptycho.workflow: training x"]
    assert logging.getLogger("lightning.pytorch.utilities.rank_zero").getEffectiveLevel() == logging.WARNING


def test_verbose_lets_framework_lines_through(restore_logging):
    console.configure_logging(verbose=True)
    assert logging.getLogger("lightning.pytorch.utilities.rank_zero").isEnabledFor(logging.INFO)
    assert logging.getLogger("tensorflow").isEnabledFor(logging.INFO)


def test_debug_shows_ours_not_matplotlib(restore_logging):
    stream = io.StringIO()
    console.configure_logging(debug=True, stream=stream)
    logging.getLogger("ptycho_core.registry").debug("ours")
    logging.getLogger("matplotlib.font_manager").debug("findfont: Font family")
    assert stream.getvalue().splitlines() == ["DEBUG ptycho_core.registry: ours"]
    assert not logging.getLogger("matplotlib.font_manager").isEnabledFor(logging.DEBUG)


def test_quiet_keeps_warnings_only(restore_logging):
    stream = io.StringIO()
    console.configure_logging(quiet=True, stream=stream)
    logging.getLogger("ptycho.workflow").info("progress note")
    logging.getLogger("ptycho.workflow").warning("look")
    assert stream.getvalue().splitlines() == ["WARNING ptycho.workflow: look"]


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_show_progress_only_on_a_terminal():
    assert console.show_progress(True, _Tty()) is True
    assert console.show_progress(False, _Tty()) is False
    assert console.show_progress(True, io.StringIO()) is False
    closed = io.StringIO()
    closed.close()  # isatty() raises ValueError
    assert console.show_progress(True, closed) is False
