"""The skip policy of a strict run (RVQGAN_STRICT_SKIPS=1): allowed skips pass, any other fails the session."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import ALLOWED_SKIPS, NO_CHROMIUM

pytest_plugins = ["pytester"]

CONFTEST = Path(__file__).with_name("conftest.py")


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    """A directory with this suite's conftest and one test module that passes, and skips for an allowed reason."""
    pytester.makeconftest(CONFTEST.read_text())
    pytester.makepyfile(
        test_a=f"""
        import pytest

        def test_passes():
            pass

        @pytest.mark.skipif(True, reason={ALLOWED_SKIPS[0]!r})
        def test_allowed_mark():
            pass

        def test_allowed_call():
            pytest.skip({ALLOWED_SKIPS[-1]!r})
        """
    )
    return pytester


def test_allowed_skips_pass_and_are_counted(suite, monkeypatch):
    monkeypatch.setenv("RVQGAN_STRICT_SKIPS", "1")
    result = suite.runpytest_subprocess("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["RVQGAN_STRICT_SKIPS: 2 skipped, 0 for a reason not allowed"])


@pytest.mark.parametrize(
    "module",
    [
        f"import pytest\n\ndef test_browser():\n    pytest.skip({NO_CHROMIUM!r})\n",
        "import pytest\n\npytest.importorskip('a_module_that_is_not_installed')\n",  # a whole module skipped
    ],
)
def test_a_skip_for_another_reason_fails_a_strict_run_only(suite, monkeypatch, module):
    suite.makepyfile(test_b=module)
    monkeypatch.setenv("RVQGAN_STRICT_SKIPS", "1")
    result = suite.runpytest_subprocess("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["RVQGAN_STRICT_SKIPS: 3 skipped, 1 for a reason not allowed", "not allowed: test_b.py*"])
    monkeypatch.delenv("RVQGAN_STRICT_SKIPS")
    result = suite.runpytest_subprocess("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.OK and "RVQGAN_STRICT_SKIPS" not in result.stdout.str()
